"""DuckDB's freed memory goes back to the system between steps."""

from __future__ import annotations

import os

import pytest

from annostore._sql import connection, release_memory


def _resident_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_release_memory_returns_a_dropped_table_and_keeps_the_thread_count():
    with connection() as con:
        threads = con.sql("SELECT current_setting('threads')").fetchall()[0][0]
        before = _resident_mb()
        con.execute(
            "CREATE TEMP TABLE big AS SELECT range::VARCHAR || repeat('x', 100) AS s FROM range(2000000)"
        )
        grown = _resident_mb() - before
        con.execute("DROP TABLE big")
        release_memory(con)
        assert grown > 100  # the table was there to give back
        assert _resident_mb() - before < grown / 2
        assert con.sql("SELECT current_setting('threads')").fetchall()[0][0] == threads
        assert con.sql("SELECT count(*) FROM range(10)").fetchall() == [(10,)]
