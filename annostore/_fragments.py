"""Fragment, tombstone and changeset files: writing them, and reading a table's live rows.

A table of a version is its fragments' rows minus the rows that a tombstone with a higher
``seq`` names by key (merge-on-read). This module is the one place that applies that rule.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from annostore.schemas import KEYS, arrow_schema

from ._arrow import take_rows
from ._manifest import FileRef, Fragment, TableState, Tombstone
from ._rowhash import ROW_HASH, row_hash_check, row_hash_expression
from ._sql import column_list, quote
from ._storage import Storage, sha256_hex

T = TypeVar("T")
R = TypeVar("R")

#: Rows per fragment file: large enough for efficient scans, small enough to rewrite cheaply.
FRAGMENT_ROWS = 65536
#: Up to this many keys, the fragments that can hold them are found in Python.
_FEW_KEYS = 2048
#: Fragments smaller than this count as "small" for the compaction trigger.
SMALL_FRAGMENT_ROWS = 16384
_CACHE_BYTES = 256 * 2**20
_WRITERS = max(2, min(4, os.cpu_count() or 2))

SEQ = "_seq"
POSITION = "_pos"


def fragment_schema(table: str) -> pa.Schema:
    """The schema of a fragment file: the canonical columns plus ``_row_hash``."""
    return arrow_schema(table).append(pa.field(ROW_HASH, pa.uint64(), nullable=False))


#: string columns whose values repeat (a class name, a kind): dictionary-encoded. Ids and
#: text are not: at 1M regions, dictionaries for every string column made encoding 20%
#: slower and the file larger (31.7 MB against 30.9 MB), zstd finding the repeats anyway.
_REPEATING = frozenset({"split", "kind", "annotator", "model_version", "type", "label"})


def encode_parquet(table: pa.Table) -> bytes:
    """Parquet bytes (zstd), deterministic for the same table and pyarrow release.

    Fragments (their schema names their table) carry min/max statistics for the key
    columns only, which are what readers prune by; statistics of every column cost 12%
    of the encoding time. Other files (tombstones, changesets) are all keys."""
    sink = pa.BufferOutputStream()
    metadata = table.schema.metadata or {}
    name = metadata.get(b"annostore.table", b"").decode()
    statistics: bool | list[str] = list(KEYS[name]) if name in KEYS else True
    pq.write_table(
        table,
        sink,
        compression="zstd",
        row_group_size=FRAGMENT_ROWS,
        write_statistics=statistics,
        use_dictionary=[f.name for f in table.schema if f.name in _REPEATING],
    )
    return sink.getvalue().to_pybytes()


def write_file(storage: Storage, folder: str, table: pa.Table) -> FileRef:
    """Store ``table`` as a content-addressed Parquet object under ``folder/objects``."""
    data = encode_parquet(table)
    sha = sha256_hex(data)
    path = f"objects/{sha}.parquet"
    storage.write_whole(f"{folder}/{path}", data)
    _FILE_CACHE.put((sha, None), table)
    return FileRef(path=path, sha256=sha, rows=table.num_rows, bytes=len(data))


def write_fragments(
    storage: Storage, folder: str, table: str, batches: Iterable[pa.Table], seq: int
) -> list[Fragment]:
    """Write rows (sorted by key, with ``_row_hash``) as fragments of at most FRAGMENT_ROWS."""
    chunks = _rechunk(batches, FRAGMENT_ROWS)
    first = next(chunks, None)
    second = next(chunks, None) if first is not None else None
    if second is None:
        # one fragment (a small edit): no threads to start (about 1 ms each here)
        return [] if first is None else [_write_fragment(storage, folder, table, first, seq)]
    fragments: list[Fragment] = []
    # Encoding, hashing and writing release the GIL: overlap them, a bounded few at a time.
    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        pending: deque[Future[Fragment]] = deque()
        for chunk in itertools.chain([first, second], chunks):
            pending.append(pool.submit(_write_fragment, storage, folder, table, chunk, seq))
            if len(pending) >= 2 * _WRITERS:
                fragments.append(pending.popleft().result())
        fragments.extend(future.result() for future in pending)
    return fragments


def _write_fragment(
    storage: Storage, folder: str, table: str, chunk: pa.Table, seq: int
) -> Fragment:
    ref = write_file(storage, folder, chunk)
    first = [chunk.column(k)[0].as_py() for k in KEYS[table]]
    last = [chunk.column(k)[chunk.num_rows - 1].as_py() for k in KEYS[table]]
    return Fragment(
        **ref.model_dump(), seq=seq, key_min=first, key_max=last, row_hash=row_hash_check()
    )


def _rechunk(tables: Iterable[pa.Table], size: int) -> Iterator[pa.Table]:
    pending: list[pa.Table] = []
    pending_rows = 0
    for table in tables:
        while table.num_rows:
            take = min(size - pending_rows, table.num_rows)
            pending.append(table.slice(0, take))
            pending_rows += take
            table = table.slice(take)
            if pending_rows == size:
                yield pa.concat_tables(pending).combine_chunks()
                pending, pending_rows = [], 0
    if pending_rows:
        yield pa.concat_tables(pending).combine_chunks()


class _Cache:
    """Parsed, verified files by (sha256, columns); content-addressed, so never stale."""

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.items: OrderedDict[tuple[str, tuple[str, ...] | None], pa.Table] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, tuple[str, ...] | None]) -> pa.Table | None:
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: tuple[str, tuple[str, ...] | None], value: pa.Table) -> None:
        size = value.nbytes
        if size > self.budget // 4:
            return
        with self.lock:
            if key in self.items:
                return
            self.items[key] = value
            self.used += size
            while self.used > self.budget:
                _, dropped = self.items.popitem(last=False)
                self.used -= dropped.nbytes

    def clear(self) -> None:
        with self.lock:
            self.items.clear()
            self.used = 0


_FILE_CACHE = _Cache(_CACHE_BYTES)


def clear_cache() -> None:
    """Forget every parsed file (tests use it to force reads from storage)."""
    _FILE_CACHE.clear()


def read_file(
    storage: Storage, folder: str, ref: FileRef, columns: Sequence[str] | None = None
) -> pa.Table:
    """A stored Parquet file's rows, verified against its sha256 (cached once verified)."""
    wanted = tuple(columns) if columns is not None else None
    cached = _FILE_CACHE.get((ref.sha256, wanted))
    if cached is not None:
        return cached
    whole = _FILE_CACHE.get((ref.sha256, None))
    if whole is not None:
        result = whole.select(list(wanted)) if wanted is not None else whole
    else:
        data = storage.read_verified(f"{folder}/{ref.path}", ref.sha256)
        # ParquetFile, not pq.read_table: the latter goes through pyarrow.dataset, which
        # costs 0.36 ms a call against 0.10 ms (and 40 ms to import on a process's first read)
        result = pq.ParquetFile(pa.BufferReader(data)).read(
            columns=list(wanted) if wanted is not None else None
        )
    _FILE_CACHE.put((ref.sha256, wanted), result)
    return result


def read_files(
    storage: Storage, folder: str, refs: Sequence[FileRef], columns: Sequence[str] | None = None
) -> list[pa.Table]:
    """:func:`read_file` of each ref, in order, a few at a time.

    Reading, sha256 and Parquet decoding release the GIL; on 2 cores two files at once
    took reading the keys and hashes of 1M regions (16 files) from 0.10–0.18 s to
    0.07–0.09 s.
    """
    return map_io(lambda ref: read_file(storage, folder, ref, columns), refs)


def map_io(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[function(item) for item in items]``, a few at a time on threads (for work that
    releases the GIL: reading, hashing, decoding); the first error is raised."""
    if len(items) <= 1 or getattr(_in_pool, "worker", False):
        # (a call from one of the pool's own threads runs in place: waiting there for
        # the pool could wait forever)
        return [function(item) for item in items]
    return list(_io_pool().map(function, items))


_in_pool = threading.local()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _io_pool() -> ThreadPoolExecutor:
    """The process's reading threads, started once: a pool per call started its threads
    on every small commit (about 1 ms a thread here)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=_WRITERS,
                thread_name_prefix="annostore-io",
                initializer=lambda: setattr(_in_pool, "worker", True),
            )
        return _pool


def _forget_pool() -> None:
    # a forked child has none of its parent's threads: it starts a pool of its own
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # (not on Windows, which does not fork)
    os.register_at_fork(after_in_child=_forget_pool)


def read_fragments(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    fragments: Sequence[Fragment],
    columns: Sequence[str],
) -> list[pa.Table]:
    """The fragments' ``columns``, in order; stale row hashes recomputed (on ``con``)."""
    current = [
        f for f in fragments if not (ROW_HASH in columns and f.row_hash != row_hash_check(con))
    ]
    read = dict(
        zip((f.sha256 for f in current), read_files(storage, folder, current, columns), strict=True)
    )
    return [
        read[f.sha256]
        if f.sha256 in read
        else _read_fragment(con, storage, folder, table, f, columns)
        for f in fragments
    ]


def _read_fragment(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    fragment: Fragment,
    columns: Sequence[str],
) -> pa.Table:
    if ROW_HASH in columns and fragment.row_hash != row_hash_check(con):
        whole = read_file(storage, folder, fragment)
        con.register("stale_fragment", whole)
        hashes = con.sql(
            f"SELECT {row_hash_expression(table)} AS h FROM stale_fragment"
        ).to_arrow_table()
        con.unregister("stale_fragment")
        whole = whole.set_column(whole.schema.get_field_index(ROW_HASH), ROW_HASH, hashes.column(0))
        return whole.select(list(columns))
    return read_file(storage, folder, fragment, columns)


def overlapping_fragments(
    con: duckdb.DuckDBPyConnection, table: str, fragments: Sequence[Fragment], keys: pa.Table
) -> list[Fragment]:
    """The fragments whose key range holds at least one of ``keys``."""
    if not fragments or keys.num_rows == 0:
        return []
    names = KEYS[table]
    if keys.num_rows <= _FEW_KEYS:
        # A few keys (a small edit): sorted, each range is one bisection. DuckDB's range
        # join took 3-4 ms a call here, most of a 100-row commit's reads. Python compares
        # strings by code point, which is UTF-8 byte order, as DuckDB sorts them.
        probe = sorted(zip(*(keys.column(n).to_pylist() for n in names), strict=True))
        found = []
        for fragment in fragments:
            low, high = tuple(fragment.key_min), tuple(fragment.key_max)
            at = bisect.bisect_left(probe, low)
            if at < len(probe) and probe[at] <= high:
                found.append(fragment)
        return found
    ranges = pa.table(
        {"_index": pa.array(range(len(fragments)), pa.int64())}
        | {
            f"_min_{i}": pa.array([f.key_min[i] for f in fragments], pa.string())
            for i in range(len(names))
        }
        | {
            f"_max_{i}": pa.array([f.key_max[i] for f in fragments], pa.string())
            for i in range(len(names))
        }
    )

    def struct(prefix: str, alias: str) -> str:
        return "{" + ", ".join(f"'k{i}': {alias}.{prefix}{i}" for i in range(len(names))) + "}"

    probe = "{" + ", ".join(f"'k{i}': q.{quote(n)}" for i, n in enumerate(names)) + "}"
    con.register("fragment_ranges", ranges)
    con.register("probe_keys", keys.select(list(names)))
    hit = con.sql(
        f"SELECT DISTINCT r._index FROM fragment_ranges r JOIN probe_keys q "
        f"ON {probe} BETWEEN {struct('_min_', 'r')} AND {struct('_max_', 'r')} ORDER BY 1"
    ).fetchall()
    con.unregister("fragment_ranges")
    con.unregister("probe_keys")
    return [fragments[i] for (i,) in hit]


def tombstones_that_apply(state: TableState, fragments: Sequence[Fragment]) -> list[Tombstone]:
    """The tombstones that can remove rows of ``fragments``: those with a larger seq."""
    if not fragments:
        return []
    lowest = min(f.seq for f in fragments)
    return [t for t in state.tombstones if t.seq > lowest]


def merge_rule_sql(keys: Sequence[str], dead: str, key_alias: str, seq: str) -> tuple[str, str]:
    """The merge-on-read rule as SQL: a LEFT JOIN clause and a WHERE condition that drop a
    row whose key a tombstone with a larger seq names.

    ``dead`` is a relation (a name or a parenthesized query) of key columns and ``_seq``;
    ``key_alias`` is the alias of the rows' key columns, ``seq`` the expression of their seq.
    """
    on = " AND ".join(f"{key_alias}.{quote(k)} = _dead.{quote(k)}" for k in keys)
    join = f"LEFT JOIN (SELECT {column_list(keys)}, max({SEQ}) AS _until FROM {dead} GROUP BY ALL) _dead ON {on}"
    return join, f"(_dead._until IS NULL OR _dead._until <= {seq})"


def tombstoned_keys(
    storage: Storage, folder: str, table: str, tombstones: Sequence[FileRef]
) -> pa.Table:
    """The keys of ``tombstones``, each with the ``_seq`` of the tombstone that names it."""
    keys = read_files(storage, folder, tombstones, list(KEYS[table]))
    return pa.concat_tables(
        [
            part.append_column(SEQ, pa.repeat(pa.scalar(t.seq, pa.int64()), t.rows))
            for t, part in zip(tombstones, keys, strict=True)
        ]
    )


def live_rows(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    state: TableState,
    columns: Sequence[str] | None = None,
    restrict: pa.Table | None = None,
) -> pa.Table:
    """The rows of ``table`` that belong to the version ``state`` describes.

    ``columns`` picks columns (the canonical ones by default; ``_row_hash`` may be asked
    for); ``restrict`` (a table of key columns) keeps only rows with those keys and reads
    only the fragments whose key range can hold them. Rows come in fragment order.
    """
    keys = list(KEYS[table])
    wanted = list(columns) if columns is not None else arrow_schema(table).names
    fragments = state.fragments
    if restrict is not None:
        fragments = overlapping_fragments(con, table, fragments, restrict)
    if not fragments:
        return _empty(table, wanted)
    tombstones = tombstones_that_apply(state, fragments)
    read_columns = wanted + [k for k in keys if k not in wanted]
    parts = read_fragments(con, storage, folder, table, fragments, read_columns)
    rows = pa.concat_tables(parts)
    if not tombstones and restrict is None:
        return rows.select(wanted)

    total = rows.num_rows
    seqs = pa.chunked_array(
        [
            pa.repeat(pa.scalar(f.seq, pa.int64()), p.num_rows)
            for f, p in zip(fragments, parts, strict=True)
        ],
        pa.int64(),
    )
    if restrict is not None and restrict.num_rows <= _FEW_KEYS:
        dead = tombstoned_keys(storage, folder, table, tombstones) if tombstones else None
        kept = _few_live_positions(keys, rows.select(keys), seqs, restrict, dead)
        return take_rows(rows.select(wanted), kept)
    positions = (
        con.sql(f"SELECT range AS {POSITION} FROM range({total})").to_arrow_table().column(0)
    )
    located = rows.select(keys).append_column(SEQ, seqs).append_column(POSITION, positions)
    con.register("located", located)
    joins, condition = [], "TRUE"
    if tombstones:
        con.register("dead", tombstoned_keys(storage, folder, table, tombstones))
        join, condition = merge_rule_sql(keys, "dead", "f", f"f.{SEQ}")
        joins.append(join)
    if restrict is not None:
        con.register("wanted_keys", restrict.select(keys))
        on = " AND ".join(f"f.{quote(k)} = w.{quote(k)}" for k in keys)
        joins.insert(0, f"SEMI JOIN wanted_keys w ON {on}")
    kept = (
        con.sql(
            f"SELECT f.{POSITION} FROM located f {' '.join(joins)} WHERE {condition} ORDER BY 1"
        )
        .to_arrow_table()
        .column(0)
    )
    for name in ("located", "dead", "wanted_keys"):
        _unregister(con, name)
    if len(kept) == total:
        return rows.select(wanted)
    return take_rows(rows.select(wanted), kept)


def _few_live_positions(
    keys: Sequence[str],
    rows: pa.Table,
    seqs: pa.ChunkedArray,
    wanted: pa.Table,
    dead: pa.Table | None,
) -> pa.Array:
    """Positions, ascending, of the ``rows`` (key columns, ``seqs`` their fragments' seq)
    whose key is one of a few ``wanted`` keys and that no tombstone of a later seq in
    ``dead`` names: what the SQL in :func:`live_rows` selects, for a small edit.

    Arrow's ``is_in`` narrows the rows to those whose every key column holds a wanted
    value, and only those few are compared as whole keys; the SQL took 5-10 ms a call
    here, most of a 100-row commit's reading."""

    def narrowed(table: pa.Table, by: pa.Table) -> pa.Array:
        mask = None
        for key in keys:
            found = pc.is_in(table.column(key), value_set=by.column(key).combine_chunks())
            mask = found if mask is None else pc.and_(mask, found)
        return pc.indices_nonzero(mask)

    def key_tuples(table: pa.Table) -> list[tuple]:
        return list(zip(*(table.column(key).to_pylist() for key in keys), strict=True))

    candidates = narrowed(rows, wanted)
    if len(candidates) == 0:
        return pa.array([], pa.uint64())
    candidate_keys = take_rows(rows, candidates)
    until: dict[tuple, int] = {}
    if dead is not None:
        named = take_rows(dead, narrowed(dead, candidate_keys))
        for key, seq in zip(key_tuples(named), named.column(SEQ).to_pylist(), strict=True):
            until[key] = max(seq, until.get(key, seq))
    wanted_keys = set(key_tuples(wanted))
    kept = [
        position
        for position, key, seq in zip(
            candidates.to_pylist(),
            key_tuples(candidate_keys),
            pc.take(seqs, candidates).to_pylist(),
            strict=True,
        )
        if key in wanted_keys and until.get(key, seq) <= seq
    ]
    return pa.array(kept, pa.uint64())


def register_live_rows(
    con: duckdb.DuckDBPyConnection,
    storage: Storage,
    folder: str,
    table: str,
    state: TableState,
    columns: Sequence[str],
    name: str,
) -> tuple[str, list[str]]:
    """Like :func:`live_rows`, but leaves the merge to DuckDB: returns SQL for the live rows
    (in no particular order) over Arrow tables registered on ``con``, and their names, to
    unregister when done. Cheaper when the rows feed a join rather than the caller."""
    keys = list(KEYS[table])
    wanted = list(columns)
    read_columns = wanted + [k for k in keys if k not in wanted]
    parts = [
        part.append_column(SEQ, pa.repeat(pa.scalar(f.seq, pa.int64()), f.rows))
        for f, part in zip(
            state.fragments,
            read_fragments(con, storage, folder, table, state.fragments, read_columns),
            strict=True,
        )
    ]
    if not parts:
        con.register(name, _empty(table, wanted))
        return f"SELECT * FROM {name}", [name]
    con.register(f"{name}_rows", pa.concat_tables(parts))
    tombstones = tombstones_that_apply(state, state.fragments)
    selected = column_list(wanted, "f.")
    if not tombstones:
        return f"SELECT {selected} FROM {name}_rows f", [f"{name}_rows"]
    con.register(f"{name}_dead", tombstoned_keys(storage, folder, table, tombstones))
    join, condition = merge_rule_sql(keys, f"{name}_dead", "f", f"f.{SEQ}")
    return f"SELECT {selected} FROM {name}_rows f {join} WHERE {condition}", [
        f"{name}_rows",
        f"{name}_dead",
    ]


def _unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    with contextlib.suppress(duckdb.Error):
        con.unregister(name)


def _empty(table: str, columns: Sequence[str]) -> pa.Table:
    schema = fragment_schema(table)
    return pa.schema([schema.field(name) for name in columns]).empty_table()
