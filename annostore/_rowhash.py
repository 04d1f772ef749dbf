"""Row hashes: how a commit tells a changed row from an unchanged one.

A row's hash is DuckDB's 64-bit ``hash()`` of all its canonical columns. It is stored in
the ``_row_hash`` column of every fragment so that a commit reads only keys and hashes of
its base. DuckDB does not promise the same hash across releases, so every fragment also
records :func:`row_hash_check` (the hash of a fixed probe row) of the function that wrote
it; a fragment whose check differs from the running one has its hashes recomputed.
"""

from __future__ import annotations

import duckdb

from annostore.schemas import COLUMNS

from ._sql import column_list, connection, first_row

ROW_HASH = "_row_hash"

_PROBE = (
    "hash('annostore'::VARCHAR, 7::INTEGER, 7::BIGINT, 0.5::DOUBLE, true, [0.25, 0.5]::DOUBLE[],"
    " [[1.0]]::DOUBLE[][], {'size': [1, 2]::BIGINT[], 'counts': 'x'}, NULL::VARCHAR,"
    " TIMESTAMPTZ '2024-01-02 03:04:05+00')"
)


def row_hash_expression(table: str, prefix: str = "") -> str:
    """SQL computing the row hash of ``table`` over its canonical columns."""
    return f"hash({column_list([c.name for c in COLUMNS[table]], prefix)})"


_check: int | None = None


def row_hash_check(con: duckdb.DuckDBPyConnection | None = None) -> int:
    """The running DuckDB's hash of a fixed probe row, recorded next to stored hashes.

    Computed once per process, on ``con`` when given, else on the thread's shared
    connection (opening one just for the probe cost a fresh process about 25 ms).
    """
    global _check
    if _check is None:
        _check = _probe(con) if con is not None else _probe_alone()
    return _check


def _probe_alone() -> int:
    with connection() as con:
        return _probe(con)


def _probe(con: duckdb.DuckDBPyConnection) -> int:
    (value,) = first_row(con, f"SELECT {_PROBE}")
    # Stored as a signed 64-bit integer so it survives JSON readers that use doubles poorly.
    return int(value) - (1 << 64) if int(value) >= (1 << 63) else int(value)
