"""CSV: one row per region, both directions; and Label Studio's CSV export, read.

Columns (documented in docs/converters.md), in this order:

- task: ``task_id``, ``image`` (the uri), ``text``, ``width``, ``height``, ``split``
- annotation: ``annotation_id``, ``kind``, ``annotator``, ``model_version``,
  ``annotation_score``, ``ground_truth``, ``cancelled``, ``lead_time``, ``created_at``,
  ``updated_at``
- region: ``region_id``, ``type``, ``label``, ``score``, ``x``, ``y``, ``w``, ``h``
  (normalized), ``x_px``, ``y_px``, ``w_px``, ``h_px`` (pixels, where the size is known),
  ``rotation``, ``polygons``, ``keypoints``, ``mask`` (JSON), ``start``, ``end``,
  ``value``, ``parent_id``
- kept as JSON so nothing is lost: ``task_data``, ``annotation_extra``, ``region_extra``

A task without annotations is one row with empty annotation and region cells (unlabeled);
an annotation without regions is one row with empty region cells (background). Numbers
are printed with every digit they need. Reading takes ``x``… or, where those are empty,
``x_px``… divided by the size, so a hand-made CSV in pixels works. The label set's ids
and colors have no place in a CSV: writing reports them when they carry information.

Files whose header is Label Studio's CSV export (``annotation_id``, ``annotator``, ``id``
and no ``region_id``) are read as JSON_MIN records, cells holding JSON parsed.
"""

from __future__ import annotations

import csv
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv

from annostore._sql import connection
from annostore.errors import ParseError
from annostore.tables import Tables

from . import _io
from . import label_studio_min as json_min
from ._assets import install_asset_macros
from ._base import Converter, Report, SkipCollector
from ._numbers import install_number_macros
from ._selection import register_tables, unregister_tables
from ._sqljson import sql_string

__all__ = ["COLUMNS", "CsvConverter", "converter"]

COLUMNS = (
    "task_id",
    "image",
    "text",
    "width",
    "height",
    "split",
    "annotation_id",
    "kind",
    "annotator",
    "model_version",
    "annotation_score",
    "ground_truth",
    "cancelled",
    "lead_time",
    "created_at",
    "updated_at",
    "region_id",
    "type",
    "label",
    "score",
    "x",
    "y",
    "w",
    "h",
    "x_px",
    "y_px",
    "w_px",
    "h_px",
    "rotation",
    "polygons",
    "keypoints",
    "mask",
    "start",
    "end",
    "value",
    "parent_id",
    "task_data",
    "annotation_extra",
    "region_extra",
)
_DOUBLE = (
    "annotation_score",
    "lead_time",
    "score",
    "x",
    "y",
    "w",
    "h",
    "x_px",
    "y_px",
    "w_px",
    "h_px",
    "rotation",
)
_INTEGER = ("width", "height", "start", "end")
_BOOLEAN = ("ground_truth", "cancelled")
_TIMESTAMP = ("created_at", "updated_at")


class CsvConverter(Converter):
    """One CSV row per region, with every column of the canonical tables."""

    name = "csv"
    description = "CSV, one row per region (reads Label Studio's CSV export too)"
    represents = (
        "bbox",
        "polygon",
        "keypoints",
        "mask",
        "class",
        "span",
        "text",
        "relation",
        "ellipse",
        "taxonomy",
    )

    def detect(self, source: str) -> float:
        if _io.is_folder(source):
            return 0.0
        lowered = str(source).lower()
        if lowered.endswith((".csv", ".tsv")):
            return 0.9
        return 0.0

    def read(
        self,
        source: str,
        *,
        errors: str = "raise",
        label_config: str | None = None,
        **options: Any,
    ) -> tuple[Tables, Report]:
        """Read a CSV written by annostore, a hand-made one with the same columns, or Label
        Studio's CSV export (``label_config`` helps there as for JSON_MIN)."""
        if options:
            raise TypeError(f"unknown CSV read options: {', '.join(sorted(options))}")
        collector = SkipCollector(errors)  # type: ignore[arg-type]
        path = str(source)
        table = _read_table(_io.read_bytes(source), path)
        columns = set(table.column_names)
        if "region_id" not in columns and {"annotation_id", "annotator", "id"} <= columns:
            report = Report(self.name, "read", notes=["read as Label Studio's CSV export"])
            tables = _read_label_studio_csv(table, path, collector, report, label_config)
        else:
            report = Report(self.name, "read")
            tables = parse(table, path, collector)
        report.counts = tables.counts
        report.skipped = collector.skipped
        return tables, report

    def write(
        self,
        tables: Tables,
        target: str,
        *,
        strict: bool = False,
        overwrite: bool = False,
        **options: Any,
    ) -> Report:
        """Write every task, annotation and region, one row per region."""
        if options:
            raise TypeError(f"unknown CSV write options: {', '.join(sorted(options))}")
        report = Report(self.name, "write")
        with connection() as con:
            install_number_macros(con)
            register_tables(con, tables)
            try:
                _count_losses(con, report)
                report.check_strict(strict)
                with _io.atomic_file(target, overwrite=overwrite) as temp:
                    rows = con.sql(_SELECT_ROWS).to_arrow_table()
                    pa_csv.write_csv(
                        rows,
                        temp,
                        write_options=pa_csv.WriteOptions(quoting_style="needed"),
                    )
            finally:
                unregister_tables(con)
        report.counts = {"rows": rows.num_rows, "regions": tables.regions.num_rows}
        report.files_written = 1
        return report


converter = CsvConverter()


def _text(number: str) -> str:
    """SQL: a double as the shortest text that reads back as the same double."""
    return f"CAST({number} AS VARCHAR)"


_SELECT_ROWS = f"""
    SELECT t.task_id, t.uri AS image, t.text, t.width::VARCHAR AS width, t.height::VARCHAR AS height,
           t.split,
           a.annotation_id, a.kind, a.annotator, a.model_version,
           {_text("a.score")} AS annotation_score,
           a.ground_truth::VARCHAR AS ground_truth, a.cancelled::VARCHAR AS cancelled,
           {_text("a.lead_time")} AS lead_time,
           strftime(a.created_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS created_at,
           strftime(a.updated_at, '%Y-%m-%dT%H:%M:%S.%fZ') AS updated_at,
           r.region_id, r.type, r.label, {_text("r.score")} AS score,
           {_text("r.x")} AS x, {_text("r.y")} AS y, {_text("r.w")} AS w, {_text("r.h")} AS h,
           {_text("scaled(r.x, t.width)")} AS x_px, {_text("scaled(r.y, t.height)")} AS y_px,
           {_text("scaled(r.w, t.width)")} AS w_px, {_text("scaled(r.h, t.height)")} AS h_px,
           {_text("r.rotation")} AS rotation,
           to_json(r.polygons)::VARCHAR AS polygons, to_json(r.keypoints)::VARCHAR AS keypoints,
           to_json(r.mask)::VARCHAR AS mask,
           r.start::VARCHAR AS start, r."end"::VARCHAR AS "end", r.value, r.parent_id,
           t.data AS task_data, a.extra AS annotation_extra, r.extra AS region_extra
    FROM tasks t
    LEFT JOIN annotations a USING (task_id)
    LEFT JOIN regions r USING (annotation_id)
    ORDER BY t.task_id, a.annotation_id NULLS FIRST, r.region_id NULLS FIRST
"""


def _count_losses(con: duckdb.DuckDBPyConnection, report: Report) -> None:
    carried = con.sql(
        """
        SELECT count(*) FILTER (WHERE label_id IS NOT NULL OR color IS NOT NULL
                                OR supercategory IS NOT NULL OR keypoint_names IS NOT NULL
                                OR skeleton IS NOT NULL OR extra IS NOT NULL)
        FROM labels
        """
    ).fetchall()[0][0]
    report.drop("label ids, colors and keypoint names (a CSV of regions has no label set)", carried)


def _read_table(data: bytes, path: str) -> pa.Table:
    """All cells as strings (an empty cell is null); the delimiter is sniffed (comma or tab)."""
    head = data[:4096].decode("utf-8", "replace").splitlines()[0] if data else ""
    delimiter = "\t" if head.count("\t") > head.count(",") else ","
    return _all_strings(data, delimiter, path)


def _all_strings(data: bytes, delimiter: str, path: str) -> pa.Table:
    header = data.split(b"\n", 1)[0].decode("utf-8-sig", "replace").rstrip("\r")
    names = next(csv.reader([header], delimiter=delimiter), [])
    if not names or names == [""]:
        raise ParseError(path, "header", "no header row (the first line names the columns)")
    try:
        return pa_csv.read_csv(
            pa.py_buffer(data),
            parse_options=pa_csv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=True,
                null_values=[""],  # "NA" or "nan" is a value (and then an error), not a gap
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise ParseError(path, None, f"not a readable CSV ({exc})") from None


def parse(table: pa.Table, path: str, collector: SkipCollector) -> Tables:
    """annostore's CSV (or a hand-made one with some of its columns) → the four tables."""
    missing = [c for c in ("task_id",) if c not in table.column_names]
    if missing:
        raise ParseError(
            path,
            "header",
            f"missing column {missing[0]!r} (see the CSV columns in docs/converters.md)",
        )
    for column in COLUMNS:
        if column not in table.column_names:
            table = table.append_column(column, pa.nulls(table.num_rows, pa.string()))
    with connection() as con:
        install_asset_macros(con)
        con.register("csv_rows", table)
        try:
            return _parse(con, path, collector)
        finally:
            con.unregister("csv_rows")
            con.execute("DROP TABLE IF EXISTS csv_typed")


def _parse(con: duckdb.DuckDBPyConnection, path: str, collector: SkipCollector) -> Tables:
    typed = ", ".join(
        [f'TRY_CAST("{c}" AS DOUBLE) AS "{c}"' for c in _DOUBLE]
        + [f'TRY_CAST("{c}" AS BIGINT) AS "{c}"' for c in _INTEGER]
        + [f'TRY_CAST("{c}" AS BOOLEAN) AS "{c}"' for c in _BOOLEAN]
        + [f'TRY_CAST("{c}" AS TIMESTAMPTZ) AS "{c}"' for c in _TIMESTAMP]
    )
    converted = (*_DOUBLE, *_INTEGER, *_BOOLEAN, *_TIMESTAMP)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE csv_typed AS
        SELECT row_number() OVER () + 1 AS line,
               * EXCLUDE ({", ".join(f'"{c}"' for c in converted)}), {typed}
        FROM csv_rows
        """
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE csv_raw AS SELECT row_number() OVER () + 1 AS line, * FROM csv_rows"
    )
    checks = []
    for column in _DOUBLE:
        checks.append(
            (
                f'r."{column}" IS NOT NULL AND (t."{column}" IS NULL OR isnan(t."{column}"))',
                f"'{column}: expected a number, got ' || r.\"{column}\"",
            )
        )
    for column in _INTEGER:
        checks.append(
            (
                f'r."{column}" IS NOT NULL AND t."{column}" IS NULL',
                f"'{column}: expected an integer, got ' || r.\"{column}\"",
            )
        )
    for column in ("width", "height"):
        checks.append(
            (
                f't."{column}" IS NOT NULL AND t."{column}" < 1',
                f"'{column}: must be positive, got ' || r.\"{column}\"",
            )
        )
    for column in _BOOLEAN:
        checks.append(
            (
                f'r."{column}" IS NOT NULL AND t."{column}" IS NULL',
                f"'{column}: expected true or false, got ' || r.\"{column}\"",
            )
        )
    for column in _TIMESTAMP:
        checks.append(
            (
                f'r."{column}" IS NOT NULL AND t."{column}" IS NULL',
                f"'{column}: expected an ISO 8601 time, got ' || r.\"{column}\"",
            )
        )
    for column in (
        "polygons",
        "keypoints",
        "mask",
        "task_data",
        "annotation_extra",
        "region_extra",
    ):
        checks.append(
            (
                f'r."{column}" IS NOT NULL AND NOT json_valid(r."{column}")',
                f"'{column}: not JSON: ' || left(r.\"{column}\", 60)",
            )
        )
    checks += [
        (
            "r.polygons IS NOT NULL AND json_valid(r.polygons) AND TRY_CAST(r.polygons AS DOUBLE[][]) IS NULL",
            "'polygons: expected a list of rings of numbers'",
        ),
        (
            "r.keypoints IS NOT NULL AND json_valid(r.keypoints) AND TRY_CAST(r.keypoints AS DOUBLE[]) IS NULL",
            "'keypoints: expected a list of numbers'",
        ),
        (
            "r.region_id IS NOT NULL AND r.annotation_id IS NULL",
            "'a region needs an annotation_id'",
        ),
        ("r.region_id IS NOT NULL AND r.type IS NULL", "'a region needs a type'"),
        (
            "r.kind IS NOT NULL AND r.kind NOT IN ('annotation', 'prediction')",
            "'kind: expected annotation or prediction, got ' || r.kind",
        ),
        (
            "t.x IS NULL AND t.x_px IS NOT NULL AND t.width IS NULL",
            "'x_px without a width: cannot normalize'",
        ),
    ]
    cases = " ".join(f"WHEN {c} THEN {m}" for c, m in checks)
    rows = con.sql(
        f"SELECT line, msg FROM (SELECT r.line, CASE {cases} END AS msg FROM csv_raw r JOIN csv_typed t USING (line)) "
        "WHERE msg IS NOT NULL ORDER BY line" + (" LIMIT 1" if collector.errors == "raise" else "")
    ).fetchall()
    for line, message in rows:
        collector.bad(path, line, message)
    if rows:
        con.execute(f"DELETE FROM csv_typed WHERE line IN ({', '.join(str(r[0]) for r in rows)})")
    con.execute("DROP TABLE csv_raw")
    tasks = con.sql(
        """
        SELECT task_id, arg_min(image, line) AS uri, NULL AS asset_key, arg_min(text, line) AS text,
               arg_min(width, line)::INTEGER AS width, arg_min(height, line)::INTEGER AS height,
               arg_min(split, line) AS split, arg_min(task_data, line) AS data
        FROM csv_typed GROUP BY task_id ORDER BY min(line)
        """
    ).to_arrow_table()
    con.register("csv_tasks", tasks)
    try:
        tasks = con.sql(
            "SELECT task_id, uri, annostore_asset_key(uri) AS asset_key, text, width, height, "
            "split, data FROM csv_tasks"
        ).to_arrow_table()
    finally:
        con.unregister("csv_tasks")
    annotations = con.sql(
        """
        SELECT annotation_id, arg_min(task_id, line) AS task_id, coalesce(arg_min(kind, line), 'annotation') AS kind,
               arg_min(annotator, line) AS annotator, arg_min(model_version, line) AS model_version,
               arg_min(annotation_score, line) AS score,
               coalesce(arg_min(ground_truth, line), FALSE) AS ground_truth,
               coalesce(arg_min(cancelled, line), FALSE) AS cancelled,
               arg_min(lead_time, line) AS lead_time, arg_min(created_at, line) AS created_at,
               arg_min(updated_at, line) AS updated_at, arg_min(annotation_extra, line) AS extra
        FROM csv_typed WHERE annotation_id IS NOT NULL GROUP BY annotation_id ORDER BY min(line)
        """
    ).to_arrow_table()
    regions = con.sql(
        """
        SELECT annotation_id, region_id, type, label, score,
               coalesce(x, x_px / width) AS x, coalesce(y, y_px / height) AS y,
               coalesce(w, w_px / width) AS w, coalesce(h, h_px / height) AS h,
               rotation, polygons::DOUBLE[][] AS polygons, keypoints::DOUBLE[] AS keypoints,
               CASE WHEN mask IS NOT NULL THEN
                   {'size': (mask::JSON->'$.size')::BIGINT[], 'counts': mask::JSON->>'$.counts'} END AS mask,
               start, "end", value, parent_id, region_extra AS extra
        FROM csv_typed WHERE region_id IS NOT NULL ORDER BY line
        """
    ).to_arrow_table()
    labels = con.sql(
        "SELECT DISTINCT label FROM csv_typed WHERE label IS NOT NULL ORDER BY label"
    ).to_arrow_table()
    return Tables(tasks=tasks, annotations=annotations, regions=regions, labels=labels)


def _read_label_studio_csv(
    table: pa.Table, path: str, collector: SkipCollector, report: Report, label_config: str | None
) -> Tables:
    """Label Studio's CSV export is JSON_MIN flattened: rebuild the records, then read them."""
    with connection() as con:
        con.register("ls_csv", table)
        try:
            values = ", ".join(
                f"{sql_string(name)}, {_cell_json(name)}" for name in table.column_names
            )
            records = con.sql(
                f"SELECT json_object({values})::VARCHAR AS r FROM ls_csv"
            ).to_arrow_table()
        finally:
            con.unregister("ls_csv")
    body = (
        b",".join(value.as_py().encode("utf-8") for value in records.column("r"))
        if records.num_rows
        else b""
    )
    config = json_min.full._load_config(label_config)
    export = json_min.to_full_export(b"[" + body + b"]", path, config, report)
    return json_min.full.parse(export, path, collector, report, config=config)


def _cell_json(name: str) -> str:
    """SQL: a cell of Label Studio's CSV as a JSON value (JSON text parsed, numbers kept)."""
    cell = f'"{name}"'
    if name in ("id", "annotation_id", "lead_time"):
        return f"coalesce(TRY_CAST({cell} AS JSON), to_json({cell}))"
    return (
        f"CASE WHEN {cell} IS NULL THEN NULL::JSON "
        f"WHEN (starts_with({cell}, '[') OR starts_with({cell}, '{{')) AND json_valid({cell}) THEN {cell}::JSON "
        f"ELSE to_json({cell}) END"
    )
