"""The single declaration of the four tables' columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

#: Bumped whenever a column is added, removed or changes type; stored in every manifest.
SCHEMA_VERSION = 1

TABLE_NAMES: tuple[str, ...] = ("tasks", "annotations", "regions", "labels")

#: The columns that identify a row of each table, unique within a version.
KEYS: dict[str, tuple[str, ...]] = {
    "tasks": ("task_id",),
    "annotations": ("annotation_id",),
    "regions": ("annotation_id", "region_id"),
    "labels": ("label",),
}

TIMESTAMP = pa.timestamp("us", tz="UTC")
MASK = pa.struct([pa.field("size", pa.list_(pa.int64())), pa.field("counts", pa.string())])


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    type: pa.DataType
    description: str
    nullable: bool = True
    #: value filled in when a non-nullable column is left out entirely
    default: Any = None
    #: the column holds JSON text
    is_json: bool = False
    #: smallest allowed value (numbers only)
    minimum: float | None = None
    #: the allowed values (strings only)
    choices: tuple[str, ...] | None = None


def _json(name: str, description: str) -> Column:
    return Column(name, pa.string(), description, is_json=True)


COLUMNS: dict[str, tuple[Column, ...]] = {
    "tasks": (
        Column("task_id", pa.string(), "Unique in a version, stable across versions.", False),
        Column("uri", pa.string(), "Image path or URL, kept as given."),
        Column("asset_key", pa.string(), "Normalized form of uri used to match the same file."),
        Column("text", pa.string(), "Inline text data."),
        Column("width", pa.int32(), "Image width in pixels; null where unknown.", minimum=1),
        Column("height", pa.int32(), "Image height in pixels; null where unknown.", minimum=1),
        Column("split", pa.string(), "train / val / test, or null."),
        _json("data", "Every other field of the source item, as JSON."),
    ),
    "annotations": (
        Column("annotation_id", pa.string(), "Unique in a version.", False),
        Column("task_id", pa.string(), "The task this annotation labels.", False),
        Column(
            "kind",
            pa.string(),
            "'annotation' (made by a person) or 'prediction' (made by a model).",
            False,
            default="annotation",
            choices=("annotation", "prediction"),
        ),
        Column("annotator", pa.string(), "Who made the annotation."),
        Column("model_version", pa.string(), "Which model made the prediction."),
        Column("score", pa.float64(), "A prediction's overall score."),
        Column("ground_truth", pa.bool_(), "Marked as ground truth.", False, default=False),
        Column("cancelled", pa.bool_(), "The task was skipped.", False, default=False),
        Column("lead_time", pa.float64(), "Seconds spent.", minimum=0),
        Column("created_at", TIMESTAMP, "When it was created (UTC)."),
        Column("updated_at", TIMESTAMP, "When it was last changed (UTC)."),
        _json("extra", "Every source field without a column, as JSON."),
    ),
    "regions": (
        Column("annotation_id", pa.string(), "The annotation this region belongs to.", False),
        Column("region_id", pa.string(), "Unique within its annotation.", False),
        Column(
            "type",
            pa.string(),
            "bbox, polygon, keypoints, mask, class, span, text, relation, …",
            False,
        ),
        Column("label", pa.string(), "One label (one row per label where a region has several)."),
        Column("score", pa.float64(), "Confidence of a predicted region."),
        Column("x", pa.float64(), "Left edge, normalized to [0, 1] of the image width."),
        Column("y", pa.float64(), "Top edge, normalized to [0, 1] of the image height."),
        Column("w", pa.float64(), "Width, normalized to the image width."),
        Column("h", pa.float64(), "Height, normalized to the image height."),
        Column("rotation", pa.float64(), "Degrees, clockwise around the top-left corner."),
        Column(
            "polygons",
            pa.list_(pa.list_(pa.float64())),
            "Rings, each flat x0, y0, x1, y1, … normalized.",
        ),
        Column("keypoints", pa.list_(pa.float64()), "(x, y, visibility) triples, normalized."),
        Column(
            "mask", MASK, "COCO run-length encoding: size [height, width] and compressed counts."
        ),
        Column("start", pa.int64(), "Text span start, in code points.", minimum=0),
        Column("end", pa.int64(), "Text span end (exclusive), in code points.", minimum=0),
        Column("value", pa.string(), "Free text (a transcription)."),
        Column("parent_id", pa.string(), "The region this one belongs to (keypoints, relations)."),
        _json("extra", "Every source field without a column, as JSON."),
    ),
    "labels": (
        Column("label", pa.string(), "The label's name, unique in a version.", False),
        Column("label_id", pa.int64(), "Numeric id (COCO category id)."),
        Column("supercategory", pa.string(), "COCO supercategory."),
        Column("color", pa.string(), "Display color, as given (for example '#ff0000')."),
        Column("keypoint_names", pa.list_(pa.string()), "Names of the keypoints, in order."),
        Column(
            "skeleton", pa.list_(pa.list_(pa.int64())), "Pairs of keypoint indexes (1-based, COCO)."
        ),
        _json("extra", "Every source field without a column, as JSON."),
    ),
}

JSON_COLUMNS: dict[str, tuple[str, ...]] = {
    table: tuple(c.name for c in columns if c.is_json) for table, columns in COLUMNS.items()
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of one canonical table."""
    return pa.schema(
        [pa.field(c.name, c.type, nullable=c.nullable) for c in COLUMNS[table]],
        metadata={
            b"annostore.table": table.encode(),
            b"annostore.schema_version": str(SCHEMA_VERSION).encode(),
        },
    )
