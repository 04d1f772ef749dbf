"""Benchmark of the versioned store: commits, small edits and reads at 1M (or 10M) regions.

Run on demand (not part of the tests):

    python benchmarks/bench_store.py                 # 1M regions
    python benchmarks/bench_store.py --regions 10000000

Each measurement runs in its own process so that its peak memory (max RSS) is its own.
Prints a table; times are medians over --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

import annostore

REGIONS_PER_TASK = 7


def generate(regions: int, seed: int = 0) -> annostore.Tables:
    """A synthetic detection dataset: regions / 7 tasks, one annotation each, 20 labels."""
    tasks = regions // REGIONS_PER_TASK
    con = duckdb.connect()
    con.sql(f"SELECT setseed({seed / 10})").fetchall()
    task_table = con.sql(
        f"""SELECT 'images/' || lpad(i::VARCHAR, 8, '0') AS task_id,
                   's3://bucket/images/' || lpad(i::VARCHAR, 8, '0') || '.jpg' AS uri,
                   640::INTEGER AS width, 480::INTEGER AS height,
                   CASE WHEN i % 10 = 0 THEN 'val' ELSE 'train' END AS split
            FROM range({tasks}) t(i)"""
    ).to_arrow_table()
    annotation_table = con.sql(
        f"""SELECT 'images/' || lpad(i::VARCHAR, 8, '0') || '#1' AS annotation_id,
                   'images/' || lpad(i::VARCHAR, 8, '0') AS task_id,
                   CASE WHEN i % 3 = 0 THEN 'ana' ELSE 'ben' END AS annotator
            FROM range({tasks}) t(i)"""
    ).to_arrow_table()
    region_table = con.sql(
        f"""SELECT 'images/' || lpad((i // {REGIONS_PER_TASK})::VARCHAR, 8, '0') || '#1' AS annotation_id,
                   'r' || (i % {REGIONS_PER_TASK})::VARCHAR AS region_id,
                   'bbox' AS type, 'class_' || (hash(i) % 20)::VARCHAR AS label,
                   random() * 0.8 AS x, random() * 0.8 AS y, random() * 0.2 AS w, random() * 0.2 AS h
            FROM range({tasks * REGIONS_PER_TASK}) t(i)"""
    ).to_arrow_table()
    labels = pa.table({"label": [f"class_{i}" for i in range(20)], "label_id": list(range(1, 21))})
    con.close()
    return annostore.Tables(
        tasks=task_table, annotations=annotation_table, regions=region_table, labels=labels
    )


def changed(tables: annostore.Tables, fraction: float, seed: int) -> annostore.Tables:
    """Change `fraction` of regions, add as many and delete as many, spread at random."""
    con = duckdb.connect()
    con.register("regions", tables.regions)
    n = tables.regions.num_rows
    k = max(int(n * fraction), 1)
    regions = con.sql(
        f"""WITH picked AS (SELECT *, hash(annotation_id, region_id, {seed}) % {n} AS roll FROM regions)
            SELECT * EXCLUDE (roll) REPLACE (CASE WHEN roll < {k} THEN x + 0.01 ELSE x END AS x)
            FROM picked WHERE roll < {k} OR roll >= {2 * k}
            UNION ALL
            SELECT annotation_id, 'new' || region_id || '_{seed}', type, label, score, x, y, w, h, rotation, polygons,
                   keypoints, mask, start, "end", value, parent_id, extra
            FROM picked WHERE roll >= {2 * k} AND roll < {3 * k}"""
    ).to_arrow_table()
    con.close()
    return annostore.Tables(
        tables.tasks, tables.annotations, regions, tables.labels, check_references=False
    )


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def object_names(path: Path) -> set[str]:
    return {p.name for p in path.rglob("objects/*.parquet")}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# phases (each runs in a child process and prints one JSON line) -------------------------


def phase_parquet(args) -> dict:
    tables = generate(args.regions)
    before = peak_mb()
    out = Path(args.workdir) / "plain"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    start = time.perf_counter()
    for name, table in tables:
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "bytes": folder_bytes(out),
        "peak_mb": peak_mb(),
        "input_mb": before,
    }


def phase_first_commit(args) -> dict:
    tables = generate(args.regions)
    before = peak_mb()
    store_path = Path(args.workdir) / "first"
    shutil.rmtree(store_path, ignore_errors=True)
    store = annostore.open(str(store_path))
    start = time.perf_counter()
    store.create_dataset("bench").commit(tables, message="first")
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "bytes": folder_bytes(store_path),
        "peak_mb": peak_mb(),
        "input_mb": before,
    }


def _prepared_store(args, name: str) -> tuple[annostore.Store, annostore.Tables, Path]:
    tables = generate(args.regions)
    store_path = Path(args.workdir) / name
    shutil.rmtree(store_path, ignore_errors=True)
    store = annostore.open(str(store_path), auto_compact=False)
    store.create_dataset("bench").commit(tables)
    from annostore._fragments import clear_cache

    clear_cache()
    return store, tables, store_path


def phase_change_commit(args) -> dict:
    store, tables, store_path = _prepared_store(args, "change")
    return _time_change_commit(store, store_path, changed(tables, 0.01, seed=1))


def phase_change_read_back(args) -> dict:
    """The same 3% change made to the tables read back from the version (a notebook's
    workflow): tasks, annotations and labels go back as the objects read."""
    store, tables, store_path = _prepared_store(args, "change_read_back")
    regions = changed(tables, 0.01, seed=1).regions
    del tables
    read = store.dataset("bench").version("latest").tables
    new_state = annostore.Tables(read.tasks, read.annotations, regions, read.labels)
    from annostore._fragments import clear_cache

    clear_cache()  # the base is read from files, as in the other phase
    return _time_change_commit(store, store_path, new_state)


def _time_change_commit(store, store_path: Path, new_state: annostore.Tables) -> dict:
    before_objects = object_names(store_path)
    before = peak_mb()
    start = time.perf_counter()
    version = store.dataset("bench").commit(new_state, message="3% change")
    seconds = time.perf_counter() - start
    written = sum(
        (store_path / "datasets/bench/objects" / name).stat().st_size
        for name in object_names(store_path) - before_objects
    )
    manifest = (store_path / "datasets/bench/versions/0000000002.json").stat().st_size
    return {
        "seconds": seconds,
        "bytes": written + manifest,
        "peak_mb": peak_mb(),
        "input_mb": before,
        "changes": version.changes["regions"],
    }


def phase_small_edits(args) -> dict:
    store, tables, store_path = _prepared_store(args, "edits")
    dataset = store.dataset("bench")
    regions = tables.regions
    timings, sizes = [], []
    step = max(regions.num_rows // 2000, 1)
    for edit in range(20):
        rows = regions.slice(
            (edit * 97 * step) % max(regions.num_rows - 100 * step, 1), 100 * step
        ).take(pa.array(range(0, 100 * step, step)))
        rows = rows.set_column(
            rows.schema.get_field_index("label"), "label", pa.array([f"edit{edit}"] * rows.num_rows)
        )
        before_objects = object_names(store_path)
        start = time.perf_counter()
        version = dataset.commit_changes({"regions": rows}, message=f"edit {edit}")
        timings.append(time.perf_counter() - start)
        new = object_names(store_path) - before_objects
        manifest = store_path / f"datasets/bench/versions/{version.number:010d}.json"
        sizes.append(
            sum((store_path / "datasets/bench/objects" / n).stat().st_size for n in new)
            + manifest.stat().st_size
        )
    return {
        "seconds": statistics.median(timings),
        "max_seconds": max(timings),
        "bytes": statistics.median(sizes),
        "peak_mb": peak_mb(),
    }


def phase_read(args) -> dict:
    store_path = Path(args.workdir) / "first"
    if not store_path.exists():
        phase_first_commit(args)
    before = peak_mb()
    start = time.perf_counter()
    tables = annostore.open(str(store_path)).dataset("bench").version("latest").tables
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": tables.regions.num_rows,
        "peak_mb": peak_mb(),
        "input_mb": before,
    }


PHASES = {
    "parquet": phase_parquet,
    "first_commit": phase_first_commit,
    "change_commit": phase_change_commit,
    "change_read_back": phase_change_read_back,
    "small_edits": phase_small_edits,
    "read": phase_read,
}

LABELS = {
    "parquet": "plain pyarrow.parquet.write_table (zstd), all four tables",
    "first_commit": "first commit (annostore)",
    "change_commit": "commit: 1% changed + 1% added + 1% deleted",
    "change_read_back": "the same, made to the version's tables read back",
    "small_edits": "commit_changes of 100 rows (median of 20)",
    "read": "read a version (all four tables, cold)",
}


def run_phase(name: str, args) -> dict:
    command = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--regions",
        str(args.regions),
        "--workdir",
        args.workdir,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regions", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)))
        return
    own_workdir = args.workdir is None
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="annostore-bench-")
    try:
        results = {}
        for name in PHASES:
            runs = [
                run_phase(name, args) for _ in range(args.repeat if name != "small_edits" else 1)
            ]
            result = dict(runs[0])
            result["seconds"] = statistics.median(r["seconds"] for r in runs)
            result["peak_mb"] = max(r["peak_mb"] for r in runs)
            results[name] = result
        print(
            f"annostore store benchmark: {args.regions:,} regions, {args.regions // REGIONS_PER_TASK:,} tasks; "
            f"median of {args.repeat} runs; {os.cpu_count()} cores; duckdb {duckdb.__version__}, pyarrow {pa.__version__}"
        )
        print()
        print(
            f"| {'what':<62} | {'seconds':>8} | {'MB written':>10} | {'peak RSS MB':>11} | {'data in RAM MB':>14} |"
        )
        print(f"|{'-' * 64}|{'-' * 10}|{'-' * 12}|{'-' * 13}|{'-' * 16}|")
        for name, result in results.items():
            written = f"{result['bytes'] / 1e6:.3f}" if "bytes" in result else ""
            data = f"{result['input_mb']:.0f}" if "input_mb" in result else ""
            print(
                f"| {LABELS[name]:<62} | {result['seconds']:>8.3f} | {written:>10} | {result['peak_mb']:>11.0f} | {data:>14} |"
            )
        plain, first = results["parquet"], results["first_commit"]
        print()
        print(
            f"first commit / plain Parquet write: {first['seconds'] / plain['seconds']:.2f}x time, "
            f"{first['bytes'] / plain['bytes']:.2f}x bytes"
        )
        change = results["change_commit"]
        print(
            f"3% change: {change['changes']}, wrote {change['bytes'] / first['bytes'] * 100:.1f}% of a full snapshot"
        )
        edits = results["small_edits"]
        print(
            f"100-row edits: median {edits['seconds'] * 1000:.1f} ms (max {edits['max_seconds'] * 1000:.1f} ms), "
            f"median {edits['bytes'] / 1000:.1f} KB per commit"
        )
        print(
            "'data in RAM MB' is the process's peak RSS before the measured step (generated input and imports)."
        )
    finally:
        if own_workdir:
            shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
