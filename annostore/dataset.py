"""``Dataset``: a named, versioned collection of tasks and the commits that make versions."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from annostore.schemas import KEYS, SCHEMA_VERSION, TABLE_NAMES

from ._commit import (
    TableChange,
    apply_changes,
    check_references,
    find_conflicts,
    needs_compaction,
    plan_compaction,
    plan_table,
    storage_stats,
    tombstone_schema,
)
from ._manifest import Manifest, TableState, parse_version_name, version_path
from ._names import check_name, check_tag_name
from ._provenance import origin, remember
from ._sql import connection
from .errors import AnnostoreError, ConflictError, CorruptionError, NotFoundError, SchemaError
from .tables import TableLike, Tables
from .version import Version

if TYPE_CHECKING:
    from .diff import Diff
    from .store import Store

__all__ = ["Dataset"]

logger = logging.getLogger(__name__)

#: How many times a commit that lost the race to publish rebases before giving up.
MAX_REBASES = 64
_HEX_PREFIX = re.compile(r"[0-9a-f]{4,64}")

Plan = Callable[
    [duckdb.DuckDBPyConnection, Manifest | None, int],
    tuple[dict[str, TableChange], dict[str, pa.Table]],
]
Keys = pa.Table | Iterable[Any]


class Dataset:
    """A named dataset in a store: its versions, tags and commits.

    Get one from :meth:`Store.dataset <annostore.Store.dataset>` or
    :meth:`Store.create_dataset <annostore.Store.create_dataset>`.
    """

    def __init__(self, store: Store, name: str):
        self.store = store
        self.name = check_name(name, "dataset")
        self._storage = store._storage
        self._folder = f"datasets/{self.name}"
        self._manifests: dict[int, Manifest] = {}

    # reading -------------------------------------------------------------------------

    def _numbers(self) -> list[int]:
        names = self._storage.list(f"{self._folder}/versions")
        return sorted(n for n in (parse_version_name(name) for name in names) if n is not None)

    def _head(self) -> int | None:
        numbers = self._numbers()
        return numbers[-1] if numbers else None

    def _manifest(self, number: int) -> Manifest:
        cached = self._manifests.get(number)
        if cached is not None:
            return cached
        path = f"{self._folder}/{version_path(number)}"
        manifest = Manifest.from_bytes(self._storage.read_bytes(path), path)
        if manifest.number != number or manifest.dataset != self.name:
            raise CorruptionError(
                f"{path}: manifest says {manifest.dataset}@{manifest.number}", path=path
            )
        self._manifests[number] = manifest
        return manifest

    def log(self) -> list[Version]:
        """Every version, newest first."""
        return [Version(self, self._manifest(n)) for n in reversed(self._numbers())]

    def version(self, ref: int | str = "latest") -> Version:
        """A version by number (``3``, ``"3"``), ``"latest"``, tag name or content id prefix
        (at least 4 hex digits; digits alone are read as a version number first)."""
        return Version(self, self._manifest(self._resolve(ref)))

    @property
    def latest(self) -> Version | None:
        """The newest version, or None before the first commit."""
        head = self._head()
        return None if head is None else Version(self, self._manifest(head))

    def _resolve(self, ref: int | str) -> int:
        numbers = self._numbers()
        if isinstance(ref, bool) or not isinstance(ref, (int, str)):
            raise NotFoundError(
                f"a version reference is a number, 'latest', a tag or an id prefix, got {ref!r}"
            )
        # A number names a version; digits that name none may still be an id prefix.
        if (
            isinstance(ref, str)
            and ref.isdigit()
            and (int(ref) in numbers or not _HEX_PREFIX.fullmatch(ref))
        ):
            ref = int(ref)
        if isinstance(ref, int):
            if ref in numbers:
                return ref
            raise NotFoundError(
                f"dataset {self.name!r} has no version {ref} (it has {_describe(numbers)})"
            )
        if ref == "latest":
            if not numbers:
                raise NotFoundError(f"dataset {self.name!r} has no versions yet")
            return numbers[-1]
        tags = self.tags()
        if ref in tags:
            return tags[ref]
        if _HEX_PREFIX.fullmatch(ref):
            matches = [n for n in numbers if self._manifest(n).id.startswith(ref)]
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise NotFoundError(
                    f"id prefix {ref!r} is ambiguous in dataset {self.name!r}: versions {matches}"
                )
        raise NotFoundError(f"dataset {self.name!r} has no version, tag or id prefix {ref!r}")

    def sql(
        self,
        query: str,
        version: int | str = "latest",
        params: Sequence[Any] | dict[str, Any] | None = None,
    ) -> pa.Table:
        """Run one read-only SELECT over a version (see :meth:`Version.sql`)."""
        return self.version(version).sql(query, params)

    def stats(self, version: int | str = "latest", *, recompute: bool = False) -> dict[str, Any]:
        """Statistics of a version (see :meth:`Version.stats`)."""
        return self.version(version).stats(recompute=recompute)

    def labeled_tasks(self, version: int | str = "latest") -> pa.Table:
        """Tasks of a version that a person has annotated (ZenML's get_labeled_data)."""
        return self.version(version).labeled_tasks()

    def unlabeled_tasks(self, version: int | str = "latest") -> pa.Table:
        """Tasks of a version that no person has annotated (ZenML's get_unlabeled_data)."""
        return self.version(version).unlabeled_tasks()

    def diff(
        self,
        a: int | str,
        b: int | str = "latest",
        *,
        iou_threshold: float | None = 0.5,
        recompute: bool = False,
    ) -> Diff:
        """What changed from version ``a`` to version ``b``: rows added, removed and changed
        in every table (with the fields that changed), label changes, box IoU, tasks newly
        labeled or unlabeled, and label-set changes.

        Regions are matched by key. Where ids come from content (YOLO, CSV), a moved box
        gets a new id; a removed and an added region on the same task with the same label
        whose boxes overlap with IoU >= ``iou_threshold`` (each the other's best match) are
        reported as one changed region. ``iou_threshold=None`` turns the pairing off.

        The details are computed once per pair and threshold and kept in the store; a later
        diff of the pair reads them. ``recompute=True`` computes them again (and keeps them).
        """
        from .diff import diff_versions

        return diff_versions(
            self,
            self.version(a).manifest,
            self.version(b).manifest,
            iou_threshold,
            recompute=recompute,
        )

    # tags ----------------------------------------------------------------------------

    def tags(self) -> dict[str, int]:
        """Tag name → version number."""
        result = {}
        for entry in self._storage.list(f"{self._folder}/tags"):
            if not entry.endswith(".json") or entry.startswith("."):
                continue
            path = f"{self._folder}/tags/{entry}"
            try:
                result[entry[: -len(".json")]] = int(
                    json.loads(self._storage.read_bytes(path))["version"]
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise CorruptionError(f"{path}: not a valid tag file ({exc})", path=path) from exc
        return result

    def _tags_of(self, number: int) -> list[str]:
        return sorted(tag for tag, n in self.tags().items() if n == number)

    def tag(self, name: str, ref: int | str = "latest", *, force: bool = False) -> Version:
        """Name a version. Moving an existing tag to another version needs ``force=True``."""
        tag = check_tag_name(name)
        target = self.version(ref)
        body = json.dumps(
            {
                "tag": tag,
                "version": target.number,
                "id": target.id,
                "created_at": _now().isoformat(),
            },
            indent=1,
        ).encode()
        path = f"{self._folder}/tags/{tag}.json"
        if self._storage.put_if_absent(path, body):
            return target
        current = self.tags().get(tag)
        if current == target.number:
            return target
        if not force:
            raise ConflictError(
                f"tag {tag!r} already names version {current} of {self.name!r}; use force to move it"
            )
        self._storage.write_whole(path, body)
        return target

    def delete_tag(self, name: str) -> None:
        """Remove a tag (the version stays)."""
        tag = check_tag_name(name)
        if tag not in self.tags():
            raise NotFoundError(f"dataset {self.name!r} has no tag {tag!r}")
        self._storage.delete(f"{self._folder}/tags/{tag}.json")

    # committing ----------------------------------------------------------------------

    def commit(
        self,
        tables: Tables | Mapping[str, TableLike],
        *,
        message: str | None = None,
        author: str | None = None,
        base: int | str | None = None,
    ) -> Version:
        """Make ``tables`` the dataset's new state and return the new version.

        Rows are compared with the base version (the latest, or ``base``) by key and
        content; only inserted and changed rows are written. Committing a state identical
        to the base makes no new version and returns the base. If another writer published
        first, the commit is rebased onto it when their changes touch none of the same
        keys, otherwise :class:`~annostore.ConflictError` is raised and nothing is published.

        A table passed back as read from a version (the very object of ``v.tables``), or
        as committed (the very object of a :class:`Tables` given to an earlier ``commit``
        that was published without a rebase), is not compared row by row when the base
        stores the same files for it: editing the regions of
        ``ds.version("latest").tables``, or of the tables just committed, compares only
        the regions.
        """
        state = tables if isinstance(tables, Tables) else Tables(**dict(tables))

        def plan(con: duckdb.DuckDBPyConnection, base_manifest: Manifest | None, seq: int):
            changes = {
                name: plan_table(
                    con,
                    self._storage,
                    self._folder,
                    name,
                    base_manifest.tables[name] if base_manifest else None,
                    state[name],
                    None,
                    True,
                    seq,
                )
                for name in TABLE_NAMES
            }
            return changes, {name: state[name] for name in TABLE_NAMES}

        return self._commit(
            plan, "commit", message, author, base, check_when_fresh=False, metadata=state.metadata
        )

    def commit_changes(
        self,
        upserts: Tables | Mapping[str, TableLike] | None = None,
        deletes: Mapping[str, Keys] | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        message: str | None = None,
        author: str | None = None,
        base: int | str | None = None,
    ) -> Version:
        """Commit a change rather than a whole state: insert or replace ``upserts`` rows and
        remove the rows whose keys are in ``deletes``.

        ``metadata`` replaces the dataset's metadata; left out, the parent's is kept.

        ``upserts`` is a :class:`Tables` built with ``check_references=False``, or a mapping
        of table name to Arrow table. ``deletes`` maps table name to keys: an Arrow table of
        the key columns, or a list of keys (strings; ``(annotation_id, region_id)`` pairs for
        regions). Deleting a key that does not exist does nothing. References must hold in
        the resulting state (an annotation's task exists, a deleted task has no annotation
        left), else :class:`~annostore.SchemaError`.
        """
        if upserts is None:
            rows = Tables(check_references=False)
        elif isinstance(upserts, Tables):
            rows = upserts
        else:
            unknown = set(upserts) - set(TABLE_NAMES)
            if unknown:
                raise SchemaError(
                    f"unknown table {sorted(unknown)[0]!r}; tables are {', '.join(TABLE_NAMES)}"
                )
            rows = Tables(**dict(upserts), check_references=False)
        removed = _normalize_deletes(deletes or {})

        def plan(con: duckdb.DuckDBPyConnection, base_manifest: Manifest | None, seq: int):
            changes = {
                name: plan_table(
                    con,
                    self._storage,
                    self._folder,
                    name,
                    base_manifest.tables[name] if base_manifest else None,
                    rows[name],
                    removed.get(name),
                    False,
                    seq,
                )
                for name in TABLE_NAMES
            }
            return changes, {name: rows[name] for name in TABLE_NAMES}

        if metadata is None and isinstance(upserts, Tables) and upserts.metadata:
            metadata = upserts.metadata
        new_metadata = None if metadata is None else Tables().with_metadata(metadata).metadata
        return self._commit(
            plan,
            "commit_changes",
            message,
            author,
            base,
            check_when_fresh=True,
            metadata=new_metadata,
        )

    def compact(
        self,
        tables: Sequence[str] | None = None,
        *,
        message: str | None = None,
        author: str | None = None,
    ) -> Version:
        """Rewrite tables (all by default) into full fragments without tombstones.

        A compaction is an ordinary version with the same content as its parent and an
        empty changeset. Commits trigger one by themselves when small fragments or
        tombstones pass a bound (see ``Store(auto_compact=...)``).
        """
        names = list(tables) if tables is not None else list(TABLE_NAMES)
        unknown = set(names) - set(TABLE_NAMES)
        if unknown:
            raise SchemaError(
                f"unknown table {sorted(unknown)[0]!r}; tables are {', '.join(TABLE_NAMES)}"
            )

        def plan(con: duckdb.DuckDBPyConnection, base_manifest: Manifest | None, seq: int):
            if base_manifest is None:
                raise NotFoundError(f"dataset {self.name!r} has no versions to compact")
            changes = {
                name: plan_compaction(
                    con, self._storage, self._folder, name, base_manifest.tables[name], seq
                )
                for name in names
            }
            return changes, {}

        return self._commit(
            plan, "compact", message or "compact", author, None, check_when_fresh=False
        )

    def _commit(
        self,
        plan: Plan,
        operation: str,
        message: str | None,
        author: str | None,
        base_ref: int | str | None,
        check_when_fresh: bool,
        metadata: dict[str, Any] | None = None,
    ) -> Version:
        """Publish what ``plan`` computes; ``metadata`` None keeps the parent's."""
        base = (
            self._manifest(self._resolve(base_ref))
            if base_ref is not None
            else self.latest_manifest()
        )
        with connection() as con:
            seq = (base.number if base else 0) + 1
            changes, upserts = plan(con, base, seq)
            base_metadata = base.metadata if base else {}
            changes_metadata = metadata is not None and metadata != base_metadata
            if (
                base is not None
                and operation != "compact"
                and not any(c.touched for c in changes.values())
                and not changes_metadata
            ):
                if operation == "commit":
                    self._remember_committed(upserts, base.tables)
                return Version(self, base)
            parent, rebased = base, False
            for _ in range(MAX_REBASES):
                number = (parent.number if parent else 0) + 1
                states = apply_changes(parent, changes, number)
                if rebased or check_when_fresh:
                    check_references(
                        con,
                        self._storage,
                        self._folder,
                        states,
                        changes,
                        upserts,
                        ConflictError if rebased else SchemaError,
                    )
                manifest = Manifest(
                    schema_version=SCHEMA_VERSION,
                    dataset=self.name,
                    number=number,
                    parent=parent.number if parent else None,
                    operation=operation,
                    created_at=_now(),
                    author=author,
                    message=message,
                    tables=states,
                    stats=storage_stats(states),
                    metadata=metadata if changes_metadata else (parent.metadata if parent else {}),
                ).with_id()
                path = f"{self._folder}/{version_path(number)}"
                if self._storage.put_if_absent(path, manifest.to_bytes()):
                    self._manifests[number] = manifest
                    if operation == "commit" and not rebased:
                        # after a rebase the version also holds the other writers' rows
                        self._remember_committed(upserts, states)
                    published = Version(self, manifest)
                    if operation != "compact":
                        self._compact_if_needed(published, author)
                    return published
                head = self._head()
                assert head is not None and head >= number
                if operation == "compact":
                    parent = self._manifest(head)
                    changes, upserts = plan(con, parent, head + 1)
                    continue
                theirs = [self._manifest(n) for n in range(number, head + 1)]
                conflicts = find_conflicts(con, self._storage, self._folder, changes, theirs)
                if changes_metadata and any(
                    m.metadata != self._manifest(m.parent).metadata if m.parent else m.metadata
                    for m in theirs
                ):
                    conflicts = {**conflicts, "metadata": ["(dataset metadata)"]}
                if conflicts:
                    listed = "; ".join(f"{table}: {keys[:5]}" for table, keys in conflicts.items())
                    raise ConflictError(
                        f"versions {number}..{head} of {self.name!r} changed the same rows as this commit "
                        f"(based on version {base.number if base else 'none'}): {listed}",
                        rows=conflicts,
                    )
                logger.info(
                    "rebasing commit on %s from version %s onto %s", self.name, number - 1, head
                )
                parent, rebased = self._manifest(head), True
        raise ConflictError(f"gave up publishing on {self.name!r} after {MAX_REBASES} lost races")

    def _remember_committed(
        self, committed: Mapping[str, pa.Table], states: Mapping[str, TableState]
    ) -> None:
        """Note that each table of a full-state commit holds exactly the live rows of its
        state in the version made (or kept), so that committing the same object again
        skips comparing it (see _provenance)."""
        for name, table in committed.items():
            remember(table, origin(self._storage.url, self._folder, name, states[name]))

    def latest_manifest(self) -> Manifest | None:
        head = self._head()
        return None if head is None else self._manifest(head)

    def _compact_if_needed(self, version: Version, author: str | None) -> None:
        if not self.store.auto_compact:
            return
        due = [name for name, state in version.manifest.tables.items() if needs_compaction(state)]
        if not due:
            return
        try:
            self.compact(due, message="automatic compaction", author=author)
        except ConflictError as exc:
            logger.info("automatic compaction of %s skipped: %s", self.name, exc)
        except (AnnostoreError, OSError) as exc:
            # The user's commit is published and complete; compaction is upkeep that the
            # next commit (or `annostore compact`) retries. Say so rather than fail the commit.
            logger.warning(
                "automatic compaction of %s failed after version %s was published: %s",
                self.name,
                version.number,
                exc,
            )

    def __repr__(self) -> str:
        return f"<Dataset {self.name!r} in {self.store.url}>"


def _normalize_deletes(deletes: Mapping[str, Keys]) -> dict[str, pa.Table]:
    result = {}
    for name, keys in deletes.items():
        if name not in TABLE_NAMES:
            raise SchemaError(
                f"unknown table {name!r} in deletes; tables are {', '.join(TABLE_NAMES)}"
            )
        schema = tombstone_schema(name)
        columns = list(KEYS[name])
        if isinstance(keys, pa.Table):
            missing = [c for c in columns if c not in keys.column_names]
            if missing:
                raise SchemaError(
                    f"deletes[{name!r}]: missing key column {missing[0]!r}", table=name
                )
            table = keys.select(columns)
        else:
            values = list(keys)
            if len(columns) == 1:
                table = pa.table({columns[0]: pa.array(values, pa.string())})
            else:
                bad = [v for v in values if isinstance(v, str) or len(v) != len(columns)]
                if bad:
                    raise SchemaError(
                        f"deletes[{name!r}]: keys are ({', '.join(columns)}) pairs, got {bad[0]!r}",
                        table=name,
                    )
                table = pa.table(
                    {
                        c: pa.array([v[i] for v in values], pa.string())
                        for i, c in enumerate(columns)
                    }
                )
        try:
            result[name] = table.cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise SchemaError(
                f"deletes[{name!r}]: keys must be strings without nulls ({exc})", table=name
            ) from exc
    return result


def _describe(numbers: list[int]) -> str:
    if not numbers:
        return "no versions"
    return (
        f"versions 1..{numbers[-1]}"
        if numbers == list(range(1, numbers[-1] + 1))
        else f"versions {numbers}"
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)
