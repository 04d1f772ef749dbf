"""JSON Schema export of the four tables (the files in ``schemas/json/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ._columns import COLUMNS, KEYS, SCHEMA_VERSION, TABLE_NAMES
from ._records import RECORD_MODELS

JSON_DIR = Path(__file__).parent / "json"


def _integral_bounds(node: Any) -> Any:
    """Write whole-number bounds as integers, as every pydantic release does not."""
    if isinstance(node, dict):
        return {
            key: int(value)
            if key in ("minimum", "maximum") and isinstance(value, float) and value.is_integer()
            else _integral_bounds(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_integral_bounds(item) for item in node]
    return node


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each table's records, with the Arrow type of every column."""
    schemas = {}
    for table in TABLE_NAMES:
        schema = _integral_bounds(RECORD_MODELS[table].model_json_schema())
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://annostore.dev/schemas/v{SCHEMA_VERSION}/{table}.schema.json"
        schema["x-annostore-table"] = table
        schema["x-annostore-schema-version"] = SCHEMA_VERSION
        schema["x-annostore-key"] = list(KEYS[table])
        for column in COLUMNS[table]:
            prop = schema["properties"][column.name]
            prop["x-arrow-type"] = str(column.type)
            if column.is_json:
                prop["contentMediaType"] = "application/json"
        schemas[table] = schema
    return schemas


def render_json_schemas() -> dict[str, str]:
    """File name → file text, exactly as written to ``schemas/json/``."""
    return {
        f"{table}.schema.json": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for table, schema in json_schemas().items()
    }


def write_json_schemas(folder: str | Path = JSON_DIR) -> list[Path]:
    """Write one ``<table>.schema.json`` per table into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_json_schemas().items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
