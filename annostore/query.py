"""Read-only SQL over versions: DuckDB views bound to a version's files in place.

``tasks``, ``annotations``, ``regions`` and ``labels`` are views over the version's
Parquet fragments, anti-joined with its tombstones (nothing is copied into DuckDB; a
remote store's files are read from verified local copies, see ``_query_files``). ``regions`` adds
``task_id`` and pixel columns (``x_px``, ``y_px``, ``w_px``, ``h_px``, ``area_px``) where
the task's size is known. Other versions of the same dataset are reachable as
``regions_v3``, ``tasks_v12``, … .

User SQL runs on a connection locked down after the views exist: one SELECT statement,
no file access beyond the version's own files, no ATTACH, no extensions, no settings.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from annostore.schemas import KEYS, TABLE_NAMES, arrow_schema

from ._fragments import fragment_schema, merge_rule_sql, tombstones_that_apply
from ._manifest import FileRef, Manifest, TableState
from ._query_files import query_files
from ._sql import column_list, literal, quote
from ._storage import Storage
from .errors import NotFoundError, QueryError

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["open_version_connection", "run_query"]

_OTHER_VERSION = re.compile(r"\b(tasks|annotations|regions|labels)_v(\d+)\b", re.IGNORECASE)


class ViewBinder:
    """Builds the views of one or more versions on one connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, dataset: Dataset):
        self.con = con
        self.dataset = dataset
        self.storage: Storage = dataset._storage
        self.allowed: list[str] = []

    def _files(self, refs: Sequence[FileRef]) -> list[str]:
        locations = query_files(self.storage, self.dataset._folder, refs)
        self.allowed.extend(locations)
        return locations

    def table_sql(self, table: str, state: TableState, suffix: str, with_hash: bool = False) -> str:
        """SQL for the live rows of one table of a version (with ``_row_hash`` if asked)."""
        schema = fragment_schema(table) if with_hash else arrow_schema(table)
        columns = column_list(schema.names)
        if not state.fragments:
            # a table of the database, not a registered Arrow table: cursors of this
            # connection (which run the queries) see only the former
            name = quote(f"_empty_{table}{suffix}")
            self.con.register("_empty_rows", schema.empty_table())
            self.con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT * FROM _empty_rows")
            self.con.unregister("_empty_rows")
            return f"SELECT * FROM {name}"
        fragment_files = self._files(state.fragments)
        unique = sorted(set(fragment_files))
        relevant = tombstones_that_apply(state, state.fragments)
        if not relevant and len(unique) == len(fragment_files):
            return f"SELECT {columns} FROM read_parquet({_list(unique)})"
        keys = column_list(KEYS[table])
        # One scan of the listed files (a file listed twice, as after a revert, is read
        # twice), each row's seq picked by its file's position in the list. Joining every
        # row's file name against the listing cost more than the scan; a UNION ALL of one
        # scan per file was faster at 1M regions but 1.8x slower at 10M (173 fragments).
        seqs = "[" + ", ".join(f"{f.seq}::BIGINT" for f in state.fragments) + "]"
        listing = (
            f"SELECT *, {seqs}[file_index::BIGINT + 1] AS _seq "
            f"FROM read_parquet({_list(fragment_files)})"
        )
        dead_parts = [
            f"SELECT {keys}, {t.seq}::BIGINT AS _seq FROM read_parquet({_list(self._files([t]))})"
            for t in relevant
        ]
        dead = (
            " UNION ALL ".join(dead_parts)
            if dead_parts
            else f"SELECT {keys}, 0::BIGINT AS _seq FROM read_parquet({_list(unique[:1])}) WHERE false"
        )
        prefixed = column_list(schema.names, "r.")
        dead_join, condition = merge_rule_sql(KEYS[table], f"({dead})", "r", "r._seq")
        return f"SELECT {prefixed} FROM ({listing}) r {dead_join} WHERE {condition}"

    def bind(self, manifest: Manifest, suffix: str = "") -> None:
        """Create the four views (named with ``suffix``, e.g. ``_v3``) of one version."""
        for table in TABLE_NAMES:
            self.con.execute(
                f"CREATE VIEW {quote('_raw_' + table + suffix)} AS {self.table_sql(table, manifest.tables[table], suffix)}"
            )
        raw = {t: quote(f"_raw_{t}{suffix}") for t in TABLE_NAMES}
        for table in ("tasks", "annotations", "labels"):
            self.con.execute(f"CREATE VIEW {quote(table + suffix)} AS SELECT * FROM {raw[table]}")
        # Each region meets its annotation's task and size in one join, on a side grouped
        # by annotation_id (one row per group: both keys are unique in a version). DuckDB
        # then knows that side is unique and drops the join from queries that use none
        # of its columns: a label count over 10M regions took 0.59 s with two joins and
        # 0.055 s without; queries that use the pixel columns probe one hash table, not two.
        self.con.execute(
            f"""CREATE VIEW {quote("regions" + suffix)} AS
                SELECT r.*, o.task_id,
                       r.x * o.width AS x_px, r.y * o.height AS y_px,
                       r.w * o.width AS w_px, r.h * o.height AS h_px,
                       CASE WHEN r.type = 'bbox' THEN (r.w * o.width) * (r.h * o.height) END AS area_px
                FROM {raw["regions"]} r
                LEFT JOIN (
                    SELECT a.annotation_id, any_value(a.task_id) AS task_id,
                           any_value(t.width) AS width, any_value(t.height) AS height
                    FROM {raw["annotations"]} a LEFT JOIN {raw["tasks"]} t USING (task_id)
                    GROUP BY a.annotation_id
                ) o USING (annotation_id)"""
        )

    def bind_with_hashes(self, manifest: Manifest, suffix: str) -> None:
        """Create ``_raw_<table><suffix>`` views that keep each row's ``_row_hash``."""
        for table in TABLE_NAMES:
            sql = self.table_sql(table, manifest.tables[table], suffix, with_hash=True)
            self.con.execute(f"CREATE VIEW {quote('_raw_' + table + suffix)} AS {sql}")

    def lock(self) -> None:
        con = self.con
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute(f"SET allowed_paths = {_list(sorted(set(self.allowed)))}")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")


def _list(paths: Sequence[str]) -> str:
    return "[" + ", ".join(literal(p) for p in paths) + "]"


def _check_statement(query: str) -> None:
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryError(f"SQL does not parse: {exc}") from exc
    if len(statements) != 1:
        raise QueryError(f"expected one SQL statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(f"only SELECT queries are allowed (read-only), got {kind.name}")


def open_version_connection(
    dataset: Dataset, manifest: Manifest, query: str = ""
) -> duckdb.DuckDBPyConnection:
    """A locked-down DuckDB connection with the views of ``manifest`` (and of every
    ``<table>_v<N>`` that ``query`` names)."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        binder = ViewBinder(con, dataset)
        binder.bind(manifest)
        for number in sorted({int(n) for _, n in _OTHER_VERSION.findall(query)}):
            try:
                other = dataset._manifest(number)
            except NotFoundError as exc:
                raise QueryError(
                    f"the query names version {number}, which {dataset.name!r} does not have"
                ) from exc
            binder.bind(other, f"_v{number}")
        binder.lock()
    except BaseException:
        con.close()
        raise
    return con


#: Locked-down connections kept for the versions queried last, so that a query pays for
#: a cursor instead of a new database with its views (18 ms of a 25 ms query on a small
#: version). What a SELECT can do leaves nothing behind for the next one.
_KEPT_CONNECTIONS = 8
_kept: OrderedDict[tuple, duckdb.DuckDBPyConnection] = OrderedDict()
_kept_lock = threading.Lock()
_kept_pid: list[int] = []
#: a forked child's inherited connections: never used, and never destroyed either (their
#: database's threads do not exist in the child)
_inherited: list[duckdb.DuckDBPyConnection] = []


def _kept_connection(dataset: Dataset, manifest: Manifest, query: str) -> duckdb.DuckDBPyConnection:
    others = tuple(sorted({int(n) for _, n in _OTHER_VERSION.findall(query)}))
    key = (dataset._storage.url, dataset._folder, manifest.id, others)
    with _kept_lock:
        if _kept_pid != [os.getpid()]:
            _inherited.extend(_kept.values())  # a forked child must not use its parent's
            _kept.clear()
            _kept_pid[:] = [os.getpid()]
        con = _kept.get(key)
        if con is not None:
            _kept.move_to_end(key)
            return con
    con = open_version_connection(dataset, manifest, query)
    with _kept_lock:
        # Dropped, not closed, when pushed out: a query may still run on a cursor of it
        # (the database lives until its last cursor is gone).
        _kept[key] = con
        while len(_kept) > _KEPT_CONNECTIONS:
            _kept.popitem(last=False)
    return con


def run_query(
    dataset: Dataset,
    manifest: Manifest,
    query: str,
    params: Sequence[Any] | dict[str, Any] | None = None,
) -> pa.Table:
    """Run one read-only SELECT over a version; the result as an Arrow table."""
    _check_statement(query)
    cursor = _kept_connection(dataset, manifest, query).cursor()
    try:
        return cursor.sql(query, params=params).to_arrow_table()
    except duckdb.Error as exc:
        raise QueryError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        cursor.close()
