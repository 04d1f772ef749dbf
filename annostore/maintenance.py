"""Store upkeep: garbage collection of unreferenced files, and verification of every file."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _diff_store, _stats_store
from ._manifest import FileRef, Manifest, parse_version_name
from ._storage import TEMP_PREFIX, sha256_hex
from .errors import AnnostoreError

if TYPE_CHECKING:
    from .dataset import Dataset
    from .store import Store

__all__ = ["GcReport", "Problem", "VerifyReport"]


@dataclass
class GcReport:
    """What :meth:`Store.gc` removed (or would remove, with ``dry_run``)."""

    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    #: unreferenced files still inside the grace period (or of unknown age)
    kept_young: int = 0
    #: datasets left alone because a manifest could not be read (see verify)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "removed": len(self.removed),
            "removed_bytes": self.removed_bytes,
            "kept_young": self.kept_young,
            "skipped": self.skipped,
            "files": self.removed,
        }


@dataclass
class Problem:
    """One thing wrong in a store: where, and what."""

    dataset: str
    path: str
    problem: str

    def to_dict(self) -> dict[str, str]:
        return {"dataset": self.dataset, "path": self.path, "problem": self.problem}


@dataclass
class VerifyReport:
    """What :meth:`Store.verify` checked and found."""

    datasets: int = 0
    versions: int = 0
    files: int = 0
    bytes: int = 0
    problems: list[Problem] = field(default_factory=list)
    orphans: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "datasets": self.datasets,
            "versions": self.versions,
            "files": self.files,
            "bytes": self.bytes,
            "orphans": self.orphans,
            "problems": [p.to_dict() for p in self.problems],
        }


def _refs(manifest: Manifest) -> list[FileRef]:
    refs: list[FileRef] = []
    for state in manifest.tables.values():
        refs.extend(state.fragments)
        refs.extend(state.tombstones)
        if state.changeset is not None:
            refs.append(state.changeset)
    return refs


def _version_files(dataset: Dataset) -> list[tuple[str, int | None]]:
    names = dataset._storage.list(f"{dataset._folder}/versions")
    return [(name, parse_version_name(name)) for name in names]


#: what is kept next to versions (see ``_kept``): folder → (its running computation id,
#: what is wrong with one of its files)
_KEPT = {
    _stats_store.FOLDER: (_stats_store.computation_id, _stats_store.stored_problem),
    _diff_store.FOLDER: (_diff_store.computation_id, _diff_store.kept_problem),
}


def _outdated_kept(relative: str) -> bool:
    """Stats or diffs kept by a release that computed them differently: never read again."""
    parts = relative.split("/")
    return len(parts) == 3 and parts[0] in _KEPT and parts[1] != _KEPT[parts[0]][0]()


def collect_garbage(store: Store, grace_seconds: float, dry_run: bool) -> GcReport:
    report = GcReport()
    now = time.time()
    storage = store._storage
    for name in store.datasets():
        dataset = store.dataset(name)
        referenced: set[str] = set()
        try:
            for _, number in _version_files(dataset):
                if number is not None:
                    referenced.update(ref.path for ref in _refs(dataset._manifest(number)))
        except AnnostoreError as exc:
            report.skipped[name] = str(exc)
            continue
        prefix = f"{dataset._folder}/"
        for path, modified, size in storage.list_files(dataset._folder):
            relative = path[len(prefix) :]
            basename = relative.rsplit("/", 1)[-1]
            is_object = relative.startswith("objects/") and relative not in referenced
            if not (is_object or _outdated_kept(relative) or basename.startswith(TEMP_PREFIX)):
                continue
            if modified is None or now - modified < grace_seconds:
                report.kept_young += 1
                continue
            if not dry_run:
                storage.delete(path)
            report.removed.append(path)
            report.removed_bytes += size
    return report


def verify_store(store: Store) -> VerifyReport:
    report = VerifyReport()
    storage = store._storage
    for name in store.datasets():
        dataset = store.dataset(name)
        report.datasets += 1
        checked: set[str] = set()
        numbers: set[int] = set()
        by_id: dict[str, Manifest] = {}
        for file_name, number in _version_files(dataset):
            where = f"{dataset._folder}/versions/{file_name}"
            if number is None:
                if not file_name.startswith(TEMP_PREFIX):
                    report.problems.append(Problem(name, where, "unexpected file among versions"))
                continue
            try:
                manifest = dataset._manifest(number)
            except AnnostoreError as exc:
                report.problems.append(Problem(name, where, str(exc)))
                continue
            report.versions += 1
            numbers.add(number)
            by_id[manifest.id] = manifest
            if manifest.parent is not None and manifest.parent >= number:
                report.problems.append(
                    Problem(name, where, f"parent {manifest.parent} is not older")
                )
            for ref in _refs(manifest):
                if ref.path in checked:
                    continue
                checked.add(ref.path)
                path = f"{dataset._folder}/{ref.path}"
                try:
                    data = storage.read_bytes(path)
                except AnnostoreError:
                    report.problems.append(
                        Problem(name, path, f"missing (referenced by version {number})")
                    )
                    continue
                report.files += 1
                report.bytes += len(data)
                if sha256_hex(data) != ref.sha256:
                    report.problems.append(
                        Problem(name, path, "corrupted: sha256 does not match the manifest")
                    )
                elif len(data) != ref.bytes:
                    report.problems.append(Problem(name, path, "size does not match the manifest"))
        try:
            tags = dataset.tags()
        except AnnostoreError as exc:
            report.problems.append(Problem(name, f"{dataset._folder}/tags", str(exc)))
            tags = {}
        for tag, number in tags.items():
            if number not in numbers:
                report.problems.append(
                    Problem(
                        name,
                        f"{dataset._folder}/tags/{tag}.json",
                        f"names version {number}, which does not exist",
                    )
                )
        for folder, (computation_id, problem_of) in _KEPT.items():
            for path, _, _ in storage.list_files(f"{dataset._folder}/{folder}/{computation_id()}"):
                if path.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
                    continue
                problem = problem_of(path, storage.read_bytes(path), by_id)
                if problem is not None:
                    report.problems.append(Problem(name, path, problem))
        prefix = f"{dataset._folder}/"
        for path, _, _ in storage.list_files(f"{dataset._folder}/objects"):
            if path[len(prefix) :] not in checked and not path.rsplit("/", 1)[-1].startswith(
                TEMP_PREFIX
            ):
                report.orphans += 1
    return report
