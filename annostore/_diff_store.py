"""Kept diffs: the details of a diff between two versions, computed once and stored.

Two versions never change, so neither does what differs between them: the first time a
diff's details are asked for (rows, fields changed, label changes, IoU, tasks newly
labeled) they are written to ``diffs/<computation>/<a id>-<b id>-<threshold>.diff`` in
the dataset's folder, and later diffs of the same pair, from any process, read that file
instead of comparing the versions (see ``_kept``).

A file is one JSON header line (format, both version ids, the IoU threshold, the sha256
of the body and the length of each of its parts) followed by the body: the facts as
JSON, then each table as an LZ4-compressed Arrow IPC stream. A file whose body does not
match its sha256 is reported by ``verify()`` and computed again.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ._kept import fingerprint, keep, read
from ._manifest import Manifest
from ._storage import sha256_hex

if TYPE_CHECKING:
    from ._storage import Storage

__all__ = ["FOLDER", "computation_id", "kept_problem", "read_kept", "store"]

FOLDER = "diffs"
_FORMAT = "annostore.diff"
_FACTS = "facts"


@functools.cache
def computation_id() -> str:
    """A fingerprint of the modules that compute and store diffs (see ``_kept``)."""
    return fingerprint(
        "diff.py",
        "_diff_counts.py",
        "_diff_store.py",
        "_kept.py",
        "query.py",
        "_fragments.py",
        "_rowhash.py",
        "_sql.py",
    )


def _threshold_name(iou_threshold: float | None) -> str:
    return "none" if iou_threshold is None else repr(float(iou_threshold))


def diff_path(folder: str, a: Manifest, b: Manifest, iou_threshold: float | None) -> str:
    name = f"{a.id}-{b.id}-{_threshold_name(iou_threshold)}.diff"
    return f"{folder}/{FOLDER}/{computation_id()}/{name}"


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    # LZ4, not zstd: a 3% diff at 1M regions decodes in 1.9 ms against 5.7 ms (2.0 MB
    # against 1.2 MB, which its sha256 check reads in about 1 ms more)
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _encode(
    a: Manifest,
    b: Manifest,
    iou_threshold: float | None,
    facts: dict[str, Any],
    tables: dict[str, pa.Table],
) -> bytes:
    parts = [(_FACTS, json.dumps(facts, separators=(",", ":")).encode())]
    parts += [(name, _ipc(table)) for name, table in tables.items()]
    body = b"".join(data for _, data in parts)
    header = {
        "format": _FORMAT,
        "a": a.id,
        "b": b.id,
        "iou_threshold": None if iou_threshold is None else float(iou_threshold),
        "sha256": sha256_hex(body),
        "parts": [[name, len(data)] for name, data in parts],
    }
    return json.dumps(header, separators=(",", ":")).encode() + b"\n" + body


def _decode(
    data: bytes, a_id: str, b_id: str, iou_threshold: float | None
) -> tuple[dict[str, Any], dict[str, pa.Table]] | str:
    """The facts and tables a kept file holds, or what is wrong with it."""
    try:
        head, _, body = data.partition(b"\n")
        header = json.loads(head)
        if header["format"] != _FORMAT or (header["a"], header["b"]) != (a_id, b_id):
            return "a kept diff of other versions"
        if header["iou_threshold"] != iou_threshold:
            return "a kept diff with another IoU threshold"
        if sha256_hex(body) != header["sha256"]:
            return "corrupted: the kept diff does not match its sha256"
        facts: dict[str, Any] = {}
        tables: dict[str, pa.Table] = {}
        start = 0
        buffer = pa.py_buffer(body)
        for name, length in header["parts"]:
            piece = buffer.slice(start, length)
            start += length
            if name == _FACTS:
                facts = json.loads(piece.to_pybytes())
            else:
                tables[name] = pa.ipc.open_stream(piece).read_all()
        return facts, tables
    except (ValueError, KeyError, TypeError, pa.ArrowException) as exc:
        return f"unreadable kept diff ({type(exc).__name__}: {exc})"


def read_kept(
    storage: Storage, folder: str, a: Manifest, b: Manifest, iou_threshold: float | None
) -> tuple[dict[str, Any], dict[str, pa.Table]] | None:
    """The facts and tables kept for this diff, or None when there are none (or they are
    damaged: a warning says so, and the caller computes them again)."""
    return read(
        storage,
        diff_path(folder, a, b, iou_threshold),
        lambda data: _decode(data, a.id, b.id, iou_threshold),
        "computing it again",
    )


def store(
    storage: Storage,
    folder: str,
    a: Manifest,
    b: Manifest,
    iou_threshold: float | None,
    facts: dict[str, Any],
    tables: dict[str, pa.Table],
) -> None:
    """Keep a diff's facts (JSON-ready) and tables, whole or not at all."""
    keep(
        storage,
        diff_path(folder, a, b, iou_threshold),
        _encode(a, b, iou_threshold, facts, tables),
        f"the diff of versions {a.number} and {b.number}",
    )


def kept_problem(path: str, data: bytes, manifests_by_id: dict[str, Manifest]) -> str | None:
    """What is wrong with the kept diff at ``path`` (for verify), or None."""
    stem = path.rsplit("/", 1)[-1].removesuffix(".diff")
    a_id, _, rest = stem.partition("-")
    b_id, _, threshold = rest.partition("-")
    if a_id not in manifests_by_id or b_id not in manifests_by_id:
        return "a kept diff of a version that does not exist"
    try:
        iou = None if threshold == "none" else float(threshold)
    except ValueError:
        return "a kept diff whose name says no IoU threshold"
    decoded = _decode(data, a_id, b_id, iou)
    return decoded if isinstance(decoded, str) else None
