"""Which keys differ between two versions, from the commits' changesets, without reading
the older version: the diff's counts, and the rows its details compare.

History is a line (each version's parent is the one before it), so between any two
versions lie the commits that made the newer one. Their changesets say, per key, what
each commit did (I / U / D) and the hash of the row it replaced. Combined, the first
operation on a key says whether it existed in the older version (and its row hash
there), the last whether it exists in the newer one; a key that exists in both changed
when its row hash in the newer version differs; that hash is read from the fragments the
key's last commit wrote (small files, kept as long as that version is, even after a
compaction rewrote the table). Adjacent versions need no file at all for the counts: the
manifest carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from annostore.schemas import KEYS, TABLE_NAMES

from ._fragments import read_file, read_files
from ._manifest import Fragment, Manifest
from ._rowhash import ROW_HASH, row_hash_check
from ._sql import column_list, connection

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["LineTable", "key_counts", "line_changes"]

#: Beyond this many commits apart, or when the changesets list more keys than this share of
#: the table, the full comparison is as cheap: let it answer.
MAX_CHAIN = 256
MAX_CHANGED_SHARE = 0.25

Counts = dict[str, tuple[int, int, int, int]]  # table → (added, removed, changed, unchanged)


def _chain(dataset: Dataset, older: Manifest, newer: Manifest) -> list[Manifest] | None:
    """The versions after ``older`` up to ``newer``, oldest first (None if not a line)."""
    chain = []
    current = newer
    while current.number > older.number:
        chain.append(current)
        if current.parent is None or len(chain) > MAX_CHAIN:
            return None
        current = dataset._manifest(current.parent)
    return list(reversed(chain)) if current.number == older.number else None


def key_counts(
    dataset: Dataset, a: Manifest, b: Manifest
) -> tuple[Counts, dict[str, LineTable] | None] | None:
    """(added, removed, changed, unchanged) rows per table from ``a`` to ``b``, by key and row
    hash, or None when the changesets cannot answer (then compare the versions' rows).

    With the counts come the tables' line changes (see :func:`line_changes`) when the
    counts needed them, for the diff's details to reuse; None for adjacent versions, whose
    manifest carries the counts."""
    if a.number == b.number:
        return {t: (0, 0, 0, b.tables[t].rows) for t in TABLE_NAMES}, None
    older, newer = (a, b) if a.number < b.number else (b, a)
    chain = _chain(dataset, older, newer)
    if chain is None:
        return None
    lines = None
    if len(chain) == 1:
        # One commit: its changeset's counts are the diff.
        refs = {t: chain[0].tables[t].changeset for t in TABLE_NAMES}
        forward = {
            t: (ref.inserted, ref.deleted, ref.updated) if ref is not None else (0, 0, 0)
            for t, ref in refs.items()
        }
    else:
        lines = _line_tables(dataset, older, chain)
        if lines is None:
            return None
        forward = {t: line.counts() for t, line in lines.items()}
    if newer is b:
        counts = {
            t: (added, removed, changed, b.tables[t].rows - added - changed)
            for t, (added, removed, changed) in forward.items()
        }
    else:
        # Backwards: what was added going forward is removed going back.
        counts = {
            t: (removed, added, changed, b.tables[t].rows - removed - changed)
            for t, (added, removed, changed) in forward.items()
        }
    return counts, lines


@dataclass(frozen=True)
class LineTable:
    """What the commits from an older version to a newer one did to one table, by key.

    ``keys`` holds the key columns and ``status`` ('added', 'removed' or 'changed', from
    the older version to the newer) of every key whose row differs by row hash; ``written``
    are the fragments those commits wrote: the newer version's row of every key not
    removed is the one its last commit wrote (the fragment with the highest ``seq``).
    """

    keys: pa.Table
    written: list[Fragment]

    def counts(self) -> tuple[int, int, int]:
        """(added, removed, changed)."""
        status = self.keys.column("status")
        return tuple(int(pc.sum(pc.equal(status, s)).as_py() or 0) for s in _STATUSES)


_STATUSES = ("added", "removed", "changed")


def line_changes(dataset: Dataset, a: Manifest, b: Manifest) -> dict[str, LineTable] | None:
    """Per table, the keys that differ between ``a`` and ``b`` (from the older to the
    newer), from the changesets of the commits between them; None when those cannot answer
    (too far apart, too much changed, or row hashes of another hash function)."""
    older, newer = (a, b) if a.number <= b.number else (b, a)
    chain = _chain(dataset, older, newer) if older.number < newer.number else []
    return None if chain is None else _line_tables(dataset, older, chain)


def _line_tables(
    dataset: Dataset, older: Manifest, chain: list[Manifest]
) -> dict[str, LineTable] | None:
    tables = {}
    for table in TABLE_NAMES:
        line = _line_table(dataset, table, older, chain)
        if line is None:
            return None
        tables[table] = line
    return tables


def _line_table(
    dataset: Dataset, table: str, older: Manifest, chain: list[Manifest]
) -> LineTable | None:
    """The keys of ``table`` that differ from ``older`` to the end of ``chain``."""
    keys = list(KEYS[table])
    refs = [(m.number, m.tables[table].changeset) for m in chain]
    refs = [(number, ref) for number, ref in refs if ref is not None]
    key_schema = pa.schema([*(pa.field(k, pa.string()) for k in keys), ("status", pa.string())])
    if not refs:
        return LineTable(key_schema.empty_table(), [])
    newer = chain[-1]
    listed = sum(ref.rows for _, ref in refs)
    share = listed / max(newer.tables[table].rows, 1)
    if len(refs) > 1 and share > MAX_CHANGED_SHARE and listed > 10_000:
        return None
    current = row_hash_check()
    # The rows each commit wrote, in the fragments its own manifest lists (they stay in the
    # store as long as that version does, even when a later compaction rewrote them).
    written_by = {
        (f.sha256, f.seq): f
        for m in chain
        for f in m.tables[table].fragments
        if f.seq == m.number and m.tables[table].changeset is not None
    }
    written = list(written_by.values())
    # Hashes from another hash function cannot be compared with these.
    fragments = [*older.tables[table].fragments, *newer.tables[table].fragments, *written]
    if any(f.row_hash != current for f in fragments):
        return None
    storage, folder = dataset._storage, dataset._folder
    if len(refs) == 1:
        # One commit: its changeset is the difference (an update always changed the hash).
        ((_, ref),) = refs
        change = read_file(storage, folder, ref, [*keys, "op"])
        status = pc.choose(
            pc.index_in(change.column("op"), value_set=pa.array(["I", "D", "U"])),
            *(pa.scalar(s) for s in _STATUSES),
        )
        return LineTable(
            change.select(keys).append_column("status", status).cast(key_schema), written
        )
    changesets = read_files(storage, folder, [ref for _, ref in refs])
    changes = pa.concat_tables(
        [
            part.append_column("_v", pa.repeat(pa.scalar(number, pa.int64()), ref.rows))
            for (number, ref), part in zip(refs, changesets, strict=True)
        ]
    )
    written_schema = pa.schema(
        [*(pa.field(k, pa.string()) for k in keys), (ROW_HASH, pa.uint64()), ("_seq", pa.int64())]
    )
    rows = pa.concat_tables(
        [
            part.append_column("_seq", pa.repeat(pa.scalar(f.seq, pa.int64()), f.rows)).cast(
                written_schema
            )
            for f, part in zip(
                written, read_files(storage, folder, written, [*keys, ROW_HASH]), strict=True
            )
        ]
        or [written_schema.empty_table()]
    )
    key_sql = column_list(keys)
    with connection() as con:
        con.register("_changes", changes)
        con.register("_written", rows)
        try:
            differing = con.sql(
                f"""WITH per_key AS (
                        SELECT {key_sql}, arg_min(op, _v) AS first_op, arg_min(old_hash, _v) AS first_hash,
                               arg_max(op, _v) AS last_op
                        FROM _changes GROUP BY ALL),
                    newest AS (
                        SELECT {key_sql}, arg_max({ROW_HASH}, _seq) AS _h FROM _written GROUP BY ALL)
                    SELECT {key_sql},
                           CASE WHEN first_op = 'I' THEN 'added' WHEN last_op = 'D' THEN 'removed'
                                ELSE 'changed' END AS status
                    FROM per_key p LEFT JOIN newest n USING ({key_sql})
                    WHERE (first_op = 'I') <> (last_op = 'D')
                       OR (first_op <> 'I' AND n._h IS DISTINCT FROM first_hash)"""
            ).to_arrow_table()
        finally:
            con.unregister("_changes")
            con.unregister("_written")
    return LineTable(differing.cast(key_schema), written)
