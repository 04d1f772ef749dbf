"""Row hashes: how a commit tells a changed row from an unchanged one.

A row's hash is DuckDB's 64-bit ``hash()`` of all its canonical columns, plus the shape of
its list and struct columns. The shape is needed because DuckDB hashes a list as the
combination of its elements' hashes: a null list, an empty one and ``[null]`` hash alike,
and so do ``[[1.0], [2.0]]`` and ``[[1.0, 2.0]]``, and a null struct and one of null
fields. Without the lengths a commit that changed only such a value kept the old row.

The hash is stored in the ``_row_hash`` column of every fragment so that a commit reads
only keys and hashes of its base. DuckDB does not promise the same hash across releases,
so every fragment also records :func:`row_hash_check` (this module's row hash of a fixed
probe row) of the function that wrote it; a fragment whose check differs from the running
one has its hashes recomputed. The probe runs the same expression as the rows, so changing
the expression changes the check too.
"""

from __future__ import annotations

import duckdb
import pyarrow as pa

from annostore.schemas import COLUMNS

from ._sql import connection, first_row, quote

ROW_HASH = "_row_hash"

# One regions row with every list and struct column filled, so that the probe exercises
# the hash of each type and each shape term the rows use.
_PROBE_ROW = (
    "SELECT 'a' AS annotation_id, 'r' AS region_id, 'polygon' AS type, 'cat' AS label,"
    " 0.5::DOUBLE AS score, 0.25::DOUBLE AS x, NULL::DOUBLE AS y, 7.0::DOUBLE AS w,"
    " 1e-300::DOUBLE AS h, -0.0::DOUBLE AS rotation,"
    " [[1.0, 2.0], [], NULL]::DOUBLE[][] AS polygons, [0.25, NULL]::DOUBLE[] AS keypoints,"
    " {'size': [1, 2], 'counts': 'x'}::STRUCT(size BIGINT[], counts VARCHAR) AS mask,"
    " 7::BIGINT AS start, NULL::BIGINT AS \"end\", '' AS value, NULL::VARCHAR AS parent_id,"
    " '{}' AS extra"
)


def row_hash_expression(table: str, prefix: str = "") -> str:
    """SQL computing the row hash of ``table`` over its canonical columns and their shapes."""
    terms: list[str] = []
    for column in COLUMNS[table]:
        name = f"{prefix}{quote(column.name)}"
        terms.append(name)
        terms.extend(_shape_terms(name, column.type))
    return f"hash({', '.join(terms)})"


def _shape_terms(name: str, type_: pa.DataType) -> list[str]:
    """Terms that tell apart the values of a nested column whose element hashes agree."""
    if _is_list(type_):
        terms = [f"len({name})"]
        if _is_list(type_.value_type):
            # -1 marks a null inner list; an empty one is 0.
            terms.append(f"list_transform({name}, lambda item: coalesce(len(item), -1))")
        return terms
    if pa.types.is_struct(type_):
        terms = [f"({name} IS NULL)"]
        for field in type_:
            terms.extend(_shape_terms(f"{name}.{quote(field.name)}", field.type))
        return terms
    return []


def _is_list(type_: pa.DataType) -> bool:
    return pa.types.is_list(type_) or pa.types.is_large_list(type_)


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
    (value,) = first_row(con, f"SELECT {row_hash_expression('regions')} FROM ({_PROBE_ROW})")
    # Stored as a signed 64-bit integer so it survives JSON readers that use doubles poorly.
    return int(value) - (1 << 64) if int(value) >= (1 << 63) else int(value)
