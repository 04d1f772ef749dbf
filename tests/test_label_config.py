"""Label Studio label configs: valid XML for every task type, any label text, the label
set's order and colors, and the task inferred from the regions."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import boxes
from hypothesis import given, settings
from hypothesis import strategies as st

import annostore
from annostore.cli import cli
from annostore.converters import parse_label_config

AWKWARD = ["cat", "kid's toy", "a<b", "R&D", 'say "hi"', "ümlaut ✓", "  spaced  "]
CONTROLS = {
    "image-classification": {"choices"},
    "object-detection": {"rectanglelabels"},
    "ocr": {"rectanglelabels", "polygonlabels", "textarea"},
    "text-classification": {"choices"},
    "polygon-segmentation": {"polygonlabels"},
    "keypoints": {"keypointlabels"},
    "brush-segmentation": {"brushlabels"},
    "ner": {"labels"},
    "taxonomy": {"taxonomy"},
}


@pytest.mark.parametrize("task", annostore.TASK_TYPES)
def test_every_task_type_gives_a_config_that_parses_back(task: str) -> None:
    xml = annostore.label_config(task, AWKWARD)
    ElementTree.fromstring(xml)  # well-formed
    config = parse_label_config(xml)
    assert {c.type for c in config.controls} == CONTROLS[task]
    for control in config.controls:
        if control.type != "textarea":
            assert [label["value"] for label in control.labels] == AWKWARD
    kind = "text" if task in ("text-classification", "ner") else "image"
    assert config.data_key(kind) == kind


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.text(min_size=1, max_size=12).filter(lambda t: t.isprintable()),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_any_label_text_survives(labels: list[str]) -> None:
    xml = annostore.label_config("object-detection", labels)
    (control,) = parse_label_config(xml).controls
    assert [label["value"] for label in control.labels] == labels


def test_label_set_order_and_colors_come_from_the_dataset() -> None:
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "t", "width": 10, "height": 10}],
        annotations=[{"annotation_id": "a", "task_id": "t"}],
        regions=[
            {
                "annotation_id": "a",
                "region_id": "1",
                "type": "bbox",
                "label": "dog",
                "x": 0,
                "y": 0,
                "w": 1,
                "h": 1,
            },
            {"annotation_id": "a", "region_id": "2", "type": "class", "label": "daytime"},
        ],
        labels=[
            {"label": "dog", "label_id": 2, "color": "#4e79a7"},
            {"label": "cat", "label_id": 1, "color": "#f28e2b"},
            {"label": "daytime", "label_id": 3},
        ],
    )
    config = parse_label_config(annostore.label_config(None, tables))
    (control,) = config.controls
    assert control.type == "rectanglelabels"  # inferred: the dataset has boxes
    # label-set order, colors kept; "daytime" only ever labels whole images: not a box label
    assert [(row["value"], row.get("background")) for row in control.labels] == [
        ("cat", "#f28e2b"),
        ("dog", "#4e79a7"),
    ]


@pytest.mark.parametrize(
    ("regions", "text", "task"),
    [
        ([{"type": "bbox"}], None, "object-detection"),
        ([{"type": "bbox"}, {"type": "text"}], None, "ocr"),
        ([{"type": "polygon"}], None, "polygon-segmentation"),
        ([{"type": "span"}], "some text", "ner"),
        ([{"type": "class"}], "some text", "text-classification"),
        ([{"type": "class"}], None, "image-classification"),
        ([{"type": "mask"}], None, "brush-segmentation"),
        ([{"type": "keypoints"}], None, "keypoints"),
    ],
)
def test_task_is_inferred_from_the_regions(regions: list, text: str | None, task: str) -> None:
    tables = annostore.Tables.from_pylist(
        tasks=[{"task_id": "t", "text": text}],
        annotations=[{"annotation_id": "a", "task_id": "t"}],
        regions=[
            {"annotation_id": "a", "region_id": str(i), "label": "x", **r}
            for i, r in enumerate(regions)
        ],
    )
    config = parse_label_config(annostore.label_config(None, tables))
    assert {c.type for c in config.controls} == CONTROLS[task]


def test_mistakes_are_clear() -> None:
    with pytest.raises(
        annostore.AnnostoreError,
        match="unknown task type 'boxes'; choose one of image-classification",
    ):
        annostore.label_config("boxes", ["cat"])
    with pytest.raises(annostore.AnnostoreError, match="needs at least one label"):
        annostore.label_config("object-detection", [])


def test_cli_prints_and_writes_the_config(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    annostore.open(store).create_dataset("pets").commit(boxes(2))
    run = CliRunner()
    printed = run.invoke(cli, ["--store", store, "label-config", "pets"], catch_exceptions=False)
    assert printed.exit_code == 0 and '<Label value="cat"' in printed.stdout
    written = run.invoke(
        cli,
        [
            "--store",
            store,
            "label-config",
            "pets@1",
            "--task",
            "polygon-segmentation",
            "--output",
            str(tmp_path / "c.xml"),
        ],
        catch_exceptions=False,
    )
    assert written.exit_code == 0
    assert parse_label_config((tmp_path / "c.xml").read_text()).controls[0].type == "polygonlabels"
    wrong = run.invoke(cli, ["--store", store, "label-config", "pets", "--task", "boxes"])
    assert wrong.exit_code == 2
