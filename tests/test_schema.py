"""The canonical model: one declaration, Arrow schemas, record validation, JSON Schema files."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest

import annostore
from annostore import schemas
from annostore.schemas._jsonschema import render_json_schemas

SCHEMA_DIR = Path(schemas.__file__).parent / "json"


def test_json_schema_files_match_the_python_definitions():
    rendered = render_json_schemas()
    on_disk = {
        path.name: path.read_text(encoding="utf-8") for path in SCHEMA_DIR.glob("*.schema.json")
    }
    assert on_disk == rendered, "schemas/json is stale: run python -m annostore.schemas"


def test_every_column_is_in_the_json_schema_with_its_arrow_type():
    for table, schema in schemas.json_schemas().items():
        properties = schema["properties"]
        assert list(properties) == [c.name for c in schemas.COLUMNS[table]]
        for column in schemas.COLUMNS[table]:
            assert properties[column.name]["x-arrow-type"] == str(column.type)
        assert schema["x-annostore-key"] == list(schemas.KEYS[table])
        assert set(schema.get("required", [])) == {
            c.name for c in schemas.COLUMNS[table] if not c.nullable and c.default is None
        }


def test_every_column_is_documented():
    page = (Path(__file__).resolve().parent.parent / "docs" / "data-model.md").read_text(
        encoding="utf-8"
    )
    for table, columns in schemas.COLUMNS.items():
        assert f"### {table}" in page
        for column in columns:
            assert f"| `{column.name}` | `{column.type}` |" in page, (
                f"{table}.{column.name} is not in docs/data-model.md"
            )


def test_design_columns_exist_with_their_types():
    regions = schemas.arrow_schema("regions")
    assert regions.field("polygons").type == pa.list_(pa.list_(pa.float64()))
    assert regions.field("x").type == pa.float64()
    assert regions.field("start").type == pa.int64()
    assert schemas.arrow_schema("tasks").field("width").type == pa.int32()
    assert schemas.arrow_schema("annotations").field("created_at").type == pa.timestamp(
        "us", tz="UTC"
    )


def test_tables_left_out_are_empty_and_columns_left_out_are_null():
    tables = annostore.Tables(tasks=pa.table({"task_id": ["a", "b"]}))
    assert tables.counts == {"tasks": 2, "annotations": 0, "regions": 0, "labels": 0}
    assert tables.tasks.schema.equals(schemas.arrow_schema("tasks"))
    assert tables.tasks.column("width").null_count == 2
    ann = annostore.Tables(
        tasks=pa.table({"task_id": ["a"]}),
        annotations=pa.table({"annotation_id": ["x"], "task_id": ["a"]}),
    ).annotations.to_pylist()[0]
    assert (ann["kind"], ann["ground_truth"], ann["cancelled"]) == ("annotation", False, False)


def test_compatible_types_are_cast():
    tables = annostore.Tables(
        tasks=pa.table(
            {
                "task_id": pa.array(["a"], pa.large_string()),
                "width": pa.array([640], pa.int64()),
                "height": pa.array([480], pa.int16()),
            }
        ),
        annotations=pa.table(
            {
                "annotation_id": ["x"],
                "task_id": ["a"],
                "created_at": pa.array([dt.datetime(2024, 5, 1, 12, 0)], pa.timestamp("s")),
            }
        ),
        regions=pa.table(
            {
                "annotation_id": ["x"],
                "region_id": ["1"],
                "type": ["bbox"],
                "x": pa.array([1], pa.int64()),
            }
        ),
    )
    assert tables.tasks.column("width").type == pa.int32()
    assert tables.regions.column("x").to_pylist() == [1.0]
    created = tables.annotations.column("created_at")[0].as_py()
    assert created == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tasks": pa.table({"uri": ["x"]})}, "tasks: missing column 'task_id'"),
        (
            {"tasks": pa.table({"task_id": ["a"], "width": ["wide"]})},
            "tasks.width: expected int32, got string",
        ),
        ({"tasks": pa.table({"task_id": ["a"], "width": [2**40]})}, "tasks.width: expected int32"),
        (
            {"tasks": pa.table({"task_id": ["a"], "width": [0]})},
            "tasks.width: expected values >= 1, got 0",
        ),
        (
            {"tasks": pa.table({"task_id": ["a", None]})},
            "tasks.task_id: expected a value, got null at row 1",
        ),
        (
            {"tasks": pa.table({"task_id": ["a"], "colour": ["red"]})},
            "tasks: unknown column 'colour'",
        ),
        (
            {"tasks": pa.table({"task_id": ["a", "a"]})},
            "tasks: duplicate key task_id='a' \\(2 rows\\)",
        ),
        (
            {
                "tasks": pa.table({"task_id": ["a"]}),
                "annotations": pa.table({"annotation_id": ["x"], "task_id": ["b"]}),
            },
            "annotations: row with task_id='b' points at an unknown task",
        ),
        (
            {"regions": pa.table({"annotation_id": ["x"], "region_id": ["1"], "type": ["bbox"]})},
            "regions: row with annotation_id='x' points at an unknown annotation",
        ),
        (
            {
                "tasks": pa.table({"task_id": ["a"]}),
                "annotations": pa.table(
                    {"annotation_id": ["x"], "task_id": ["a"], "kind": ["guess"]}
                ),
            },
            "annotations.kind: expected one of annotation, prediction, got 'guess'",
        ),
        (
            {
                "regions": pa.table(
                    {"annotation_id": ["x", "x"], "region_id": ["1", "1"], "type": ["bbox", "bbox"]}
                )
            },
            "regions: duplicate key annotation_id='x', region_id='1'",
        ),
        ({"labels": [1, 2]}, "labels: expected a pyarrow Table, got list"),
    ],
)
def test_nonconforming_tables_raise_schema_error(kwargs, message):
    with pytest.raises(annostore.SchemaError, match=message):
        annostore.Tables(**kwargs)


def test_duplicate_keys_are_found_among_ordered_rows():
    # ascending keys are unique without grouping; one repeat among them is still found
    ids = [f"a{n:04d}" for n in range(1000)]
    annostore.Tables(tasks=pa.table({"task_id": ids}))
    with pytest.raises(annostore.SchemaError, match="duplicate key task_id='a0500' \\(2 rows\\)"):
        annostore.Tables(tasks=pa.table({"task_id": ids[:501] + ids[500:]}))
    # ordered by the first key column, the second may go down: still unique
    regions = {"annotation_id": ["x", "x", "y"], "region_id": ["1", "2", "1"], "type": ["bbox"] * 3}
    assert (
        annostore.Tables(regions=pa.table(regions), check_references=False).counts["regions"] == 3
    )


def test_key_hash_collisions_are_not_duplicates(monkeypatch):
    # every key hashing alike: unique keys pass, a real repeat is still named
    monkeypatch.setattr("annostore._sql.KEY_HASH", "0")
    ids = [f"b{n}" for n in range(50)][::-1]  # descending: the grouping runs
    assert annostore.Tables(tasks=pa.table({"task_id": ids})).counts["tasks"] == 50
    with pytest.raises(annostore.SchemaError, match="duplicate key task_id='b7' \\(2 rows\\)"):
        annostore.Tables(tasks=pa.table({"task_id": [*ids, "b7"]}))


def test_references_can_be_left_unchecked_for_partial_rows():
    partial = annostore.Tables(
        regions=pa.table({"annotation_id": ["x"], "region_id": ["1"], "type": ["bbox"]}),
        check_references=False,
    )
    assert partial.counts["regions"] == 1


def test_from_pylist_validates_each_record():
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "a", "data": {"image": "a.jpg", "note": "ünïcode"}}],
        annotations=[
            {
                "annotation_id": "x",
                "task_id": "a",
                "created_at": "2024-05-01T12:00:00Z",
                "extra": "[1, 2]",
            }
        ],
        regions=[
            {
                "annotation_id": "x",
                "region_id": "1",
                "type": "mask",
                "mask": {"size": [4, 5], "counts": "abc"},
                "polygons": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]],
            }
        ],
        labels=[{"label": "cat", "keypoint_names": ["nose"], "skeleton": [[1, 2]]}],
    )
    task = tables.tasks.to_pylist()[0]
    assert json.loads(task["data"]) == {"image": "a.jpg", "note": "ünïcode"}
    region = tables.regions.to_pylist()[0]
    assert region["mask"] == {"size": [4, 5], "counts": "abc"}
    assert tables.annotations.column("extra")[0].as_py() == "[1, 2]"


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            {"tasks": [{"task_id": "a", "width": "wide"}]},
            r"tasks\[0\]\.width: expected int32, got 'wide'",
        ),
        ({"tasks": [{"task_id": "a"}, {"uri": "x"}]}, r"tasks\[1\]\.task_id: expected a value"),
        ({"tasks": [{"task_id": "a", "colour": "red"}]}, r"tasks\[0\]\.colour: unknown field"),
        ({"tasks": [{"task_id": "a", "data": "{not json"}]}, r"tasks\[0\]\.data: .*invalid JSON"),
        (
            {"regions": [{"annotation_id": "x", "region_id": "1", "type": "bbox", "x": "left"}]},
            r"regions\[0\]\.x: ",
        ),
        (
            {
                "regions": [
                    {"annotation_id": "x", "region_id": "1", "type": "mask", "mask": {"size": [1]}}
                ]
            },
            r"regions\[0\]\.mask",
        ),
    ],
)
def test_from_pylist_errors_name_the_record_and_field(records, message):
    with pytest.raises(annostore.SchemaError, match=message):
        annostore.Tables.from_pylist(**records, check_references=False)


def test_tables_equality_ignores_row_order():
    a = annostore.Tables(tasks=pa.table({"task_id": ["a", "b"]}))
    b = annostore.Tables(tasks=pa.table({"task_id": ["b", "a"]}))
    c = annostore.Tables(tasks=pa.table({"task_id": ["a", "c"]}))
    assert a == b and a != c
    with pytest.raises(AttributeError):
        a.tasks = c.tasks


def test_errors_form_one_tree():
    for name in annostore.errors.__all__:
        error = getattr(annostore, name)
        assert issubclass(error, annostore.AnnostoreError)
    assert issubclass(annostore.ParseError, annostore.SchemaError)
    assert issubclass(annostore.UnknownFormatError, annostore.NotFoundError)
    error = annostore.ParseError("labels/0001.txt", 3, "expected 5 values (class cx cy w h), got 4")
    assert str(error) == "labels/0001.txt:3: expected 5 values (class cx cy w h), got 4"
