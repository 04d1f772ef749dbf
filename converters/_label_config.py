"""Reading a Label Studio label config: its controls, their labels, and the data keys.

A config is XML: object tags (``<Image name="image" value="$image"/>``) show task data,
control tags (``<RectangleLabels name="label" toName="image">``) hold the labels
(``<Label value="cat" background="#f00"/>``). The converter uses this to order and color
the label set and to know which data key holds the image or the text.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field

from annostore.errors import ParseError

__all__ = ["Control", "LabelConfig", "parse_label_config"]

OBJECT_TAGS = {
    "image": "image",
    "text": "text",
    "hypertext": "text",
    "paragraphs": "text",
    "audio": "audio",
    "video": "video",
    "timeseries": "timeseries",
    "table": "table",
    "pdf": "pdf",
}
LABEL_TAGS = {"label", "choice"}


@dataclass
class Control:
    """One control tag: ``name`` is a result's from_name, ``to_name`` its to_name."""

    name: str
    type: str  # lower-case tag name, as in a result's "type"
    to_name: list[str]
    labels: list[dict[str, str]] = field(default_factory=list)  # value, background, …


@dataclass
class LabelConfig:
    """What a label config says: controls in document order, and object tags."""

    xml: str
    controls: list[Control]
    objects: dict[str, tuple[str, str]]  # name → (kind, data key without "$")

    def data_key(self, kind: str) -> str | None:
        """The data key the first object of ``kind`` ('image', 'text', …) shows."""
        for object_kind, key in self.objects.values():
            if object_kind == kind and key:
                return key
        return None

    def label_rows(self) -> list[dict[str, object]]:
        """The label set: each distinct label once, in config order, with its color."""
        rows: dict[str, dict[str, object]] = {}
        for control in self.controls:
            for label in control.labels:
                value = label.get("value")
                if value is None or value in rows:
                    continue
                extras = {k: v for k, v in label.items() if k not in ("value", "background")}
                rows[value] = {
                    "label": value,
                    "label_id": len(rows),
                    "color": label.get("background"),
                    "extra": {"control": control.name, "control_type": control.type, **extras},
                }
        return list(rows.values())


def parse_label_config(xml: str, source: str = "label config") -> LabelConfig:
    """Parse a config; malformed XML is a :class:`~annostore.ParseError`."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ParseError(source, f"line {exc.position[0]}", f"malformed XML ({exc})") from None
    controls: list[Control] = []
    objects: dict[str, tuple[str, str]] = {}
    for element in root.iter():
        tag = element.tag.lower()
        name = element.get("name")
        if tag in OBJECT_TAGS and name:
            value = element.get("value") or element.get("valueList") or ""
            objects[name] = (OBJECT_TAGS[tag], value.lstrip("$"))
        elif name and element.get("toName"):
            labels = [
                dict(child.attrib)
                for child in element.iter()
                if child is not element
                and child.tag.lower() in LABEL_TAGS
                and "value" in child.attrib
            ]
            controls.append(Control(name, tag, element.get("toName", "").split(","), labels))
    return LabelConfig(xml=xml, controls=controls, objects=objects)
