"""YOLO: real folders and generated ones survive YOLO → tables → YOLO; the variant is
never guessed; the mistakes peers make are not made here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import annostore

CORPUS_FOLDERS = [
    "datumaro/yolo_dataset/labels",
    "datumaro/yolo_dataset/strict",
    "datumaro/kaggle_dataset/relaxed_yolo",
    "label-studio-converter/test_import_yolo_data",
    "label-studio-converter/test_import_yolo_data_unif_dims",
]
LIST_FILES = {"train.txt", "val.txt", "test.txt", "images.txt", "classes.txt", "README.txt"}


def label_lines(folder: Path) -> dict[str, list[tuple[float, ...]]]:
    """Every label file's lines as numbers (exact floats), order of lines aside."""
    found = {}
    for path in folder.rglob("*.txt"):
        if path.name in LIST_FILES:
            continue
        found[str(path.relative_to(folder))] = sorted(
            tuple(float(token) for token in line.split()) for line in path.read_text().splitlines()
        )
    return found


@pytest.mark.parametrize("name", CORPUS_FOLDERS)
def test_corpus_folders_survive_a_round_trip(corpus: Path, tmp_path: Path, name: str) -> None:
    source = corpus / name
    tables, _ = annostore.read(source, "yolo")
    report = annostore.write(tables, tmp_path / "out", "yolo")
    assert report.lossless, report.to_dict()
    assert label_lines(tmp_path / "out") == label_lines(source)
    again, _ = annostore.read(tmp_path / "out", "yolo")
    assert again.regions.sort_by("region_id").equals(tables.regions.sort_by("region_id"))
    assert again.labels.equals(tables.labels)


def test_corpus_folder_survives_the_store(corpus: Path, tmp_path: Path) -> None:
    source = corpus / "label-studio-converter/test_import_yolo_data"
    tables, _ = annostore.read(source, "yolo")
    store = annostore.open(tmp_path / "store")
    dataset = store.create_dataset("doors")
    first = dataset.commit(tables)
    # re-importing the same files changes nothing: region ids come from content
    again, _ = annostore.read(source, "yolo")
    assert dataset.commit(again).number == first.number
    annostore.write(first.tables, tmp_path / "out", "yolo")
    assert label_lines(tmp_path / "out") == label_lines(source)


def test_labels_read_as_ultralytics_maps_them(corpus: Path) -> None:
    tables, _ = annostore.read(corpus / "datumaro/yolo_dataset/labels", "yolo")
    tasks = {t["task_id"]: t for t in tables.tasks.to_pylist()}
    assert tasks["images/train/1"]["split"] == "train" and tasks["images/val/1"]["split"] == "val"
    assert tables.labels.column("label").to_pylist()[:3] == ["label_0", "label_1", "label_2"]
    box = next(r for r in tables.regions.to_pylist() if r["label"] == "label_2")
    # 2 0.133333 0.300000 0.266667 0.200000: centre → top-left corner
    assert box["x"] == 0.133333 - 0.266667 / 2 and box["w"] == 0.266667


def write_folder(root: Path, files: dict[str, str], data_yaml: str | None = None) -> Path:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    if data_yaml is not None:
        (root / "data.yaml").write_text(data_yaml)
    return root


PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000064000000320806000000"
)  # a PNG header saying 100 × 50


def image(root: Path, relative: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG_1x1 + b"\x00" * 16)


def test_variant_comes_from_the_user_never_from_token_counts(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "ds",
        {"labels/a.txt": "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n"},
        "train: images\nval: images\nnames: [thing]\n",
    )
    image(root, "images/a.png")
    with pytest.raises(annostore.ParseError, match=r"labels/a.txt:1: expected 5 values .*got 9"):
        annostore.read(root, "yolo")
    polygon, _ = annostore.read(root, "yolo", variant="segment")
    assert polygon.regions.column("type").to_pylist() == ["polygon"]
    assert polygon.regions.column("polygons").to_pylist() == [
        [[0.1, 0.1, 0.5, 0.1, 0.5, 0.5, 0.1, 0.5]]
    ]
    obb, _ = annostore.read(root, "yolo", variant="obb")
    annostore.write(obb, tmp_path / "obb", "yolo", variant="obb")
    assert (tmp_path / "obb/labels/a.txt").read_text() == "0 0.1 0.1 0.5 0.1 0.5 0.5 0.1 0.5\n"


def test_background_unlabeled_and_predictions(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "ds",
        {
            "labels/train/empty.txt": "",
            "labels/train/pred.txt": "1 0.5 0.5 0.2 0.2 0.87\n",
            "labels/train/boxes.txt": "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n",
        },
        "train: images/train\nnames:\n  0: cat\n  1: dog\n",
    )
    for name in ("empty", "pred", "boxes", "unlabeled"):
        image(root, f"images/train/{name}.png")
    tables, _ = annostore.read(root, "yolo")
    annotations = {a["task_id"]: a for a in tables.annotations.to_pylist()}
    assert "images/train/unlabeled" not in annotations  # no label file: unlabeled
    assert tables.tasks.num_rows == 4
    assert annotations["images/train/pred"]["kind"] == "prediction"
    regions = tables.regions.to_pylist()
    assert sorted(r["score"] or 0 for r in regions) == [0, 0, 0.87]
    # two identical lines are two regions with distinct, content-derived ids
    ids = sorted(r["region_id"] for r in regions if r["annotation_id"] == "images/train/boxes")
    assert len(set(ids)) == 2 and ids[1] == ids[0] + "-1"
    report = annostore.write(tables, tmp_path / "out", "yolo")
    out = tmp_path / "out"
    assert (out / "labels/train/empty.txt").read_bytes() == b""  # no whitespace-only line
    assert not (out / "labels/train/unlabeled.txt").exists()
    assert "./images/train/unlabeled.png" in (out / "train.txt").read_text()  # not dropped
    assert not (out / "labels/train/pred.txt").exists()  # predictions are not annotations
    assert report.dropped["predictions not exported (policy latest)"] == 1
    annostore.write(tables, tmp_path / "preds", "yolo", policy="predictions")
    assert (tmp_path / "preds/labels/train/pred.txt").read_text() == "1 0.5 0.5 0.2 0.2 0.87\n"


def test_many_identical_lines_keep_distinct_ids_in_key_order(tmp_path: Path) -> None:
    # a crowd of identical boxes (a detector's duplicate output): twelve regions, ids in
    # byte order ("-10" before "-2"), and all twelve lines come back out
    line = "0 0.25 0.5 0.125 0.0625\n"
    root = write_folder(
        tmp_path / "ds",
        {"labels/train/crowd.txt": line * 12 + "0 0.75 0.5 0.1 0.1\n"},
        "train: images/train\nnames:\n  0: cat\n",
    )
    image(root, "images/train/crowd.png")
    tables, _ = annostore.read(root, "yolo")
    ids = tables.regions.column("region_id").to_pylist()
    assert ids == sorted(ids) and len(set(ids)) == 13
    (base,) = {i for i in ids if "-" not in i and f"{i}-1" in ids}
    repeated = [i for i in ids if i.startswith(base)]
    assert len(repeated) == 12 and set(repeated) == {base} | {f"{base}-{n}" for n in range(1, 12)}
    annostore.write(tables, tmp_path / "out", "yolo")
    lines = (tmp_path / "out/labels/train/crowd.txt").read_text().splitlines()
    assert sorted(lines) == sorted((line * 12 + "0 0.75 0.5 0.1 0.1\n").splitlines())


def test_numbers_keep_every_digit_and_classes_stay_integers(tmp_path: Path) -> None:
    line = "52 0.38958333333333334 0.1234567891234 0.02734375 0.25972222222222224\n"
    root = write_folder(
        tmp_path / "ds",
        {"labels/a.txt": line},
        "train: images\nval: images\nnames: {" + ", ".join(f"{i}: c{i}" for i in range(60)) + "}\n",
    )
    image(root, "images/a.png")
    tables, _ = annostore.read(root, "yolo")
    annostore.write(tables, tmp_path / "out", "yolo")
    assert (tmp_path / "out/labels/a.txt").read_text() == line  # not float32, not 4 decimals


def test_coco_ids_are_not_class_indexes_and_crowds_are_not_boxes(tmp_path: Path) -> None:
    document = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 50}],
        "categories": [{"id": 17, "name": "cat"}, {"id": 90, "name": "toothbrush"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 90, "bbox": [10, 10, 20, 10], "iscrowd": 0},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 17,
                "bbox": [0, 0, 50, 50],
                "iscrowd": 1,
                "segmentation": {"size": [50, 100], "counts": [0, 5000]},
            },
            {
                "id": 3,
                "image_id": 1,
                "category_id": 17,
                "bbox": [0, 0, 10, 10],
                "iscrowd": 0,
                "segmentation": [[0, 0, 5, 0, 5, 5], [6, 6, 9, 6, 9, 9]],
            },
        ],
    }
    (tmp_path / "in.json").write_text(json.dumps(document))
    report = annostore.convert(tmp_path / "in.json", tmp_path / "det", to="yolo")
    yaml_text = (tmp_path / "det/data.yaml").read_text()
    assert '0: "cat"' in yaml_text and '1: "toothbrush"' in yaml_text
    lines = sorted((tmp_path / "det/labels/a.txt").read_text().splitlines())
    assert lines == ["0 0.05 0.1 0.1 0.2", "1 0.2 0.3 0.2 0.2"]
    assert report.dropped["crowd regions (iscrowd) not exported (YOLO has no crowd flag)"] == 1
    assert report.approximated["polygons written as their bounding box"] == 1
    segment = annostore.convert(
        tmp_path / "in.json", tmp_path / "seg", to="yolo", variant="segment"
    )
    (two_part,) = [
        x for x in (tmp_path / "seg/labels/a.txt").read_text().splitlines() if x.count(" ") > 9
    ]
    assert len(two_part.split()) == 1 + 12  # one object, both rings: not split into two
    assert segment.approximated["multi-part polygons joined into one ring per object"] == 1


def test_choices_are_not_detection_classes(tmp_path: Path) -> None:
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "a", "uri": "images/a.jpg", "width": 10, "height": 10}],
        annotations=[{"annotation_id": "a", "task_id": "a"}],
        regions=[
            {
                "annotation_id": "a",
                "region_id": "1",
                "type": "bbox",
                "label": "car",
                "x": 0.0,
                "y": 0.0,
                "w": 0.5,
                "h": 0.5,
            },
            {"annotation_id": "a", "region_id": "2", "type": "class", "label": "daytime"},
        ],
        labels=[{"label": "daytime", "label_id": 0}, {"label": "car", "label_id": 1}],
    )
    report = annostore.write(tables, tmp_path / "out", "yolo")
    assert '"daytime"' not in (tmp_path / "out/data.yaml").read_text()
    assert (tmp_path / "out/labels/a.txt").read_text() == "0 0.25 0.25 0.5 0.5\n"
    assert report.dropped["class regions (YOLO detect has no place for them)"] == 1


def test_a_dataset_without_detection_classes_writes_a_yolo_folder_that_reads_back(
    tmp_path: Path,
) -> None:
    tables = annostore.Tables.from_pylist(
        tasks=[
            {"task_id": name, "uri": f"images/{name}.jpg", "width": 10, "height": 10}
            for name in ("a", "b")
        ],
        annotations=[{"annotation_id": "a", "task_id": "a"}],
        regions=[{"annotation_id": "a", "region_id": "1", "type": "class", "label": "daytime"}],
        labels=[{"label": "daytime", "label_id": 0}],
    )
    annostore.write(tables, tmp_path / "out", "yolo")
    assert "names: {}\n" in (tmp_path / "out/data.yaml").read_text()
    again, _ = annostore.read(tmp_path / "out", format="yolo")
    assert sorted(again.tasks.column("uri").to_pylist()) == ["images/a.jpg", "images/b.jpg"]
    assert again.regions.num_rows == 0 and again.labels.num_rows == 0
    # a folder written by annostore 0.1.0, whose data.yaml said `names:` and nothing more
    (tmp_path / "out/data.yaml").write_text(
        (tmp_path / "out/data.yaml").read_text().replace("names: {}", "names:")
    )
    older, _ = annostore.read(tmp_path / "out", format="yolo")
    assert older.tasks.num_rows == 2 and older.regions.num_rows == 0


def test_rotated_boxes_use_pixels(tmp_path: Path) -> None:
    # a 200 × 100 image; a 100 × 50 px box at (50, 25) turned 90° clockwise about its corner
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "a", "uri": "a.jpg", "width": 200, "height": 100}],
        annotations=[{"annotation_id": "a", "task_id": "a"}],
        regions=[
            {
                "annotation_id": "a",
                "region_id": "1",
                "type": "bbox",
                "label": "car",
                "x": 0.25,
                "y": 0.25,
                "w": 0.5,
                "h": 0.5,
                "rotation": 90.0,
            }
        ],
    )
    annostore.write(tables, tmp_path / "obb", "yolo", variant="obb")
    corners = [float(v) for v in (tmp_path / "obb/labels/a.txt").read_text().split()[1:]]
    # (50, 25) → (50, 125) → (0, 125) → (0, 25) in pixels
    assert corners == pytest.approx([0.25, 0.25, 0.25, 1.25, 0.0, 1.25, 0.0, 0.25])
    report = annostore.write(tables, tmp_path / "det", "yolo")
    values = [float(v) for v in (tmp_path / "det/labels/a.txt").read_text().split()[1:]]
    assert values == pytest.approx([0.125, 0.75, 0.25, 1.0])
    assert sum(report.approximated.values()) == 1


def test_pose_reads_kpt_shape_and_writes_it_back(tmp_path: Path) -> None:
    line = "0 0.5 0.5 0.4 0.4 0.3 0.3 2 0.6 0.6 1\n"
    root = write_folder(
        tmp_path / "ds",
        {"labels/a.txt": line},
        "train: images\nval: images\nkpt_shape: [2, 3]\nnames: [person]\n",
    )
    image(root, "images/a.png")
    tables, _ = annostore.read(root, "yolo")
    (region,) = tables.regions.to_pylist()
    assert region["type"] == "keypoints" and region["keypoints"] == [0.3, 0.3, 2.0, 0.6, 0.6, 1.0]
    annostore.write(tables, tmp_path / "out", "yolo", variant="pose")
    assert (tmp_path / "out/labels/a.txt").read_text() == line
    assert "kpt_shape: [2, 3]" in (tmp_path / "out/data.yaml").read_text()


def test_classify_folders(tmp_path: Path) -> None:
    for name in ("train/cat/1.png", "train/dog/2.png", "val/cat/3.png"):
        image(tmp_path / "cls", name)
    tables, _ = annostore.read(tmp_path / "cls", "yolo", variant="classify")
    regions = {r["annotation_id"]: r["label"] for r in tables.regions.to_pylist()}
    assert regions == {"train/cat/1": "cat", "train/dog/2": "dog", "val/cat/3": "cat"}
    assert dict(
        zip(
            tables.tasks.column("task_id").to_pylist(),
            tables.tasks.column("split").to_pylist(),
            strict=True,
        )
    ) == {"train/cat/1": "train", "train/dog/2": "train", "val/cat/3": "val"}


BAD_FOLDERS = [
    ({"labels/a.txt": "0 0.5 0.5 0.1\n"}, r"labels/a.txt:1: expected 5 values"),
    (
        {"labels/a.txt": "0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n"},
        r"labels/a.txt:2: class 3 is not in the class names",
    ),
    ({"labels/a.txt": "0 0.5 zero 0.1 0.1\n"}, r"labels/a.txt:1: value zero is not a number"),
    ({"labels/a.txt": "0 0.5 nan 0.1 0.1\n"}, r"labels/a.txt:1: value nan is not a number"),
    ({"labels/a.txt": "0 1.5 0.5 0.1 0.1\n"}, r"labels/a.txt:1: coordinates must be normalized"),
    ({"labels/a.txt": "0.5 0.5 0.5 0.1 0.1\n"}, r"labels/a.txt:1: class 0.5 is not a class index"),
]


@pytest.mark.parametrize(("files", "message"), BAD_FOLDERS)
def test_bad_lines_name_file_and_line(tmp_path: Path, files: dict[str, str], message: str) -> None:
    root = write_folder(tmp_path / "ds", files, "train: images\nval: images\nnames: [a, b]\n")
    image(root, "images/a.png")
    with pytest.raises(annostore.ParseError, match=message):
        annostore.read(root, "yolo")


def test_skip_mode_drops_only_bad_lines(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "ds",
        {"labels/a.txt": "0 0.5 0.5 0.1 0.1\n0 0.5\n1 0.5 0.5 0.2 0.2\n"},
        "train: images\nval: images\nnames: [a, b]\n",
    )
    image(root, "images/a.png")
    tables, report = annostore.read(root, "yolo", errors="skip")
    assert tables.regions.num_rows == 2
    assert [str(s).rsplit("/", 1)[-1] for s in report.skipped] == [
        "a.txt:2: expected 5 values (class cx cy w h), or 6 with a confidence, got 2"
    ]


def test_list_file_paths_may_not_leave_the_dataset(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "ds",
        {"train.txt": "../../etc/passwd.jpg\n"},
        "train: train.txt\nval: train.txt\nnames: [a]\n",
    )
    with pytest.raises(annostore.ParseError, match=r"train.txt:1: path .* leaves the dataset root"):
        annostore.read(root, "yolo")


def test_two_images_sharing_a_label_file_are_an_error(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "ds",
        {"labels/x.txt": "0 0.5 0.5 0.1 0.1\n"},
        "train: images\nval: images\nnames: [a]\n",
    )
    image(root, "images/x.png")
    image(root, "images/x.jpg")
    with pytest.raises(
        annostore.ParseError, match=r"images/x.png and images/x.jpg share one label file"
    ):
        annostore.read(root, "yolo")


def test_writer_refuses_paths_outside_the_target(tmp_path: Path) -> None:
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "a", "uri": "../../outside.jpg"}],
        annotations=[{"annotation_id": "a", "task_id": "a"}],
    )
    with pytest.raises(annostore.AnnostoreError, match="outside the output folder"):
        annostore.write(tables, tmp_path / "out", "yolo")
    assert not (tmp_path / "out").exists()


def test_images_are_linked_so_the_output_trains_and_reads_back(
    corpus: Path, tmp_path: Path
) -> None:
    source = corpus / "label-studio-converter/test_import_yolo_data"
    report = annostore.convert(source, tmp_path / "out", to="yolo", images="link")
    assert report.counts["written images placed"] == 7
    assert (tmp_path / "out/images/img_1.jpg").read_bytes() == (
        source / "images/img_1.jpg"
    ).read_bytes()
    tables, _ = annostore.read(tmp_path / "out", "yolo")
    assert tables.counts["regions"] == 25


def test_yolo_to_coco_reads_sizes_from_image_headers(corpus: Path, tmp_path: Path) -> None:
    source = corpus / "label-studio-converter/test_import_yolo_data"
    annostore.convert(source, tmp_path / "out.json", to="coco")
    document = json.loads((tmp_path / "out.json").read_text())
    sizes = {i["file_name"]: (i["width"], i["height"]) for i in document["images"]}
    assert sizes["images/img_1.jpg"] == (640, 329) and sizes["images/img_3.png"] == (1280, 720)
    assert len(document["annotations"]) == 25


# ---------------------------------------------------------------- generated folders

unit = st.floats(0, 1, allow_nan=False)


@st.composite
def yolo_folders(draw: st.DrawFn) -> tuple[dict[str, str], list[str]]:
    names = draw(
        st.lists(
            st.text("abcxyz _'<&", min_size=1, max_size=6), min_size=1, max_size=4, unique=True
        )
    )
    files = {}
    for index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["boxes", "empty", "missing"]))
        if kind == "missing":
            files[f"images/train/{index}.png"] = None
            continue
        lines = []
        for _ in range(draw(st.integers(0 if kind == "empty" else 1, 0 if kind == "empty" else 4))):
            w, h = draw(unit), draw(unit)
            cx = draw(st.floats(w / 2, 1 - w / 2)) if w < 1 else 0.5
            cy = draw(st.floats(h / 2, 1 - h / 2)) if h < 1 else 0.5
            lines.append(f"{draw(st.integers(0, len(names) - 1))} {cx!r} {cy!r} {w!r} {h!r}")
        files[f"images/train/{index}.png"] = "".join(line + "\n" for line in lines)
    return files, names


@settings(max_examples=30, deadline=None)
@given(yolo_folders())
def test_generated_folders_round_trip(
    tmp_path_factory: pytest.TempPathFactory, folder: tuple
) -> None:
    files, names = folder
    root = tmp_path_factory.mktemp("yolo")
    for image_path, content in files.items():
        image(root, image_path)
        if content is not None:
            label = root / image_path.replace("images/", "labels/", 1).replace(".png", ".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(content)
    (root / "data.yaml").write_text(
        "train: images/train\nval: images/train\nnames:\n"
        + "".join(f"  {i}: {json.dumps(n)}\n" for i, n in enumerate(names))
    )
    tables, _ = annostore.read(root, "yolo")
    out = root.parent / (root.name + "-out")
    annostore.write(tables, out, "yolo")
    assert label_lines(out) == label_lines(root)
    for image_path, content in files.items():
        written = out / image_path.replace("images/", "labels/", 1).replace(".png", ".txt")
        assert written.exists() == (content is not None)
        if content is not None:
            assert sorted(written.read_text().splitlines()) == sorted(content.splitlines())
    again, _ = annostore.read(out, "yolo")
    assert again.regions.sort_by("region_id").equals(tables.regions.sort_by("region_id"))
    assert again.labels.equals(tables.labels)
    shutil.rmtree(out)


@pytest.mark.parametrize("base", ["local", "memory"])
def test_image_lists_and_label_files_agree_so_the_output_reads_back(
    corpus: Path, tmp_path: Path, base: str
) -> None:
    """Every listed image maps (Ultralytics' rule) to the label file written for it — on
    disk and on an fsspec store — so reading the output gives back every region."""
    source = corpus / "datumaro/coco_dataset/coco_instances/annotations/instances_val.json"
    tables, _ = annostore.read(source, "coco")
    target = str(tmp_path / "out") if base == "local" else f"memory://yolo-{tmp_path.name}/out"
    annostore.write(tables, target, "yolo", variant="segment")
    back, report = annostore.read(target, "yolo", variant="segment")
    crowd = 1  # the RLE crowd region has no YOLO form
    assert back.regions.num_rows == tables.regions.num_rows - crowd
    assert back.tasks.column("uri").to_pylist() == ["images/b.jpg"]
    assert any("not in the folder" in note for note in report.notes)  # labels only, no images


def test_classify_writes_class_folders_and_reads_back(tmp_path: Path) -> None:
    for name in ("train/cat/1.png", "train/dog/2.png", "val/cat/3.png"):
        image(tmp_path / "cls", name)
    tables, _ = annostore.read(tmp_path / "cls", "yolo", variant="classify")
    with pytest.raises(annostore.AnnostoreError, match="folders of images"):
        annostore.write(tables, tmp_path / "out", "yolo", variant="classify")
    report = annostore.write(
        tables,
        tmp_path / "out",
        "yolo",
        variant="classify",
        images="link",
        image_root=str(tmp_path / "cls"),
    )
    assert sorted(
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")
    ) == ["train/cat/1.png", "train/dog/2.png", "val/cat/3.png"]
    assert report.counts["images placed"] == 3
    back, _ = annostore.read(tmp_path / "out", "yolo", variant="classify")
    assert back.regions.column("label").to_pylist() == tables.regions.column("label").to_pylist()


def test_yolo_to_yolo_reads_no_image_headers(corpus: Path, tmp_path: Path, monkeypatch) -> None:
    """Sizes are read from image headers only where a conversion needs pixels."""
    from annostore.converters import _assets

    opened = []
    original = _assets.file_image_size
    monkeypatch.setattr(
        _assets, "file_image_size", lambda *a, **k: opened.append(a[0]) or original(*a, **k)
    )
    annostore.convert(
        corpus / "label-studio-converter/test_import_yolo_data", tmp_path / "out", to="yolo"
    )
    assert opened == []
    annostore.convert(
        corpus / "label-studio-converter/test_import_yolo_data", tmp_path / "c.json", to="coco"
    )
    assert len(opened) == 7  # COCO needs every image's size


def test_folders_are_listed_like_fsspec_and_linked_folders_are_followed(
    corpus: Path, tmp_path: Path
) -> None:
    """The local walk that replaced fsspec's ``find`` (10 s of a 286k-file conversion)
    sees the same files in nested folders, hidden ones included; a symbolic link to a
    folder is followed (fsspec's ``find`` lists the link itself as a file, so its labels
    were not found), a link back to a parent is not walked forever, and reading through
    the link gives the tables of the real folder."""
    from annostore.converters import _io

    source = corpus / "label-studio-converter/test_import_yolo_data"
    shutil.copytree(source, tmp_path / "real")
    (tmp_path / "real" / "labels" / ".hidden.txt").write_text("")
    fs, root = _io.filesystem(str(tmp_path / "real"))
    expected = sorted(str(Path(p).relative_to(root)) for p in fs.find(root, withdirs=False))
    assert "labels/.hidden.txt" in expected and "images/img_1.jpg" in expected
    assert _io.files_under(fs, root) == expected

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels").symlink_to(tmp_path / "real" / "labels")
    shutil.copytree(source / "images", tmp_path / "data" / "images")
    shutil.copy(source / "classes.txt", tmp_path / "data" / "classes.txt")
    (tmp_path / "data" / "images" / "loop").symlink_to(tmp_path / "data")  # walked once
    linked, _ = annostore.read(tmp_path / "data", "yolo")
    direct, _ = annostore.read(source, "yolo")
    assert linked.regions.num_rows == direct.regions.num_rows > 0
    assert linked.regions.equals(direct.regions)


def test_list_files_name_images_in_every_spelling(tmp_path: Path) -> None:
    """Lines of an image list that the quick path resolves ("./images/…", "images/…") and
    ones it leaves to the general rules ("images//…", "./images/../images/…", paths
    relative to the dataset root from a list in a subfolder) give the same tasks; a list
    that train and val share puts its images in no split, and an image it names that is
    not there is counted once."""
    root = write_folder(
        tmp_path / "ds",
        {
            "labels/a.txt": "0 0.5 0.5 0.1 0.1\n",
            "labels/b.txt": "0 0.5 0.5 0.2 0.2\n",
            "labels/c.txt": "0 0.5 0.5 0.3 0.3\n",
            "labels/d.txt": "0 0.5 0.5 0.4 0.4\n",
            "lists/train.txt": "../images/a.png\nimages/b.png\n",
            "all.txt": "./images/a.png\nimages//b.png\n./images/../images/c.png\nimages/d.png\n"
            "images/gone.png\n",
        },
        "train: all.txt\nval: all.txt\ntest: lists/train.txt\nnames: [a]\n",
    )
    for name in "abcd":
        image(root, f"images/{name}.png")
    tables, report = annostore.read(root, "yolo")
    splits = dict(
        zip(
            tables.tasks.column("task_id").to_pylist(),
            tables.tasks.column("split").to_pylist(),
            strict=True,
        )
    )
    # a and b are also listed for test: three splits, so none; c and d: train and val
    assert splits == {
        "images/a": None,
        "images/b": None,
        "images/c": None,
        "images/d": None,
        "images/gone": None,
    }
    assert sorted(tables.regions.column("w").to_pylist()) == [0.1, 0.2, 0.3, 0.4]
    assert "1 listed images are not in the folder (tasks kept)" in report.notes


def test_one_list_gives_its_split(tmp_path: Path) -> None:
    root = write_folder(
        tmp_path / "ds",
        {
            "labels/a.txt": "0 0.5 0.5 0.1 0.1\n",
            "labels/b.txt": "0 0.5 0.5 0.2 0.2\n",
            "train.txt": "./images/a.png\n",
            "val.txt": "./images/b.png\n",
        },
        "train: train.txt\nval: val.txt\nnames: [a]\n",
    )
    image(root, "images/a.png")
    image(root, "images/b.png")
    tables, _ = annostore.read(root, "yolo")
    assert tables.tasks.column("split").to_pylist() == ["train", "val"]


@given(st.text(alphabet="ab./\\:", max_size=12))
def test_safe_relative_takes_plain_paths_as_they_are(path: str) -> None:
    """The quick path for plain relative paths gives what the general rules give: the
    path without empty and "." parts, or an error for "..", absolute paths, drive letters
    and URLs."""
    from annostore.converters import _io

    text = path.replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    refused = (
        text.startswith("/")
        or (len(text) > 1 and text[1] == ":")
        or "://" in text
        or ".." in parts
        or not parts
    )
    if refused:
        with pytest.raises(annostore.ParseError):
            _io.safe_relative(path, source="list.txt")
    else:
        assert _io.safe_relative(path, source="list.txt") == "/".join(parts)


def test_local_files_are_read_whole(tmp_path: Path) -> None:
    from annostore.converters import _io

    contents = [b"", b"0", b"0 0.5 0.5 0.1 0.1\n" * 20000, bytes(range(256)) * 300]
    paths = []
    for number, content in enumerate(contents):
        path = tmp_path / f"{number}.txt"
        path.write_bytes(content)
        paths.append(str(path))
    assert _io.read_local_files(paths) == contents
    with pytest.raises(FileNotFoundError):
        _io.read_local_files([str(tmp_path / "missing.txt")])


def test_coco_folders_are_looked_for_one_level_down_only(tmp_path: Path) -> None:
    """Telling a folder's format lists only where COCO files can be (the folder and its
    direct subfolders), not the whole tree of images below them."""
    from annostore.converters import _io

    for relative in ("a.json", "annotations/b.json", "images/train/c.json", "images/d.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text("{}")
    fs, root = _io.filesystem(str(tmp_path))
    assert _io.files_under(fs, root, depth=0) == ["a.json"]
    assert _io.files_under(fs, root, depth=1) == ["a.json", "annotations/b.json", "images/d.png"]
    memory = {f"memory://within/{k}": b"{}" for k in ("a.json", "x/b.json", "x/y/c.json")}
    import fsspec

    for url, data in memory.items():
        fsspec.filesystem("memory").pipe(url, data)
    fs, root = _io.filesystem("memory://within")
    assert _io.files_under(fs, root, depth=1) == ["a.json", "x/b.json"]


def test_lines_split_on_any_whitespace_and_text_must_be_utf8(tmp_path: Path) -> None:
    """Tokens are split as Ultralytics splits them (any whitespace, tabs and padding
    included); a byte-order mark (Windows editors) and CRLF line ends are not data; a
    line that is not UTF-8 is named by file and line, and in skip mode only that line
    goes."""
    root = tmp_path / "ds"
    (root / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [a, b]\n")
    image(root, "images/a.png")
    image(root, "images/b.png")
    (root / "labels" / "a.txt").write_bytes(
        b"\xef\xbb\xbf0 0.5 0.5 0.1 0.1\r\n\t1\t0.5  0.5 0.2 0.2 \r\n \t \n"
    )
    (root / "labels" / "b.txt").write_bytes(b"0 0.5 0.5 0.3 0.3\n\xff\xfe 0.5\n1 0.5 0.5 0.4 0.4\n")
    with pytest.raises(annostore.ParseError, match=r"labels/b.txt:2: the line is not UTF-8 text"):
        annostore.read(root, "yolo")
    tables, report = annostore.read(root, "yolo", errors="skip")
    rows = tables.regions.sort_by([("w", "ascending")]).select(["label", "w"]).to_pylist()
    assert rows == [
        {"label": "a", "w": 0.1},
        {"label": "b", "w": 0.2},
        {"label": "a", "w": 0.3},
        {"label": "b", "w": 0.4},
    ]
    assert [(s.location, s.reason) for s in report.skipped] == [
        ("labels/b.txt:2", "the line is not UTF-8 text")
    ]


def test_a_lone_carriage_return_ends_a_line(tmp_path: Path) -> None:
    """Old Mac line ends: two lines, not one with two numbers glued together."""
    root = tmp_path / "ds"
    (root / "labels").mkdir(parents=True)
    (root / "data.yaml").write_text("train: images\nval: images\nnames: [a, b]\n")
    image(root, "images/a.png")
    (root / "labels" / "a.txt").write_bytes(b"0 0.5 0.5 0.1 0.1\r1 0.5 0.5 0.2 0.2\r")
    tables, _ = annostore.read(root, "yolo")
    assert sorted(tables.regions.column("w").to_pylist()) == [0.1, 0.2]


_token = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**20), 10**20).map(str),
    st.text(alphabet="0123456789.eE+-_xainfINF", min_size=1, max_size=8),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_token, min_size=1, max_size=6), min_size=1, max_size=20))
def test_label_values_are_parsed_as_duckdb_parses_them(lines):
    # label tokens become numbers by Arrow's cast when a batch is all numbers, else by
    # DuckDB's TRY_CAST: either way the values, and the first token that is no finite
    # number (what an error message names), are the same
    import math

    from annostore._sql import connection
    from annostore.converters.yolo import _first_bad_tokens, _token_values

    tokens = pa.array(lines, pa.list_(pa.string()))
    with connection() as con:
        got = _token_values(con, tokens).to_pylist()
        con.register("tokens_table", pa.table({"tokens": tokens}))
        expected = [
            row[0]
            for row in con.sql("SELECT TRY_CAST(tokens AS DOUBLE[]) FROM tokens_table").fetchall()
        ]
        con.unregister("tokens_table")

    def same(a, b):
        return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))

    assert all(
        len(g) == len(e) and all(same(a, b) for a, b in zip(g, e, strict=True))
        for g, e in zip(got, expected, strict=True)
    )
    first_bad = [
        next(
            (t for t, v in zip(line, values, strict=True) if v is None or not math.isfinite(v)),
            None,
        )
        for line, values in zip(lines, expected, strict=True)
    ]
    assert _first_bad_tokens(tokens, pa.array(got, pa.list_(pa.float64()))).to_pylist() == first_bad
