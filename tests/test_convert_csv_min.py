"""CSV (one row per region) and Label Studio's JSON_MIN and CSV exports."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from strategies import tables as canonical_tables

import annostore

SOURCES = [
    ("label-studio-converter/test_export_yolo/data_obb.json", "label-studio"),
    ("label-studio-converter/test_export_json_min/data_repeater.json", "label-studio"),
    ("datumaro/coco_dataset/coco_person_keypoints/annotations/person_keypoints_val.json", "coco"),
    ("datumaro/coco_dataset/coco_instances/annotations/instances_val.json", "coco"),
    ("label-studio-converter/test_import_yolo_data", "yolo"),
]


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    keys = [
        (name, "ascending")
        for name in a.column_names
        if name in ("task_id", "annotation_id", "region_id")
    ]
    return a.sort_by(keys).equals(b.sort_by(keys))


@pytest.mark.parametrize(("name", "fmt"), SOURCES)
def test_csv_keeps_tasks_annotations_and_regions(
    corpus: Path, tmp_path: Path, name: str, fmt: str
) -> None:
    tables, _ = annostore.read(corpus / name, fmt)
    report = annostore.write(tables, tmp_path / "out.csv", "csv")
    back, _ = annostore.read(tmp_path / "out.csv", "csv")
    for table in ("tasks", "annotations", "regions"):
        assert same_rows(back[table], tables[table]), table
    assert back.labels.column("label").to_pylist() == sorted(
        set(tables.regions.column("label").drop_null().to_pylist())
    )
    # what the CSV cannot hold is reported: the label set's ids and colors
    assert report.dropped.get(
        "label ids, colors and keypoint names (a CSV of regions has no label set)", 0
    ) == sum(
        1
        for row in tables.labels.to_pylist()
        if any(row[k] is not None for k in row if k != "label")
    )
    # and its own output round-trips byte for byte
    annostore.write(back, tmp_path / "again.csv", "csv")
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "out.csv").read_bytes()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(canonical_tables())
def test_generated_tables_survive_csv(
    tmp_path_factory: pytest.TempPathFactory, tables: annostore.Tables
) -> None:
    folder = tmp_path_factory.mktemp("csv")
    annostore.write(tables, folder / "out.csv", "csv")
    back, _ = annostore.read(folder / "out.csv", "csv")
    for table in ("tasks", "annotations", "regions"):
        assert same_rows(
            back[table].drop_columns(["asset_key"]) if table == "tasks" else back[table],
            tables[table].drop_columns(["asset_key"]) if table == "tasks" else tables[table],
        ), table


def test_hand_made_csv_in_pixels(tmp_path: Path) -> None:
    (tmp_path / "boxes.csv").write_text(
        "task_id,image,width,height,annotation_id,region_id,type,label,x_px,y_px,w_px,h_px\n"
        "1,a.jpg,200,100,a1,r1,bbox,cat,20,10,50,25\n"
        "2,b.jpg,200,100,,,,,,,,\n"
    )
    tables, _ = annostore.read(tmp_path / "boxes.csv")
    (region,) = tables.regions.to_pylist()
    assert (region["x"], region["y"], region["w"], region["h"]) == (0.1, 0.1, 0.25, 0.25)
    assert tables.tasks.num_rows == 2 and tables.annotations.num_rows == 1  # task 2 unlabeled


def test_image_names_that_do_not_url_decode_keep_their_text(tmp_path: Path) -> None:
    # "%80" decodes to a byte that is not UTF-8: the name is its own asset key, in every
    # reader that makes one (it used to stop the read with a DuckDB error)
    (tmp_path / "boxes.csv").write_text(
        "task_id,image\n1,%80.jpg\n2,/data/local-files/?d=cats/a%20b.jpg\n"
    )
    coco = {
        "images": [{"id": 1, "file_name": "%80.jpg", "width": 4, "height": 4}],
        "annotations": [],
        "categories": [{"id": 1, "name": "cat"}],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    (tmp_path / "ls.json").write_text(json.dumps([{"id": 1, "data": {"image": "%80.jpg"}}]))
    csv_tables, _ = annostore.read(tmp_path / "boxes.csv", "csv")
    assert csv_tables.tasks.column("asset_key").to_pylist() == ["%80.jpg", "cats/a b.jpg"]
    for name, fmt in (("coco.json", "coco"), ("ls.json", "label-studio")):
        tables, _ = annostore.read(tmp_path / name, fmt)
        assert tables.tasks.column("asset_key").to_pylist() == ["%80.jpg"], fmt


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("image\na.jpg\n", r"boxes.csv:header: missing column 'task_id'"),
        ("task_id,width\n1,wide\n", r"boxes.csv:2: width: expected an integer, got wide"),
        (
            "task_id,annotation_id,region_id,type,x\n1,a,r,bbox,left\n",
            r"boxes.csv:2: x: expected a number, got left",
        ),
        (
            "task_id,annotation_id,region_id,type,x\n1,a,r,bbox,nan\n",
            r"boxes.csv:2: x: expected a number, got nan",
        ),
        (
            'task_id,annotation_id,region_id,type,polygons\n1,a,r,polygon,"[[1,2"\n',
            r"boxes.csv:2: polygons: not JSON",
        ),
        ("task_id,label\n1,a,b\n", r"boxes.csv: not a readable CSV .*Expected 2 columns, got 3"),
        ("task_id,annotation_id,region_id\n1,a,r\n", r"boxes.csv:2: a region needs a type"),
        ("task_id,width\n1,0\n", r"boxes.csv:2: width: must be positive"),
    ],
)
def test_bad_csv_names_file_line_and_problem(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "boxes.csv").write_text(content)
    with pytest.raises(annostore.ParseError, match=message):
        annostore.read(tmp_path / "boxes.csv", "csv")


def test_label_studio_csv_export_is_read(corpus: Path) -> None:
    tables, report = annostore.read(
        corpus / "label-studio-converter/test_export_csv/csv_test2_result.csv"
    )
    assert report.format == "csv" and "read as Label Studio's CSV export" in report.notes
    (annotation,) = tables.annotations.to_pylist()
    assert (annotation["annotation_id"], annotation["task_id"], annotation["annotator"]) == (
        "9",
        "4",
        "test@heartex.com",
    )
    assert annotation["lead_time"] == 10.744
    data = json.loads(tables.tasks.column("data")[0].as_py())["data"]
    assert data["iswcs_1"] == ["T0022789485"] and data["title"] == "TAN BAI"


def test_json_min_round_trip_with_the_label_config(corpus: Path, tmp_path: Path) -> None:
    folder = corpus / "label-studio-converter/test_export_json_min"
    tables, _ = annostore.read(folder / "data.json", "label-studio")
    report = annostore.write(tables, tmp_path / "min.json", "label-studio-min")
    (record,) = json.loads((tmp_path / "min.json").read_text())
    assert (
        record["id"] == 87
        and record["annotation_id"] == 22
        and record["image"] == "/data/upload/29/example.png"
    )
    assert (
        record["label"][0]["polygonlabels"] == ["Airplane"]
        and record["label"][0]["original_width"] == 128
    )
    assert report.dropped["region ids (JSON_MIN has none; reading derives them from content)"] == 1
    back, _ = annostore.read(
        tmp_path / "min.json", "label-studio-min", label_config=str(folder / "label_config.xml")
    )
    assert (
        back.regions.column("polygons").to_pylist() == tables.regions.column("polygons").to_pylist()
    )
    annostore.write(back, tmp_path / "again.json", "label-studio-min")
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "min.json").read_bytes()


def test_json_min_collapses_single_choices_and_reports_what_it_leaves_out(tmp_path: Path) -> None:
    document = [
        {
            "id": 1,
            "data": {"text": "good film"},
            "annotations": [
                {
                    "id": 5,
                    "completed_by": 2,
                    "result": [
                        {
                            "id": "c",
                            "from_name": "sentiment",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": ["Positive"]},
                        }
                    ],
                },
                {"id": 6, "completed_by": 3, "was_cancelled": True, "result": []},
            ],
            "predictions": [{"id": 1, "model_version": "m", "result": []}],
        }
    ]
    (tmp_path / "export.json").write_text(json.dumps(document))
    report = annostore.convert(
        tmp_path / "export.json", tmp_path / "min.json", to="label-studio-min"
    )
    (record,) = json.loads((tmp_path / "min.json").read_text())
    assert (
        record["sentiment"] == "Positive"
        and record["text"] == "good film"
        and record["annotator"] == 2
    )
    assert report.dropped["predictions (JSON_MIN holds annotations only)"] == 1
    assert report.dropped["cancelled annotations (not in JSON_MIN)"] == 1
    (tmp_path / "config.xml").write_text(
        '<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
        '<Choice value="Positive"/><Choice value="Negative"/></Choices></View>'
    )
    back, _ = annostore.read(
        tmp_path / "min.json", "label-studio-min", label_config=str(tmp_path / "config.xml")
    )
    (region,) = back.regions.to_pylist()
    assert (region["type"], region["label"]) == ("class", "Positive")
    assert back.labels.column("label").to_pylist() == ["Positive", "Negative"]
    # without the config, a bare string cannot be told from task data, and the report says so
    plain, plain_report = annostore.read(tmp_path / "min.json", "label-studio-min")
    assert plain.regions.num_rows == 0 and any("label config" in n for n in plain_report.notes)
