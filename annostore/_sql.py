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
