"""COCO: real files and generated ones survive COCO → tables → COCO; what COCO cannot
hold is reported; bad input is a ParseError naming the file, the record and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from coco_strategies import any_pixels, coco_documents, same_coco
from hypothesis import given, settings
from hypothesis import strategies as st

import annostore
from annostore import converters

COCO_FILES = [
    "coco/annotations/captions_train.json",
    "coco/annotations/captions_val.json",
    "coco/annotations/image_info_train.json",
    "coco/annotations/instances_train.json",
    "coco/annotations/instances_val.json",
    "coco/annotations/labels_train.json",
    "coco/annotations/labels_val.json",
    "coco/annotations/person_keypoints_train.json",
    "coco/annotations/person_keypoints_val.json",
    "coco/annotations/stuff_train.json",
    "coco/annotations/stuff_val.json",
    "coco_roboflow/train/_annotations.coco.json",
    "coco_roboflow/val/_annotations.coco.json",
    "mmdet_coco/annotations/instances_val.json",
]


def write_json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document))
    return path


def roundtrip_file(source: Path, target: Path, **options: object) -> annostore.Report:
    tables, _ = annostore.read(source, "coco")
    return annostore.write(tables, target, "coco", **options)


@pytest.mark.parametrize("name", COCO_FILES)
def test_corpus_files_survive_a_round_trip(corpus: Path, tmp_path: Path, name: str) -> None:
    source = corpus / "datumaro" / "coco_dataset" / name
    report = roundtrip_file(source, tmp_path / "out.json")
    assert report.lossless
    assert same_coco(
        json.loads((tmp_path / "out.json").read_text()), json.loads(source.read_text())
    )


@pytest.mark.parametrize("name", COCO_FILES[:6])
def test_corpus_files_survive_the_store(corpus: Path, tmp_path: Path, name: str) -> None:
    source = corpus / "datumaro" / "coco_dataset" / name
    tables, _ = annostore.read(source)
    store = annostore.open(tmp_path / "store")
    version = store.create_dataset("d").commit(tables)
    assert version.tables.equals(tables)
    annostore.write(store.dataset("d").version("latest").tables, tmp_path / "out.json", "coco")
    assert same_coco(
        json.loads((tmp_path / "out.json").read_text()), json.loads(source.read_text())
    )


def test_panoptic_files_are_refused_clearly(corpus: Path) -> None:
    path = corpus / "datumaro/coco_dataset/coco_panoptic/annotations/panoptic_train.json"
    with pytest.raises(
        annostore.ParseError, match=r"panoptic_train.json:annotations\[0\]: COCO panoptic"
    ):
        annostore.read(path, "coco")


def test_regions_are_normalized_and_typed(corpus: Path) -> None:
    tables, _ = annostore.read(
        corpus / "datumaro/coco_dataset/coco_instances/annotations/instances_val.json"
    )
    rows = {r["region_id"]: r for r in tables.regions.to_pylist()}
    # image 40 is 5 wide and 10 high: bbox [0, 0, 1, 2] becomes 0.2 × 0.2
    assert rows["1"]["type"] == "polygon" and rows["1"]["w"] == 1 / 5 and rows["1"]["h"] == 2 / 10
    assert rows["1"]["polygons"] == [[0.0, 0.0, 0.2, 0.0, 0.2, 0.2, 0.0, 0.2]]
    assert rows["2"]["type"] == "mask" and rows["2"]["mask"]["size"] == [10, 5]
    assert json.loads(rows["1"]["extra"])["attributes"] == {"x": 1, "y": "hello"}
    assert tables.labels.column("label_id").to_pylist() == [1, 2, 4]


@settings(max_examples=40, deadline=None)
@given(coco_documents())
def test_generated_files_round_trip(
    tmp_path_factory: pytest.TempPathFactory, document: dict
) -> None:
    folder = tmp_path_factory.mktemp("coco")
    source = write_json(folder / "in.json", document)
    report = roundtrip_file(source, folder / "out.json")
    assert report.lossless, report.to_dict()
    assert same_coco(json.loads((folder / "out.json").read_text()), document)


@settings(max_examples=40, deadline=None)
@given(coco_documents(pixels=any_pixels))
def test_full_precision_values_round_trip(
    tmp_path_factory: pytest.TempPathFactory, document: dict
) -> None:
    """Every digit of full-precision pixel values survives (those the normalized float
    cannot give back are kept as read), and read → write → read gives the same tables."""
    folder = tmp_path_factory.mktemp("coco")
    first, _ = annostore.read(write_json(folder / "in.json", document), "coco")
    annostore.write(first, folder / "out.json", "coco")
    assert same_coco(json.loads((folder / "out.json").read_text()), document)
    second, _ = annostore.read(folder / "out.json", "coco")
    assert first.equals(second)


@settings(max_examples=15, deadline=None)
@given(coco_documents())
def test_output_loads_in_pycocotools(
    tmp_path_factory: pytest.TempPathFactory, document: dict
) -> None:
    coco_api = pytest.importorskip("pycocotools.coco")
    folder = tmp_path_factory.mktemp("coco")
    roundtrip_file(write_json(folder / "in.json", document), folder / "out.json")
    loaded = coco_api.COCO(str(folder / "out.json"))
    assert len(loaded.getAnnIds()) == len(document["annotations"])
    assert sorted(loaded.getCatIds()) == sorted(c["id"] for c in document["categories"])
    assert sorted(loaded.getImgIds()) == sorted(i["id"] for i in document["images"])


def read_both_ways(source: Path) -> tuple[annostore.Tables, annostore.Tables, int]:
    """A COCO file read with its lists cut out of the bytes (the fast route) and parsed
    whole; and how many times the fast route was taken."""
    from annostore.converters import coco

    taken = []
    real_split = coco.split_lists

    def counting_split(data: bytes, keys: tuple) -> object:
        found = real_split(data, keys)
        taken.append(found is not None)
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(coco, "split_lists", counting_split)
        fast, _ = annostore.read(source, "coco")
        patch.setattr(coco, "split_lists", lambda data, keys: None)
        whole, _ = annostore.read(source, "coco")
    return fast, whole, sum(taken)


@pytest.mark.parametrize("name", COCO_FILES)
def test_corpus_files_read_the_same_with_lists_cut_from_the_bytes(corpus: Path, name: str) -> None:
    fast, whole, taken = read_both_ways(corpus / "datumaro" / "coco_dataset" / name)
    assert taken == 1
    assert fast.equals(whole)
    assert fast.metadata == whole.metadata


@settings(max_examples=40, deadline=None)
@given(coco_documents(pixels=any_pixels), st.sampled_from([None, 1, 2]))
def test_generated_files_read_the_same_with_lists_cut_from_the_bytes(
    tmp_path_factory: pytest.TempPathFactory, document: dict, indent: int | None
) -> None:
    folder = tmp_path_factory.mktemp("coco")
    source = folder / "in.json"
    source.write_text(json.dumps(document, indent=indent, ensure_ascii=False))
    fast, whole, taken = read_both_ways(source)
    assert taken == 1
    assert fast.equals(whole)
    assert fast.metadata == whole.metadata


def detection_tables(annotations_per_task: int = 1) -> annostore.Tables:
    """Two 200 × 100 images; one human annotation per task (or several), one prediction."""
    tasks = [
        {"task_id": "t1", "uri": "a.jpg", "width": 200, "height": 100},
        {"task_id": "t2", "uri": "b.jpg", "width": 200, "height": 100},
        {"task_id": "t3", "uri": "c.jpg", "width": 200, "height": 100},
    ]
    annotations = []
    regions = []
    for n in range(annotations_per_task):
        annotation_id = f"ann{n}"
        annotations.append(
            {
                "annotation_id": annotation_id,
                "task_id": "t1",
                "annotator": f"person{n}",
                "updated_at": f"2026-01-0{n + 1}T00:00:00Z",
            }
        )
        regions.append(
            {
                "annotation_id": annotation_id,
                "region_id": f"r{n}",
                "type": "bbox",
                "label": "cat",
                "x": 0.1 * (n + 1),
                "y": 0.2,
                "w": 0.25,
                "h": 0.5,
            }
        )
    annotations.append({"annotation_id": "empty", "task_id": "t2", "annotator": "ana"})
    annotations.append(
        {"annotation_id": "pred", "task_id": "t1", "kind": "prediction", "model_version": "m1"}
    )
    regions.append(
        {
            "annotation_id": "pred",
            "region_id": "p1",
            "type": "bbox",
            "label": "cat",
            "score": 0.9,
            "x": 0.5,
            "y": 0.5,
            "w": 0.1,
            "h": 0.1,
        }
    )
    return annostore.Tables.from_pylist(
        tasks=tasks,
        annotations=annotations,
        regions=regions,
        labels=[{"label": "cat", "label_id": 17}, {"label": "dog", "label_id": 3}],
    )


def test_latest_annotation_wins_and_the_rest_are_reported(tmp_path: Path) -> None:
    report = annostore.write(detection_tables(3), tmp_path / "out.json", "coco")
    document = json.loads((tmp_path / "out.json").read_text())
    assert [i["file_name"] for i in document["images"]] == ["a.jpg", "b.jpg", "c.jpg"]
    (only,) = document["annotations"]
    assert only["bbox"] == pytest.approx([60.0, 20.0, 50.0, 50.0])  # person2's, the latest
    assert report.dropped["annotations not exported (policy latest)"] == 2
    assert report.dropped["predictions not exported (policy latest)"] == 1
    # t3 has no annotation at all: COCO cannot say "unlabeled", so it is reported
    assert sum(report.approximated.values()) == 1


def test_predictions_policy_writes_a_results_file_pycocotools_loads(tmp_path: Path) -> None:
    coco_api = pytest.importorskip("pycocotools.coco")
    tables = detection_tables()
    annostore.write(tables, tmp_path / "gt.json", "coco")
    report = annostore.write(tables, tmp_path / "res.json", "coco", policy="predictions")
    results = json.loads((tmp_path / "res.json").read_text())
    assert results == [
        {
            "id": results[0]["id"],
            "image_id": 1,
            "category_id": 17,
            "bbox": [100.0, 50.0, 20.0, 10.0],
            "area": 200.0,
            "iscrowd": 0,
            "score": 0.9,
        }
    ]
    assert report.options["policy"] == "predictions"
    gt = coco_api.COCO(str(tmp_path / "gt.json"))
    loaded = gt.loadRes(str(tmp_path / "res.json"))
    assert len(loaded.getAnnIds()) == 1
    # and the results file reads back as predictions on the dataset's images
    back, _ = annostore.read(tmp_path / "res.json", "coco", images=str(tmp_path / "gt.json"))
    assert back.annotations.column("kind").to_pylist() == ["prediction"] * 3
    assert back.regions.column("score").to_pylist() == [0.9]


def test_results_file_without_images_is_a_clear_error(tmp_path: Path) -> None:
    path = write_json(
        tmp_path / "res.json",
        [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}],
    )
    with pytest.raises(annostore.ParseError, match="results file holds no images"):
        annostore.read(path, "coco")


def test_category_id_policies(tmp_path: Path) -> None:
    tables = detection_tables()
    for policy, expected in (("keep", [3, 17]), ("from-1", [1, 2]), ("from-0", [0, 1])):
        annostore.write(tables, tmp_path / f"{policy}.json", "coco", category_ids=policy)
        document = json.loads((tmp_path / f"{policy}.json").read_text())
        assert [c["id"] for c in document["categories"]] == expected
        # dog (label_id 3) comes first in label-set order; cat is the second
        assert document["annotations"][0]["category_id"] == expected[1]


def test_rotated_box_becomes_its_pixel_space_envelope(tmp_path: Path) -> None:
    # 200 × 100 image, a 100 × 50 px box at (50, 25) rotated 90° clockwise about its corner:
    # it now spans x 0..50 and y 25..125 in pixels (computing in normalized units would not)
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "1", "uri": "a.jpg", "width": 200, "height": 100}],
        annotations=[{"annotation_id": "a", "task_id": "1"}],
        regions=[
            {
                "annotation_id": "a",
                "region_id": "1",
                "type": "bbox",
                "label": "cat",
                "x": 0.25,
                "y": 0.25,
                "w": 0.5,
                "h": 0.5,
                "rotation": 90.0,
            }
        ],
    )
    with pytest.raises(annostore.ConversionError, match="rotated boxes"):
        annostore.write(tables, tmp_path / "strict.json", "coco", strict=True)
    assert not (tmp_path / "strict.json").exists()
    report = annostore.write(tables, tmp_path / "out.json", "coco")
    (annotation,) = json.loads((tmp_path / "out.json").read_text())["annotations"]
    assert annotation["bbox"] == pytest.approx([0.0, 25.0, 50.0, 100.0])
    assert report.approximated == {
        "rotated boxes written as their axis-aligned envelope (COCO bbox has no rotation)": 1
    }


def test_same_tables_give_byte_identical_files(tmp_path: Path) -> None:
    tables = detection_tables(2)
    annostore.write(tables, tmp_path / "a.json", "coco")
    shuffled = annostore.Tables(
        tasks=tables.tasks.take([2, 0, 1]),
        annotations=tables.annotations.take([3, 2, 1, 0]),
        regions=tables.regions.take([2, 1, 0]),
        labels=tables.labels.take([1, 0]),
    )
    annostore.write(shuffled, tmp_path / "b.json", "coco")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


@pytest.mark.parametrize(
    ("fmt", "module", "pieces"),
    [
        ("coco", "coco", "numbered_json_text_pieces"),
        ("coco", "coco", "json_text_pieces"),
        ("label-studio", "label_studio", "json_text_pieces"),
    ],
)
def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, module: str, pieces: str
) -> None:
    """The text is written a piece at a time: a failure after the first pieces (a full
    disk, say) leaves the file that was there, whole, and nothing else."""
    from importlib import import_module

    target = tmp_path / "out.json"
    target.write_bytes(b"the previous export")
    written = import_module(f"annostore.converters.{module}")
    original = getattr(written, pieces)

    def failing(*args, **kwargs):
        yield from list(original(*args, **kwargs))[:2]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(written, pieces, failing)
    tables = detection_tables(2)
    if pieces == "json_text_pieces" and fmt == "coco":
        # region ids that are integers are printed whole, not around a number
        tables = annostore.Tables(
            tasks=tables.tasks,
            annotations=tables.annotations,
            regions=tables.regions.set_column(
                1, "region_id", pa.array([str(n) for n in range(tables.regions.num_rows)])
            ),
            labels=tables.labels,
        )
    with pytest.raises(OSError, match="No space left"):
        annostore.write(tables, target, fmt, overwrite=True)
    assert target.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def boxes_on_images(
    images: list[int], region_ids: list[str], extra: dict[str, str] | None = None
) -> annostore.Tables:
    """Image ``img<i>`` (10 × 10) for each of ``images``, annotated by ``a<i>`` with one
    box per region id; ``extra`` gives some region ids an ``extra`` JSON text."""
    extra = extra or {}
    return annostore.Tables.from_pylist(
        tasks=[{"task_id": f"img{i}", "width": 10, "height": 10} for i in images],
        annotations=[{"annotation_id": f"a{i}", "task_id": f"img{i}"} for i in images],
        regions=[
            {
                "annotation_id": f"a{i}",
                "region_id": region,
                "type": "bbox",
                "label": "x",
                "x": 0,
                "y": 0,
                "w": 0.5,
                "h": 0.5,
                "extra": extra.get(region),
            }
            for i in images
            for region in region_ids
        ],
    )


def test_non_integer_ids_are_numbered_across_the_file_not_per_image(tmp_path: Path) -> None:
    tables = boxes_on_images([0, 1, 2], ["r0", "r1"])
    report = annostore.write(tables, tmp_path / "out.json", "coco")
    document = json.loads((tmp_path / "out.json").read_text())
    ids = [a["id"] for a in document["annotations"]]
    assert sorted(ids) == [1, 2, 3, 4, 5, 6]
    assert [i["id"] for i in document["images"]] == [1, 2, 3]
    assert all(i["width"] == 10 and i["height"] == 10 for i in document["images"])
    assert any("numbered" in note for note in report.notes)


@pytest.mark.parametrize(
    "note", ["", "-9007199254740993", "-9007199254740993 and -9007199254740995"]
)
def test_numbered_ids_follow_image_and_key_order_whatever_the_data_holds(
    tmp_path: Path, note: str
) -> None:
    # numbers are placed into the printed records; a record whose own data holds the
    # placeholder's digits must neither break the numbering nor lose its data
    tables = boxes_on_images(
        [2, 1], ["q", "p"], {"q": json.dumps({"note": note})} if note else None
    )
    annostore.write(tables, tmp_path / "out.json", "coco")
    document = json.loads((tmp_path / "out.json").read_text())
    written = [(a["id"], a["image_id"], a.get("note")) for a in document["annotations"]]
    # images are numbered by task id (img1 = 1), then regions by key within an image
    kept = note or None
    assert written == [(1, 1, None), (2, 1, kept), (3, 2, None), (4, 2, kept)]


def test_missing_sizes_come_from_image_headers_or_fail_clearly(
    corpus: Path, tmp_path: Path
) -> None:
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "1", "uri": "images/img_2.png"}],
        annotations=[{"annotation_id": "a", "task_id": "1"}],
        regions=[
            {
                "annotation_id": "a",
                "region_id": "1",
                "type": "bbox",
                "label": "x",
                "x": 0.5,
                "y": 0.5,
                "w": 0.25,
                "h": 0.25,
            }
        ],
    )
    with pytest.raises(annostore.ConversionError, match="images without a known width/height"):
        annostore.write(tables, tmp_path / "out.json", "coco", strict=True)
    assert not (tmp_path / "out.json").exists()
    report = annostore.write(tables, tmp_path / "dropped.json", "coco")
    assert json.loads((tmp_path / "dropped.json").read_text())["images"] == []
    assert report.dropped["regions on images without a known width/height"] == 1
    root = corpus / "label-studio-converter" / "test_import_yolo_data"
    annostore.write(tables, tmp_path / "out.json", "coco", image_root=str(root))
    document = json.loads((tmp_path / "out.json").read_text())
    assert (document["images"][0]["width"], document["images"][0]["height"]) == (640, 427)
    assert document["annotations"][0]["bbox"] == [320.0, 213.5, 160.0, 106.75]


BAD_DOCUMENTS = [
    (b'{"images": [', r"in.json:byte \d+: malformed JSON"),
    # inside a list the fast route cuts out of the bytes: the byte is still the file's
    (
        b'{"images": [], "annotations": [{"id": 1,, "x": 2}], "categories": []}',
        r"in.json:byte 40: malformed JSON",
    ),
    (
        b'{"images": [{"id": 1, "width": 0, "height": 5}]}',
        r"in.json:images\[0\]: \"width\" must be a positive integer, got 0",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}, {"id": 1, "width": 5, "height": 5}]}',
        r"images\[1\]: duplicate image id 1",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}]}',
        r"annotations\[0\]: image_id 2 matches no image",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}]}',
        r"annotations\[0\]: category_id 9 matches no category",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]}',
        r"annotations\[0\]: \"bbox\" must be 4 numbers",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1]}]}',
        r"annotations\[0\]: \"bbox\" has a negative width",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "segmentation": [[0, 0, 1, 1]]}]}',
        r"annotations\[0\]: \"segmentation\" has a polygon with fewer than 3 points",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}',
        r"annotations\[1\]: duplicate annotation id 1",
    ),
    (
        b'{"images": [{"id": 1, "width": 5, "height": 5}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [NaN, 0, 1, 1]}]}',
        r"annotations\[0\]: \"bbox\" holds a value that is not a finite number",
    ),
    (
        b'{"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]}',
        r"annotations\[0\]: its image 1 has no width/height",
    ),
    (b'{"images": {"id": 1}}', r"in.json:images: expected a list, got a JSON object"),
    (b'"hello"', r"in.json: expected a COCO object or a results list"),
]


@pytest.mark.parametrize(("content", "message"), BAD_DOCUMENTS)
def test_bad_input_names_file_record_and_problem(
    tmp_path: Path, content: bytes, message: str
) -> None:
    (tmp_path / "in.json").write_bytes(content)
    with pytest.raises(annostore.ParseError, match=message):
        annostore.read(tmp_path / "in.json", "coco")


def test_skip_mode_keeps_the_good_records_and_lists_the_bad(tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "width": 10, "height": 10}, {"id": 2, "width": -1, "height": 10}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]},
        ],
    }
    tables, report = annostore.read(
        write_json(tmp_path / "in.json", document), "coco", errors="skip"
    )
    assert tables.counts == {"tasks": 1, "annotations": 1, "regions": 1, "labels": 1}
    assert [str(s).split(": ", 1)[0].rsplit(":", 1)[-1] for s in report.skipped] == [
        "images[1]",
        "annotations[1]",
        "annotations[2]",
    ]
    assert not report.lossless


def test_registry_lists_coco_and_rejects_unknown_formats() -> None:
    assert "coco" in converters.names()
    assert converters.get("coco").detect is not None
    with pytest.raises(annostore.UnknownFormatError, match=r"known formats: .*coco"):
        converters.get("no-such-format")


def test_format_is_detected(corpus: Path) -> None:
    path = corpus / "datumaro/coco_dataset/coco_instances/annotations/instances_train.json"
    assert annostore.detect_format(str(path)) == "coco"


def test_mask_area_is_recomputed_only_when_geometry_changed(tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "width": 4, "height": 2}],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 4, 2],
                "area": 99.5,
                "iscrowd": 1,
                "segmentation": {"size": [2, 4], "counts": [1, 3, 4]},
            }
        ],
    }
    tables, _ = annostore.read(write_json(tmp_path / "in.json", document), "coco")
    annostore.write(tables, tmp_path / "same.json", "coco")
    assert json.loads((tmp_path / "same.json").read_text())["annotations"][0]["area"] == 99.5
    moved = tables.regions.set_column(
        tables.regions.schema.get_field_index("x"), "x", pa.array([0.25])
    )
    changed = annostore.Tables(
        tables.tasks, tables.annotations, moved, tables.labels, metadata=tables.metadata
    )
    annostore.write(changed, tmp_path / "moved.json", "coco")
    assert json.loads((tmp_path / "moved.json").read_text())["annotations"][0]["area"] == 3.0


@pytest.mark.parametrize(
    ("folder", "files"),
    [("coco_roboflow", 2), ("coco_instances", 2), ("coco", 12)],
)
def test_dataset_folders_read_as_one_dataset_with_splits(
    corpus: Path, folder: str, files: int
) -> None:
    root = corpus / "datumaro/coco_dataset" / folder
    assert annostore.detect_format(str(root)) == "coco"
    tables, report = annostore.read(root)
    splits = dict(
        zip(
            tables.tasks.column("task_id").to_pylist(),
            tables.tasks.column("split").to_pylist(),
            strict=True,
        )
    )
    assert splits == {"5": "train", "40": "val"}
    assert any(f"{files} files read as one dataset" in note for note in report.notes)
    if folder == "coco":  # panoptic files are named, not silently skipped
        assert sum("panoptic" in note for note in report.notes) == 2
    # every region of every file is there, under one annotation per image
    assert tables.annotations.num_rows == 2
    singles = sum(
        annostore.read(path, "coco")[0].regions.num_rows
        for path in sorted((root).rglob("*.json"))
        if "panoptic" not in path.name
    )
    assert tables.regions.num_rows == singles
