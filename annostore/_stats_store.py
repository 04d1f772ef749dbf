"""Stored statistics: a version's stats, computed once and kept next to it.

A version never changes, so neither do its statistics: the first ``stats()`` of a version
writes them to ``stats/<computation>/<version id>.json`` in its dataset's folder, and
later calls (from any process) read that file instead of scanning the version.
``<computation>`` fingerprints the code that computes them, so a release that computes
stats differently never reads what an older one stored. Each file carries the sha256 of
its content; a file that does not match is reported by ``verify()`` and recomputed.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from ._kept import fingerprint, keep, read
from ._manifest import Manifest
from ._storage import sha256_hex

if TYPE_CHECKING:
    from ._storage import Storage

__all__ = ["FOLDER", "computation_id", "read_stored", "store", "stored_problem"]

FOLDER = "stats"
_FORMAT = "annostore.stats"


@functools.cache
def computation_id() -> str:
    """A fingerprint of the modules that compute and store stats (see ``_kept``)."""
    return fingerprint(
        "stats.py", "_stats_store.py", "_kept.py", "query.py", "_fragments.py", "_sql.py"
    )


def stats_path(folder: str, manifest: Manifest) -> str:
    return f"{folder}/{FOLDER}/{computation_id()}/{manifest.id}.json"


# JSON has no null or non-string object keys (tasks_per_split has a None key): dicts are
# stored as lists of pairs, so that what is read back equals what was computed.
def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {"pairs": [[key, _encode(item)] for key, item in value.items()]}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value["pairs"]}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def _body(stats: dict[str, Any]) -> str:
    return json.dumps(_encode(stats), sort_keys=True, separators=(",", ":"))


def _parse(data: bytes, manifest: Manifest) -> dict[str, Any] | str:
    """The stats a stored file holds, or what is wrong with it."""
    try:
        envelope = json.loads(data)
        body = json.dumps(envelope["stats"], sort_keys=True, separators=(",", ":"))
        if envelope["format"] != _FORMAT or envelope["version_id"] != manifest.id:
            return "stored stats of another version"
        if sha256_hex(body.encode()) != envelope["sha256"]:
            return "corrupted: stored stats do not match their sha256"
        return _decode(envelope["stats"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return f"unreadable stored stats ({type(exc).__name__}: {exc})"


def read_stored(storage: Storage, folder: str, manifest: Manifest) -> dict[str, Any] | None:
    """The stats stored for ``manifest``'s version, or None when there are none (or they
    are damaged: a warning says so, and the caller recomputes them)."""
    return read(
        storage, stats_path(folder, manifest), lambda data: _parse(data, manifest), "recomputing"
    )


def store(storage: Storage, folder: str, manifest: Manifest, stats: dict[str, Any]) -> None:
    """Keep ``stats`` for ``manifest``'s version (whole or not at all). A store that cannot
    be written (read-only) still answers: a warning says the stats were not kept."""
    body = _body(stats)
    envelope = (
        f'{{"format":"{_FORMAT}","number":{manifest.number},'
        f'"version_id":"{manifest.id}","sha256":"{sha256_hex(body.encode())}","stats":{body}}}\n'
    )
    keep(
        storage,
        stats_path(folder, manifest),
        envelope.encode(),
        f"the stats of version {manifest.number}",
    )


def stored_problem(path: str, data: bytes, manifests_by_id: dict[str, Manifest]) -> str | None:
    """What is wrong with the stored stats file at ``path`` (for verify), or None."""
    version_id = path.rsplit("/", 1)[-1].removesuffix(".json")
    manifest = manifests_by_id.get(version_id)
    if manifest is None:
        return "stored stats of a version that does not exist"
    parsed = _parse(data, manifest)
    return parsed if isinstance(parsed, str) else None
