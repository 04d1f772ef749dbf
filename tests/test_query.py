"""SQL over versions, its lockdown, stats and the labeled / unlabeled task lists."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import boxes
from hypothesis import given, settings
from strategies import tables

import annostore
from annostore._query_files import query_files
from annostore.cli import cli


def _labeled_round() -> annostore.Tables:
    """6 tasks: 2 with boxes, 1 background, 1 skipped, 1 with only a prediction, 1 untouched."""
    return annostore.Tables.from_pylist(
        tasks=[
            {"task_id": "t1", "width": 200, "height": 100, "split": "train"},
            {"task_id": "t2", "width": 400, "height": 300, "split": "train"},
            {"task_id": "t3", "split": "val"},
            {"task_id": "t4"},
            {"task_id": "t5", "width": 10, "height": 10},
            {"task_id": "t6"},
        ],
        annotations=[
            {"annotation_id": "a1", "task_id": "t1", "annotator": "ana"},
            {"annotation_id": "a2", "task_id": "t2", "annotator": "ben"},
            {"annotation_id": "a2b", "task_id": "t2", "annotator": "ana"},
            {"annotation_id": "a3", "task_id": "t3", "annotator": "ana"},
            {"annotation_id": "a4", "task_id": "t4", "annotator": "ben", "cancelled": True},
            {
                "annotation_id": "p5",
                "task_id": "t5",
                "kind": "prediction",
                "model_version": "m1",
                "score": 0.5,
            },
        ],
        regions=[
            {
                "annotation_id": "a1",
                "region_id": "r1",
                "type": "bbox",
                "label": "cat",
                "x": 0.1,
                "y": 0.2,
                "w": 0.5,
                "h": 0.5,
            },
            {
                "annotation_id": "a2",
                "region_id": "r1",
                "type": "bbox",
                "label": "dog",
                "x": 0.0,
                "y": 0.0,
                "w": 0.25,
                "h": 0.1,
            },
            {
                "annotation_id": "a2",
                "region_id": "r2",
                "type": "polygon",
                "label": "dog",
                "polygons": [[0, 0, 1, 0, 1, 1]],
            },
            {"annotation_id": "a2b", "region_id": "r1", "type": "class", "label": "outdoor"},
            {
                "annotation_id": "p5",
                "region_id": "r1",
                "type": "bbox",
                "label": "cat",
                "x": 0,
                "y": 0,
                "w": 1,
                "h": 1,
            },
        ],
        labels=[
            {"label": "cat", "label_id": 1},
            {"label": "dog", "label_id": 2},
            {"label": "bird", "label_id": 3},
        ],
    )


def test_sql_sees_the_versions_rows_with_pixel_columns(store):
    ds = store.create_dataset("pets")
    ds.commit(_labeled_round())
    rows = ds.sql(
        "SELECT annotation_id, region_id, task_id, x_px, y_px, w_px, h_px, area_px FROM regions "
        "WHERE type = 'bbox' ORDER BY 1"
    ).to_pylist()
    assert rows[0] == {
        "annotation_id": "a1",
        "region_id": "r1",
        "task_id": "t1",
        "x_px": 20.0,
        "y_px": 20.0,
        "w_px": 100.0,
        "h_px": 50.0,
        "area_px": 5000.0,
    }
    assert rows[1]["w_px"] == 100.0 and rows[1]["h_px"] == 30.0
    assert ds.sql("SELECT count(*) AS n FROM tasks WHERE width IS NULL").to_pylist() == [{"n": 3}]
    assert (
        ds.sql("SELECT count(*) AS n FROM regions WHERE label = ?", params=["dog"])
        .column("n")[0]
        .as_py()
        == 2
    )


def test_sql_reads_through_tombstones_and_reaches_other_versions(store):
    store.auto_compact = False
    ds = store.create_dataset("pets")
    ds.commit(boxes(10))
    ds.commit(boxes(12, label="dog"))
    ds.commit_changes(deletes={"regions": [("a00000", "r0")]})
    latest = ds.sql("SELECT label, count(*) AS n FROM regions GROUP BY 1").to_pylist()
    assert latest == [{"label": "dog", "n": 23}]
    both = ds.sql(
        "SELECT (SELECT count(*) FROM regions_v1) AS v1, (SELECT count(*) FROM regions_v2) AS v2, "
        "(SELECT count(*) FROM regions) AS v3"
    ).to_pylist()
    assert both == [{"v1": 20, "v2": 24, "v3": 23}]
    assert ds.sql("SELECT count(*) AS n FROM regions", version=1).column("n")[0].as_py() == 20
    # The SQL view and the Arrow read agree row for row.
    assert (
        ds.sql("SELECT * EXCLUDE (task_id, x_px, y_px, w_px, h_px, area_px) FROM regions")
        .sort_by([("annotation_id", "ascending"), ("region_id", "ascending")])
        .to_pylist()
        == ds.latest.tables.regions.sort_by(
            [("annotation_id", "ascending"), ("region_id", "ascending")]
        ).to_pylist()
    )


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("COPY (SELECT 1) TO '/tmp/annostore-leak.csv'", "only SELECT"),
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
        ("SELECT * FROM read_text('/etc/hostname')", "Permission"),
        ("SELECT * FROM glob('/*')", "Permission"),
        ("ATTACH '/tmp/annostore-other.db'", "only SELECT"),
        ("INSTALL httpfs", "only SELECT"),
        ("LOAD httpfs", "only SELECT"),
        ("SET threads = 1", "only SELECT"),
        ("SELECT 1; SELECT 2", "one SQL statement"),
        ("CREATE TABLE x AS SELECT 1", "only SELECT"),
        ("SELECT * FROM regions_v7", "version 7"),
        ("SELEC nonsense", "does not parse|Parser"),
    ],
)
def test_user_sql_is_read_only_and_cannot_reach_files(tmp_path, query, message):
    ds = annostore.open(str(tmp_path / "store")).create_dataset("pets")
    ds.commit(boxes(2))
    with pytest.raises(annostore.QueryError, match=message):
        ds.sql(query)
    assert not (tmp_path / "annostore-leak.csv").exists()


def test_sql_cannot_read_another_datasets_files(tmp_path):
    store = annostore.open(str(tmp_path / "store"))
    secret = store.create_dataset("secret").commit(boxes(2))
    path = (
        tmp_path
        / "store"
        / "datasets"
        / "secret"
        / secret.manifest.tables["tasks"].fragments[0].path
    )
    ds = store.create_dataset("pets")
    ds.commit(boxes(1))
    with pytest.raises(annostore.QueryError, match="Permission"):
        ds.sql(f"SELECT * FROM read_parquet('{path}')")


def test_sql_checks_sha256_before_reading(tmp_path):
    store = annostore.open(str(tmp_path / "store"))
    version = store.create_dataset("pets").commit(boxes(3))
    fragment = version.manifest.tables["regions"].fragments[0]
    path = tmp_path / "store" / "datasets" / "pets" / fragment.path
    data = bytearray(path.read_bytes())
    data[100] ^= 0x40
    path.write_bytes(bytes(data))
    from annostore import _query_files

    _query_files.forget()
    with pytest.raises(annostore.CorruptionError):
        store.dataset("pets").sql("SELECT count(*) FROM regions")


def test_sql_on_any_store_checks_sha256_and_reads_only_its_own_version(store_spec):
    """A remote store's files are checked once downloaded; a query of one dataset cannot
    read the local copy of another's."""
    url, options = store_spec
    store = annostore.open(url, storage_options=options)
    secret = store.create_dataset("secret")
    secret.commit(boxes(2))
    assert secret.sql("SELECT count(*) AS n FROM regions").to_pylist() == [{"n": 4}]
    ds = store.create_dataset("pets")
    ds.commit(boxes(1, label="dog"))
    copy = query_files(
        store._storage, secret._folder, secret.version().manifest.tables["regions"].fragments
    )[0]
    with pytest.raises(annostore.QueryError, match="Permission"):
        ds.sql(f"SELECT * FROM read_parquet('{copy}')")
    assert ds.sql("SELECT label FROM regions").column("label").to_pylist() == ["dog", "dog"]

    damaged = store.create_dataset("damaged")
    version = damaged.commit(boxes(3))
    fragment = version.manifest.tables["regions"].fragments[0]
    relative = f"{damaged._folder}/{fragment.path}"
    data = bytearray(store._storage.read_bytes(relative))
    data[100] ^= 0x40
    store._storage.write_whole(relative, bytes(data))
    with pytest.raises(annostore.CorruptionError, match=fragment.path.split("/")[-1]):
        damaged.sql("SELECT count(*) FROM regions")


def test_a_remote_stores_local_copies_are_removed_when_the_process_exits(tmp_path):
    script = """
import glob, os, sys, tempfile
import annostore
from helpers import boxes
ds = annostore.open("memory://copies").create_dataset("d")
ds.commit(boxes(3))
assert ds.sql("SELECT count(*) AS n FROM regions").to_pylist() == [{"n": 6}]
print(*glob.glob(os.path.join(tempfile.gettempdir(), "annostore-query-*", "*.parquet")))
"""
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).parent)}
    run = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    copies = run.stdout.split()
    assert len(copies) == 4 and all(c.startswith(str(tmp_path)) for c in copies)
    assert list(tmp_path.glob("annostore-query-*")) == []


def test_stats_count_what_a_user_asks(store):
    ds = store.create_dataset("pets")
    ds.commit(_labeled_round())
    stats = ds.stats()
    assert (stats["task_count"], stats["labeled_task_count"], stats["unlabeled_task_count"]) == (
        6,
        3,
        3,
    )
    assert stats["skipped_task_count"] == 1 and stats["background_task_count"] == 1
    assert stats["predicted_task_count"] == 1
    assert stats["region_count"] == 5
    assert stats["regions_per_label"] == {"cat": 2, "dog": 2, "outdoor": 1}
    assert stats["regions_per_label_by_kind"]["prediction"] == {"cat": 1}
    assert stats["regions_per_type"] == {"bbox": 3, "class": 1, "polygon": 1}
    assert stats["annotations_per_annotator"] == {"ana": 3, "ben": 2}
    assert stats["predictions_per_model_version"] == {"m1": 1}
    assert stats["tasks_per_split"] == {None: 3, "train": 2, "val": 1}
    assert stats["regions_per_labeled_task"] == {"min": 0, "median": 1.0, "max": 3}
    assert stats["box_count"] == 3 and stats["box_count_with_pixels"] == 3
    assert stats["box_width_px"] == {"min": 10.0, "median": 100.0, "max": 100.0}
    assert stats["labels_unused"] == ["bird"] and stats["labels_undefined"] == ["outdoor"]
    assert sorted(ds.labeled_tasks().column("task_id").to_pylist()) == ["t1", "t2", "t3"]
    assert sorted(ds.unlabeled_tasks().column("task_id").to_pylist()) == ["t4", "t5", "t6"]


def test_stats_are_computed_once_per_version_and_kept(store_spec, monkeypatch):
    url, options = store_spec
    store = annostore.open(url, storage_options=options)
    ds = store.create_dataset("pets")
    ds.commit(_labeled_round())
    first = ds.stats()
    verified = store.verify()
    assert verified.ok, verified.problems

    # Another process reading the store: the kept stats answer, nothing is scanned.
    def no_scan(*args, **kwargs):
        raise AssertionError("the version was scanned")

    monkeypatch.setattr("annostore.stats.open_version_connection", no_scan)
    again = annostore.open(url, storage_options=options).dataset("pets").stats()
    assert again == first and again["tasks_per_split"][None] == 3  # a None key survives
    with pytest.raises(AssertionError, match="scanned"):
        ds.stats(recompute=True)
    monkeypatch.undo()

    # A damaged file is reported by verify, and recomputed (with a warning) when read.
    (path,) = [p for p, _, _ in store._storage.list_files("datasets/pets/stats")]
    data = store._storage.read_bytes(path).replace(b'"cat"', b'"cow"')
    store._storage.write_whole(path, data)
    assert [p.problem for p in store.verify().problems] == [
        "corrupted: stored stats do not match their sha256"
    ]
    with pytest.warns(UserWarning, match="do not match their sha256; recomputing"):
        assert ds.stats() == first
    assert store.verify().ok
    # Each version has its own.
    ds.commit_changes(
        deletes={
            "regions": ds.latest.tables.regions.slice(0, 1).select(["annotation_id", "region_id"])
        }
    )
    assert ds.stats()["region_count"] == first["region_count"] - 1
    assert ds.stats(1) == first


def test_stats_of_a_store_that_cannot_be_written_still_answer(tmp_path, monkeypatch):
    ds = annostore.open(str(tmp_path / "store")).create_dataset("pets")
    ds.commit(_labeled_round())

    def read_only(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(type(ds._storage), "write_whole", read_only)
    with pytest.warns(UserWarning, match="could not keep the stats of version 1"):
        assert ds.stats()["task_count"] == 6


def test_stats_are_kept_by_release_where_the_source_is_not_installed(tmp_path, monkeypatch):
    from annostore import _kept, _stats_store

    def no_source(self):
        raise FileNotFoundError(self)

    _stats_store.computation_id.cache_clear()
    monkeypatch.setattr(_kept.Path, "read_bytes", no_source)
    try:
        ds = annostore.open(str(tmp_path / "store")).create_dataset("pets")
        ds.commit(_labeled_round())
        assert ds.stats()["task_count"] == 6
        folder = tmp_path / "store" / "datasets" / "pets" / "stats"
        assert [p.name for p in folder.iterdir()] == [f"release-{annostore.__version__}"]
    finally:
        monkeypatch.undo()
        _stats_store.computation_id.cache_clear()


def test_gc_removes_stats_kept_by_another_computation(tmp_path):
    store = annostore.open(str(tmp_path / "store"))
    ds = store.create_dataset("pets")
    ds.commit(_labeled_round())
    ds.stats()
    folder = tmp_path / "store" / "datasets" / "pets" / "stats"
    (current,) = list(folder.iterdir())
    outdated = folder / "0123456789abcdef"
    outdated.mkdir()
    (outdated / f"{ds.latest.id}.json").write_text("{}")
    report = store.gc(grace_seconds=0)
    assert [p.rsplit("/", 2)[-2] for p in report.removed] == ["0123456789abcdef"]
    assert list(current.iterdir()) and store.verify().ok


def test_stats_of_an_empty_version():
    ds = annostore.open("memory://stats-empty").create_dataset("e")
    ds.commit(annostore.Tables())
    stats = ds.stats()
    assert (
        stats["task_count"] == 0
        and stats["labeled_task_count"] == 0
        and stats["regions_per_label"] == {}
    )


def test_cli_sql_and_stats(tmp_path):
    url = str(tmp_path / "store")
    annostore.open(url).create_dataset("pets").commit(_labeled_round())
    runner = CliRunner()
    result = runner.invoke(
        cli,
        [
            "--store",
            url,
            "sql",
            "SELECT task_id, split FROM tasks ORDER BY 1 LIMIT 2",
            "--dataset",
            "pets",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"task_id": "t1", "split": "train"},
        {"task_id": "t2", "split": "train"},
    ]
    csv_out = runner.invoke(
        cli,
        [
            "--store",
            url,
            "sql",
            "SELECT count(*) AS n FROM regions",
            "--dataset",
            "pets@1",
            "--format",
            "csv",
        ],
    )
    assert csv_out.stdout == "n\n5\n"
    bad = runner.invoke(cli, ["--store", url, "sql", "DELETE FROM tasks", "--dataset", "pets"])
    assert bad.exit_code == 1 and bad.stderr.startswith("error: only SELECT queries are allowed")
    stats = json.loads(runner.invoke(cli, ["--store", url, "stats", "pets", "--json"]).stdout)
    assert {
        "task_count",
        "labeled_task_count",
        "unlabeled_task_count",
        "region_count",
        "regions_per_label",
    } <= set(stats)
    assert stats["labeled_task_count"] == 3


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '{tmp}/annostore-copy.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "ATTACH '{tmp}/annostore-attach.db' AS other",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SET allowed_paths = ['/']",
        "RESET lock_configuration",
    ],
)
def test_the_connection_itself_is_locked_down(tmp_path, statement):
    """Defense in depth: even a statement that got past the SELECT-only check is refused
    by DuckDB's own configuration."""
    import duckdb

    from annostore.query import open_version_connection

    ds = annostore.open(str(tmp_path / "store")).create_dataset("pets")
    version = ds.commit(boxes(2))
    con = open_version_connection(ds, version.manifest)
    try:
        with pytest.raises(duckdb.Error):
            con.execute(statement.format(tmp=tmp_path)).fetchall()
        assert con.sql("SELECT count(*) FROM regions").fetchall() == [(4,)]
    finally:
        con.close()
    assert not (tmp_path / "annostore-copy.csv").exists()
    assert not (tmp_path / "annostore-attach.db").exists()


def _spread(values: list) -> dict:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@settings(max_examples=60, deadline=None)
@given(state=tables())
def test_stats_agree_with_counting_the_rows_in_python(state):
    ds = annostore.open(f"memory://stats-{uuid.uuid4().hex}").create_dataset("d")
    stats = ds.commit(state).stats()
    tasks = state.tasks.to_pylist()
    annotations = {a["annotation_id"]: a for a in state.annotations.to_pylist()}
    regions = state.regions.to_pylist()
    size = {t["task_id"]: (t["width"], t["height"]) for t in tasks}

    def labeled(a):
        return a["kind"] == "annotation" and not a["cancelled"]

    per_task = {t["task_id"]: [] for t in tasks}
    for a in annotations.values():
        per_task[a["task_id"]].append(a)
    counted = Counter(
        annotations[r["annotation_id"]]["task_id"]
        for r in regions
        if labeled(annotations[r["annotation_id"]])
    )
    labeled_tasks = [t for t, owned in per_task.items() if any(map(labeled, owned))]
    assert stats["labeled_task_count"] == len(labeled_tasks)
    assert stats["unlabeled_task_count"] == len(tasks) - len(labeled_tasks)
    assert stats["skipped_task_count"] == sum(
        1
        for t, owned in per_task.items()
        if t not in labeled_tasks
        and any(a["kind"] == "annotation" and a["cancelled"] for a in owned)
    )
    assert stats["predicted_task_count"] == sum(
        1 for owned in per_task.values() if any(a["kind"] == "prediction" for a in owned)
    )
    assert stats["background_task_count"] == sum(1 for t in labeled_tasks if not counted[t])
    assert stats["regions_per_labeled_task"] == _spread([counted[t] for t in labeled_tasks])
    assert stats["regions_per_label"] == Counter(r["label"] for r in regions)
    assert stats["regions_per_type"] == Counter(r["type"] for r in regions)
    by_kind = {"annotation": Counter(), "prediction": Counter()}
    for r in regions:
        by_kind[annotations[r["annotation_id"]]["kind"]][r["label"]] += 1
    assert stats["regions_per_label_by_kind"] == by_kind
    assert stats["annotations_per_annotator"] == Counter(
        a["annotator"] for a in annotations.values() if a["kind"] == "annotation"
    )
    assert stats["predictions_per_model_version"] == Counter(
        a["model_version"] for a in annotations.values() if a["kind"] == "prediction"
    )
    assert stats["tasks_per_split"] == Counter(t["split"] for t in tasks)
    boxes_ = [r for r in regions if r["type"] == "bbox"]
    width_px = [
        r["w"] * size[annotations[r["annotation_id"]]["task_id"]][0]
        for r in boxes_
        if r["w"] is not None and size[annotations[r["annotation_id"]]["task_id"]][0] is not None
    ]
    assert stats["box_count"] == len(boxes_)
    assert stats["box_count_with_pixels"] == len(width_px)
    for key, values in (
        ("box_width", [r["w"] for r in boxes_ if r["w"] is not None]),
        ("box_width_px", width_px),
    ):
        expected = _spread(values)
        assert (stats[key]["min"], stats[key]["max"]) == (expected["min"], expected["max"])
        if expected["median"] is not None and math.isfinite(expected["median"]):
            assert stats[key]["median"] == pytest.approx(expected["median"], rel=1e-9, abs=1e-300)
    defined = set(state.labels.column("label").to_pylist())
    used = {r["label"] for r in regions}
    assert stats["labels_unused"] == sorted(defined - used)
    assert stats["labels_undefined"] == sorted(used - defined - {None})


@settings(max_examples=40, deadline=None)
@given(state=tables())
def test_the_regions_view_gives_each_region_its_task_and_pixels_once(state):
    version = annostore.open(f"memory://view-{uuid.uuid4().hex}").create_dataset("d").commit(state)
    tasks = {t["task_id"]: t for t in state.tasks.to_pylist()}
    owner = {a["annotation_id"]: a["task_id"] for a in state.annotations.to_pylist()}
    expected = sorted(
        (
            r["annotation_id"],
            r["region_id"],
            owner[r["annotation_id"]],
            None
            if r["w"] is None or tasks[owner[r["annotation_id"]]]["width"] is None
            else r["w"] * tasks[owner[r["annotation_id"]]]["width"],
        )
        for r in state.regions.to_pylist()
    )
    rows = version.sql("SELECT annotation_id, region_id, task_id, w_px FROM regions").to_pylist()
    found = sorted((r["annotation_id"], r["region_id"], r["task_id"], r["w_px"]) for r in rows)
    assert found == expected
    assert version.sql("SELECT count(*) AS n FROM regions").column("n")[0].as_py() == len(expected)


def test_queries_of_many_versions_each_see_their_own_version(store):
    """Connections are kept per version (a query pays for a cursor, not for new views):
    whatever was queried before, each answer is that version's, also past the number
    kept and from several threads at once."""
    ds = store.create_dataset("pets")
    counts = {}
    for n in range(1, 11):
        version = ds.commit(boxes(n, label=f"l{n}"))
        counts[version.number] = n
    query = "SELECT label, count(*) AS n FROM regions GROUP BY 1"
    for _ in range(2):
        for number, tasks in counts.items():
            rows = ds.sql(query, version=number).to_pylist()
            assert rows == [{"label": f"l{tasks}", "n": 2 * tasks}]
    both = ds.sql(
        "SELECT (SELECT count(*) FROM regions) AS now, (SELECT count(*) FROM regions_v3) AS then"
    ).to_pylist()
    assert both == [{"now": 20, "then": 6}]

    def label_of(number: int) -> str:
        return ds.sql("SELECT any_value(label) AS l FROM regions", version=number)["l"][0].as_py()

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(pool.map(label_of, [1, 2, 3, 4] * 5))
    assert found == [f"l{n}" for n in [1, 2, 3, 4] * 5]


def test_a_version_with_empty_tables_answers_queries():
    ds = annostore.open(f"memory://empty-{uuid.uuid4().hex}").create_dataset("d")
    version = ds.commit(annostore.Tables.from_pylist(tasks=[{"task_id": "t1"}]))
    assert version.sql("SELECT count(*) AS n FROM regions").to_pylist() == [{"n": 0}]
    assert version.sql("SELECT task_id FROM tasks").to_pylist() == [{"task_id": "t1"}]
