"""How the CLI prints rows and records: a table for people, JSON, JSON lines or CSV."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import click

FORMATS = ("table", "json", "jsonl", "csv")


def output_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--format table|json|jsonl|csv`` and its ``--json`` alias to a command."""
    command = click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (the same as --format json)."
    )(command)
    command = click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="Output format.",
    )(command)
    return command


def chosen_format(output_format: str, as_json: bool) -> str:
    return "json" if as_json else output_format


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def render_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], output_format: str) -> str:
    """Rows (dicts) as text in the chosen format; ``columns`` orders the table and CSV."""
    if output_format == "json":
        return json.dumps(list(rows), indent=2, ensure_ascii=False, default=str)
    if output_format == "jsonl":
        return "\n".join(json.dumps(row, ensure_ascii=False, default=str) for row in rows)
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in columns])
        return buffer.getvalue().rstrip("\n")
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(line[i]) for line in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )
    return "\n".join(lines)


def render_record(record: dict[str, Any], output_format: str) -> str:
    """One record: a JSON object, or ``key: value`` lines for people."""
    if output_format in ("json", "jsonl"):
        indent = 2 if output_format == "json" else None
        return json.dumps(record, indent=indent, ensure_ascii=False, default=str)
    if output_format == "csv":
        return render_rows([record], list(record), "csv")
    width = max((len(k) for k in record), default=0)
    return "\n".join(f"{key.ljust(width)}  {_cell(value)}" for key, value in record.items())
