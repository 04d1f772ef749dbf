"""DuckDB connections for annostore's own bulk work."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa

_local = threading.local()


def _new_connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Timestamps and hashes must not depend on the user's machine.
    con.execute("SET TimeZone = 'UTC'")
    # DuckDB draws a progress bar on stderr for long queries; the CLI's stderr is for messages.
    con.execute("SET enable_progress_bar = false")
    # Large sorts (compaction) may spill to disk instead of failing.
    folder = os.path.join(tempfile.gettempdir(), "annostore-duckdb")
    os.makedirs(folder, exist_ok=True)
    con.execute(f"SET temp_directory = '{folder}'")
    con.execute("SET preserve_insertion_order = true")
    return con


@contextmanager
def connection() -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection for internal queries over Arrow tables.

    Opening one costs about 20 ms, so each thread keeps one and reuses it; a nested use
    gets a fresh connection of its own. Callers unregister what they register.
    """
    cached = getattr(_local, "con", None)
    if cached is None or getattr(_local, "pid", None) != os.getpid():
        cached = _local.con = _new_connection()
        _local.pid = os.getpid()
        _local.busy = False
    if _local.busy:
        con = _new_connection()
        try:
            yield con
        finally:
            con.close()
        return
    _local.busy = True
    try:
        yield cached
    finally:
        _local.busy = False


#: SQL of the 64-bit hash of a key that commits join on and the duplicate check groups by
#: first (a template read at each use, so that a test can make keys collide)
KEY_HASH = "hash({keys})"


def quote(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def column_list(names: tuple[str, ...] | list[str], prefix: str = "") -> str:
    """``"a", "b"`` or ``p."a", p."b"``."""
    return ", ".join(f"{prefix}{quote(n)}" for n in names)


def first_row(con: duckdb.DuckDBPyConnection, query: str) -> tuple | None:
    """The first row of a query's result, or None when it has no rows."""
    rows = con.sql(query).limit(1).fetchall()
    return rows[0] if rows else None


def arrow_reader(relation: duckdb.DuckDBPyRelation, batch_rows: int) -> pa.RecordBatchReader:
    """Stream a relation's result as Arrow record batches (DuckDB 1.x and 2.x)."""
    if hasattr(type(relation), "to_arrow_reader"):
        return relation.to_arrow_reader(batch_rows)
    return relation.fetch_record_batch(batch_rows)  # DuckDB < 2.0
