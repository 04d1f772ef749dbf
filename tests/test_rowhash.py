"""Row hashes: a commit that changes only the shape of a nested value is not lost.

DuckDB hashes a list as the combination of its elements' hashes, so a null list, an empty
list and ``[null]`` hash alike, as do ``[[1.0], [2.0]]`` and ``[[1.0, 2.0]]``. A commit that
compared plain hashes kept the old row and dropped the user's change without a word.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

import annostore
from annostore import _commit, _fragments, _rowhash, diff
from annostore._fragments import clear_cache
from annostore.schemas import arrow_schema

TASKS = [{"task_id": "t"}]
ANNOTATIONS = [{"annotation_id": "a", "task_id": "t"}]

# Pairs of values of one column that DuckDB's hash() of the whole row cannot tell apart.
REGION_PAIRS = [
    ("polygons", None, []),
    ("polygons", [], [[]]),
    ("polygons", [[]], [None]),
    ("polygons", None, [None]),
    ("polygons", [[1.0], [2.0]], [[1.0, 2.0]]),
    ("polygons", [[1.0, 2.0], []], [[1.0, 2.0]]),
    ("keypoints", None, []),
    ("keypoints", [], [None]),
    ("mask", None, {"size": None, "counts": None}),
    ("mask", {"size": None, "counts": None}, {"size": [], "counts": None}),
]
LABEL_PAIRS = [
    ("keypoint_names", None, []),
    ("skeleton", None, []),
    ("skeleton", [[1], [2]], [[1, 2]]),
]


def _state(regions=(), labels=()) -> annostore.Tables:
    # Built from Arrow: the record models refuse null inner lists, Arrow tables may hold them.
    base = annostore.Tables.from_pylist(tasks=TASKS, annotations=ANNOTATIONS)
    return annostore.Tables(
        tasks=base.tasks,
        annotations=base.annotations,
        regions=pa.Table.from_pylist(list(regions), arrow_schema("regions")),
        labels=pa.Table.from_pylist(list(labels), arrow_schema("labels")),
    )


def _region(column, value):
    return {"annotation_id": "a", "region_id": "r", "type": "polygon", column: value}


def _commit_both(first, second):
    store = annostore.open(f"memory://rowhash-{uuid.uuid4().hex}")
    ds = store.create_dataset("d")
    v1 = ds.commit(first)
    v2 = ds.commit(second)
    clear_cache()
    return ds, v1, v2


@pytest.mark.parametrize(
    ("column", "before", "after"), REGION_PAIRS + [(c, b, a) for c, a, b in REGION_PAIRS]
)
def test_a_region_change_of_shape_alone_is_committed(column, before, after):
    ds, v1, v2 = _commit_both(
        _state(regions=[_region(column, before)]), _state(regions=[_region(column, after)])
    )
    assert v2.number == v1.number + 1
    assert v2.changes["regions"]["updated"] == 1
    assert ds.version(v2.number).tables.regions.column(column).to_pylist() == [after]
    assert ds.version(v1.number).tables.regions.column(column).to_pylist() == [before]


@pytest.mark.parametrize(("column", "before", "after"), LABEL_PAIRS)
def test_a_label_change_of_shape_alone_is_committed(column, before, after):
    ds, _, v2 = _commit_both(
        _state(labels=[{"label": "cat", column: before}]),
        _state(labels=[{"label": "cat", column: after}]),
    )
    assert ds.version(v2.number).tables.labels.column(column).to_pylist() == [after]


def test_the_same_nested_values_make_no_new_version():
    state = _state(regions=[_region("polygons", [[1.0, 2.0], [], None])])
    _, v1, v2 = _commit_both(state, state)
    assert v2.number == v1.number


def test_fragments_hashed_the_old_way_are_rehashed_before_comparing(monkeypatch):
    """A store written before the shape terms existed still takes the change."""

    def plain_hash(table, prefix=""):
        from annostore.schemas import COLUMNS

        return "hash(" + ", ".join(f'{prefix}"{c.name}"' for c in COLUMNS[table]) + ")"

    store = annostore.open(f"memory://rowhash-{uuid.uuid4().hex}")
    ds = store.create_dataset("d")
    current = _rowhash.row_hash_check()
    with monkeypatch.context() as old:
        for module in (_commit, _fragments, diff):
            old.setattr(module, "row_hash_expression", plain_hash)
        old.setattr(_rowhash, "_check", current + 1)
        v1 = ds.commit(_state(regions=[_region("polygons", None)]))
    clear_cache()
    assert ds.version(v1.number).manifest.tables["regions"].fragments[0].row_hash != current

    # Unchanged rows are recognised as unchanged, hashed either way.
    assert ds.commit(_state(regions=[_region("polygons", None)])).number == v1.number
    v2 = ds.commit(_state(regions=[_region("polygons", [])]))
    clear_cache()
    assert v2.number == v1.number + 1
    assert ds.version(v2.number).tables.regions.column("polygons").to_pylist() == [[]]
    assert ds.diff(v1.number, v2.number).regions_changed == 1
