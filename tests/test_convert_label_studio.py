"""Label Studio JSON: real exports and generated ones survive LS → tables → LS; every
result type lands in the right columns; conversions to COCO and YOLO avoid the mistakes
Label Studio's own converter makes."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import annostore
from annostore.converters._rle import encode_label_studio_rle

EXPORTS = [
    "test_export_csv/csv_test.json",
    "test_export_csv/csv_test2.json",
    "test_export_csv/csv_test_history.json",
    "test_export_json_min/data.json",
    "test_export_json_min/data_repeater.json",
    "test_export_yolo/data.json",
    "test_export_yolo/data_obb.json",
    "test_export_yolo/data_polygons.json",
]


def canonical(document: list) -> list:
    """The export with numbers compared as floats and list order aside. Keys Label Studio
    always writes (was_cancelled, ground_truth: false; predictions: []) count as present
    with those values when a hand-made file leaves them out; the writer writes them."""
    document = json.loads(json.dumps(document), parse_int=float)
    for task in document:
        task.setdefault("predictions", [])
        for key in ("annotations", "predictions", "completions"):
            if key in task:
                task[key] = sorted(task[key], key=lambda a: json.dumps(a.get("id")))
                for item in task[key]:
                    if key != "predictions":
                        item.setdefault("was_cancelled", False)
                        item.setdefault("ground_truth", False)
                    item["result"] = sorted(
                        item["result"], key=lambda r: json.dumps(r, sort_keys=True)
                    )
    return sorted(document, key=lambda t: json.dumps(t.get("id")))


def roundtrip(source: Path, target: Path) -> annostore.Report:
    tables, _ = annostore.read(source, "label-studio")
    return annostore.write(tables, target, "label-studio")


@pytest.mark.parametrize("name", EXPORTS)
def test_corpus_exports_survive_a_round_trip(corpus: Path, tmp_path: Path, name: str) -> None:
    source = corpus / "label-studio-converter" / name
    report = roundtrip(source, tmp_path / "out.json")
    assert report.lossless
    assert canonical(json.loads((tmp_path / "out.json").read_text())) == canonical(
        json.loads(source.read_text())
    )


def test_corpus_export_survives_the_store(corpus: Path, tmp_path: Path) -> None:
    source = corpus / "label-studio-converter/test_export_yolo/data_obb.json"
    tables, _ = annostore.read(source, "label-studio")
    dataset = annostore.open(tmp_path / "store").create_dataset("butterflies")
    version = dataset.commit(tables)
    annostore.write(version.tables, tmp_path / "out.json", "label-studio")
    assert canonical(json.loads((tmp_path / "out.json").read_text())) == canonical(
        json.loads(source.read_text())
    )


def test_rectangles_become_fractions_and_keep_rotation(corpus: Path) -> None:
    tables, _ = annostore.read(
        corpus / "label-studio-converter/test_export_yolo/data_obb.json", "label-studio"
    )
    region = next(r for r in tables.regions.to_pylist() if r["region_id"] == "veUGPaahTw")
    assert region["type"] == "bbox" and region["label"] == "Butterfly"
    assert region["rotation"] == pytest.approx(328.33240366032834)
    assert region["x"] == pytest.approx(0.10537066764905693)
    sizes = set(
        zip(
            tables.tasks.column("width").to_pylist(),
            tables.tasks.column("height").to_pylist(),
            strict=True,
        )
    )
    assert (597, 768) in sizes


def export(*tasks: dict) -> list[dict]:
    return list(tasks)


def rectangle(
    region_id: str, label: str, x: float = 10, rotation: float | None = None, **extra
) -> dict:
    value = {"x": x, "y": 20, "width": 30, "height": 40, "rectanglelabels": [label]}
    if rotation is not None:
        value["rotation"] = rotation
    return {
        "id": region_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": 200,
        "original_height": 100,
        "image_rotation": 0,
        "value": value,
        **extra,
    }


def test_every_result_type_lands_in_its_columns(tmp_path: Path) -> None:
    text = "Ann 👋 met Bob"  # a character outside the BMP: UTF-16 offsets differ
    alpha = bytes([0, 255, 255])
    rgba = bytearray(12)
    for channel in range(4):
        rgba[channel::4] = bytes(255 if a else 0 for a in alpha)
    document = export(
        {
            "id": 7,
            "data": {"image": "/data/upload/3/1a2b3c4d-cat%20photo.jpg", "text": text},
            "annotations": [
                {
                    "id": 11,
                    "completed_by": {"id": 5, "email": "ana@example.com"},
                    "was_cancelled": False,
                    "ground_truth": True,
                    "lead_time": 12.5,
                    "created_at": "2024-01-02T03:04:05.123456Z",
                    "updated_at": "2024-01-02T03:04:06Z",
                    "result": [
                        rectangle("box", "cat", rotation=15),
                        {
                            "id": "box",
                            "from_name": "transcription",
                            "to_name": "image",
                            "type": "textarea",
                            "value": {"text": ["a cat"]},
                        },
                        {
                            "id": "poly",
                            "from_name": "poly",
                            "to_name": "image",
                            "type": "polygonlabels",
                            "original_width": 200,
                            "original_height": 100,
                            "value": {
                                "points": [[10, 10], [20, 10], [20, 30]],
                                "polygonlabels": ["cat"],
                                "closed": True,
                            },
                        },
                        {
                            "id": "kp",
                            "from_name": "kp",
                            "to_name": "image",
                            "type": "keypointlabels",
                            "parentID": "box",
                            "original_width": 200,
                            "original_height": 100,
                            "value": {"x": 50, "y": 50, "width": 1, "keypointlabels": ["nose"]},
                        },
                        {
                            "id": "ell",
                            "from_name": "ell",
                            "to_name": "image",
                            "type": "ellipselabels",
                            "original_width": 200,
                            "original_height": 100,
                            "value": {
                                "x": 50,
                                "y": 50,
                                "radiusX": 10,
                                "radiusY": 5,
                                "rotation": 0,
                                "ellipselabels": ["cat"],
                            },
                        },
                        {
                            "id": "brush",
                            "from_name": "brush",
                            "to_name": "image",
                            "type": "brushlabels",
                            "original_width": 3,
                            "original_height": 1,
                            "value": {
                                "format": "rle",
                                "rle": encode_label_studio_rle(rgba),
                                "brushlabels": ["cat"],
                            },
                        },
                        {
                            "id": "ch",
                            "from_name": "mood",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": ["happy", "sleepy"]},
                        },
                        {
                            "id": "tx",
                            "from_name": "kind",
                            "to_name": "image",
                            "type": "taxonomy",
                            "value": {"taxonomy": [["animal", "cat"]]},
                        },
                        {
                            "id": "sp",
                            "from_name": "ner",
                            "to_name": "text",
                            "type": "labels",
                            "value": {"start": 11, "end": 14, "text": "Bob", "labels": ["PER"]},
                        },
                        {
                            "from_id": "box",
                            "to_id": "poly",
                            "type": "relation",
                            "direction": "right",
                            "labels": ["same"],
                        },
                        {
                            "id": "r1",
                            "from_name": "stars",
                            "to_name": "image",
                            "type": "rating",
                            "value": {"rating": 4},
                        },
                    ],
                }
            ],
            "predictions": [
                {
                    "id": 3,
                    "model_version": "yolo-v8",
                    "score": 0.8,
                    "result": [rectangle("p1", "cat", score=0.75)],
                }
            ],
        }
    )
    path = tmp_path / "export.json"
    path.write_text(json.dumps(document, ensure_ascii=False))
    tables, report = annostore.read(path, "label-studio")
    (task,) = tables.tasks.to_pylist()
    assert task["task_id"] == "7" and task["asset_key"] == "cat photo.jpg"
    assert (task["width"], task["height"]) == (200, 100) and task["text"] == text
    annotations = {a["annotation_id"]: a for a in tables.annotations.to_pylist()}
    assert annotations["11"]["annotator"] == "5" and annotations["11"]["ground_truth"]
    assert annotations["11"]["lead_time"] == 12.5
    assert annotations["prediction:3"]["kind"] == "prediction"
    assert (
        annotations["prediction:3"]["model_version"] == "yolo-v8"
        and annotations["prediction:3"]["score"] == 0.8
    )
    regions = {(r["annotation_id"], r["region_id"]): r for r in tables.regions.to_pylist()}
    box = regions[("11", "box")]
    assert (box["type"], box["x"], box["w"], box["rotation"]) == ("bbox", 0.1, 0.3, 15.0)
    transcription = regions[("11", "box#1")]
    assert (transcription["type"], transcription["value"], transcription["parent_id"]) == (
        "text",
        "a cat",
        "box",
    )
    assert regions[("11", "poly")]["polygons"] == [[0.1, 0.1, 0.2, 0.1, 0.2, 0.3]]
    keypoint = regions[("11", "kp")]
    assert keypoint["keypoints"] == [0.5, 0.5, 2.0] and keypoint["parent_id"] == "box"
    ellipse = regions[("11", "ell")]
    assert (ellipse["x"], ellipse["y"], ellipse["w"], ellipse["h"]) == (0.4, 0.45, 0.2, 0.1)
    brush = regions[("11", "brush")]
    assert brush["type"] == "mask" and brush["mask"]["size"] == [1, 3]
    assert brush["mask"]["counts"] == annostore.converters._rle.coco_counts_to_string([1, 2])
    assert [regions[("11", "ch")]["label"], regions[("11", "ch#1")]["label"]] == ["happy", "sleepy"]
    assert regions[("11", "tx")]["label"] == "cat"
    span = regions[("11", "sp")]
    assert (span["start"], span["end"], span["value"]) == (10, 13, "Bob")  # code points
    assert text[span["start"] : span["end"]] == "Bob"
    relation = regions[("11", "relation:box>poly")]
    assert (
        relation["type"] == "relation"
        and relation["parent_id"] == "box"
        and relation["label"] == "same"
    )
    assert regions[("11", "r1")]["type"] == "rating" and json.loads(
        regions[("11", "r1")]["value"]
    ) == {"rating": 4}
    assert regions[("prediction:3", "p1")]["score"] == 0.75
    assert report.lossless
    # and all of it goes back out unchanged
    annostore.write(tables, tmp_path / "out.json", "label-studio")
    assert canonical(json.loads((tmp_path / "out.json").read_text())) == canonical(document)


def test_legacy_completions_key(tmp_path: Path) -> None:
    document = [
        {
            "id": 1,
            "data": {"image": "a.jpg"},
            "completions": [{"id": 2, "result": [rectangle("b", "cat")]}],
        }
    ]
    (tmp_path / "old.json").write_text(json.dumps(document))
    tables, report = annostore.read(tmp_path / "old.json", "label-studio")
    assert tables.annotations.column("annotation_id").to_pylist() == ["2"]
    assert any("completions" in note for note in report.notes)
    annostore.write(tables, tmp_path / "out.json", "label-studio")
    assert canonical(json.loads((tmp_path / "out.json").read_text())) == canonical(document)


def two_annotator_export() -> list[dict]:
    return [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/abcdef12-a.jpg"},
            "annotations": [
                {
                    "id": 1,
                    "completed_by": 1,
                    "updated_at": "2024-01-01T00:00:00Z",
                    "result": [rectangle("old", "cat", x=10)],
                },
                {
                    "id": 2,
                    "completed_by": 2,
                    "updated_at": "2024-02-01T00:00:00Z",
                    "result": [
                        rectangle("new", "cat", x=50, rotation=90),
                        {
                            "id": "c",
                            "from_name": "mood",
                            "to_name": "image",
                            "type": "choices",
                            "value": {"choices": ["indoor"]},
                        },
                    ],
                },
            ],
            "predictions": [
                {"id": 9, "model_version": "m", "result": [rectangle("p", "dog", x=5, score=0.5)]}
            ],
        },
        {
            "id": 2,
            "data": {"image": "/data/upload/1/12345678-b.jpg"},
            "annotations": [{"id": 3, "completed_by": 1, "result": []}],
        },
        {"id": 3, "data": {"image": "/data/upload/1/87654321-c.jpg"}, "annotations": []},
    ]


def test_to_coco_the_latest_wins_once_and_rotation_is_done_in_pixels(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps(two_annotator_export()))
    report = annostore.convert(tmp_path / "export.json", tmp_path / "coco.json", to="coco")
    document = json.loads((tmp_path / "coco.json").read_text())
    # each image once; Label Studio knows no size for images without results, and COCO
    # needs one: those images are left out and the report says so (never silently)
    assert [i["file_name"] for i in document["images"]] == ["/data/upload/1/abcdef12-a.jpg"]
    assert (
        report.dropped[
            "images without a known width/height (COCO needs pixel sizes; pass image_root=<folder "
            "of the images> to read their headers)"
        ]
        == 2
    )
    (annotation,) = document["annotations"]
    # 200 × 100 image: a 60 × 40 px box at (100, 20) turned 90° clockwise → x 60..100, y 20..80
    assert annotation["bbox"] == pytest.approx([60.0, 20.0, 40.0, 60.0])
    assert [c["name"] for c in document["categories"]] == ["cat", "dog"]  # not "indoor"
    assert report.dropped["annotations not exported (policy latest)"] == 1
    assert report.dropped["predictions not exported (policy latest)"] == 1
    assert (
        report.approximated[
            "rotated boxes written as their axis-aligned envelope (COCO bbox has no rotation)"
        ]
        == 1
    )
    assert report.dropped["class regions (COCO has no place for them)"] == 1


def test_to_yolo_predictions_and_rotation(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps(two_annotator_export()))
    annostore.convert(tmp_path / "export.json", tmp_path / "preds", to="yolo", policy="predictions")
    label_files = sorted(
        p.relative_to(tmp_path / "preds").as_posix() for p in (tmp_path / "preds").rglob("*.txt")
    )
    assert "labels/a.txt" in label_files
    assert (
        tmp_path / "preds/labels/a.txt"
    ).read_text() == "1 0.2 0.4 0.3 0.4 0.5\n"  # dog, with its score
    annostore.convert(tmp_path / "export.json", tmp_path / "obb", to="yolo", variant="obb")
    corners = [float(v) for v in (tmp_path / "obb/labels/a.txt").read_text().split()[1:]]
    # corner (100, 20) px; width 60 px now points down, height 40 px points left
    assert corners == pytest.approx([0.5, 0.2, 0.5, 0.8, 0.3, 0.8, 0.3, 0.2])
    assert (tmp_path / "obb/labels/b.txt").read_bytes() == b""  # looked at, nothing there
    assert not (tmp_path / "obb/labels/c.txt").exists()  # never labeled


def test_annotator_policy(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps(two_annotator_export()))
    report = annostore.convert(
        tmp_path / "export.json",
        tmp_path / "one.json",
        to="coco",
        policy="annotator",
        annotator="1",
    )
    (annotation,) = json.loads((tmp_path / "one.json").read_text())["annotations"]
    assert annotation["bbox"] == pytest.approx([20.0, 20.0, 60.0, 40.0])
    assert report.options["policy"] == "annotator=1"
    annostore.convert(tmp_path / "export.json", tmp_path / "all", to="coco", policy="all")
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["1.json", "2.json"]


BAD_EXPORTS = [
    ('{"id": 1}', r"out.json: expected a JSON list of tasks"),
    ('[{"id": 1}]', r"out.json:\[0\]: missing key \"data\""),
    ('[{"id": 1, "data": {}}, {"id": 1, "data": {}}]', r"\[1\]: duplicate task id 1"),
    (
        '[{"id": 1, "data": {}, "annotations": [{"id": 1}]}]',
        r"\[0\].annotations\[0\]: \"result\" must be a list",
    ),
    (
        '[{"id": 1, "data": {}, "annotations": [{"id": 1, "result": [{"type": "rectanglelabels", "value": {"x": 1}}]}]}]',
        r"\[0\].annotations\[0\].result\[0\]: value needs finite numbers x, y, width, height",
    ),
    (
        '[{"id": 1, "data": {}, "annotations": [{"id": 1, "result": [{"type": "polygonlabels", "value": {"points": [[1, 2, 3]]}}]}]}]',
        r"result\[0\]: \"points\" must be a list of \[x, y\] pairs",
    ),
    (
        '[{"id": 1, "data": {}, "annotations": [{"id": 1, "lead_time": -3, "result": []}]}]',
        r"\"lead_time\" must be a finite number",
    ),
    (
        '[{"id": 1, "data": {}, "annotations": [{"id": 1, "result": [{"type": "labels", "value": {"start": 5, "end": 2}}]}]}]',
        r"a text span needs integer start ≤ end",
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_EXPORTS)
def test_bad_exports_name_file_record_and_problem(
    tmp_path: Path, content: str, message: str
) -> None:
    (tmp_path / "out.json").write_text(content)
    with pytest.raises(annostore.ParseError, match=message):
        annostore.read(tmp_path / "out.json", "label-studio")


def test_label_config_orders_and_colors_the_label_set(corpus: Path) -> None:
    folder = corpus / "label-studio-converter/test_export_json_min"
    tables, _ = annostore.read(
        folder / "data.json", "label-studio", label_config=str(folder / "label_config.xml")
    )
    labels = tables.labels.to_pylist()
    assert [(row["label"], row["label_id"], row["color"]) for row in labels] == [
        ("Airplane", 0, "red"),
        ("Car", 1, "blue"),
    ]
    assert "PolygonLabels" in tables.metadata["label-studio"]["label_config"]


# ---------------------------------------------------------------- generated exports

percent = st.floats(0, 100, allow_nan=False)


@st.composite
def exports(draw: st.DrawFn) -> list[dict]:
    tasks = []
    for task_id in draw(st.lists(st.integers(1, 10**6), min_size=1, max_size=4, unique=True)):
        annotations = []
        # annotation ids are unique across an export, as Label Studio's are
        for annotation_id in [task_id * 10 + k for k in range(draw(st.integers(0, 3)))]:
            results = []
            for index in range(draw(st.integers(0, 3))):
                kind = draw(st.sampled_from(["rect", "poly", "choice"]))
                if kind == "rect":
                    value = {
                        "x": draw(percent),
                        "y": draw(percent),
                        "width": draw(percent),
                        "height": draw(percent),
                        "rotation": draw(st.floats(0, 360)),
                        "rectanglelabels": [
                            draw(st.sampled_from(["cat", "dog", "a<b", "kid's toy"]))
                        ],
                    }
                    kind_name = "rectanglelabels"
                elif kind == "poly":
                    value = {
                        "points": draw(
                            st.lists(
                                st.lists(percent, min_size=2, max_size=2), min_size=3, max_size=6
                            )
                        ),
                        "polygonlabels": ["cat"],
                    }
                    kind_name = "polygonlabels"
                else:
                    value = {
                        "choices": draw(
                            st.lists(
                                st.sampled_from(["yes", "no", "maybe"]),
                                min_size=1,
                                max_size=2,
                                unique=True,
                            )
                        )
                    }
                    kind_name = "choices"
                results.append(
                    {
                        "id": f"r{annotation_id}-{index}",
                        "from_name": kind,
                        "to_name": "image",
                        "type": kind_name,
                        "original_width": 640,
                        "original_height": 480,
                        "value": value,
                    }
                )
            annotations.append(
                {
                    "id": annotation_id,
                    "completed_by": draw(st.integers(1, 3)),
                    "was_cancelled": draw(st.booleans()),
                    "ground_truth": False,
                    "lead_time": draw(st.floats(0, 1000)),
                    "result": results,
                }
            )
        tasks.append(
            {
                "id": task_id,
                "data": {"image": f"/data/upload/1/{task_id:08x}-x.jpg"},
                "annotations": annotations,
                "predictions": [],
            }
        )
    return tasks


@settings(max_examples=30, deadline=None)
@given(exports())
def test_generated_exports_round_trip(
    tmp_path_factory: pytest.TempPathFactory, document: list
) -> None:
    folder = tmp_path_factory.mktemp("ls")
    (folder / "in.json").write_text(json.dumps(document))
    with pytest.MonkeyPatch.context() as monkeypatch:
        first, general = _both_readings(folder / "in.json", monkeypatch)
    # the fast reading (maps, typed results) and the general one agree
    assert first.equals(general)
    annostore.write(first, folder / "out.json", "label-studio")
    assert canonical(json.loads((folder / "out.json").read_text())) == canonical(document)
    second, _ = annostore.read(folder / "out.json", "label-studio")
    assert first.equals(second)


def test_an_api_export_that_lists_predictions_by_id_reads_with_the_loss_reported(tmp_path):
    """Label Studio's export endpoint writes ``"predictions": [1]`` (ids, no content)."""
    path = tmp_path / "export.json"
    path.write_text(
        '[{"id": 1, "data": {"image": "a.jpg"}, "predictions": [7, 8], "annotations": '
        '[{"id": 3, "result": [], "was_cancelled": false}]}]'
    )
    tables, report = annostore.read(str(path), "label-studio")
    assert tables.annotations.column("annotation_id").to_pylist() == ["3"]
    assert report.dropped == {
        "predictions listed by id only (Label Studio's export API), not read": 2
    }


NULL_MEMBERS = [
    {
        "id": 1,
        "data": {"image": "a.jpg", "note": None},
        "meta": None,
        "annotations": [
            {
                "id": 2,
                "completed_by": None,
                "result": [rectangle("r1", "cat")],
                "parent_prediction": None,
                "lead_time": None,
                "was_cancelled": False,
            }
        ],
        "predictions": None,
    },
    {"data": {"image": "b.jpg"}, "completions": [{"result": [], "import_id": None}]},
]


def _both_readings(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    from annostore.converters import label_studio

    by_members, _ = annostore.read(path, "label-studio")
    with monkeypatch.context() as patch:
        patch.setattr(label_studio, "_READ_AS_MAPS", False)
        general, _ = annostore.read(path, "label-studio")
    return by_members, general


@pytest.mark.parametrize("name", EXPORTS)
def test_reading_tasks_as_maps_gives_what_the_general_reading_gives(
    corpus: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    by_members, general = _both_readings(corpus / "label-studio-converter" / name, monkeypatch)
    assert by_members.regions.num_rows > 0
    assert by_members.equals(general)


def test_null_members_read_alike_both_ways_and_survive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "in.json").write_text(json.dumps(NULL_MEMBERS))
    by_members, general = _both_readings(tmp_path / "in.json", monkeypatch)
    assert by_members.equals(general)
    annostore.write(by_members, tmp_path / "out.json", "label-studio")
    written = json.loads((tmp_path / "out.json").read_text())
    assert written[0]["meta"] is None and written[0]["data"]["note"] is None
    assert written[0]["annotations"][0]["parent_prediction"] is None


_ONE_BOX = [
    {
        "id": 1,
        "data": {"image": "a.png"},
        "annotations": [
            {
                "id": 2,
                "result": [
                    {
                        "id": "r",
                        "type": "rectanglelabels",
                        "from_name": "label",
                        "to_name": "image",
                        "original_width": 10,
                        "original_height": 10,
                        "value": {
                            "x": 1,
                            "y": 2,
                            "width": 3,
                            "height": 4,
                            "rectanglelabels": ["cat"],
                        },
                    }
                ],
            }
        ],
    }
]


def test_a_local_export_reads_as_the_same_bytes_from_memory_or_with_a_byte_order_mark(tmp_path):
    # a local file is handed to DuckDB in place; other sources (and a BOM) go through a copy
    text = json.dumps(_ONE_BOX).encode()
    (tmp_path / "plain.json").write_bytes(text)
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + text)
    fsspec.filesystem("memory").pipe("/ls-in-place/export.json", text)
    plain = annostore.read(tmp_path / "plain.json", "label-studio")[0]
    assert plain.regions.column("label").to_pylist() == ["cat"]
    for source in (tmp_path / "bom.json", "memory://ls-in-place/export.json"):
        other = annostore.read(source, "label-studio")[0]
        for name in ("tasks", "annotations", "regions", "labels"):
            assert other[name].equals(plain[name]), (source, name)


def test_an_export_whose_name_looks_like_a_glob_reads_only_itself(tmp_path):
    text = json.dumps(_ONE_BOX).encode()
    (tmp_path / "b*.json").write_bytes(text)
    (tmp_path / "bother.json").write_bytes(text)  # what b*.json would match as a pattern
    tables = annostore.read(tmp_path / "b*.json", "label-studio")[0]
    assert tables.tasks.num_rows == 1
    assert tables.regions.column("label").to_pylist() == ["cat"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (json.dumps(_ONE_BOX).encode()[:-30], r"cut.json:byte \d+: malformed JSON"),
        (b"", r"cut.json:byte 0: malformed JSON"),
    ],
)
def test_a_cut_or_empty_export_names_the_file_and_byte(tmp_path, content, message):
    (tmp_path / "cut.json").write_bytes(content)
    with pytest.raises(annostore.ParseError, match=message):
        annostore.read(tmp_path / "cut.json", "label-studio")


def test_running_out_of_memory_is_not_reported_as_malformed_json(tmp_path, monkeypatch):
    """A DuckDB memory limit hit while reading a valid export surfaces as out of memory
    (one line in the CLI), never as a ParseError blaming the file."""
    from click.testing import CliRunner

    from annostore import _sql
    from annostore.cli import cli

    tasks = [{**_ONE_BOX[0], "id": i} for i in range(20_000)]
    (tmp_path / "big.json").write_text(json.dumps(tasks))
    made = _sql._new_connection

    def limited():
        con = made()
        con.execute("SET memory_limit = '4MB'")
        return con

    monkeypatch.setattr(_sql, "_new_connection", limited)
    monkeypatch.setattr(_sql._local, "con", None, raising=False)
    with pytest.raises(Exception) as caught:
        annostore.read(tmp_path / "big.json", "label-studio")
    assert not isinstance(caught.value, annostore.ParseError)
    assert "memory" in str(caught.value).lower()

    result = CliRunner().invoke(
        cli, ["convert", str(tmp_path / "big.json"), str(tmp_path / "out.json"), "--to", "coco"]
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1].startswith("error: out of memory: failed to allocate")
    assert "Traceback" not in result.stderr and "malformed" not in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_regions_sorted_a_few_at_a_time_come_out_as_sorted_all_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's final regions query runs over ranges of annotations (a quarter million
    regions each at scale); with ranges of a few regions the tables are the same, in order."""
    from annostore.converters import label_studio

    def box(n: int, labels: list[str]) -> dict:
        return {
            "id": f"r{n}",
            "type": "rectanglelabels",
            "from_name": "label",
            "to_name": "image",
            "value": {"x": n, "y": 2, "width": 3, "height": 4, "rectanglelabels": labels},
        }

    tasks = [
        {
            "id": t,
            "data": {"image": f"{t}.png"},
            "annotations": [
                {
                    "id": 10 * t + a,
                    "result": [box(k, ["cat", "dog"][: 1 + k % 2]) for k in range(3)],
                }
                for a in range(2)
            ],
            "predictions": [{"model_version": "m", "result": [box(9, ["cat"])]}],
        }
        for t in range(7)
    ]
    (tmp_path / "export.json").write_text(json.dumps(tasks))
    whole, _ = annostore.read(tmp_path / "export.json", "label-studio")
    monkeypatch.setattr(label_studio, "_PASS_ROWS", 5)
    in_pieces, _ = annostore.read(tmp_path / "export.json", "label-studio")
    assert whole.regions.num_rows == 7 * (2 * 4 + 1)  # a region per label
    assert in_pieces.equals(whole)
    assert in_pieces.regions.to_pylist() == whole.regions.to_pylist()  # order included
