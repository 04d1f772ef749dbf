"""Label Studio's JSON_MIN export, both directions.

One record per non-cancelled annotation: the task's data, ``id`` (the task), one key per
control (its ``from_name``) holding the values of its results — with ``original_width``
and ``original_height`` where the result had them, a single choice or a single
transcription collapsed to a bare string — then ``annotator``, ``annotation_id``,
``created_at``, ``updated_at`` and ``lead_time``. Region ids, scores, relations and
predictions are not in the format: writing reports what it leaves out, reading derives
region ids from content.

Which keys are controls: those of the label config when one is given (``label_config``),
else keys whose values look like results (lists of objects with coordinates or labels). A
bare string cannot be told from task data without the config; it stays data (and the
read report says so).

Both directions go through the full export's converter: records are regrouped into
tasks (SQL over DuckDB's JSON reader) and parsed by it; writing renders the full export
and reshapes it.
"""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from annostore._sql import connection
from annostore.errors import ParseError
from annostore.tables import Tables

from . import _io
from . import label_studio as full
from ._base import Converter, Report, SkipCollector
from ._label_config import LabelConfig
from ._sqljson import join_json_texts, load_document, sql_string

__all__ = ["LabelStudioMinConverter", "converter"]

RECORD_KEYS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time")
#: a value key that names the result type
_TYPE_KEYS = (*full.LABEL_KEYS, "textarea", "text")


class LabelStudioMinConverter(Converter):
    """Label Studio JSON_MIN: one flat record per annotation."""

    name = "label-studio-min"
    description = "Label Studio JSON_MIN export (one flat record per annotation)"
    represents = (
        "bbox",
        "polygon",
        "keypoints",
        "ellipse",
        "mask",
        "class",
        "taxonomy",
        "span",
        "text",
    )

    def detect(self, source: str) -> float:
        if _io.is_folder(source) or not str(source).lower().endswith(".json"):
            return 0.0
        fs, path = _io.filesystem(source)
        with fs.open(path, "rb") as handle:
            head = handle.read(65536).decode("utf-8", "replace").lstrip()
        if head.startswith("[") and '"annotation_id"' in head and '"annotations"' not in head:
            return 0.85
        return 0.0

    def read(
        self,
        source: str,
        *,
        errors: str = "raise",
        label_config: str | None = None,
        **options: Any,
    ) -> tuple[Tables, Report]:
        """Read a JSON_MIN export; ``label_config`` names the controls exactly."""
        if options:
            raise TypeError(f"unknown JSON_MIN read options: {', '.join(sorted(options))}")
        collector = SkipCollector(errors)  # type: ignore[arg-type]
        config = full._load_config(label_config)
        report = Report(self.name, "read")
        export = to_full_export(_io.read_bytes(source), str(source), config, report)
        tables = full.parse(export, str(source), collector, report, config=config)
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
        """Write a JSON_MIN export (one record per non-cancelled human annotation)."""
        if options:
            raise TypeError(f"unknown JSON_MIN write options: {', '.join(sorted(options))}")
        report = Report(self.name, "write")
        export = b"".join(full.render(tables, Report(self.name, "write")))
        rendered = from_full_export(export, tables, report)
        report.check_strict(strict)
        _io.write_whole_file(target, [rendered], overwrite=overwrite)
        report.files_written = 1
        return report


converter = LabelStudioMinConverter()


def _control_types(config: LabelConfig | None) -> dict[str, str]:
    return {control.name: control.type for control in config.controls} if config else {}


def to_full_export(data: bytes, path: str, config: LabelConfig | None, report: Report) -> bytes:
    """JSON_MIN records → a full Label Studio export of the same annotations."""
    controls = _control_types(config)
    with connection() as con:
        kind = load_document(con, "min_doc", data, path)
        try:
            return _to_full(con, path, controls, report, kind)
        finally:
            con.execute("DROP TABLE IF EXISTS min_doc")
            con.execute("DROP TABLE IF EXISTS min_rec")
            con.execute("DROP TABLE IF EXISTS min_kv")


def _to_full(
    con: duckdb.DuckDBPyConnection,
    path: str,
    controls: dict[str, str],
    report: Report,
    kind: str,
) -> bytes:
    if kind != "ARRAY":
        raise ParseError(
            path, None, f"expected a JSON list of records, got a JSON {str(kind).lower()}"
        )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE min_rec AS
        SELECT idx, j FROM (SELECT unnest(a) AS j, unnest(range(len(a))) AS idx
                            FROM (SELECT doc AS a FROM min_doc))
        """
    )
    bad = con.sql(
        "SELECT idx, json_type(j) FROM min_rec WHERE json_type(j) <> 'OBJECT' OR "
        "json_type(j, '$.id') NOT IN ('UBIGINT', 'BIGINT', 'VARCHAR') ORDER BY idx LIMIT 1"
    ).fetchall()
    if bad:
        raise ParseError(
            path, f"[{bad[0][0]}]", 'expected a record object with an "id" (the task id)'
        )
    con.register(
        "min_controls",
        pa.table(
            {
                "k": pa.array(list(controls), pa.string()),
                "ctype": pa.array(list(controls.values()), pa.string()),
            }
        ),
    )
    fixed = "(" + ", ".join(sql_string(k) for k in RECORD_KEYS) + ")"
    type_keys = "[" + ", ".join(sql_string(k) for k in _TYPE_KEYS) + "]"
    try:
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE min_kv AS
            WITH kv AS (
                SELECT idx, j, unnest(json_keys(j)) AS k FROM min_rec
            ),
            typed AS (
                SELECT kv.*, j->k AS v, c.ctype,
                       -- without a config: a list of objects with coordinates or labels is a control
                       c.ctype IS NOT NULL OR (
                           json_type(j->k) = 'ARRAY' AND json_array_length(j->k) > 0
                           AND json_type(j->k, '$[0]') = 'OBJECT'
                           AND (json_exists(j->k, '$[0].x') OR json_exists(j->k, '$[0].points')
                                OR json_exists(j->k, '$[0].start')
                                OR len(list_filter({type_keys}, lambda t: json_exists(j->k, '$[0].' || t))) > 0)
                       ) AS is_control
                FROM kv LEFT JOIN min_controls c USING (k)
                WHERE k NOT IN {fixed}
            )
            SELECT * FROM typed
            """
        )
    finally:
        con.unregister("min_controls")
    ambiguous = con.sql(
        "SELECT count(DISTINCT k) FROM min_kv WHERE NOT is_control AND json_type(v) IN ('VARCHAR', 'ARRAY')"
    ).fetchall()[0][0]
    if not controls and ambiguous:
        report.notes.append(
            "no label config given: keys holding plain strings or lists of strings were read as "
            "task data (pass label_config= to read choices and transcriptions)"
        )
    # one result per item of a control's value (a bare string: one choice or transcription)
    result_type = """
        coalesce(ctype,
            CASE WHEN json_exists(item, '$.rectanglelabels') THEN 'rectanglelabels'
                 WHEN json_exists(item, '$.polygonlabels') THEN 'polygonlabels'
                 WHEN json_exists(item, '$.keypointlabels') THEN 'keypointlabels'
                 WHEN json_exists(item, '$.ellipselabels') THEN 'ellipselabels'
                 WHEN json_exists(item, '$.brushlabels') THEN 'brushlabels'
                 WHEN json_exists(item, '$.taxonomy') THEN 'taxonomy'
                 WHEN json_exists(item, '$.choices') THEN 'choices'
                 WHEN json_exists(item, '$.labels') THEN 'labels'
                 WHEN json_exists(item, '$.text') AND NOT json_exists(item, '$.start') THEN 'textarea'
                 WHEN json_exists(item, '$.radiusX') THEN 'ellipse'
                 WHEN json_exists(item, '$.points') THEN 'polygon'
                 WHEN json_exists(item, '$.width') AND json_exists(item, '$.height') THEN 'rectangle'
                 WHEN json_exists(item, '$.x') THEN 'keypoint'
                 ELSE 'unknown' END)
    """
    rows = con.sql(
        f"""
        WITH items AS (
            SELECT idx, k, ctype,
                   unnest(CASE WHEN json_type(v) = 'ARRAY' THEN v::JSON[] ELSE [v] END) AS item
            FROM min_kv WHERE is_control
        ),
        results AS (
            SELECT idx, json_object(
                'from_name', k,
                'type', {result_type},
                'value', CASE
                    WHEN json_type(item) = 'VARCHAR' AND {result_type} = 'textarea'
                        THEN json_object('text', [item->>'$'])
                    WHEN json_type(item) = 'VARCHAR' THEN json_object({result_type}, [item->>'$'])
                    ELSE json_merge_patch(item, '{{"original_width": null, "original_height": null}}')
                END,
                'original_width', item->'$.original_width',
                'original_height', item->'$.original_height'
            ) AS result
            FROM items
        ),
        per_record AS (
            SELECT r.idx, r.j, list(x.result) FILTER (WHERE x.result IS NOT NULL) AS results
            FROM min_rec r LEFT JOIN results x USING (idx) GROUP BY r.idx, r.j
        ),
        data AS (
            SELECT idx, json_group_object(k, v) AS data FROM min_kv WHERE NOT is_control GROUP BY idx
        )
        SELECT p.j->'$.id' AS task, coalesce(d.data, '{{}}'::JSON) AS data,
               json_object(
                   'id', p.j->'$.annotation_id',
                   'completed_by', p.j->'$.annotator',
                   'created_at', p.j->'$.created_at',
                   'updated_at', p.j->'$.updated_at',
                   'lead_time', p.j->'$.lead_time',
                   'result', coalesce(p.results, [])
               ) AS annotation,
               p.idx
        FROM per_record p LEFT JOIN data d USING (idx)
        """
    ).to_arrow_table()
    con.register("min_rows", rows)
    try:
        tasks = con.sql(
            """
            SELECT json_object('id', task::JSON, 'data', arg_min(data, idx)::JSON,
                               'annotations', list(annotation::JSON ORDER BY idx))::VARCHAR AS text
            FROM min_rows GROUP BY task ORDER BY min(idx)
            """
        ).to_arrow_table()
    finally:
        con.unregister("min_rows")
    # keys the records had as null are left out of the full export (absent, not null)
    return join_json_texts(tasks.column("text"), b"[", b"]")


def from_full_export(export: bytes, tables: Tables, report: Report) -> bytes:
    """A rendered full export → JSON_MIN records, counting what the format leaves out."""
    counts = _losses(tables)
    report.drop("predictions (JSON_MIN holds annotations only)", counts["predictions"])
    report.drop("cancelled annotations (not in JSON_MIN)", counts["cancelled"])
    report.drop("relations (not in JSON_MIN)", counts["relations"])
    report.drop("region scores (not in JSON_MIN)", counts["scores"])
    report.drop(
        "region ids (JSON_MIN has none; reading derives them from content)", counts["regions"]
    )
    with connection() as con:
        load_document(con, "min_full", export, "rendered export")
        try:
            records = con.sql(
                """
                WITH tasks AS (
                    SELECT unnest(doc) AS t FROM min_full
                ),
                anns AS (
                    SELECT t, unnest(coalesce(t->'$.annotations', '[]')::JSON[]) AS a FROM tasks
                ),
                kept AS (
                    SELECT * FROM anns WHERE NOT coalesce((a->>'$.was_cancelled')::BOOLEAN, FALSE)
                ),
                results AS (
                    SELECT t, a, unnest((a->'$.result')::JSON[]) AS r FROM kept
                ),
                per_control AS (
                    SELECT t->'$.id' AS task, a->'$.id' AS annotation, r->>'$.from_name' AS k,
                           -- in value order: JSON_MIN has no region ids to order by
                           list(json_merge_patch(r->'$.value', json_object(
                               'original_width', r->'$.original_width',
                               'original_height', r->'$.original_height'))
                               ORDER BY (r->'$.value')::VARCHAR) AS items,
                           any_value(r->>'$.type') AS type
                    FROM results WHERE (r->>'$.type') <> 'relation' AND (r->>'$.from_name') IS NOT NULL
                    GROUP BY ALL
                ),
                collapsed AS (
                    SELECT task, annotation, k,
                        CASE WHEN type = 'choices' AND len(items) = 1 AND json_array_length(items[1], '$.choices') = 1
                                  THEN to_json(items[1]->>'$.choices[0]')
                             WHEN type = 'textarea' AND len(items) = 1 AND json_array_length(items[1], '$.text') = 1
                                  THEN to_json(items[1]->>'$.text[0]')
                             ELSE to_json(items) END AS v
                    FROM per_control
                ),
                controls AS (
                    SELECT task, annotation, json_group_object(k, v) AS values FROM collapsed GROUP BY ALL
                )
                SELECT json_merge_patch(
                    json_merge_patch(coalesce(k.t->'$.data', '{}')::JSON, coalesce(c.values, '{}')::JSON),
                    json_object(
                        'id', k.t->'$.id',
                        'annotator', coalesce(k.a->'$.completed_by.email', k.a->'$.completed_by.id', k.a->'$.completed_by'),
                        'annotation_id', k.a->'$.id',
                        'created_at', k.a->'$.created_at',
                        'updated_at', k.a->'$.updated_at',
                        'lead_time', k.a->'$.lead_time')
                )::VARCHAR AS text
                FROM kept k LEFT JOIN controls c ON c.task = (k.t->'$.id') AND c.annotation = (k.a->'$.id')
                ORDER BY (k.t->>'$.id'), (k.a->>'$.id')
                """
            ).to_arrow_table()
        finally:
            con.execute("DROP TABLE IF EXISTS min_full")
    report.counts = {"records": records.num_rows}
    return join_json_texts(records.column("text"), b"[", b"]\n")


def _losses(tables: Tables) -> dict[str, int]:
    with connection() as con:
        con.register("a", tables.annotations)
        con.register("r", tables.regions)
        try:
            row = con.sql(
                """
                SELECT
                    (SELECT count(*) FROM a WHERE kind = 'prediction'),
                    (SELECT count(*) FROM a WHERE kind = 'annotation' AND cancelled),
                    (SELECT count(*) FROM r JOIN a USING (annotation_id) WHERE kind = 'annotation' AND NOT cancelled AND r.type = 'relation'),
                    (SELECT count(*) FROM r JOIN a USING (annotation_id) WHERE kind = 'annotation' AND NOT cancelled AND r.score IS NOT NULL),
                    (SELECT count(*) FROM r JOIN a USING (annotation_id) WHERE kind = 'annotation' AND NOT cancelled AND r.type <> 'relation')
                """
            ).fetchall()[0]
        finally:
            con.unregister("a")
            con.unregister("r")
    return dict(
        zip(("predictions", "cancelled", "relations", "scores", "regions"), row, strict=True)
    )
