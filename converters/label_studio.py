"""Label Studio's JSON export (a list of tasks), both directions.

Tasks become tasks (``data`` keeps the whole task but its annotations), annotations and
predictions become annotations (``kind``), and every result item becomes a region row
(one per label where it carries several): rectangles → ``bbox`` (with ``rotation``),
polygons → ``polygon``, keypoints → ``keypoints``, ellipses → ``ellipse``, brushes →
``mask`` (Label Studio's RLE decoded and stored as COCO RLE), choices → ``class``,
taxonomy → ``taxonomy``, text spans → ``span`` (UTF-16 offsets converted to code points),
textareas → ``text`` (a per-region transcription points at its shape with ``parent_id``),
relations → ``relation``; anything else keeps its type and its value as JSON.
Percentages become fractions (``x / 100``). What has no column — from_name, to_name,
origin, original sizes, the legacy key, completed_by objects — is kept in ``extra``, so
Label Studio → store → Label Studio gives the same export back (order aside).

Parsing is SQL over DuckDB's JSON reader; Python only decodes brushes and converts text
offsets for texts with characters outside the Basic Multilingual Plane.
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pyarrow as pa

from annostore._sql import connection
from annostore.errors import ParseError
from annostore.tables import Tables

from . import _io
from ._assets import install_asset_macros
from ._base import Converter, Report, SkipCollector
from ._label_config import LabelConfig, parse_label_config
from ._numbers import install_number_macros
from ._rle import (
    coco_counts_from_string,
    coco_counts_to_mask,
    coco_counts_to_string,
    decode_label_studio_rle,
    encode_label_studio_rle,
    mask_to_coco_counts,
)
from ._selection import register_tables, unregister_tables
from ._sqljson import (
    Items,
    TextPieces,
    bad_rows,
    json_object_sql,
    json_text_pieces,
    load_array,
    load_document,
    merged_json_sql,
    rows_table,
    sql_string,
    without_keys,
)

__all__ = ["LabelStudioConverter", "converter"]

#: res_idx is an annotation's rank times this, plus the result's position in it
_RANK_STEP = 1 << 32

#: Label Studio result type → canonical region type
REGION_TYPES = {
    "rectanglelabels": "bbox",
    "rectangle": "bbox",
    "polygonlabels": "polygon",
    "polygon": "polygon",
    "keypointlabels": "keypoints",
    "keypoint": "keypoints",
    "ellipselabels": "ellipse",
    "ellipse": "ellipse",
    "brushlabels": "mask",
    "brush": "mask",
    "choices": "class",
    "taxonomy": "taxonomy",
    "labels": "span",
    "textarea": "text",
    "relation": "relation",
}
#: canonical type → the Label Studio type written when the region did not come from LS
WRITTEN_TYPES = {
    "bbox": "rectanglelabels",
    "polygon": "polygonlabels",
    "keypoints": "keypointlabels",
    "ellipse": "ellipselabels",
    "mask": "brushlabels",
    "class": "choices",
    "taxonomy": "taxonomy",
    "span": "labels",
    "text": "textarea",
    "relation": "relation",
}
#: default control names for regions that did not come from Label Studio
DEFAULT_FROM_NAMES = {
    "rectanglelabels": "label",
    "polygonlabels": "polygon",
    "keypointlabels": "keypoints",
    "ellipselabels": "ellipse",
    "brushlabels": "brush",
    "choices": "choice",
    "taxonomy": "taxonomy",
    "labels": "label",
    "textarea": "transcription",
}
_MAPPED_RESULT_KEYS = ["id", "value", "score", "parentID"]
_MAPPED_VALUE_KEYS = {
    "bbox": ["x", "y", "width", "height", "rotation"],
    "ellipse": ["x", "y", "radiusX", "radiusY", "rotation"],
    "polygon": ["points"],
    "keypoints": ["x", "y"],
    "mask": ["rle", "format"],
    "span": ["start", "end", "text"],
    "text": ["text"],
}
#: the value keys that hold a result's list of labels, each named after its result type
LABEL_KEYS = (
    "rectanglelabels",
    "polygonlabels",
    "keypointlabels",
    "ellipselabels",
    "brushlabels",
    "choices",
    "taxonomy",
    "labels",
)


def _label_key_sql(column: str) -> str:
    """SQL: the result type in ``column`` when its value holds a list of labels, else NULL."""
    listed = ", ".join(sql_string(key) for key in LABEL_KEYS)
    return f"CASE WHEN {column} IN ({listed}) THEN {column} END"


_LABEL_KEY_SQL = _label_key_sql("t")
# Every value key a column or a check reads, parsed once per result into a struct of JSON
# leaves: each ``val->>'$.x'`` would parse the whole value's text again (it did, about
# twenty times per region).
_VALUE_KEYS = (
    "x",
    "y",
    "width",
    "height",
    "rotation",
    "radiusX",
    "radiusY",
    "points",
    "start",
    "end",
    "text",
    "rle",
    *LABEL_KEYS,
)
_VALUE_STRUCTURE = sql_string(json.dumps({key: "JSON" for key in _VALUE_KEYS}))
_LABEL_LIST_SQL = (
    "CASE t "
    + " ".join(f"WHEN {sql_string(k)} THEN tv[{sql_string(k)}]" for k in LABEL_KEYS)
    + " END"
)


class LabelStudioConverter(Converter):
    """Label Studio JSON exports: annotations and predictions of every result type."""

    name = "label-studio"
    description = "Label Studio JSON export (list of tasks with annotations and predictions)"
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
        "relation",
    )

    def detect(self, source: str) -> float:
        if _io.is_folder(source) or not str(source).lower().endswith(".json"):
            return 0.0
        fs, path = _io.filesystem(source)
        with fs.open(path, "rb") as handle:
            head = handle.read(65536).decode("utf-8", "replace").lstrip()
        if (
            head.startswith("[")
            and '"data"' in head
            and any(key in head for key in ('"annotations"', '"completions"', '"predictions"'))
        ):
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
        """Read an export. ``label_config`` (XML text or a path to it) orders and colors
        the label set and says which data keys hold the image and the text."""
        if options:
            raise TypeError(f"unknown Label Studio read options: {', '.join(sorted(options))}")
        collector = SkipCollector(errors)  # type: ignore[arg-type]
        config = _load_config(label_config)
        report = Report(self.name, "read")
        with _io.open_document(source) as document:
            tables = parse(
                document.data, str(source), collector, report, config=config, file=document.local
            )
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
        """Write an export Label Studio imports: every task with its annotations and
        predictions."""
        if options:
            raise TypeError(f"unknown Label Studio write options: {', '.join(sorted(options))}")
        report = Report(self.name, "write")
        rendered = render(tables, report)
        report.check_strict(strict)
        _io.write_whole_file(target, rendered, overwrite=overwrite)
        report.files_written = 1
        return report


converter = LabelStudioConverter()


def _load_config(label_config: str | None) -> LabelConfig | None:
    if label_config is None:
        return None
    text = label_config
    if not label_config.lstrip().startswith("<"):
        text = _io.read_bytes(label_config).decode("utf-8-sig")
        return parse_label_config(text, label_config)
    return parse_label_config(text)


# ====================================================================== parsing


def parse(
    data: bytes,
    path: str,
    collector: SkipCollector,
    report: Report,
    *,
    config: LabelConfig | None = None,
    file: str | None = None,
) -> Tables:
    """Export bytes → the four tables (``file``: a local file holding exactly them)."""
    with connection() as con:
        install_number_macros(con)
        install_asset_macros(con)
        _install_macros(con)
        try:
            return _parse(con, data, path, collector, report, config, file)
        finally:
            for table in (
                "ls_doc",
                "ls_dup",
                "ls_task",
                "ls_ann",
                "ls_res",
                "ls_rows",
                "ls_occ",
                "ls_sizes",
                "ls_exact",
            ):
                con.execute(f"DROP TABLE IF EXISTS {table}")


def _install_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """
        CREATE OR REPLACE TEMP MACRO ls_pct(v) AS scaled(v, 100.0);
        -- whether a writer would print something other than the percentage p read as v:
        -- when v * 100 is p and neither float next to p maps back to v, p is the only
        -- candidate ``scaled`` could choose, and its candidate lists are not needed
        CREATE OR REPLACE TEMP MACRO ls_pct_differs(v, p) AS
            CASE WHEN v * 100.0 = p AND nextafter(p, 'inf'::DOUBLE) / 100.0 <> v
                      AND nextafter(p, '-inf'::DOUBLE) / 100.0 <> v THEN FALSE
                 ELSE ls_pct(v) IS DISTINCT FROM p END;
        CREATE OR REPLACE TEMP MACRO ls_num(j) AS
            CASE WHEN json_type(j) IN ('UBIGINT', 'BIGINT', 'DOUBLE') THEN j::DOUBLE END;
        """
    )


def _parse(
    con: duckdb.DuckDBPyConnection,
    data: bytes,
    path: str,
    collector: SkipCollector,
    report: Report,
    config: LabelConfig | None,
    file: str | None,
) -> Tables:
    shape = load_array(con, "ls_doc", data, path, objects=_READ_AS_MAPS, file=file)
    if shape is None:
        kind = load_document(con, "ls_doc", data, path)
        raise ParseError(
            path, None, f"expected a JSON list of tasks, got a JSON {str(kind).lower()}"
        )
    # each task read as a map of its members where it can be: nothing is parsed twice
    task = Items("j", maps=shape == "objects")
    members = task.members(["id", "data", "annotations", "completions", "predictions"])
    rest = task.without(["id", "annotations", "completions", "predictions"])
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_task AS
        SELECT idx, {task.kind()} AS jt, v[1] AS id_j, v[2] AS data_j, v[3] AS anns_j,
               v[4] AS comps_j, v[5] AS preds_j, {rest} AS task_data,
               -- here, not in a step of its own: each copy of this table is the whole export
               coalesce(v[1]->>'$', 'sha:' || left(md5(v[2]::VARCHAR), 16)) AS task_id
        FROM (SELECT idx, j, {members} AS v FROM ls_doc)
        """
    )
    # Each step copies what it keeps, so what is done with is dropped at once: an export of
    # a million regions is gigabytes of JSON text per copy.
    con.execute("DROP TABLE ls_doc")
    # Repeated task ids, found over narrow columns: a window over the tasks themselves
    # would sort their whole text (the reader's peak at a million regions).
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ls_dup AS
        SELECT idx, first FROM (
            SELECT idx, id_j, count(*) OVER w AS same, min(idx) OVER w AS first
            FROM (SELECT idx, id_j FROM ls_task) WINDOW w AS (PARTITION BY id_j->>'$'))
        WHERE id_j IS NOT NULL AND same > 1 AND idx > first
        """
    )
    bad = bad_rows(
        con,
        "(SELECT t.*, d.first FROM ls_task t LEFT JOIN ls_dup d USING (idx))",
        [
            ("jt <> 'OBJECT'", "'expected a task object, got ' || jt"),
            ("data_j IS NULL", "'missing key \"data\"'"),
            (
                "json_type(data_j) <> 'OBJECT'",
                "'\"data\" must be an object, got ' || json_type(data_j)",
            ),
            (
                "id_j IS NOT NULL AND json_type(id_j) NOT IN ('UBIGINT', 'BIGINT', 'VARCHAR')",
                "'\"id\" must be an integer or a string, got ' || id_j::VARCHAR",
            ),
            (
                "first IS NOT NULL",
                "'duplicate task id ' || id_j::VARCHAR || ' (first at [' || first || '])'",
            ),
            (
                "coalesce(json_type(anns_j), 'ARRAY') NOT IN ('ARRAY', 'NULL') OR "
                "coalesce(json_type(comps_j), 'ARRAY') NOT IN ('ARRAY', 'NULL') OR "
                "coalesce(json_type(preds_j), 'ARRAY') NOT IN ('ARRAY', 'NULL')",
                '\'"annotations" and "predictions" must be lists\'',
            ),
        ],
        path=path,
        what="",
        collector=collector,
    )
    con.execute("DROP TABLE ls_dup")
    _delete(con, "ls_task", "idx", bad)
    legacy = con.sql(
        "SELECT count(*) FROM ls_task WHERE comps_j IS NOT NULL AND anns_j IS NULL"
    ).fetchall()[0][0]
    if legacy:
        report.notes.append(f"{legacy} tasks use the legacy 'completions' key; read as annotations")
    _read_annotations(con, path, collector, report)
    _read_results(con, path, collector)
    return _assemble(con, path, report, config)


def _delete(con: duckdb.DuckDBPyConnection, table: str, column: str, values: list[Any]) -> None:
    if values:
        con.register("ls_bad", pa.table({"v": pa.array(values)}))
        con.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT v FROM ls_bad)")
        con.unregister("ls_bad")


_ANNOTATION_PATHS = [
    "$.id",
    "$.result",
    "$.completed_by",
    "$.model_version",
    "$.score",
    "$.ground_truth",
    "$.was_cancelled",
    "$.skipped",
    "$.lead_time",
    "$.created_at",
    "$.updated_at",
]


# Tasks and annotations are read as maps of their members where they can be; the tests
# turn this off to check that the general reading gives the same tables.
_READ_AS_MAPS = True

_ANNOTATION_COLUMNS = [
    "id",
    "result",
    "model_version",
    "score",
    "ground_truth",
    "was_cancelled",
    "lead_time",
    "created_at",
    "updated_at",
]


def _blanked(members: str, position: int) -> str:
    """SQL of a list of JSON members with the one at ``position`` (1-based) made NULL: the
    others keep their positions, and the text of that one is held elsewhere only once."""
    return f"list_concat({members}[1:{position - 1}], [NULL::JSON], {members}[{position + 1}:])"


def _read_annotations(
    con: duckdb.DuckDBPyConnection, path: str, collector: SkipCollector, report: Report
) -> None:
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ls_lists AS
        SELECT task_id, idx AS task_idx, 'annotation' AS kind,
               coalesce(anns_j, comps_j) AS items,
               CASE WHEN anns_j IS NULL AND comps_j IS NOT NULL THEN 'completions'
                    ELSE 'annotations' END AS list_key
        FROM ls_task
        UNION ALL
        SELECT task_id, idx, 'prediction', preds_j, 'predictions' FROM ls_task
        """
    )
    # the lists are most of the export's text: the tasks keep only what is left
    con.execute(
        "CREATE OR REPLACE TEMP TABLE ls_task AS SELECT idx, task_id, data_j, task_data FROM ls_task"
    )
    # Each annotation read as a map of its members, which takes one parse where pulling
    # its members out of its text takes two. A list holding anything but objects with
    # distinct keys (a null, a prediction listed by id, a repeated key) is read as JSON.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ls_maps AS
        SELECT * EXCLUDE (items), json_transform(items, '["MAP(VARCHAR, JSON)"]') AS maps
        FROM ls_lists WHERE items IS NOT NULL AND json_type(items) = 'ARRAY'
        """
    )
    as_maps = (
        _READ_AS_MAPS
        and not con.sql(
            "SELECT count(*) FROM ls_maps WHERE list_contains(list_transform(maps, lambda m: m IS NULL), true)"
        ).fetchall()[0][0]
    )
    con.execute(f"DROP TABLE {'ls_lists' if as_maps else 'ls_maps'}")
    source, items = ("ls_maps", "maps") if as_maps else ("ls_lists", "items::JSON[]")
    annotation = Items("j", maps=as_maps)
    kind = annotation.kind()
    values = annotation.members([p.removeprefix("$.") for p in _ANNOTATION_PATHS])
    rest = annotation.without(_ANNOTATION_COLUMNS)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_ann AS
        WITH items AS (
            SELECT task_id, task_idx, kind, list_key, unnest({items}) AS j,
                   unnest(range(len({items}))) AS pos
            FROM {source} WHERE {items} IS NOT NULL
        )
        SELECT * EXCLUDE (j, members),
            -- the results list in a column of its own, so that it can be dropped once the
            -- results are read (it is most of the export's text); v keeps the positions
            members[2] AS results_j, {_blanked("members", 2)} AS v,
            CASE WHEN kind = 'annotation'
                 THEN coalesce(members[1]->>'$', task_id || ':annotation:' || pos)
                 ELSE 'prediction:' || coalesce(members[1]->>'$', task_id || ':' || pos) END AS annotation_id,
            -- the file's order (task, annotations before predictions, position) as one
            -- number: a row_number() over that order would sort the whole JSON payload
            task_idx * 8589934592 + (kind = 'prediction')::BIGINT * 4294967296 + pos AS ann_idx
        FROM (SELECT *, {kind} AS jt, {values} AS members,
                     CASE WHEN {kind} = 'OBJECT' THEN {rest} END AS ann_rest
              FROM items)
        """
    )
    con.execute(f"DROP TABLE {source}")
    # Label Studio's export API lists a task's predictions by id only; there is nothing to read.
    by_id = con.sql(
        "SELECT count(*) FROM ls_ann WHERE kind = 'prediction' AND jt IN ('UBIGINT', 'BIGINT')"
    ).fetchall()[0][0]
    if by_id:
        con.execute("DELETE FROM ls_ann WHERE kind = 'prediction' AND jt IN ('UBIGINT', 'BIGINT')")
        report.drop("predictions listed by id only (Label Studio's export API), not read", by_id)
    bad = bad_rows(
        con,
        "(SELECT *, count(*) OVER (PARTITION BY annotation_id) AS same, "
        "min(ann_idx) OVER (PARTITION BY annotation_id) AS first FROM ls_ann)",
        [
            ("jt <> 'OBJECT'", "'expected an object, got ' || jt"),
            ("results_j IS NULL OR json_type(results_j) <> 'ARRAY'", "'\"result\" must be a list'"),
            (
                "v[1] IS NOT NULL AND json_type(v[1]) NOT IN ('UBIGINT', 'BIGINT', 'VARCHAR')",
                "'\"id\" must be an integer or a string, got ' || v[1]::VARCHAR",
            ),
            ("same > 1 AND ann_idx > first", "'duplicate ' || kind || ' id ' || v[1]::VARCHAR"),
            (
                "v[9] IS NOT NULL AND json_type(v[9]) NOT IN ('UBIGINT', 'BIGINT', 'DOUBLE', 'NULL')",
                "'\"lead_time\" must be a number, got ' || v[9]::VARCHAR",
            ),
            (
                "ls_num(v[9]) < 0 OR NOT isfinite(coalesce(ls_num(v[9]), 0))",
                "'\"lead_time\" must be a finite number ≥ 0, got ' || v[9]::VARCHAR",
            ),
            (
                "v[5] IS NOT NULL AND json_type(v[5]) NOT IN ('UBIGINT', 'BIGINT', 'DOUBLE', 'NULL')",
                "'\"score\" must be a number, got ' || v[5]::VARCHAR",
            ),
        ],
        path=path,
        what="",
        collector=collector,
        label="ann_idx",
        location="'[' || task_idx || '].' || list_key || '[' || pos || ']'",
    )
    _delete(con, "ls_ann", "ann_idx", bad)


_RESULT_PATHS = [
    "$.id",
    "$.from_name",
    "$.to_name",
    "$.type",
    "$.value",
    "$.original_width",
    "$.original_height",
    "$.score",
    "$.parentID",
    "$.from_id",
    "$.to_id",
    "$.labels",
]


# The members a result may have, in the order ``extra`` keeps them (so that each reading
# below gives the same text); members with a column are left out of ``extra``.
_RESULT_KEYS = (
    "id",
    "type",
    "from_name",
    "to_name",
    "value",
    "original_width",
    "original_height",
    "image_rotation",
    "origin",
    "score",
    "parentID",
    "from_id",
    "to_id",
    "direction",
    "labels",
    "readonly",
    "hidden",
    "item_index",
    "source",
    "meta",
)
_RESULT_COLUMNS = ("id", "value", "score", "parentID", "from_id", "labels")
_RESULT_STRUCTURE = sql_string(json.dumps([{key: "JSON" for key in _RESULT_KEYS}]))


def _results_sql(items: str, kind: str, values: str, rest: str, more: str = "") -> str:
    """The statement creating ``ls_res``: one row per result with its position, the
    members in ``_RESULT_PATHS`` order (``v``), its value parsed once (``tv``) and what
    goes to ``extra`` (``result_rest``). ``items`` is the SQL for an annotation's list
    of results, ``kind``, ``values`` and ``rest`` SQL over one item ``j``."""
    return f"""
        CREATE OR REPLACE TEMP TABLE ls_res AS
        WITH ranked AS (
            -- a narrow sort: the annotations' order as dense numbers
            SELECT ann_idx, row_number() OVER (ORDER BY ann_idx) AS ann_rank FROM ls_ann
        ),
        lists AS (
            SELECT a.annotation_id, a.task_id, a.task_idx, a.kind, a.list_key, a.pos AS ann_pos,
                   r.ann_rank, {items} AS items
            FROM ls_ann a JOIN ranked r USING (ann_idx)
        ),
        items AS (
            SELECT annotation_id, task_id, task_idx, kind, list_key, ann_pos, ann_rank,
                   unnest(items) AS j, unnest(range(len(items))) AS rpos
            FROM lists
        ),
        parsed AS (
            SELECT * EXCLUDE (ann_rank, j), {kind} AS jt, {values} AS v,
                   nullif(({rest})::VARCHAR, '{{}}') AS result_rest{more},
                   -- the file's order (annotation, then position) as one number
                   ann_rank * {_RANK_STEP} + rpos AS res_idx
            FROM items
        ),
        typed AS (
            -- the value's text once: in val, not in v as well
            SELECT * EXCLUDE (v), {_blanked("v", 5)} AS v,
                   lower(v[4]->>'$') AS t, v[5] AS val, coalesce(json_type(v[5]), 'NULL') AS val_t,
                   json_transform(v[5], {_VALUE_STRUCTURE}) AS tv
            FROM parsed
        )
        SELECT *, {_region_type_sql()} AS rtype FROM typed
    """


def _read_results_typed(con: duckdb.DuckDBPyConnection) -> bool:
    """Results parsed into a struct of their known members (one parse, no text per
    result). Only when every result has a type and its members are all known and not
    null: the members' lengths must add up to each annotation's list text exactly (an
    unknown, repeated or null member would add bytes), else returns False."""
    values = "[" + ", ".join(f"j[{sql_string(p[2:])}]" for p in _RESULT_PATHS) + "]"
    # no member is null here, so the object's text is its present members' texts joined
    members = ", ".join(
        f"{sql_string(json.dumps(k) + ':')} || j[{sql_string(k)}]"
        for k in _RESULT_KEYS
        if k not in _RESULT_COLUMNS
    )
    rest = f"'{{' || concat_ws(',', {members}) || '}}'"
    # an object's minified text: braces, and per member "key":value plus a comma
    size = " + ".join(
        f"coalesce(strlen(j[{sql_string(k)}]::VARCHAR) + {len(k) + 4}, 0)" for k in _RESULT_KEYS
    )
    con.execute(
        _results_sql(
            f"json_transform(a.results_j, {_RESULT_STRUCTURE})",
            "'OBJECT'",
            values,
            rest,
            f", 1 + {size} AS res_len",
        )
    )
    mismatched = con.sql(
        """
        SELECT (SELECT count(*) FROM ls_res WHERE t IS NULL) + (
            SELECT count(*) FROM (SELECT annotation_id, 1 + sum(res_len + 1) AS list_len
                                  FROM ls_res GROUP BY annotation_id)
            -- the text's length taken before the join, so the join does not hold the text
            JOIN (SELECT annotation_id, strlen(results_j::VARCHAR) AS text_len FROM ls_ann)
            USING (annotation_id) WHERE list_len <> text_len)
        """
    ).fetchall()[0][0]
    if mismatched:
        con.execute("DROP TABLE ls_res")
        return False
    con.execute("ALTER TABLE ls_res DROP COLUMN res_len")
    return True


def _read_results_as_text(con: duckdb.DuckDBPyConnection) -> None:
    """Results taken from their JSON text: whatever their members."""
    paths = ", ".join(sql_string(p) for p in _RESULT_PATHS)
    canonical = "[" + ", ".join(sql_string(k) for k in _RESULT_KEYS) + "]"
    dropped = ", ".join(sql_string(k) for k in _RESULT_COLUMNS)
    # the known members in _RESULT_KEYS order, then any others in the file's order
    ordered = f"""to_json(map_from_entries(list_transform(list_sort(list_filter(
            list_transform(map_entries(json_transform(j, '"MAP(VARCHAR, JSON)"')), lambda e, i:
                {{'r': coalesce(list_position({canonical}, e.key), 1000 + i), 'key': e.key, 'value': e.value}}),
            lambda e: e.key NOT IN ({dropped}))), lambda e: {{'key': e.key, 'value': e.value}})))"""
    rest = f"coalesce({ordered}, {without_keys('j', _RESULT_COLUMNS)})"
    con.execute(
        _results_sql("a.results_j::JSON[]", "json_type(j)", f"json_extract(j, [{paths}])", rest)
    )


def _read_results(con: duckdb.DuckDBPyConnection, path: str, collector: SkipCollector) -> None:
    if not (_READ_AS_MAPS and _read_results_typed(con)):
        _read_results_as_text(con)
    con.execute("ALTER TABLE ls_ann DROP COLUMN results_j")
    number = (
        "coalesce(json_type(tv['{k}']) IN ('UBIGINT', 'BIGINT', 'DOUBLE') "
        "AND isfinite(tv['{k}']::DOUBLE), FALSE)"
    )
    box_ok = " AND ".join(number.format(k=k) for k in ("x", "y", "width", "height"))
    ellipse_ok = " AND ".join(number.format(k=k) for k in ("x", "y", "radiusX", "radiusY"))
    bad = bad_rows(
        con,
        "ls_res",
        [
            ("jt <> 'OBJECT'", "'expected a result object, got ' || jt"),
            ("t IS NULL", "'missing key \"type\"'"),
            ("t <> 'relation' AND val_t <> 'OBJECT'", "'\"value\" must be an object'"),
            (
                "rtype = 'bbox' AND NOT (" + box_ok + ")",
                "'value needs finite numbers x, y, width, height: ' || left(val::VARCHAR, 120)",
            ),
            (
                "rtype = 'bbox' AND (tv['width']::DOUBLE < 0 OR tv['height']::DOUBLE < 0)",
                "'negative width or height: ' || left(val::VARCHAR, 120)",
            ),
            (
                "rtype IN ('bbox', 'ellipse') AND tv['rotation'] IS NOT NULL AND NOT ("
                + number.format(k="rotation")
                + ")",
                "'\"rotation\" must be a finite number: ' || left(val::VARCHAR, 120)",
            ),
            (
                "rtype = 'ellipse' AND NOT (" + ellipse_ok + ")",
                "'value needs finite numbers x, y, radiusX, radiusY: ' || left(val::VARCHAR, 120)",
            ),
            (
                "rtype = 'polygon' AND (TRY_CAST(tv['points'] AS DOUBLE[][]) IS NULL OR "
                "len(list_filter(TRY_CAST(tv['points'] AS DOUBLE[][]), lambda p: len(p) <> 2 OR NOT isfinite(p[1]) OR NOT isfinite(p[2]))) > 0)",
                "'\"points\" must be a list of [x, y] pairs of finite numbers'",
            ),
            (
                "rtype = 'keypoints' AND NOT ("
                + number.format(k="x")
                + " AND "
                + number.format(k="y")
                + ")",
                "'value needs finite numbers x, y'",
            ),
            (
                "rtype = 'mask' AND (TRY_CAST(tv['rle'] AS BIGINT[]) IS NULL)",
                "'brush value needs \"rle\" (a list of bytes)'",
            ),
            (
                "rtype = 'mask' AND (ls_num(v[6]) IS NULL OR ls_num(v[7]) IS NULL)",
                "'a brush needs original_width and original_height'",
            ),
            (
                "rtype = 'span' AND (coalesce(json_type(tv['start']) NOT IN ('UBIGINT', 'BIGINT'), TRUE) OR coalesce(json_type(tv['end']) NOT IN ('UBIGINT', 'BIGINT'), TRUE) OR tv['start']::BIGINT > tv['end']::BIGINT OR tv['start']::BIGINT < 0)",
                "'a text span needs integer start ≤ end: ' || left(val::VARCHAR, 120)",
            ),
            (
                "rtype = 'text' AND TRY_CAST(tv['text'] AS VARCHAR[]) IS NULL",
                "'a textarea needs \"text\", a list of strings'",
            ),
            (
                "rtype IN ('bbox', 'polygon', 'keypoints', 'ellipse', 'mask') AND v[6] IS NOT NULL AND json_type(v[6]) <> 'NULL' AND NOT coalesce(ls_num(v[6]) >= 1 AND ls_num(v[7]) >= 1, FALSE)",
                "'original_width and original_height must be positive, got ' || v[6]::VARCHAR || ' × ' || coalesce(v[7]::VARCHAR, 'nothing')",
            ),
            (
                "t = 'relation' AND (v[10] IS NULL OR v[11] IS NULL)",
                "'a relation needs from_id and to_id'",
            ),
            (
                f"CASE WHEN {_LABEL_LIST_SQL} IS NOT NULL THEN json_type({_LABEL_LIST_SQL}) <> 'ARRAY' "
                # an explicit null list: only those rows look at the value's text again
                f"ELSE {_LABEL_KEY_SQL} IS NOT NULL AND json_exists(val, '$.' || t) END",
                "'\"' || t || '\" must be a list'",
            ),
        ],
        path=path,
        what="",
        collector=collector,
        label="res_idx",
        location="'[' || task_idx || '].' || list_key || '[' || ann_pos || '].result[' || rpos || ']'",
    )
    _delete(con, "ls_res", "res_idx", bad)


def _region_type_sql() -> str:
    cases = " ".join(f"WHEN {sql_string(k)} THEN {sql_string(v)}" for k, v in REGION_TYPES.items())
    return f"CASE t {cases} ELSE t END"


def _assemble(
    con: duckdb.DuckDBPyConnection, path: str, report: Report, config: LabelConfig | None
) -> Tables:
    image_key = config.data_key("image") if config else None
    text_key = config.data_key("text") if config else None
    image_sql = (
        f"data_j->>{sql_string('$.' + json.dumps(image_key))}"
        if image_key
        else "coalesce(data_j->>'$.image', data_j->>'$.img', data_j->>'$.image_url', data_j->>'$.url')"
    )
    text_sql = (
        f"data_j->>{sql_string('$.' + json.dumps(text_key))}"
        if text_key
        else "CASE WHEN json_type(data_j, '$.text') = 'VARCHAR' THEN data_j->>'$.text' END"
    )
    # sizes: the first result that states them
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ls_sizes AS
        SELECT task_id, arg_min(ls_num(v[6]), res_idx) AS w, arg_min(ls_num(v[7]), res_idx) AS h
        FROM ls_res WHERE ls_num(v[6]) >= 1 AND ls_num(v[7]) >= 1 GROUP BY task_id
        """
    )
    tasks = con.sql(
        f"""
        SELECT t.task_id, {image_sql} AS uri, annostore_asset_key({image_sql}) AS asset_key,
               {text_sql} AS text, s.w::INTEGER AS width, s.h::INTEGER AS height, NULL AS split,
               t.task_data AS data
        FROM ls_task t LEFT JOIN ls_sizes s USING (task_id) ORDER BY t.idx
        """
    ).to_arrow_table()
    annotations = con.sql(
        f"""
        SELECT annotation_id, task_id, kind,
            CASE WHEN json_type(v[3]) IN ('UBIGINT', 'BIGINT', 'VARCHAR') THEN v[3]->>'$'
                 WHEN json_type(v[3]) = 'OBJECT' THEN coalesce(v[3]->>'$.id', v[3]->>'$.email') END
                AS annotator,
            v[4]->>'$' AS model_version,
            ls_num(v[5]) AS score,
            coalesce(TRY_CAST(v[6]->>'$' AS BOOLEAN), FALSE) AS ground_truth,
            coalesce(TRY_CAST(v[7]->>'$' AS BOOLEAN), TRY_CAST(v[8]->>'$' AS BOOLEAN), FALSE) AS cancelled,
            ls_num(v[9]) AS lead_time,
            TRY_CAST(v[10]->>'$' AS TIMESTAMPTZ) AS created_at,
            TRY_CAST(v[11]->>'$' AS TIMESTAMPTZ) AS updated_at,
            nullif({
            merged_json_sql(
                "ann_rest",
                [
                    (
                        "exact",
                        "nullif("
                        + json_object_sql(
                            [
                                (
                                    "created_at",
                                    "CASE WHEN strftime(TRY_CAST(v[10]->>'$' AS TIMESTAMPTZ), '%Y-%m-%dT%H:%M:%S.%fZ') IS DISTINCT FROM v[10]->>'$' THEN v[10] END",
                                ),
                                (
                                    "updated_at",
                                    "CASE WHEN strftime(TRY_CAST(v[11]->>'$' AS TIMESTAMPTZ), '%Y-%m-%dT%H:%M:%S.%fZ') IS DISTINCT FROM v[11]->>'$' THEN v[11] END",
                                ),
                            ]
                        )
                        + ", '{}')::JSON",
                    ),
                    ("list_key", "CASE WHEN list_key = 'completions' THEN 'completions' END"),
                ],
            )
        }, '{{}}') AS extra
        FROM ls_ann ORDER BY ann_idx
        """
    ).to_arrow_table()
    con.execute("DROP TABLE ls_ann")
    regions = _regions(con, path, report)
    labels = _labels(regions, config)
    metadata = {"label-studio": {"label_config": config.xml}} if config else {}
    return Tables(
        tasks=tasks, annotations=annotations, regions=regions, labels=labels, metadata=metadata
    )


def _regions(con: duckdb.DuckDBPyConnection, path: str, report: Report) -> pa.Table:
    # the value minus what has a column, and minus its list of labels (keyed by the type)
    value_rest = (
        "CASE WHEN rtype IN ('class', 'taxonomy', 'relation') THEN "
        + without_keys("val", ["choices", "taxonomy"])
        + " WHEN rtype NOT IN ("
        + ", ".join(sql_string(k) for k in _MAPPED_VALUE_KEYS)
        + ") THEN NULL ELSE json_merge_patch("
        + "CASE rtype "
        + " ".join(
            f"WHEN {sql_string(rtype)} THEN coalesce({without_keys('val', keys)}, '{{}}')::JSON"
            for rtype, keys in _MAPPED_VALUE_KEYS.items()
        )
        + " END, json_object(t, NULL))::VARCHAR END"
    )
    # One copy of the results, keeping what the columns below need but not the results'
    # JSON: what is left of each result and value for ``extra`` is taken here, once.
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_rows AS
        WITH base AS (
            SELECT res_idx, annotation_id, task_id, rpos, t, rtype, tv,
                   v[6] AS ow_j, v[7] AS oh_j, v[8] AS score_j, v[9] AS parent_j, v[10] AS from_j,
                   result_rest, {value_rest} AS value_rest,
                   CASE WHEN rtype NOT IN ('bbox', 'ellipse', 'polygon', 'keypoints', 'mask', 'class',
                                           'taxonomy', 'relation', 'span', 'text')
                        THEN val::VARCHAR END AS value_text,
                   CASE WHEN t = 'relation' THEN v[12]
                        ELSE {_LABEL_LIST_SQL} END AS labels_j,
                   coalesce(
                       v[1]->>'$',
                       CASE WHEN t = 'relation' THEN 'relation:' || (v[10]->>'$') || '>' || (v[11]->>'$') END,
                       left(md5(coalesce(v[2]->>'$', '') || '|' || t || '|' || coalesce(val::VARCHAR, '')), 10)
                   ) AS ls_id
            FROM ls_res r
        )
        SELECT * EXCLUDE (labels_j),
            unnest(CASE WHEN json_array_length(labels_j) > 0 THEN labels_j::JSON[] ELSE [NULL::JSON] END)
                AS label_j,
            unnest(CASE WHEN json_array_length(labels_j) > 0 THEN range(json_array_length(labels_j)::BIGINT)
                        ELSE [0::BIGINT] END) AS label_index
        FROM base
        """
    )
    con.execute("DROP TABLE ls_res")
    # Several rows of one annotation with the same Label Studio id (a box and its
    # per-region transcription, several labels): numbered in the file's order, the first
    # geometry first. Only those groups go through the window, over narrow columns.
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE ls_occ AS
        SELECT res_idx, label_index,
            row_number() OVER w - 1 AS occurrence, first_value(rtype) OVER w AS primary_type
        FROM (SELECT res_idx, label_index, annotation_id, ls_id, rtype, rpos FROM ls_rows
              WHERE (annotation_id, ls_id) IN (SELECT (annotation_id, ls_id) FROM ls_rows
                                               GROUP BY annotation_id, ls_id HAVING count(*) > 1))
        WINDOW w AS (PARTITION BY annotation_id, ls_id
                     ORDER BY rtype IN ('text', 'class', 'taxonomy'), rpos, label_index)
        """
    )
    n = "tv['{k}']::DOUBLE"
    x, y, width, height = (n.format(k=k) for k in ("x", "y", "width", "height"))
    rx, ry = n.format(k="radiusX"), n.format(k="radiusY")
    points = "TRY_CAST(tv['points'] AS DOUBLE[][])"
    geometry = f"""
        CASE WHEN rtype = 'bbox' THEN {x} / 100 WHEN rtype = 'ellipse' THEN {x} / 100 - {rx} / 100 END AS x,
        CASE WHEN rtype = 'bbox' THEN {y} / 100 WHEN rtype = 'ellipse' THEN {y} / 100 - {ry} / 100 END AS y,
        CASE WHEN rtype = 'bbox' THEN {width} / 100 WHEN rtype = 'ellipse' THEN 2 * ({rx} / 100) END AS w,
        CASE WHEN rtype = 'bbox' THEN {height} / 100 WHEN rtype = 'ellipse' THEN 2 * ({ry} / 100) END AS h,
        CASE WHEN rtype IN ('bbox', 'ellipse') AND json_type(tv['rotation']) IN ('UBIGINT', 'BIGINT', 'DOUBLE')
             THEN tv['rotation']::DOUBLE END AS rotation,
        CASE WHEN rtype = 'polygon'
             THEN [flatten(list_transform({points}, lambda p: [p[1] / 100, p[2] / 100]))] END AS polygons,
        CASE WHEN rtype = 'keypoints' THEN [{x} / 100, {y} / 100, 2.0] END AS keypoints,
        CASE WHEN rtype = 'span' THEN tv['start']::BIGINT END AS start,
        CASE WHEN rtype = 'span' THEN tv['end']::BIGINT END AS "end",
        CASE WHEN rtype = 'span' THEN tv['text']->>'$'
             WHEN rtype = 'text' THEN array_to_string(TRY_CAST(tv['text'] AS VARCHAR[]), chr(10))
             ELSE value_text END AS value
    """
    exact_pairs = [
        (
            "x",
            f"CASE WHEN rtype = 'bbox' AND ls_pct_differs(x, {x}) THEN {x} "
            f"WHEN rtype = 'ellipse' AND ls_pct_differs(x + w / 2, {x}) THEN {x} END",
        ),
        (
            "y",
            f"CASE WHEN rtype = 'bbox' AND ls_pct_differs(y, {y}) THEN {y} "
            f"WHEN rtype = 'ellipse' AND ls_pct_differs(y + h / 2, {y}) THEN {y} END",
        ),
        (
            "width",
            f"CASE WHEN rtype = 'bbox' AND ls_pct_differs(w, {width}) THEN {width} END",
        ),
        (
            "height",
            f"CASE WHEN rtype = 'bbox' AND ls_pct_differs(h, {height}) THEN {height} END",
        ),
        (
            "radiusX",
            f"CASE WHEN rtype = 'ellipse' AND ls_pct_differs(w / 2, {rx}) THEN {rx} END",
        ),
        (
            "radiusY",
            f"CASE WHEN rtype = 'ellipse' AND ls_pct_differs(h / 2, {ry}) THEN {ry} END",
        ),
        (
            "points",
            f"CASE WHEN rtype = 'polygon' AND list_transform(range(len(polygons[1]) // 2), "
            f"lambda k: [ls_pct(polygons[1][2 * k + 1]), ls_pct(polygons[1][2 * k + 2])]) "
            f"IS DISTINCT FROM {points} THEN tv['points'] END",
        ),
        (
            "kx",
            f"CASE WHEN rtype = 'keypoints' AND ls_pct_differs(keypoints[1], {x}) THEN {x} END",
        ),
        (
            "ky",
            f"CASE WHEN rtype = 'keypoints' AND ls_pct_differs(keypoints[2], {y}) THEN {y} END",
        ),
        (
            "text",
            "CASE WHEN rtype = 'text' AND json_array_length(tv['text']) <> 1 THEN tv['text'] END",
        ),
    ]
    # the exact values are columns first; the JSON is built only for the rows that need it
    exact_columns = ", ".join(f"{sql} AS ex_{key}" for key, sql in exact_pairs)
    exact = json_object_sql([(key, f"ex_{key}") for key, _ in exact_pairs])
    any_exact = " OR ".join(f"ex_{key} IS NOT NULL" for key, _ in exact_pairs)
    extra = merged_json_sql(
        "result_rest",
        [
            ("id", "CASE WHEN occurrence > 0 THEN ls_id END"),
            ("label_index", "CASE WHEN label_index > 0 THEN label_index END"),
            ("label_path", "CASE WHEN json_type(label_j) = 'ARRAY' THEN label_j END"),
            ("value", "nullif(value_rest, '{}')::JSON"),
            ("exact", "nullif(exact_values, '{}')::JSON"),
        ],
    )
    # computed in their own step: nested inside one JSON expression they take DuckDB's
    # binder most of a second to plan
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_exact AS
        SELECT res_idx, label_index, {exact} AS exact_values
        FROM (SELECT res_idx, label_index, {exact_columns}
              FROM (SELECT res_idx, label_index, rtype, tv, {geometry} FROM ls_rows))
        WHERE {any_exact}
        """
    )
    query = f"""
        SELECT annotation_id, region_id, rtype AS type, label, ls_num(score_j) AS score,
               x, y, w, h, rotation, polygons, keypoints,
               NULL::STRUCT(size BIGINT[], counts VARCHAR) AS mask, start, "end", value, parent_id,
               nullif({extra}, '{{}}') AS extra,
               res_idx, task_id, t, ls_num(ow_j) AS ow, ls_num(oh_j) AS oh,
               CASE WHEN rtype = 'mask' THEN tv['rle'] END AS rle
        FROM (
            SELECT *, {geometry},
                ls_id || CASE WHEN occurrence > 0 THEN '#' || occurrence ELSE '' END AS region_id,
                CASE json_type(label_j) WHEN 'VARCHAR' THEN label_j->>'$'
                     WHEN 'ARRAY' THEN label_j->>'$[#-1]'
                     WHEN 'NULL' THEN NULL ELSE label_j::VARCHAR END AS label,
                CASE WHEN t = 'relation' THEN from_j->>'$'
                     WHEN parent_j IS NOT NULL AND json_type(parent_j) <> 'NULL' THEN parent_j->>'$'
                     WHEN occurrence > 0 AND rtype <> primary_type THEN ls_id END AS parent_id
            FROM (SELECT r.*, coalesce(o.occurrence, 0) AS occurrence,
                         coalesce(o.primary_type, r.rtype) AS primary_type, e.exact_values
                  FROM ls_rows r LEFT JOIN ls_occ o USING (res_idx, label_index)
                  LEFT JOIN ls_exact e USING (res_idx, label_index)
                  WHERE r.res_idx >= $low AND r.res_idx < $high))
        ORDER BY res_idx, label_index
        """
    table = _in_passes(con, query)
    for name in ("ls_rows", "ls_occ", "ls_exact"):
        con.execute(f"DROP TABLE {name}")
    table = _decode_brushes(table, report)
    table = _span_offsets(con, table, report)
    return table.drop_columns(["res_idx", "task_id", "t", "ow", "oh", "rle"])


#: regions sorted per pass of the final query: a sort of every region at once held its
#: payload and its input together (the reader's peak)
_PASS_ROWS = 1 << 18


def _in_passes(con: duckdb.DuckDBPyConnection, query: str) -> pa.Table:
    """``query`` (over ``ls_rows``, with ``$low`` / ``$high`` bounds on ``res_idx``) run
    for consecutive ranges of annotations, its sorted pieces in order as one table."""
    rows, last = con.sql("SELECT count(*), max(res_idx) FROM ls_rows").fetchall()[0]
    annotations = (last or 0) // _RANK_STEP + 1
    passes = max(1, -(-rows // _PASS_ROWS))
    step = -(-annotations // passes)
    pieces = [
        con.sql(
            query, params={"low": start * _RANK_STEP, "high": (start + step) * _RANK_STEP}
        ).to_arrow_table()
        for start in range(0, annotations, step)
    ]
    return pa.concat_tables(pieces)


def _decode_brushes(table: pa.Table, report: Report) -> pa.Table:
    """Label Studio brush RLE → COCO RLE masks (Python, one brush at a time; brushes are few)."""
    if not pa.compute.any(pa.compute.equal(table.column("type"), "mask")).as_py():
        return table
    types = table.column("type").to_pylist()
    masks = table.column("mask").to_pylist()
    extras = table.column("extra").to_pylist()
    rles, widths, heights = (table.column(c).to_pylist() for c in ("rle", "ow", "oh"))
    kept = 0
    for index, region_type in enumerate(types):
        if region_type != "mask" or rles[index] is None:
            continue
        rle = json.loads(rles[index])
        width, height = int(widths[index]), int(heights[index])
        try:
            decoded = decode_label_studio_rle(rle)
        except ValueError as exc:
            raise ParseError(
                report.format,
                f"region {table.column('region_id')[index]}",
                f"bad brush RLE ({exc})",
            ) from None
        if len(decoded) != width * height * 4:
            raise ParseError(
                report.format,
                f"region {table.column('region_id')[index]}",
                f"brush RLE holds {len(decoded)} bytes, expected {height} × {width} × 4",
            )
        alpha = decoded[3::4]
        counts = mask_to_coco_counts(alpha, height, width)
        masks[index] = {"size": [height, width], "counts": coco_counts_to_string(counts)}
        # keep the original encoding when ours would differ (another encoder, or colors)
        if encode_label_studio_rle(_rgba_of(alpha)) != rle:
            extra = json.loads(extras[index]) if extras[index] else {}
            extra.setdefault("exact", {})["rle"] = rle
            extras[index] = json.dumps(extra)
            kept += 1
    table = table.set_column(
        table.schema.get_field_index("mask"),
        "mask",
        pa.array(masks, table.schema.field("mask").type),
    )
    table = table.set_column(
        table.schema.get_field_index("extra"), "extra", pa.array(extras, pa.string())
    )
    if kept:
        report.notes.append(
            f"{kept} brushes keep their original RLE (it differs from annostore's encoding)"
        )
    return table


def _rgba_of(alpha: bytes | bytearray) -> bytearray:
    """The RGBA bytes Label Studio's editor writes for a mask: 255 in every channel where set."""
    rgba = bytearray(len(alpha) * 4)
    for channel in range(4):
        rgba[channel::4] = bytes(255 if a else 0 for a in alpha)
    return rgba


def _utf16_to_code_points(text: str) -> list[int]:
    """For each UTF-16 offset into ``text``, the code point offset (None inside a pair)."""
    mapping = []
    for position, char in enumerate(text):
        mapping.append(position)
        if ord(char) > 0xFFFF:
            mapping.append(position)  # the second unit of a surrogate pair
    mapping.append(len(text))
    return mapping


def _span_offsets(con: duckdb.DuckDBPyConnection, table: pa.Table, report: Report) -> pa.Table:
    """Label Studio counts text offsets in UTF-16 units; convert where that differs from
    code points (texts with characters outside the BMP), and count spans whose text does
    not match the task's text."""
    if not pa.compute.any(pa.compute.equal(table.column("type"), "span")).as_py():
        return table
    con.register(
        "ls_spans", table.select(["res_idx", "task_id", "type", "start", "end", "value", "extra"])
    )
    try:
        rows = con.sql(
            """
            SELECT s.res_idx, s.start, s."end", s.value,
                   coalesce(t.data_j->>('$.' || (s.extra->>'$.to_name')), t.data_j->>'$.text') AS text
            FROM ls_spans s JOIN ls_task t USING (task_id) WHERE s.type = 'span'
            """
        ).fetchall()
    finally:
        con.unregister("ls_spans")
    converted: dict[int, tuple[int, int]] = {}
    mismatched = 0
    for res_idx, start, end, value, text in rows:
        if text is None:
            continue
        if any(ord(c) > 0xFFFF for c in text):
            mapping = _utf16_to_code_points(text)
            if end < len(mapping):
                start, end = mapping[start], mapping[end]
                converted[res_idx] = (start, end)
        if value is not None and text[start:end] != value:
            mismatched += 1
    if mismatched:
        report.notes.append(
            f"{mismatched} text spans whose text differs from the task text at their offsets"
        )
    if not converted:
        return table
    starts = table.column("start").to_pylist()
    ends = table.column("end").to_pylist()
    for index, res_idx in enumerate(table.column("res_idx").to_pylist()):
        if res_idx in converted:
            starts[index], ends[index] = converted[res_idx]
    table = table.set_column(
        table.schema.get_field_index("start"), "start", pa.array(starts, pa.int64())
    )
    return table.set_column(table.schema.get_field_index("end"), "end", pa.array(ends, pa.int64()))


def _labels(regions: pa.Table, config: LabelConfig | None) -> pa.Table | None:
    used = sorted(
        label for label in pa.compute.unique(regions.column("label")).to_pylist() if label
    )
    rows = config.label_rows() if config else []
    known = {row["label"] for row in rows}
    for label in used:
        if label not in known:
            rows.append({"label": label, "label_id": len(rows)})
            known.add(label)
    if not rows:
        return None
    for row in rows:
        if isinstance(row.get("extra"), dict):
            row["extra"] = json.dumps(row["extra"], ensure_ascii=False)
    return pa.Table.from_pylist(rows)


# ====================================================================== rendering

_INTERNAL_REGION_KEYS = ["id", "label_index", "label_path", "value", "exact"]


def render(tables: Tables, report: Report) -> TextPieces:
    """The four tables → a Label Studio JSON export, as pieces of its text to write one
    after another (or ``b"".join``)."""
    with connection() as con:
        install_number_macros(con)
        _install_macros(con)
        register_tables(con, tables)
        try:
            return _render(con, tables, report)
        finally:
            unregister_tables(con)
            for name in ("ls_out", "ls_results", "ls_brushes", "ls_offsets"):
                con.execute(f"DROP TABLE IF EXISTS {name}")


def _written_type_sql() -> str:
    cases = " ".join(f"WHEN {sql_string(k)} THEN {sql_string(v)}" for k, v in WRITTEN_TYPES.items())
    return (
        "coalesce(extra->>'$.type', CASE WHEN type = 'bbox' AND label IS NULL THEN 'rectangle' "
        "WHEN type = 'polygon' AND label IS NULL THEN 'polygon' "
        f"ELSE CASE type {cases} ELSE type END END)"
    )


def _default_from_name_sql() -> str:
    cases = " ".join(
        f"WHEN {sql_string(k)} THEN {sql_string(v)}" for k, v in DEFAULT_FROM_NAMES.items()
    )
    return f"CASE ls_type {cases} ELSE ls_type END"


def _render(con: duckdb.DuckDBPyConnection, tables: Tables, report: Report) -> TextPieces:
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_out AS
        SELECT *, coalesce(extra->>'$.id', region_id) AS ls_id, {_written_type_sql()} AS ls_type,
               coalesce(TRY_CAST(extra->>'$.label_index' AS BIGINT), 0) AS label_index,
               row_number() OVER () AS ordinal
        FROM (
            SELECT r.*, a.task_id, t.width AS iw, t.height AS ih, t.text AS task_text
            FROM regions r JOIN annotations a USING (annotation_id) JOIN tasks t USING (task_id)
        )
        """
    )
    _brushes(con)
    _offsets(con)
    head = "arg_min(ordinal, label_index)"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_results AS
        WITH grouped AS (
            SELECT annotation_id, ls_id, ls_type, coalesce(extra->>'$.from_name', '') AS from_key,
                   {head} AS head,
                   list(coalesce(extra->'$.label_path', to_json(label)) ORDER BY label_index)
                       FILTER (WHERE label IS NOT NULL) AS labels
            FROM ls_out GROUP BY ALL
        )
        SELECT g.annotation_id, g.ls_id, g.labels, o.*
        EXCLUDE (annotation_id, ls_id)
        FROM grouped g JOIN ls_out o ON o.ordinal = g.head
        """
    )
    pct = "ls_pct"
    exact = "TRY_CAST(extra->'$.exact.{k}' AS DOUBLE)"

    def kept(key: str, normalized: str, expression: str) -> str:
        value = exact.format(k=key)
        return f"CASE WHEN {value} IS NOT NULL AND {value} / 100 = {normalized} THEN {value} ELSE {expression} END"

    ellipse_x = f"CASE WHEN {exact.format(k='x')} IS NOT NULL AND {exact.format(k='x')} / 100 - {exact.format(k='radiusX')} / 100 = x THEN {exact.format(k='x')} ELSE {pct}(x + w / 2) END"
    ellipse_y = f"CASE WHEN {exact.format(k='y')} IS NOT NULL AND {exact.format(k='y')} / 100 - {exact.format(k='radiusY')} / 100 = y THEN {exact.format(k='y')} ELSE {pct}(y + h / 2) END"
    points_kept = "TRY_CAST(extra->'$.exact.points' AS DOUBLE[][])"
    value_parts = {
        "bbox": [
            ("x", kept("x", "x", f"{pct}(x)")),
            ("y", kept("y", "y", f"{pct}(y)")),
            ("width", kept("width", "w", f"{pct}(w)")),
            ("height", kept("height", "h", f"{pct}(h)")),
            ("rotation", "rotation"),
        ],
        "ellipse": [
            ("x", ellipse_x),
            ("y", ellipse_y),
            ("radiusX", kept("radiusX", "w / 2", f"{pct}(w / 2)")),
            ("radiusY", kept("radiusY", "h / 2", f"{pct}(h / 2)")),
            ("rotation", "rotation"),
        ],
        "polygon": [
            (
                "points",
                f"CASE WHEN {points_kept} IS NOT NULL AND flatten(list_transform({points_kept}, "
                f"lambda p: [p[1] / 100, p[2] / 100])) = polygons[1] THEN {points_kept} "
                f"ELSE list_transform(range(len(polygons[1]) // 2), lambda k: "
                f"[{pct}(polygons[1][2 * k + 1]), {pct}(polygons[1][2 * k + 2])]) END",
            )
        ],
        "keypoints": [
            ("x", kept("kx", "keypoints[1]", f"{pct}(keypoints[1])")),
            ("y", kept("ky", "keypoints[2]", f"{pct}(keypoints[2])")),
        ],
        "mask": [("format", "'rle'"), ("rle", "coalesce(extra->'$.exact.rle', b.rle::JSON)")],
        "span": [
            ("start", "coalesce(f.start16, start)"),
            ("end", 'coalesce(f.end16, "end")'),
            ("text", "value"),
        ],
        "text": [("text", "coalesce(extra->'$.exact.text', to_json([value]))")],
    }
    labelled = _label_key_sql("ls_type")
    value_cases = " ".join(
        f"WHEN {sql_string(region_type)} THEN {json_object_sql(parts)}"
        for region_type, parts in value_parts.items()
    )
    value_json = (
        f"json_merge_patch(json_merge_patch(coalesce(extra->'$.value', '{{}}')::JSON, "
        f"CASE type {value_cases} ELSE '{{}}' END::JSON), "
        f"CASE WHEN {labelled} IS NOT NULL AND labels IS NOT NULL THEN json_object({labelled}, labels) ELSE '{{}}' END::JSON)"
    )
    result_json = merged_json_sql(
        "extra",
        [
            ("id", "CASE WHEN type <> 'relation' THEN ls_id END"),
            (
                "from_name",
                f"CASE WHEN type <> 'relation' AND (extra->>'$.from_name') IS NULL THEN {_default_from_name_sql()} END",
            ),
            (
                "to_name",
                "CASE WHEN type <> 'relation' AND (extra->>'$.to_name') IS NULL THEN CASE WHEN type IN ('span') THEN 'text' ELSE 'image' END END",
            ),
            # keys already in extra keep their place (and so the same extra reads back)
            ("type", "CASE WHEN (extra->>'$.type') IS NULL THEN ls_type END"),
            # sizes for shapes that did not come from Label Studio (those keep theirs, or none)
            (
                "original_width",
                "CASE WHEN type IN ('bbox', 'polygon', 'keypoints', 'ellipse', 'mask') AND (extra->'$.from_name') IS NULL THEN iw END",
            ),
            (
                "original_height",
                "CASE WHEN type IN ('bbox', 'polygon', 'keypoints', 'ellipse', 'mask') AND (extra->'$.from_name') IS NULL THEN ih END",
            ),
            (
                "value",
                f"CASE WHEN type = 'relation' THEN NULL "
                f"WHEN type IN ('bbox', 'ellipse', 'polygon', 'keypoints', 'mask', 'span', 'text', 'class', 'taxonomy') THEN {value_json} "
                f"ELSE TRY_CAST(value AS JSON) END",
            ),
            ("score", "score"),
            (
                "parentID",
                "CASE WHEN type <> 'relation' AND parent_id IS DISTINCT FROM ls_id THEN parent_id END",
            ),
            ("from_id", "CASE WHEN type = 'relation' THEN parent_id END"),
            ("labels", "CASE WHEN type = 'relation' THEN labels END"),
        ],
        drop=_INTERNAL_REGION_KEYS,
    )
    shapes_without_size = con.sql(
        "SELECT count(*) FROM ls_results WHERE type IN ('bbox', 'polygon', 'keypoints', 'ellipse', 'mask') "
        "AND iw IS NULL AND (extra->'$.original_width') IS NULL"
    ).fetchall()[0][0]
    if shapes_without_size:
        report.notes.append(
            f"{shapes_without_size} shapes are on images of unknown size (no original_width/height written)"
        )
    multi_ring = con.sql(
        "SELECT count(*) FROM ls_results WHERE type = 'polygon' AND len(polygons) > 1"
    ).fetchall()[0][0]
    report.approximate(
        "multi-part polygons written as their first ring (Label Studio polygons have one)",
        multi_ring,
    )
    keypoint_sets = con.sql(
        "SELECT count(*) FROM ls_results WHERE type = 'keypoints' AND len(keypoints) > 3"
    ).fetchall()[0][0]
    report.drop(
        "keypoints beyond the first of a set (Label Studio keypoints are single points)",
        keypoint_sets,
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE ls_result_json AS
        SELECT annotation_id, list({result_json}::JSON ORDER BY ls_id, ls_type) AS results
        FROM ls_results LEFT JOIN ls_brushes b USING (ordinal) LEFT JOIN ls_offsets f USING (ordinal)
        GROUP BY annotation_id
        """
    )
    exact_time = "extra->'$.exact.{k}'"
    annotation_json = merged_json_sql(
        "a.extra",
        [
            (
                "id",
                "CASE WHEN kind = 'prediction' THEN "
                "CASE WHEN regexp_full_match(annotation_id, 'prediction:-?[0-9]{1,18}') THEN to_json(substr(annotation_id, 12)::BIGINT) "
                "ELSE to_json(regexp_replace(annotation_id, '^prediction:', '')) END "
                "ELSE CASE WHEN regexp_full_match(annotation_id, '-?[0-9]{1,18}') THEN to_json(annotation_id::BIGINT) "
                "ELSE to_json(annotation_id) END END",
            ),
            (
                "completed_by",
                "CASE WHEN (a.extra->'$.completed_by') IS NULL AND annotator IS NOT NULL THEN "
                "CASE WHEN regexp_full_match(annotator, '[0-9]{1,18}') THEN to_json(annotator::BIGINT) ELSE to_json(annotator) END END",
            ),
            ("model_version", "model_version"),
            ("score", "a.score"),
            ("result", "coalesce(rj.results, [])"),
            ("was_cancelled", "CASE WHEN kind = 'annotation' THEN cancelled END"),
            ("ground_truth", "CASE WHEN kind = 'annotation' THEN ground_truth END"),
            (
                "created_at",
                f"coalesce({exact_time.format(k='created_at')}, to_json(strftime(created_at, '%Y-%m-%dT%H:%M:%S.%fZ')))",
            ),
            (
                "updated_at",
                f"coalesce({exact_time.format(k='updated_at')}, to_json(strftime(updated_at, '%Y-%m-%dT%H:%M:%S.%fZ')))",
            ),
            ("lead_time", "lead_time"),
        ],
        drop=["exact", "list_key"],
    )
    data_json = (
        "CASE WHEN json_type(t.data, '$.data') = 'OBJECT' THEN NULL ELSE "
        "json_merge_patch(coalesce(t.data, '{}')::JSON, "
        + json_object_sql([("image", "t.uri"), ("text", "t.text")])
        + ") END"
    )
    task_rows = con.sql(
        f"""
        WITH a AS (
            SELECT a.task_id, a.kind, coalesce(a.extra->>'$.list_key', 'annotations') AS list_key,
                   {annotation_json}::JSON AS item, a.annotation_id
            FROM annotations a LEFT JOIN ls_result_json rj USING (annotation_id)
        ),
        lists AS (
            SELECT task_id,
                   list(item ORDER BY annotation_id) FILTER (WHERE kind = 'annotation' AND list_key = 'annotations') AS anns,
                   list(item ORDER BY annotation_id) FILTER (WHERE kind = 'annotation' AND list_key = 'completions') AS comps,
                   list(item ORDER BY annotation_id) FILTER (WHERE kind = 'prediction') AS preds
            FROM a GROUP BY task_id
        )
        SELECT {
            merged_json_sql(
                "CASE WHEN json_type(t.data, '$.data') = 'OBJECT' THEN t.data END",
                [
                    (
                        "id",
                        "CASE WHEN regexp_full_match(t.task_id, '-?[0-9]{1,18}') THEN to_json(t.task_id::BIGINT) "
                        "WHEN starts_with(t.task_id, 'sha:') THEN NULL ELSE to_json(t.task_id) END",
                    ),
                    ("data", data_json),
                    (
                        "annotations",
                        "CASE WHEN l.comps IS NULL OR l.anns IS NOT NULL THEN coalesce(l.anns, []) END",
                    ),
                    ("completions", "l.comps"),
                    ("predictions", "coalesce(l.preds, [])"),
                ],
            )
        } AS text
        FROM tasks t LEFT JOIN lists l USING (task_id)
        ORDER BY t.task_id
        """
    ).to_arrow_table()
    report.counts = {
        "tasks": tables.tasks.num_rows,
        "annotations": tables.annotations.num_rows,
        "results": con.sql("SELECT count(*) FROM ls_results").fetchall()[0][0],
    }
    con.execute("DROP TABLE IF EXISTS ls_result_json")
    return json_text_pieces(task_rows.column("text"), b"[", b"]\n")


def _brushes(con: duckdb.DuckDBPyConnection) -> None:
    """ls_brushes(ordinal, rle): Label Studio RLE for masks that kept no original."""
    rows = con.sql(
        "SELECT ordinal, mask.size, mask.counts FROM ls_out WHERE mask IS NOT NULL "
        "AND (extra->'$.exact.rle') IS NULL"
    ).fetchall()
    encoded = []
    for ordinal, size, counts in rows:
        height, width = size
        mask = coco_counts_to_mask(coco_counts_from_string(counts), height, width)
        encoded.append((ordinal, json.dumps(encode_label_studio_rle(_rgba_of(mask)))))
    rows_table(
        con,
        "ls_brushes",
        {
            "ordinal": ([e[0] for e in encoded], pa.int64()),
            "rle": ([e[1] for e in encoded], pa.string()),
        },
    )


def _offsets(con: duckdb.DuckDBPyConnection) -> None:
    """ls_offsets(ordinal, start16, end16): UTF-16 offsets of spans in texts beyond the BMP."""
    rows = con.sql(
        "SELECT ordinal, start, \"end\", task_text FROM ls_out WHERE type = 'span' AND task_text IS NOT NULL"
    ).fetchall()
    converted = []
    for ordinal, start, end, text in rows:
        if start is None or end is None or not any(ord(c) > 0xFFFF for c in text):
            continue
        units = [0]
        for char in text:
            units.append(units[-1] + (2 if ord(char) > 0xFFFF else 1))
        if end < len(units):
            converted.append((ordinal, units[start], units[end]))
    rows_table(
        con,
        "ls_offsets",
        {
            "ordinal": ([c[0] for c in converted], pa.int64()),
            "start16": ([c[1] for c in converted], pa.int64()),
            "end16": ([c[2] for c in converted], pa.int64()),
        },
    )
