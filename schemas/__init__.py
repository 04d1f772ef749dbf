"""The canonical model: four Arrow tables with one fixed schema.

Everything in annostore (a version on disk, what a converter reads or writes, what SQL
sees) is these four tables. The columns are declared once, in :data:`COLUMNS`; the Arrow
schemas, the pydantic record models and the JSON Schema files in ``schemas/json/`` are all
derived from that declaration.

Geometry is normalized to [0, 1] of the image width and height; JSON columns (``data``,
``extra``) hold JSON text. See ``docs/data-model.md`` for the meaning of every column.
"""

from __future__ import annotations

from ._columns import COLUMNS, JSON_COLUMNS, KEYS, SCHEMA_VERSION, TABLE_NAMES, Column, arrow_schema
from ._jsonschema import json_schemas, write_json_schemas
from ._records import RECORD_MODELS, AnnotationRecord, LabelRecord, Mask, RegionRecord, TaskRecord

__all__ = [
    "COLUMNS",
    "JSON_COLUMNS",
    "KEYS",
    "RECORD_MODELS",
    "SCHEMA_VERSION",
    "TABLE_NAMES",
    "AnnotationRecord",
    "Column",
    "LabelRecord",
    "Mask",
    "RegionRecord",
    "TaskRecord",
    "arrow_schema",
    "json_schemas",
    "write_json_schemas",
]
