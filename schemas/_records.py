"""pydantic models of single rows, derived from the column declaration.

They validate what users hand over one record at a time and export JSON Schema. Bulk
paths never build a model per row.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Union

import pyarrow as pa
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model

from ._columns import COLUMNS, MASK, Column


class Mask(BaseModel):
    """A COCO run-length encoded mask: ``size`` is [height, width], ``counts`` COCO's string."""

    model_config = ConfigDict(extra="forbid")
    size: Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]
    counts: str


def _to_json_text(value: Any) -> Any:
    """JSON columns take JSON text, or a dict / list that is encoded here."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError as exc:
            raise ValueError(f"expected JSON text, got invalid JSON ({exc})") from exc
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    raise ValueError(f"expected JSON text, a dict or a list, got {type(value).__name__}")


JsonText = Annotated[str, BeforeValidator(_to_json_text)]


def _python_type(column: Column) -> Any:
    arrow = column.type
    constraints: dict[str, Any] = {}
    if column.minimum is not None:
        constraints["ge"] = column.minimum
    if column.is_json:
        base: Any = JsonText
    elif column.choices:
        from typing import Literal

        base = Literal[column.choices]  # type: ignore[valid-type]
    elif pa.types.is_string(arrow):
        base = str
    elif pa.types.is_int32(arrow):
        base = Annotated[
            int, Field(ge=max(-(2**31), constraints.pop("ge", -(2**31))), le=2**31 - 1)
        ]
    elif pa.types.is_int64(arrow):
        base = int
    elif pa.types.is_floating(arrow):
        base = float
    elif pa.types.is_boolean(arrow):
        base = bool
    elif pa.types.is_timestamp(arrow):
        base = datetime
    elif arrow == MASK:
        base = Mask
    elif arrow == pa.list_(pa.list_(pa.float64())):
        base = list[list[float]]
    elif arrow == pa.list_(pa.list_(pa.int64())):
        base = list[list[int]]
    elif arrow == pa.list_(pa.float64()):
        base = list[float]
    elif arrow == pa.list_(pa.string()):
        base = list[str]
    else:  # pragma: no cover - guarded by test_every_column_has_a_record_type
        raise TypeError(f"no record type for {column.name}: {arrow}")
    if constraints:
        base = Annotated[base, Field(**constraints)]
    return base


def _model(name: str, table: str, doc: str) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for column in COLUMNS[table]:
        annotation = _python_type(column)
        if column.nullable:
            fields[column.name] = (
                Union[annotation, None],  # noqa: UP007 - a runtime-built annotation
                Field(default=None, description=column.description),
            )
        elif column.default is not None:
            fields[column.name] = (
                annotation,
                Field(default=column.default, description=column.description),
            )
        else:
            fields[column.name] = (annotation, Field(description=column.description))
    model = create_model(
        name, __config__=ConfigDict(extra="forbid", protected_namespaces=()), __doc__=doc, **fields
    )
    model.__module__ = __name__
    return model


TaskRecord = _model("TaskRecord", "tasks", "One item to annotate (a row of the tasks table).")
AnnotationRecord = _model(
    "AnnotationRecord", "annotations", "One labeling of a task by a person or a model."
)
RegionRecord = _model("RegionRecord", "regions", "One shape or label inside an annotation.")
LabelRecord = _model("LabelRecord", "labels", "One label of the dataset's label set.")

RECORD_MODELS: dict[str, type[BaseModel]] = {
    "tasks": TaskRecord,
    "annotations": AnnotationRecord,
    "regions": RegionRecord,
    "labels": LabelRecord,
}
