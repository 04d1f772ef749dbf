"""DuckDB connections for annostore's own bulk work."""

from __future__ import annotations

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection for internal queries over Arrow tables."""
    con = duckdb.connect(":memory:")
    # Timestamps and hashes must not depend on the user's machine.
    con.execute("SET TimeZone = 'UTC'")
    return con


def quote(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def column_list(names: tuple[str, ...] | list[str], prefix: str = "") -> str:
    """``"a", "b"`` or ``p."a", p."b"``."""
    return ", ".join(f"{prefix}{quote(n)}" for n in names)


def first_row(con: duckdb.DuckDBPyConnection, query: str) -> tuple | None:
    """The first row of a query's result, or None when it has no rows."""
    rows = con.sql(query).limit(1).fetchall()
    return rows[0] if rows else None
