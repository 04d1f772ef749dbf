"""Benchmark of the query layer: diffs, stats and SQL at 1M (or 10M) regions.

    python benchmarks/bench_query.py                  # 1M regions
    python benchmarks/bench_query.py --regions 10000000

Compares annostore's diff with the obvious alternative: a DuckDB FULL OUTER JOIN on the
key of two full Parquet snapshots. Times are medians of --repeat runs in one process
(warm: files already sha256-checked and in the OS cache), plus the first (cold) run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from bench_store import changed, generate

import annostore
from annostore import _query_files
from annostore._fragments import clear_cache


def timed(function, repeat: int) -> tuple[float, float]:
    """(first run, median of the next ``repeat``) in seconds."""
    clear_cache()
    _query_files.forget()
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return first, statistics.median(runs)


def counts(diff: annostore.Diff) -> dict:
    """The key-level counts of every table (what a diff knows before comparing rows)."""
    return {name: (t.added, t.removed, t.changed, t.unchanged) for name, t in diff.tables.items()}


def small_edit(tables: annostore.Tables, step: int) -> pa.Table:
    regions = tables.regions.slice((step * 7919) % max(tables.regions.num_rows - 1000, 1), 1000)
    return regions.set_column(
        regions.schema.get_field_index("label"),
        "label",
        pa.array([f"edit{step}"] * regions.num_rows),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="annostore-bench-query-"))
    try:
        base = generate(args.regions)
        second = changed(base, 0.01, seed=1)
        store = annostore.open(str(workdir / "store"), auto_compact=False)
        ds = store.create_dataset("bench")
        ds.commit(base, message="base")
        ds.commit(second, message="3% change")
        for step in range(9):
            ds.commit_changes({"regions": small_edit(second, step)}, message=f"edit {step}")
        uncompacted = ds.latest.number
        for step in range(9, 20):
            ds.commit_changes({"regions": small_edit(second, step)}, message=f"edit {step}")
        before_compaction = ds.latest.number
        compacted = ds.compact().number

        # The alternative: two full snapshots in Parquet, joined on the key.
        for name, state in (("a", base), ("b", second)):
            pq.write_table(state.regions, workdir / f"{name}.parquet", compression="zstd")
        columns = ", ".join(f'"{c}"' for c in base.regions.column_names)
        con = duckdb.connect()

        def snapshot_join():
            con.sql(
                f"""SELECT count(*) FILTER (WHERE a.annotation_id IS NULL), count(*) FILTER (WHERE b.annotation_id IS NULL),
                           count(*) FILTER (WHERE a.annotation_id IS NOT NULL AND b.annotation_id IS NOT NULL)
                    FROM (SELECT annotation_id, region_id, hash({columns}) AS h FROM '{workdir / "a.parquet"}') a
                    FULL OUTER JOIN (SELECT annotation_id, region_id, hash({columns}) AS h FROM '{workdir / "b.parquet"}') b
                    USING (annotation_id, region_id) WHERE a.h IS DISTINCT FROM b.h"""
            ).fetchall()

        rows = [
            (
                "DuckDB FULL OUTER JOIN of two full Parquet snapshots",
                timed(snapshot_join, args.repeat),
            ),
            (
                "diff counts by key, adjacent versions (1 -> 2, 3% change)",
                timed(lambda: counts(ds.diff(1, 2)), args.repeat),
            ),
            (
                f"diff counts by key, ten versions apart (1 -> {uncompacted})",
                timed(lambda: counts(ds.diff(1, uncompacted)), args.repeat),
            ),
            (
                f"diff counts by key, across a compaction (1 -> {compacted})",
                timed(lambda: counts(ds.diff(1, compacted)), args.repeat),
            ),
            (
                "diff, adjacent versions (1 -> 2, 3% change), full detail",
                timed(lambda: ds.diff(1, 2, recompute=True).to_dict(), args.repeat),
            ),
            (
                f"diff, ten versions apart (1 -> {uncompacted}), full detail",
                timed(lambda: ds.diff(1, uncompacted, recompute=True).to_dict(), args.repeat),
            ),
            (
                f"diff, across a compaction (1 -> {compacted}), full detail",
                timed(lambda: ds.diff(1, compacted, recompute=True).to_dict(), args.repeat),
            ),
            (
                "diff kept in the store, read back (1 -> 2, a new Store object)",
                timed(
                    lambda: (
                        annostore.open(str(workdir / "store")).dataset("bench").diff(1, 2).to_dict()
                    ),
                    args.repeat,
                ),
            ),
            (
                f"the same, ten versions apart (1 -> {uncompacted})",
                timed(
                    lambda: (
                        annostore.open(str(workdir / "store"))
                        .dataset("bench")
                        .diff(1, uncompacted)
                        .to_dict()
                    ),
                    args.repeat,
                ),
            ),
            (
                "stats computed, compacted version",
                timed(lambda: ds.stats(compacted, recompute=True), args.repeat),
            ),
            (
                f"stats computed, after 20 small commits, not compacted (v{before_compaction})",
                timed(lambda: ds.stats(before_compaction, recompute=True), args.repeat),
            ),
            (
                "stats kept in the store, read back (a new Store object)",
                timed(
                    lambda: (
                        annostore.open(str(workdir / "store")).dataset("bench").stats(compacted)
                    ),
                    args.repeat,
                ),
            ),
            (
                "SQL: SELECT label, count(*) FROM regions GROUP BY 1 (compacted)",
                timed(
                    lambda: ds.sql(
                        "SELECT label, count(*) FROM regions GROUP BY 1", version=compacted
                    ),
                    args.repeat,
                ),
            ),
            (
                "SQL: the same, not compacted",
                timed(
                    lambda: ds.sql(
                        "SELECT label, count(*) FROM regions GROUP BY 1", version=before_compaction
                    ),
                    args.repeat,
                ),
            ),
        ]
        summary = ds.diff(1, 2).to_dict()
        print(
            f"annostore query benchmark: {args.regions:,} regions; warm = median of {args.repeat} runs after the first; "
            f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}"
        )
        print()
        print(f"| {'what':<66} | {'first s':>8} | {'warm s':>8} |")
        print(f"|{'-' * 68}|{'-' * 10}|{'-' * 10}|")
        for label, (first, warm) in rows:
            print(f"| {label:<66} | {first:>8.4f} | {warm:>8.4f} |")
        print()
        print(
            f"diff 1 -> 2: {summary['regions_added']} added, {summary['regions_removed']} removed, "
            f"{summary['regions_changed']} changed, {summary['regions_unchanged']} unchanged"
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
