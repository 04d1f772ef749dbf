"""Planning a commit: which rows are new, changed or gone, and the three files that say so.

For each table a commit compares its incoming rows with the live rows of its base, by key
and row hash, and writes at most three files: a fragment of inserted and updated rows
(sorted by key), a tombstone of the keys it updates or deletes, and its changeset.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import pairwise

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from annostore.schemas import KEYS, TABLE_NAMES

from . import _sql
from ._arrow import is_sorted, take_rows
from ._fragments import (
    FRAGMENT_ROWS,
    SMALL_FRAGMENT_ROWS,
    fragment_schema,
    live_rows,
    merge_rule_sql,
    read_file,
    read_files,
    read_fragments,
    register_live_rows,
    tombstoned_keys,
    tombstones_that_apply,
    write_file,
    write_fragments,
)
from ._manifest import Changeset, Fragment, Manifest, TableState, Tombstone
from ._provenance import origin, read_from
from ._rowhash import ROW_HASH, row_hash_expression
from ._sql import arrow_reader, column_list, first_row, quote
from ._storage import Storage
from .errors import ConflictError, SchemaError

ORDER = "_ord"
_CHANGESET_SCHEMA_EXTRA = [
    pa.field("op", pa.string(), nullable=False),
    pa.field("old_hash", pa.uint64()),
]


def changeset_schema(table: str) -> pa.Schema:
    """Changeset files: the key columns, op ('I', 'U', 'D') and old_hash (the replaced row's
    hash; the new row's is in its fragment's ``_row_hash``)."""
    keys = [pa.field(k, pa.string(), nullable=False) for k in KEYS[table]]
    return pa.schema(keys + _CHANGESET_SCHEMA_EXTRA)


def tombstone_schema(table: str) -> pa.Schema:
    """Tombstone files: just the key columns."""
    return pa.schema([pa.field(k, pa.string(), nullable=False) for k in KEYS[table]])


@dataclass
class TableChange:
    """What one commit does to one table (files already written, not yet published)."""

    table: str
    fragments: list[Fragment] = field(default_factory=list)
    tombstone: Tombstone | None = None
    changeset: Changeset | None = None
    #: key columns and op of every changed row, for conflict checks
    changes: pa.Table | None = None
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    #: compaction: ``fragments`` replace the table's files and hold ``rows`` rows
    replace: bool = False
    rows: int = 0

    @property
    def touched(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted)

    def keys_with_op(self, *ops: str) -> pa.Table:
        assert self.changes is not None
        mask = pc.is_in(self.changes.column("op"), value_set=pa.array(ops))
        return self.changes.filter(mask).select(list(KEYS[self.table]))


def plan_table(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    base: TableState | None,
    incoming: pa.Table,
    deletes: pa.Table | None,
    full: bool,
    seq: int,
) -> TableChange:
    """Compare ``incoming`` rows (and ``deletes`` keys) with ``base`` and write the files.

    With ``full`` the incoming rows are the table's whole new state: base rows missing
    from them are deleted. Otherwise they are upserts and only ``deletes`` are removed
    (keys that do not exist are ignored).
    """
    keys = list(KEYS[table])
    key_sql = column_list(keys)
    nothing_removed = deletes is None or deletes.num_rows == 0
    nothing_given = incoming.num_rows == 0 and (
        nothing_removed if not full else (base is None or base.rows == 0)
    )
    # the base's own table object, passed back as read (see _provenance)
    base_itself = (
        full
        and base is not None
        and read_from(incoming) == origin(storage.url, folder, table, base)
    )
    if nothing_given or base_itself:
        return TableChange(table=table, changes=changeset_schema(table).empty_table())
    positions = con.sql(f"SELECT range AS {ORDER} FROM range({incoming.num_rows})").to_arrow_table()
    con.register("incoming", incoming.append_column(ORDER, positions.column(0)))
    if (base is None or base.rows == 0) and nothing_removed:
        # Nothing to compare with: every incoming row is an insert.
        if is_sorted(incoming, keys):
            # Input already in key order (the common case): only the row hashes come from
            # DuckDB; the keys stay the incoming columns (copying them out of DuckDB and
            # back cost a tenth of a first commit at 1M regions).
            changes = _inserts_in_place(con, table, incoming)
        else:
            changes = con.sql(
                f"SELECT {key_sql}, 'I' AS op, NULL::UBIGINT AS old_hash, {row_hash_expression(table)} AS new_hash, "
                f"{ORDER} FROM incoming ORDER BY {key_sql}"
            ).to_arrow_table()
        con.unregister("incoming")
        return _write_change(storage, folder, table, incoming, changes, seq)
    hashed = f"(SELECT {key_sql}, {ORDER}, {row_hash_expression(table)} AS h FROM incoming)"
    base_hashes = (
        _hashes_in_key_order(con, storage, folder, table, base)
        if full and nothing_removed and base is not None and base.rows == incoming.num_rows
        else None
    )
    if base_hashes is not None:
        incoming_hashes = _incoming_hashes(con, table)
        if incoming_hashes.equals(base_hashes):
            # Row for row the same rows in the same (key) order: nothing changed, and the
            # join below is not needed (a table committed again as it was).
            con.unregister("incoming")
            return TableChange(table=table, changes=changeset_schema(table).empty_table())
        # the join below uses the hashes just computed instead of computing them again
        con.unregister("incoming")
        con.register(
            "incoming",
            incoming.append_column(ORDER, positions.column(0)).append_column(
                _INCOMING_HASH, incoming_hashes
            ),
        )
        hashed = f"(SELECT {key_sql}, {ORDER}, {_INCOMING_HASH} AS h FROM incoming)"

    registered = ["incoming", "deleted_keys"]
    base_sql = "SELECT * FROM base_rows"
    if base is None or base.rows == 0:
        based = _empty_base(table)
    elif full:
        # The base's keys and hashes only feed the join: let DuckDB merge its files.
        based = None
        base_sql, names = register_live_rows(
            con, storage, folder, table, base, [*keys, ROW_HASH], "base"
        )
        registered += names
    else:
        wanted = [incoming.select(keys)] + ([deletes] if deletes is not None else [])
        based = live_rows(
            con,
            storage,
            folder,
            table,
            base,
            [*keys, ROW_HASH],
            restrict=_concat_keys(table, wanted),
        )
    if based is not None:
        con.register("base_rows", based)
        registered.append("base_rows")

    if full:
        changes = _compare_full_state(con, table, hashed, base_sql)
        for name in registered:
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)
        return _write_change(storage, folder, table, incoming, changes, seq)
    deleted_part = ""
    if deletes is not None and deletes.num_rows:
        con.register("deleted_keys", deletes)
        both = first_row(
            con,
            f"SELECT {key_sql} FROM (SELECT DISTINCT {key_sql} FROM deleted_keys) SEMI JOIN incoming USING ({key_sql}) LIMIT 1",
        )
        if both:
            raise SchemaError(
                f"{table}: key {list(both)!r} is both upserted and deleted", table=table
            )
        deleted_part = f"""
            UNION ALL
            SELECT {key_sql}, 'D', b.{ROW_HASH}, NULL::UBIGINT, NULL::BIGINT
            FROM (SELECT DISTINCT {key_sql} FROM deleted_keys) d JOIN base_rows b USING ({key_sql})"""
    query = f"""
        SELECT * FROM (
            SELECT {key_sql}, CASE WHEN b.{ROW_HASH} IS NULL THEN 'I' ELSE 'U' END AS op,
                   b.{ROW_HASH} AS old_hash, n.h AS new_hash, n.{ORDER} AS {ORDER}
            FROM {hashed} n LEFT JOIN base_rows b USING ({key_sql})
            WHERE b.{ROW_HASH} IS DISTINCT FROM n.h
            {deleted_part}
        ) ORDER BY {key_sql}"""
    changes = con.sql(query).to_arrow_table()
    for name in registered:
        with contextlib.suppress(duckdb.Error):
            con.unregister(name)

    return _write_change(storage, folder, table, incoming, changes, seq)


#: the incoming rows' hashes, when computed before the comparison (a name no column has)
_INCOMING_HASH = "_incoming_row_hash"


def _hashes_in_key_order(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    base: TableState,
) -> pa.ChunkedArray | None:
    """The base's row hashes in key order, when its files hold exactly its live rows in
    ranges that do not overlap (no tombstones apply: a first commit, a compaction);
    otherwise None. Reads the keys with the hashes, as the comparison does after it."""
    if tombstones_that_apply(base, base.fragments):
        return None
    ordered = sorted(base.fragments, key=lambda f: f.key_min)
    if any(a.key_max >= b.key_min for a, b in pairwise(ordered)):
        return None
    parts = read_fragments(con, storage, folder, table, ordered, [*KEYS[table], ROW_HASH])
    return pa.chunked_array(
        [chunk for part in parts for chunk in part.column(ROW_HASH).chunks], pa.uint64()
    )


def _incoming_hashes(con: duckdb.DuckDBPyConnection, table: str) -> pa.ChunkedArray:
    """The registered incoming rows' hashes, in their order."""
    hashed = con.sql(
        f"SELECT {ORDER}, {row_hash_expression(table)} AS h FROM incoming"
    ).to_arrow_table()
    if not _counts_up(hashed.column(ORDER)):
        hashed = hashed.sort_by(ORDER)  # DuckDB keeps a scan's order here; should it not
    return hashed.column("h")


def _inserts_in_place(con: duckdb.DuckDBPyConnection, table: str, incoming: pa.Table) -> pa.Table:
    """The changes of inserting every row of ``incoming`` (registered, in key order), in
    its order: its key columns, op 'I', no old hash, each row's hash and position."""
    hashed = con.sql(
        f"SELECT {ORDER}, {row_hash_expression(table)} AS new_hash FROM incoming"
    ).to_arrow_table()
    positions = hashed.column(ORDER)
    if not _counts_up(positions):
        # DuckDB keeps a scan's order here; should it ever not, the rows go back in place
        hashed = hashed.sort_by(ORDER)
        positions = hashed.column(ORDER)
    rows = incoming.num_rows
    columns = incoming.select(list(KEYS[table]))
    columns = columns.append_column("op", pa.repeat("I", rows))
    columns = columns.append_column("old_hash", pa.nulls(rows, pa.uint64()))
    columns = columns.append_column("new_hash", hashed.column("new_hash"))
    return columns.append_column(ORDER, positions)


def _counts_up(positions: pa.ChunkedArray) -> bool:
    """True when ``positions`` are 0, 1, 2, … in order."""
    if len(positions) == 0:
        return True
    combined = positions.combine_chunks()
    return combined[0].as_py() == 0 and (
        len(combined) == 1 or pc.all(pc.equal(pc.pairwise_diff(combined), 1)).as_py()
    )


def _compare_full_state(
    con: duckdb.DuckDBPyConnection, table: str, hashed: str, base_sql: str
) -> pa.Table:
    """Keys whose row differs between the incoming state and the base: op, old and new hash.

    The join is on a 64-bit hash of the key (measured: 0.11 s against 0.26 s for the two
    string key columns, at 1M regions on 2 cores). Two keys with the same hash would pair
    rows of different keys; such a pair always shows up as changed (row hashes cover the
    key), so the result is checked for it, and the comparison redone on the key columns
    if it is ever found.
    """
    keys = list(KEYS[table])
    key_sql = column_list(keys)
    key_hash = _sql.KEY_HASH.format(keys=key_sql)
    coalesced = ", ".join(f"coalesce(n.{quote(k)}, b.{quote(k)}) AS {quote(k)}" for k in keys)
    mismatch = " OR ".join(f"n.{quote(k)} IS DISTINCT FROM b.{quote(k)}" for k in keys)
    select = f"""
        CASE WHEN b.{ROW_HASH} IS NULL THEN 'I' WHEN n.h IS NULL THEN 'D' ELSE 'U' END AS op,
        b.{ROW_HASH} AS old_hash, n.h AS new_hash, n.{ORDER} AS {ORDER}"""
    by_hash = con.sql(
        f"""SELECT {coalesced}, {select},
                   n.h IS NOT NULL AND b.{ROW_HASH} IS NOT NULL AND ({mismatch}) AS _collided
            FROM (SELECT *, {key_hash} AS _kh FROM {hashed}) n
            FULL OUTER JOIN (SELECT *, {key_hash} AS _kh FROM ({base_sql})) b
              ON n._kh = b._kh
            WHERE n.h IS DISTINCT FROM b.{ROW_HASH}
            ORDER BY {key_sql}"""
    ).to_arrow_table()
    collided = by_hash.column("_collided")
    if not pc.any(collided).as_py():
        return by_hash.drop_columns(["_collided"])
    return con.sql(
        f"""SELECT {key_sql}, {select}
            FROM {hashed} n FULL OUTER JOIN ({base_sql}) b USING ({key_sql})
            WHERE n.h IS DISTINCT FROM b.{ROW_HASH}
            ORDER BY {key_sql}"""
    ).to_arrow_table()


def _write_change(
    storage: Storage, folder: str, table: str, incoming: pa.Table, changes: pa.Table, seq: int
) -> TableChange:
    """Write the fragment, tombstone and changeset files of ``changes`` (sorted by key)."""
    keys = list(KEYS[table])
    ops = changes.column("op")
    change = TableChange(
        table=table,
        inserted=pc.sum(pc.equal(ops, "I")).as_py() or 0,
        updated=pc.sum(pc.equal(ops, "U")).as_py() or 0,
        deleted=pc.sum(pc.equal(ops, "D")).as_py() or 0,
    )
    if not change.touched:
        change.changes = changeset_schema(table).empty_table()
        return change

    # (a filter copies every column even when it keeps every row)
    written = changes.filter(pc.not_equal(ops, "D")) if change.deleted else changes
    change.fragments = write_fragments(
        storage, folder, table, _take_rows(table, incoming, written), seq
    )
    if change.updated or change.deleted:
        removed = changes.filter(pc.not_equal(ops, "I")).select(keys)
        ref = write_file(storage, folder, removed.cast(tombstone_schema(table)))
        change.tombstone = Tombstone(**ref.model_dump(), seq=seq)
    changeset = changes.select([*keys, "op", "old_hash"]).cast(changeset_schema(table))
    ref = write_file(storage, folder, changeset)
    change.changeset = Changeset(
        **ref.model_dump(), inserted=change.inserted, updated=change.updated, deleted=change.deleted
    )
    change.changes = changeset.select([*keys, "op"])
    return change


def _take_rows(table: str, incoming: pa.Table, written: pa.Table) -> Iterator[pa.Table]:
    """The incoming rows to store, in key order, with their row hash, a fragment at a time."""
    schema = fragment_schema(table)
    order = written.column(ORDER)
    hashes = written.column("new_hash")
    for start in range(0, written.num_rows, FRAGMENT_ROWS):
        positions = order.slice(start, FRAGMENT_ROWS).combine_chunks()
        first = positions[0].as_py()
        if len(positions) == 1 or pc.all(pc.equal(pc.pairwise_diff(positions), 1)).as_py():
            rows = incoming.slice(first, len(positions))  # already in key order: no copy
        else:
            rows = take_rows(incoming, positions)
        rows = rows.append_column(ROW_HASH, hashes.slice(start, FRAGMENT_ROWS))
        yield rows.cast(schema)


def _empty_base(table: str) -> pa.Table:
    schema = fragment_schema(table)
    return pa.schema([schema.field(k) for k in (*KEYS[table], ROW_HASH)]).empty_table()


def _concat_keys(table: str, parts: list[pa.Table]) -> pa.Table:
    schema = tombstone_schema(table)
    return pa.concat_tables([p.select(list(KEYS[table])).cast(schema) for p in parts])


def plan_compaction(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    state: TableState,
    seq: int,
) -> TableChange:
    """Rewrite a table's live rows into full, key-sorted fragments, without tombstones.

    The rows go through a DuckDB temporary table that spills to disk, so a large table is
    never held whole in Python memory.
    """
    keys = list(KEYS[table])
    schema = fragment_schema(table)
    columns = column_list(schema.names)
    con.execute("DROP TABLE IF EXISTS compacting")
    for index, fragment in enumerate(state.fragments):
        con.register("fragment_rows", read_file(storage, folder, fragment))
        if index == 0:
            con.execute(
                f"CREATE TEMP TABLE compacting AS SELECT {columns}, {fragment.seq}::BIGINT AS _seq FROM fragment_rows"
            )
        else:
            con.execute(
                f"INSERT INTO compacting SELECT {columns}, {fragment.seq}::BIGINT FROM fragment_rows"
            )
        con.unregister("fragment_rows")
    if not state.fragments:
        return TableChange(table=table, replace=True, rows=0)
    dead_join = ""
    condition = "TRUE"
    if state.tombstones:
        dead = tombstoned_keys(storage, folder, table, state.tombstones)
        con.register("dead", dead)
        dead_join, condition = merge_rule_sql(keys, "dead", "c", "c._seq")
    canonical = [n for n in schema.names if n != ROW_HASH]
    select = ", ".join(f"c.{quote(n)}" for n in canonical)
    reader = arrow_reader(
        con.sql(
            f"SELECT {select}, {row_hash_expression(table, 'c.')} AS {ROW_HASH} FROM compacting c {dead_join} "
            f"WHERE {condition} ORDER BY {column_list(keys, 'c.')}"
        ),
        FRAGMENT_ROWS,
    )
    batches = (pa.Table.from_batches([batch]).cast(schema) for batch in reader)
    fragments = write_fragments(storage, folder, table, batches, seq)
    con.execute("DROP TABLE IF EXISTS compacting")
    with contextlib.suppress(duckdb.Error):
        con.unregister("dead")
    return TableChange(
        table=table, fragments=fragments, replace=True, rows=sum(f.rows for f in fragments)
    )


def needs_compaction(state: TableState) -> bool:
    """True when a table has gathered enough small fragments or tombstones to rewrite it."""
    small = sum(1 for f in state.fragments if f.rows < SMALL_FRAGMENT_ROWS)
    dead = sum(t.rows for t in state.tombstones)
    return (
        small > 16 or len(state.tombstones) > 16 or dead > max(SMALL_FRAGMENT_ROWS, state.rows // 4)
    )


def apply_changes(
    parent: Manifest | None, changes: dict[str, TableChange], number: int
) -> dict[str, TableState]:
    """The table states of a new version: the parent's files plus (or replaced by) the changes."""
    states = {}
    for name in TABLE_NAMES:
        previous = parent.tables[name] if parent else TableState()
        change = changes.get(name)
        if change is None or not (change.touched or change.replace):
            states[name] = previous.model_copy(update={"changeset": None})
            continue
        fragments = [f.model_copy(update={"seq": number}) for f in change.fragments]
        if change.replace:
            states[name] = TableState(rows=change.rows, fragments=fragments)
            continue
        tombstones = list(previous.tombstones)
        if change.tombstone is not None:
            tombstones.append(change.tombstone.model_copy(update={"seq": number}))
        states[name] = TableState(
            rows=previous.rows + change.inserted - change.deleted,
            fragments=[*previous.fragments, *fragments],
            tombstones=tombstones,
            changeset=change.changeset,
        )
    return states


def storage_stats(states: dict[str, TableState]) -> dict[str, int]:
    """Counts that tell how a version is stored (for ``show`` and the compaction trigger)."""
    return {
        "fragments": sum(len(s.fragments) for s in states.values()),
        "tombstone_files": sum(len(s.tombstones) for s in states.values()),
        "tombstoned_rows": sum(t.rows for s in states.values() for t in s.tombstones),
        "bytes": sum(f.bytes for s in states.values() for f in [*s.fragments, *s.tombstones]),
    }


def find_conflicts(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    ours: dict[str, TableChange],
    theirs: list[Manifest],
) -> dict[str, list]:
    """Keys that both our change and the versions committed since our base changed."""
    conflicts: dict[str, list] = {}
    for name, change in ours.items():
        if not change.touched:
            continue
        keys = list(KEYS[name])
        refs = [m.tables[name].changeset for m in theirs if m.tables[name].changeset is not None]
        if not refs:
            continue
        their_keys = pa.concat_tables(read_files(storage, folder, refs, keys))
        con.register("our_keys", change.changes.select(keys))
        con.register("their_keys", their_keys)
        clash = con.sql(
            f"SELECT DISTINCT {column_list(keys)} FROM our_keys SEMI JOIN their_keys USING ({column_list(keys)}) "
            f"ORDER BY ALL LIMIT 20"
        ).fetchall()
        con.unregister("our_keys")
        con.unregister("their_keys")
        if clash:
            conflicts[name] = [row[0] if len(row) == 1 else list(row) for row in clash]
    return conflicts


REFERENCES = (("annotations", "task_id", "tasks"), ("regions", "annotation_id", "annotations"))


def check_references(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    states: dict[str, TableState],
    ours: dict[str, TableChange],
    upserts: dict[str, pa.Table],
    error: type[SchemaError] | type[ConflictError],
) -> None:
    """Check that the rows we add point at live parents, and that the parents we delete are
    no longer pointed at, in the state ``states`` describes."""
    for child, column, parent in REFERENCES:
        (parent_key,) = KEYS[parent]
        rows = upserts.get(child)
        if rows is not None and rows.num_rows:
            wanted = pa.table({parent_key: pc.unique(rows.column(column))})
            found = live_rows(
                con, storage, folder, parent, states[parent], [parent_key], restrict=wanted
            )
            missing = pc.filter(
                wanted.column(0), pc.invert(pc.is_in(wanted.column(0), value_set=found.column(0)))
            )
            if len(missing):
                raise _reference_error(
                    error,
                    f"{child}: rows point at {parent} that do not exist: {missing.to_pylist()[:5]!r}",
                    child,
                )
        change = ours.get(parent)
        if change is not None and change.deleted:
            gone = change.keys_with_op("D")
            pointing = live_rows(con, storage, folder, child, states[child], [column])
            still = pc.filter(
                gone.column(0), pc.is_in(gone.column(0), value_set=pointing.column(0))
            )
            if len(still):
                raise _reference_error(
                    error,
                    f"{parent}: deleted rows are still pointed at by {child}: {still.to_pylist()[:5]!r}",
                    parent,
                )


def _reference_error(error: type, message: str, table: str) -> Exception:
    if error is ConflictError:
        return ConflictError(f"a concurrent commit makes this one inconsistent: {message}")
    return SchemaError(message, table=table)
