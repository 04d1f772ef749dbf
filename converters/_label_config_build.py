"""Building Label Studio label configs for a dataset's labels, with an XML library.

Labels are attribute values set through ElementTree, so a label like ``kid's toy``,
``a<b`` or ``R&D`` is escaped by the library, never by hand. Control names follow the
Label Studio converter's defaults (``label``, ``choice``, …) so that results pulled back
map onto the same region types.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping
from typing import Any

from annostore.errors import AnnostoreError

__all__ = ["TASKS", "build_label_config", "infer_task"]

#: task name → (object tag, data key, control tag(s), what the task is for)
TASKS: dict[str, tuple[str, str, tuple[str, ...], str]] = {
    "image-classification": ("Image", "image", ("Choices",), "one class per image"),
    "object-detection": ("Image", "image", ("RectangleLabels",), "bounding boxes"),
    "ocr": (
        "Image",
        "image",
        ("RectangleLabels", "PolygonLabels", "TextArea"),
        "boxes and polygons with a transcription per region",
    ),
    "text-classification": ("Text", "text", ("Choices",), "one class per text"),
    "polygon-segmentation": ("Image", "image", ("PolygonLabels",), "polygons"),
    "keypoints": ("Image", "image", ("KeyPointLabels",), "points"),
    "brush-segmentation": ("Image", "image", ("BrushLabels",), "masks painted with a brush"),
    "ner": ("Text", "text", ("Labels",), "named-entity spans"),
    "taxonomy": ("Image", "image", ("Taxonomy",), "hierarchical classes"),
}
#: control tag → the name its results carry as from_name
CONTROL_NAMES = {
    "Choices": "choice",
    "RectangleLabels": "label",
    "PolygonLabels": "polygon",
    "KeyPointLabels": "keypoints",
    "BrushLabels": "brush",
    "Labels": "label",
    "Taxonomy": "taxonomy",
    "TextArea": "transcription",
}
#: region type → the task that holds it best (first match in this order wins)
_TASK_BY_TYPE = [
    ("span", "ner"),
    ("mask", "brush-segmentation"),
    ("keypoints", "keypoints"),
    ("text", "ocr"),
    ("polygon", "polygon-segmentation"),
    ("bbox", "object-detection"),
    ("ellipse", "object-detection"),
    ("taxonomy", "taxonomy"),
    ("class", "image-classification"),
]


def infer_task(region_types: Iterable[str], has_text: bool = False) -> str:
    """The task type for a dataset whose regions have these types (boxes with
    transcriptions → ``ocr``; choices on texts → ``text-classification``)."""
    present = set(region_types)
    if "text" in present and present & {"bbox", "polygon"}:
        return "ocr"
    for region_type, task in _TASK_BY_TYPE:
        if region_type in present and region_type != "text":
            if task == "image-classification" and has_text:
                return "text-classification"
            return task
    if has_text:
        return "text-classification"
    raise AnnostoreError(
        "cannot tell the task type from the regions; choose one of " + ", ".join(TASKS)
    )


def _label_rows(labels: Iterable[Any]) -> list[dict[str, Any]]:
    rows = []
    seen = set()
    for item in labels:
        row = dict(item) if isinstance(item, Mapping) else {"label": str(item)}
        name = row.get("label")
        if not isinstance(name, str) or not name:
            raise AnnostoreError(f"a label needs a non-empty name, got {name!r}")
        if name in seen:
            continue
        seen.add(name)
        rows.append(row)
    return rows


def build_label_config(task: str, labels: Iterable[Any], *, data_key: str | None = None) -> str:
    """A Label Studio config for ``task`` with ``labels`` (names, or label rows with
    ``label`` and optional ``color``), as pretty-printed XML text."""
    if task not in TASKS:
        raise AnnostoreError(f"unknown task type {task!r}; choose one of {', '.join(TASKS)}")
    rows = _label_rows(labels)
    if not rows and task != "ocr":
        raise AnnostoreError(f"task {task!r} needs at least one label")
    object_tag, default_key, controls, _ = TASKS[task]
    key = data_key or default_key
    view = ElementTree.Element("View")
    shown = ElementTree.SubElement(view, object_tag, name=key, value=f"${key}")
    if object_tag == "Image":
        shown.set("zoom", "true")
    for control in controls:
        attributes = {"name": CONTROL_NAMES[control], "toName": key}
        if control == "TextArea":
            attributes.update(editable="true", perRegion="true", required="false")
        elif control == "Choices":
            attributes.update(choice="single", showInLine="true")
        element = ElementTree.SubElement(view, control, attributes)
        if control == "TextArea":
            continue
        for row in rows:
            child = "Choice" if control in ("Choices", "Taxonomy") else "Label"
            attrs = {"value": row["label"]}
            if child == "Label" and row.get("color"):
                attrs["background"] = str(row["color"])
            ElementTree.SubElement(element, child, attrs)
    ElementTree.indent(view)
    return ElementTree.tostring(view, encoding="unicode") + "\n"
