"""Diffs between versions: counts, fields, label changes, IoU, labeled tasks, label set."""

from __future__ import annotations

import json
import uuid
from unittest import mock

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from strategies import tables

import annostore
from annostore.cli import cli
from annostore.schemas import KEYS


def _round(regions, annotations=None, labels=("cat", "dog")) -> annostore.Tables:
    tasks = [{"task_id": f"t{i}", "width": 100, "height": 100} for i in range(1, 5)]
    annotations = annotations or [
        {"annotation_id": "a1", "task_id": "t1"},
        {"annotation_id": "a2", "task_id": "t2"},
        {"annotation_id": "a3", "task_id": "t3"},
    ]
    return annostore.Tables.from_pylist(
        tasks=tasks,
        annotations=annotations,
        regions=regions,
        labels=[{"label": name} for name in labels],
    )


def _box(annotation, region, label, x, y=0.1, w=0.2, h=0.2):
    return {
        "annotation_id": annotation,
        "region_id": region,
        "type": "bbox",
        "label": label,
        "x": x,
        "y": y,
        "w": w,
        "h": h,
    }


def test_a_review_round_is_described_field_by_field(store):
    ds = store.create_dataset("pets")
    ds.commit(
        _round(
            [
                _box("a1", "r1", "cat", 0.1),  # moved
                _box("a1", "r2", "cat", 0.5),  # relabeled
                _box("a2", "r1", "dog", 0.3),  # removed
                _box("a3", "r1", "dog", 0.6),  # unchanged
            ]
        )
    )
    ds.commit(
        _round(
            [
                _box("a1", "r1", "cat", 0.15),
                _box("a1", "r2", "dog", 0.5),
                _box("a3", "r1", "dog", 0.6),
                _box("a4", "r1", "bird", 0.2),  # added, on a newly labeled task
            ],
            annotations=[
                {"annotation_id": "a1", "task_id": "t1"},
                {"annotation_id": "a2", "task_id": "t2", "cancelled": True},  # t2 skipped now
                {"annotation_id": "a3", "task_id": "t3"},
                {"annotation_id": "a4", "task_id": "t4"},
            ],
            labels=("cat", "dog", "bird"),
        )
    )
    diff = ds.diff(1, 2)
    summary = diff.to_dict()
    assert (
        summary["regions_added"],
        summary["regions_removed"],
        summary["regions_changed"],
        summary["regions_unchanged"],
    ) == (1, 1, 2, 1)
    assert summary["region_fields_changed"] == {"label": 1, "x": 1}
    assert summary["label_changes"] == [{"from": "cat", "to": "dog", "count": 1}]
    moved = next(
        r for r in diff.regions.to_pylist() if (r["annotation_id"], r["region_id"]) == ("a1", "r1")
    )
    assert moved["status"] == "changed" and moved["fields"] == ["x"] and moved["task_id"] == "t1"
    assert moved["iou"] == pytest.approx((0.15 * 0.2) / (2 * 0.04 - 0.15 * 0.2))
    assert diff.tasks_newly_labeled == ["t4"] and diff.tasks_newly_unlabeled == ["t2"]
    assert (summary["annotations_added"], summary["annotations_changed"]) == (1, 1)
    assert summary["labels_added"] == ["bird"] and summary["labels_removed"] == []
    # The other direction mirrors it.
    back = ds.diff(2, 1).to_dict()
    assert (back["regions_added"], back["regions_removed"], back["regions_changed"]) == (1, 1, 2)
    assert back["label_changes"] == [{"from": "dog", "to": "cat", "count": 1}]
    assert back["tasks_newly_labeled"] == 1 and back["labels_removed"] == ["bird"]


def test_a_diff_across_several_commits_and_a_compaction_reads_only_the_changes(store):
    ds = store.create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1), _box("a2", "r1", "dog", 0.3)]))
    ds.commit(_round([_box("a1", "r1", "dog", 0.1), _box("a2", "r1", "dog", 0.3)]))
    ds.commit(_round([_box("a1", "r1", "bird", 0.2), _box("a2", "r1", "dog", 0.3)]))
    ds.commit_changes(upserts={"regions": _round([_box("a3", "r1", "cat", 0.5)]).regions})
    compacted = ds.compact().number

    # The rows come from the commits' changesets and the fragments they wrote: comparing
    # the versions' files is never needed, even across the compaction.
    with mock.patch("annostore.diff._compared_rows", side_effect=AssertionError("files compared")):
        for newer in (3, compacted):
            diff = ds.diff(1, newer)
            rows = {(r["annotation_id"], r["region_id"]): r for r in diff.regions.to_pylist()}
            # a1/r1 was changed twice: the newest row is the one compared
            assert rows[("a1", "r1")]["label_b"] == "bird"
            assert rows[("a1", "r1")]["fields"] == ["label", "x"]
            assert diff.label_changes == [{"from": "cat", "to": "bird", "count": 1}]
        assert rows[("a3", "r1")]["status"] == "added" and rows[("a3", "r1")]["task_id"] == "t3"
        assert ("a2", "r1") not in rows
        back = ds.diff(compacted, 1)
        assert back.label_changes == [{"from": "bird", "to": "cat", "count": 1}]
        assert back.regions_removed == 1


def test_boxes_with_content_derived_ids_are_paired_by_iou(store):
    ds = store.create_dataset("yolo")
    ds.commit(_round([_box("a1", "h-aaaa", "cat", 0.10), _box("a2", "h-bbbb", "dog", 0.5)]))
    ds.commit(_round([_box("a1", "h-cccc", "cat", 0.12), _box("a2", "h-dddd", "dog", 0.9)]))
    paired = ds.diff(1, 2)
    summary = paired.to_dict()
    assert summary["regions_paired_by_iou"] == 1
    assert (summary["regions_changed"], summary["regions_added"], summary["regions_removed"]) == (
        1,
        1,
        1,
    )
    row = next(r for r in paired.regions.to_pylist() if r["status"] == "changed")
    assert (row["region_id"], row["paired_region_id"]) == ("h-aaaa", "h-cccc")
    assert row["iou"] == pytest.approx(0.18 * 0.2 / (0.08 - 0.18 * 0.2))
    unpaired = ds.diff(1, 2, iou_threshold=None).to_dict()
    assert (
        unpaired["regions_changed"],
        unpaired["regions_added"],
        unpaired["regions_removed"],
    ) == (0, 2, 2)
    strict = ds.diff(1, 2, iou_threshold=0.95).to_dict()
    assert strict["regions_paired_by_iou"] == 0


def _brute_force(a: annostore.Tables, b: annostore.Tables, table: str) -> tuple[int, int, int]:
    keys = KEYS[table]
    rows_a = {tuple(r[k] for k in keys): r for r in getattr(a, table).to_pylist()}
    rows_b = {tuple(r[k] for k in keys): r for r in getattr(b, table).to_pylist()}
    added = len(rows_b.keys() - rows_a.keys())
    removed = len(rows_a.keys() - rows_b.keys())
    changed = sum(1 for k in rows_a.keys() & rows_b.keys() if rows_a[k] != rows_b[k])
    return added, removed, changed


@given(
    states=st.lists(tables(max_tasks=5), min_size=2, max_size=4), compact_after=st.integers(0, 3)
)
def test_diff_counts_agree_with_a_brute_force_comparison(states, compact_after):
    ds = annostore.open(f"memory://diff-{uuid.uuid4().hex}", auto_compact=False).create_dataset("d")
    numbers = []
    for index, state in enumerate(states):
        numbers.append(ds.commit(state).number)
        if index == compact_after:
            ds.compact()
    for i, j in [(0, len(states) - 1), (len(states) - 1, 0), (0, 1)]:
        diff = ds.diff(numbers[i], numbers[j], iou_threshold=None)
        assert diff.regions is not None  # computed from the changesets (and kept) first
        # the same diff with its rows found by comparing the versions' files, not from the
        # changesets of the commits between them (nor read back from the store)
        with (
            mock.patch("annostore.diff.line_changes", return_value=None),
            mock.patch("annostore.diff.read_kept", return_value=None),
        ):
            by_files = ds.diff(numbers[i], numbers[j], iou_threshold=None)
            by_files_regions = by_files.regions
        assert diff.regions.equals(by_files_regions)
        assert diff.tasks_newly_labeled == by_files.tasks_newly_labeled
        assert diff.tasks_newly_unlabeled == by_files.tasks_newly_unlabeled
        for table in ("tasks", "annotations", "regions", "labels"):
            expected = _brute_force(states[i], states[j], table)
            got = diff.tables[table]
            assert (got.added, got.removed, got.changed) == expected, table
            assert got.unchanged == getattr(states[j], table).num_rows - expected[0] - expected[2]
            # the counts taken from the changesets agree with the row-by-row comparisons
            for compared in (diff._details.tables[table], by_files._details.tables[table]):
                assert (compared.added, compared.removed, compared.changed) == expected, table
            assert compared.rows.equals(diff._details.tables[table].rows), table
        # and the same diff read back from the store, where it was kept when computed
        with mock.patch("annostore.diff._compute_details", side_effect=AssertionError("computed")):
            kept = ds.diff(numbers[i], numbers[j], iou_threshold=None)
            assert kept.regions.equals(diff.regions) and kept.to_dict() == diff.to_dict()
            for table in ("tasks", "annotations", "regions", "labels"):
                assert kept.tables[table].rows.equals(diff.tables[table].rows), table


def test_cli_diff_json_and_parquet_output(tmp_path):
    url = str(tmp_path / "store")
    ds = annostore.open(url).create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1)]))
    ds.commit(_round([_box("a1", "r1", "dog", 0.1), _box("a2", "r1", "cat", 0.4)]))
    output = tmp_path / "changes.parquet"
    result = CliRunner().invoke(
        cli, ["--store", url, "diff", "pets", "1", "2", "--json", "--output", str(output)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {
        "regions_added",
        "regions_removed",
        "regions_changed",
        "regions_unchanged",
        "tasks_newly_labeled",
        "label_changes",
    } <= set(summary)
    assert summary["label_changes"] == [{"from": "cat", "to": "dog", "count": 1}]
    written = pq.read_table(output).to_pylist()
    assert sorted((r["annotation_id"], r["status"]) for r in written) == [
        ("a1", "changed"),
        ("a2", "added"),
    ]
    missing = CliRunner().invoke(cli, ["--store", url, "diff", "pets", "1", "9"])
    assert missing.exit_code == 1 and "has no version 9" in missing.stderr


def test_cli_diff_counts_come_from_the_changesets(tmp_path, monkeypatch):
    url = str(tmp_path / "store")
    ds = annostore.open(url).create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1), _box("a1", "r2", "cat", 0.5)]))
    ds.commit(_round([_box("a1", "r1", "dog", 0.1), _box("a2", "r1", "cat", 0.4)]))
    ds.commit(
        _round(
            [
                _box("a1", "r1", "dog", 0.1),
                _box("a2", "r1", "cat", 0.4),
                _box("a2", "r9", "cat", 0.2),
            ]
        )
    )

    # The counts need no row comparison: make any attempt fail.
    def no_rows(*args, **kwargs):
        raise AssertionError("rows were compared")

    monkeypatch.setattr("annostore.diff._compute_details", no_rows)
    result = CliRunner().invoke(
        cli, ["--store", url, "diff", "pets", "1", "3", "--counts", "--json"]
    )
    assert result.exit_code == 0, result.output
    regions = next(row for row in json.loads(result.stdout) if row["table"] == "regions")
    assert (regions["added"], regions["removed"], regions["changed"], regions["unchanged"]) == (
        2,
        1,
        1,
        0,
    )
    backwards = annostore.open(url).dataset("pets").diff(3, 1).tables["regions"]
    assert (backwards.added, backwards.removed, backwards.changed, backwards.unchanged) == (
        1,
        2,
        1,
        0,
    )


def test_a_diff_is_computed_once_per_pair_and_kept(store_spec, monkeypatch):
    """The details of a diff are kept in the store: another process asking for the same
    pair reads them (nothing compared); a damaged file is reported by verify and computed
    again; each IoU threshold and each direction is its own."""
    url, options = store_spec
    store = annostore.open(url, storage_options=options)
    ds = store.create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1), _box("a2", "r1", "dog", 0.3)]))
    ds.commit(_round([_box("a1", "r1", "dog", 0.1), _box("a3", "r1", "dog", 0.5)]))
    first = ds.diff(1, 2)
    summary, regions = first.to_dict(), first.regions
    assert store.verify().ok, store.verify().problems

    def no_compare(*args, **kwargs):
        raise AssertionError("the versions were compared")

    monkeypatch.setattr("annostore.diff._compute_details", no_compare)
    again = annostore.open(url, storage_options=options).dataset("pets").diff(1, 2)
    assert again.to_dict() == summary and again.regions.equals(regions)
    assert again.tables["regions"].fields_changed == {"label": 1}
    assert again.label_changes == [{"from": "cat", "to": "dog", "count": 1}]
    assert sorted(again.regions.column("status").to_pylist()) == ["added", "changed", "removed"]
    for a, b, threshold, again in ((2, 1, 0.5, 0), (1, 2, None, 0), (1, 2, 0.7, 0), (1, 2, 0.5, 1)):
        with pytest.raises(AssertionError, match="compared"):
            assert ds.diff(a, b, iou_threshold=threshold, recompute=bool(again)).regions
    if not options:  # (the S3 server's options do not go through --store)
        result = CliRunner().invoke(cli, ["--store", url, "diff", "pets", "1", "2", "--json"])
        assert (
            result.exit_code == 0
            and json.loads(result.stdout)["label_changes"] == summary["label_changes"]
        )
        result = CliRunner().invoke(cli, ["--store", url, "diff", "pets", "1", "2", "--recompute"])
        assert result.exit_code == 1 and "compared" in repr(result.exception)
    monkeypatch.undo()

    # A damaged file is reported by verify, and computed again (with a warning) when read.
    (path,) = [p for p, _, _ in store._storage.list_files("datasets/pets/diffs")]
    data = bytearray(store._storage.read_bytes(path))
    data[-5] ^= 0xFF
    store._storage.write_whole(path, bytes(data))
    assert [p.problem for p in store.verify().problems] == [
        "corrupted: the kept diff does not match its sha256"
    ]
    with pytest.warns(UserWarning, match="does not match its sha256; computing it again"):
        assert ds.diff(1, 2).to_dict() == summary
    assert store.verify().ok


def test_gc_removes_diffs_kept_by_another_computation(tmp_path):
    store = annostore.open(str(tmp_path / "store"))
    ds = store.create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1)]))
    ds.commit(_round([_box("a1", "r1", "dog", 0.1)]))
    assert ds.diff(1, 2).regions_changed == 1
    folder = tmp_path / "store" / "datasets" / "pets" / "diffs"
    (current,) = list(folder.iterdir())
    outdated = folder / "0123456789abcdef"
    outdated.mkdir()
    (outdated / "x-y-0.5.diff").write_text("{}")
    report = store.gc(grace_seconds=0)
    assert [p.rsplit("/", 2)[-2] for p in report.removed] == ["0123456789abcdef"]
    assert list(current.iterdir()) and store.verify().ok


def test_a_diff_of_a_store_that_cannot_be_written_still_answers(tmp_path, monkeypatch):
    ds = annostore.open(str(tmp_path / "store")).create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1)]))
    ds.commit(_round([_box("a1", "r1", "dog", 0.1)]))

    def read_only(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(type(ds._storage), "write_whole", read_only)
    with pytest.warns(UserWarning, match="could not keep the diff of versions 1 and 2"):
        assert ds.diff(1, 2).label_changes == [{"from": "cat", "to": "dog", "count": 1}]


def test_diffs_of_unchanged_tables_have_the_same_columns_as_diffs_of_changed_ones(store):
    ds = store.create_dataset("pets")
    ds.commit(_round([_box("a1", "r1", "cat", 0.1), _box("a2", "r1", "dog", 0.3)]))
    ds.commit(
        _round(
            [_box("a1", "r1", "dog", 0.2), _box("a3", "r1", "cat", 0.3)],
            annotations=[
                {"annotation_id": "a1", "task_id": "t1", "annotator": "ben"},
                {"annotation_id": "a3", "task_id": "t3"},
            ],
            labels=("cat", "dog", "bird"),
        )
    )
    state = ds.version(2).tables
    wider = state.tasks.set_column(
        state.tasks.schema.get_field_index("width"), "width", pa.array([200, 100, 100, 100])
    )
    ds.commit(annostore.Tables(wider, state.annotations, state.regions, state.labels))
    everything, only_tasks = ds.diff(1, 2), ds.diff(2, 3)
    assert only_tasks.tables["tasks"].changed == 1
    for name in ("annotations", "regions", "labels"):
        assert only_tasks.tables[name].rows.num_rows == 0 < everything.tables[name].rows.num_rows
    # rows of several diffs go into one table, whichever tables each changed
    for name in KEYS:
        together = pa.concat_tables([everything.tables[name].rows, only_tasks.tables[name].rows])
        assert together.num_rows == everything.tables[name].rows.num_rows + (name == "tasks")
    assert pa.concat_tables([everything.regions, only_tasks.regions]).num_rows == 3
