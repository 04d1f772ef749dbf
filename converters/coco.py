"""COCO: instances, person keypoints, captions and results files, both directions.

A COCO dataset file becomes one task per image and one annotation per image (a results
file — a bare list with scores — becomes one *prediction* per image). Each COCO
annotation becomes one region: ``keypoints`` when it has keypoints, ``mask`` for RLE,
``polygon`` for polygon rings (all rings of an object stay in one region), ``bbox``
otherwise, ``text`` for a caption. Its bbox fills ``x, y, w, h`` in every case.
Fields without a column (``iscrowd``, ``area``, ``num_keypoints``, ``attributes``, …)
are kept in ``extra``, image fields in the task's ``data``, and ``info``, ``licenses``
and unknown top-level keys in the tables' metadata, so COCO → store → COCO gives the
same file back (order aside).

All parsing and rendering is SQL over DuckDB's JSON reader: no Python object per region.
"""

from __future__ import annotations

import json
import re
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from annostore._sql import connection
from annostore.errors import AnnostoreError, ParseError
from annostore.tables import Tables

from . import _io
from ._assets import image_sizes_from_headers, install_asset_macros
from ._base import CATEGORY_ID_POLICIES, Converter, Report, SkipCollector
from ._jsonscan import split_lists
from ._numbers import install_number_macros
from ._rle import coco_counts_from_string, coco_counts_to_string
from ._selection import (
    GEOMETRY_TYPES,
    annotation_selection,
    class_numbering,
    geometry_labels,
    register_tables,
    unregister_tables,
)
from ._sqljson import (
    Items,
    TextPieces,
    bad_rows,
    image_sizes_table,
    join_json_texts,
    json_object_sql,
    json_text_pieces,
    load_array,
    load_document,
    merged_json_sql,
    numbered_json_sql,
    numbered_json_text_pieces,
    rows_table,
    sql_string,
)

__all__ = ["CocoConverter", "converter"]

_INTEGER_TYPES = "('UBIGINT', 'BIGINT')"
_NUMBER_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE')"

# SQL: a stable fingerprint of a region's geometry; an ``area`` read from a file is written
# back unchanged only while the geometry still has the fingerprint it had when read.
_GEOMETRY_FINGERPRINT = (
    "left(md5(concat_ws('|', x::VARCHAR, y::VARCHAR, w::VARCHAR, h::VARCHAR, "
    "polygons::VARCHAR, mask.counts, keypoints::VARCHAR)), 16)"
)


def _extra_member(key: str) -> str:
    """SQL: member ``key`` of a region's ``extra`` (JSON), parsing it only when its text
    holds the key's name at all."""
    return f"CASE WHEN contains(extra, {sql_string(json.dumps(key))}) THEN extra->{sql_string('$.' + key)} END"


def _positive_integer(value: str) -> str:
    return (
        f"({value} IS NOT NULL AND json_type({value}) <> 'NULL' AND NOT "
        f"(json_type({value}) IN {_NUMBER_TYPES} AND TRY_CAST({value} AS DOUBLE) >= 1 "
        f"AND TRY_CAST({value} AS DOUBLE) = floor(TRY_CAST({value} AS DOUBLE))))"
    )


class CocoConverter(Converter):
    """COCO detection, segmentation, keypoint and caption files, and results files."""

    name = "coco"
    description = "COCO JSON: instances, keypoints, captions, results files"
    represents = ("bbox", "polygon", "mask", "keypoints", "text")

    # ------------------------------------------------------------------ detect
    def detect(self, source: str) -> float:
        if _io.is_folder(source):
            files = annotation_files(str(source))
            return 0.7 if files and self.detect(files[0][0]) > 0 else 0.0
        if not str(source).lower().endswith(".json"):
            return 0.0
        fs, path = _io.filesystem(source)
        with fs.open(path, "rb") as handle:
            head = handle.read(65536).decode("utf-8", "replace")
        if (
            head.lstrip().startswith("{")
            and '"images"' in head
            and any(key in head for key in ('"annotations"', '"categories"', '"file_name"'))
        ):
            return 0.95
        stripped = head.lstrip()
        if stripped.startswith("[") and '"image_id"' in head and '"category_id"' in head:
            return 0.8
        return 0.0

    # ------------------------------------------------------------------ read
    def read(
        self,
        source: str,
        *,
        errors: str = "raise",
        images: str | None = None,
        split: str | None = None,
        **options: Any,
    ) -> tuple[Tables, Report]:
        """Read a COCO file, or a folder of them (``annotations/*.json``, Roboflow's
        ``<split>/_annotations.coco.json``) as one dataset with splits from the file names.
        ``images=`` names the dataset file that gives a results file its images and sizes;
        ``split=`` sets every task's split."""
        if options:
            raise TypeError(f"unknown COCO read options: {', '.join(sorted(options))}")
        collector = SkipCollector(errors)  # type: ignore[arg-type]
        path = str(source)
        if _io.is_folder(source):
            return _read_folder(path, collector, split)
        image_data = _io.read_bytes(images) if images is not None else None
        # the list scan touches every byte: read, not mapped (see open_document)
        with _io.open_document(source, mapped=False) as document:
            tables = parse(
                document.data,
                path,
                collector,
                images=image_data,
                images_path=images,
                split=split,
                file=document.local,
            )
        report = Report(self.name, "read", counts=tables.counts, skipped=collector.skipped)
        return tables, report

    # ------------------------------------------------------------------ write
    def write(
        self,
        tables: Tables,
        target: str,
        *,
        strict: bool = False,
        policy: str = "latest",
        annotator: str | None = None,
        category_ids: str = "keep",
        image_root: str | None = None,
        overwrite: bool = False,
        **options: Any,
    ) -> Report:
        """Write a COCO file (a results file under ``policy="predictions"``).

        COCO holds pixels: tasks without a width and height get them from the headers of
        their images under ``image_root`` (their ``uri`` relative to it)."""
        if options:
            raise TypeError(f"unknown COCO write options: {', '.join(sorted(options))}")
        if category_ids not in CATEGORY_ID_POLICIES:
            raise AnnostoreError(
                f"category_ids must be one of {', '.join(CATEGORY_ID_POLICIES)}, got {category_ids!r}"
            )
        report = Report(
            self.name, "write", options={"policy": policy, "category_ids": category_ids}
        )
        sizes = image_sizes_from_headers(tables, image_root, report) if image_root else {}
        rendered = render(
            tables,
            report,
            policy=policy,
            annotator=annotator,
            category_ids=category_ids,
            image_sizes=sizes,
        )
        report.check_strict(strict)
        if policy == "all":
            with _io.atomic_folder(target, overwrite=overwrite) as folder:
                for name, text in rendered.items():
                    with open(f"{folder}/{name}.json", "wb") as handle:
                        handle.writelines(text)
            report.files_written = len(rendered)
            return report
        _io.write_whole_file(target, rendered[""], overwrite=overwrite)
        report.files_written = 1
        return report


converter = CocoConverter()

_SPLIT_WORDS = re.compile(r"(train|valid|val|test)", re.IGNORECASE)


def annotation_files(root: str) -> list[tuple[str, str | None]]:
    """The COCO files of a dataset folder and the split each one holds: ``annotations/*.json``
    (``instances_train2017.json`` → train), Roboflow's ``<split>/_annotations.coco.json``, or
    the folder's own ``*.json``."""
    fs, base = _io.filesystem(root)
    base = base.rstrip("/")
    # every place looked at is at most one folder down: no walk of the image folders
    relative = [p for p in _io.files_under(fs, base, depth=1) if p.endswith(".json")]
    chosen = [p for p in relative if p.startswith("annotations/") and p.count("/") == 1]
    if not chosen:
        chosen = [
            p for p in relative if p.endswith("/_annotations.coco.json") and p.count("/") == 1
        ]
    if not chosen:
        chosen = [p for p in relative if "/" not in p]
    files = []
    for name in chosen:
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        words = _SPLIT_WORDS.findall(
            name.split("/")[0] if name.endswith("_annotations.coco.json") else stem
        )
        split = words[-1].lower() if words else None
        files.append((f"{base}/{name}", {"valid": "val"}.get(split or "", split)))
    return files


def _read_folder(root: str, collector: SkipCollector, split: str | None) -> tuple[Tables, Report]:
    """Every COCO file of a folder as one dataset: one task per image (an image in several
    files of its split is one task), one annotation per image holding the regions of all the
    files (region ids prefixed with the file's name when there are several)."""
    files = annotation_files(root)
    if not files:
        raise ParseError(root, None, "no COCO annotation files (annotations/*.json) in this folder")
    report = Report("coco", "read")
    parts: list[tuple[str, Tables]] = []
    for path, file_split in files:
        with _io.open_document(path, mapped=False) as document:
            if b'"segments_info"' in document.data[: 1 << 20]:
                report.notes.append(f"{path}: COCO panoptic file not read (not supported)")
                continue
            parsed = parse(
                document.data, path, collector, split=split or file_split, file=document.local
            )
        parts.append((path, parsed))
    if not parts:
        raise ParseError(root, None, "no readable COCO annotation files in this folder")
    several = len(parts) > 1
    with connection() as con:
        for index, (_, part) in enumerate(parts):
            for name, table in part:
                con.register(f"part_{name}_{index}", table)
        try:

            def union(name: str, region_prefix: bool = False) -> str:
                selects = []
                for index, (path, _) in enumerate(parts):
                    stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
                    if region_prefix and several:
                        selects.append(
                            f"SELECT * REPLACE ({sql_string(stem + ':')} || region_id AS region_id), "
                            f"{index} AS part FROM part_{name}_{index}"
                        )
                    else:
                        selects.append(f"SELECT *, {index} AS part FROM part_{name}_{index}")
                return " UNION ALL BY NAME ".join(selects)

            clash = con.sql(
                f"SELECT task_id, count(DISTINCT coalesce(uri, '')) AS uris, "
                f"count(DISTINCT coalesce(split, '')) AS splits FROM ({union('tasks')}) "
                "GROUP BY task_id HAVING uris > 1 OR splits > 1 LIMIT 1"
            ).fetchall()
            if clash:
                raise ParseError(
                    root,
                    None,
                    f"image id {clash[0][0]} names different images in different files; "
                    "read the files one at a time",
                )
            tasks = con.sql(
                f"SELECT * EXCLUDE (part) FROM ({union('tasks')}) "
                "QUALIFY row_number() OVER (PARTITION BY task_id ORDER BY part) = 1 ORDER BY part"
            ).to_arrow_table()
            annotations = con.sql(
                f"SELECT * EXCLUDE (part) FROM ({union('annotations')}) "
                "QUALIFY row_number() OVER (PARTITION BY annotation_id ORDER BY part) = 1 ORDER BY part"
            ).to_arrow_table()
            regions = con.sql(
                f"SELECT * EXCLUDE (part) FROM ({union('regions', region_prefix=True)}) ORDER BY part"
            ).to_arrow_table()
            labels = con.sql(
                f"SELECT * EXCLUDE (part) FROM ({union('labels')}) "
                "QUALIFY row_number() OVER (PARTITION BY label ORDER BY part) = 1 ORDER BY part"
            ).to_arrow_table()
        finally:
            for index, (_, part) in enumerate(parts):
                for name, _ in part:
                    con.unregister(f"part_{name}_{index}")
    metadata = parts[0][1].metadata
    tables = Tables(
        tasks=tasks,
        annotations=annotations,
        regions=regions,
        labels=labels,
        metadata=metadata,
    )
    if several:
        report.notes.append(
            f"{len(parts)} files read as one dataset; region ids carry their file's name"
        )
    report.counts = tables.counts
    report.skipped = collector.skipped
    return tables, report


# ====================================================================== parsing


def parse(
    data: bytes,
    path: str,
    collector: SkipCollector,
    *,
    images: bytes | None = None,
    images_path: str | None = None,
    split: str | None = None,
    file: str | None = None,
) -> Tables:
    """COCO bytes → the four tables (bad records raise or are skipped via ``collector``;
    ``file``: a local file holding exactly ``data``)."""
    with connection() as con:
        install_number_macros(con)
        install_asset_macros(con)
        try:
            parsed = _parse(con, data, path, collector, images, images_path, split, file)
        finally:
            for table in (
                "coco_doc",
                "coco_img",
                "coco_cat",
                "coco_ann",
                "coco_reg",
                "coco_imgdoc",
                "coco_suspect",
                "coco_norm",
                "coco_exact",
                *(f"{doc}_{key}" for doc in ("coco_doc", "coco_imgdoc") for key in _LISTS),
            ):
                con.execute(f"DROP TABLE IF EXISTS {table}")
    # checked once the parse's tables are dropped, on the same connection (inside it the
    # checks opened a second DuckDB instance of their own)
    return Tables(**parsed)


_LISTS = ("images", "annotations", "categories")


# COCO's records are small objects of a few members: reading them as maps costs more than
# taking their members out of their JSON (3.9 s against 1.5 s for a million annotations)
_ITEM = Items("j")


def _load(
    con: duckdb.DuckDBPyConnection, table: str, data: bytes, path: str, file: str | None = None
) -> tuple[str, list[str]]:
    """Parse a COCO file; its kind ('dataset' or 'results') and its top-level keys. The
    items of its lists are left in tables ``<table>_<list>(idx, j)``: for a dataset
    ``images``, ``annotations`` and ``categories`` (empty when absent), for results
    ``annotations``; ``table`` keeps the dataset's other members (``doc``)."""
    if load_array(con, f"{table}_annotations", data, path, file=file) is not None:
        return "results", []
    split = split_lists(data, _LISTS)
    if split is not None:
        # The lists' bytes found without parsing (1 s at a million annotations, against
        # 5.5 s for parsing the document into members and handing each list back as
        # text): each list is streamed from its bytes and the rest parsed on its own.
        rest, spans = split
        try:
            return _load_members(con, table, rest, path, data, spans)
        except ParseError:
            pass  # parsed whole below, which names the byte of the error in the file
    return _load_members(con, table, data, path, data, {})


def _load_members(
    con: duckdb.DuckDBPyConnection,
    table: str,
    document: bytes,
    path: str,
    data: bytes,
    spans: dict[str, tuple[int, int]],
) -> tuple[str, list[str]]:
    """:func:`_load` of ``document``, whose lists named in ``spans`` are read from those
    byte ranges of ``data`` instead of from the document."""
    kind = load_document(con, table, document, path)
    if kind != "OBJECT":
        raise ParseError(path, None, "expected a COCO object or a results list, got a JSON scalar")
    keys = con.sql(f"SELECT map_keys(doc) FROM {table}").fetchall()[0][0]
    for key in _LISTS:
        rows = f"{table}_{key}"
        if key in spans:
            start, end = spans[key]
            # a view: copying the 200 MB of a big list would only raise the peak
            load_array(con, rows, memoryview(data)[start:end], f"{path} ({key})")
            continue
        member = f"doc[{sql_string(key)}]"
        text, found = con.sql(
            f"SELECT {member}::VARCHAR, json_type({member}) FROM {table}"
        ).fetchall()[0]
        if found not in (None, "NULL", "ARRAY"):
            raise ParseError(path, key, f"expected a list, got a JSON {str(found).lower()}")
        # each list streamed into rows by DuckDB's reader: casting a 200 MB member to a
        # list of JSON and unnesting it took 3.6 s at a million regions
        if text is None or found == "NULL":
            con.execute(f"CREATE OR REPLACE TEMP TABLE {rows} (idx BIGINT, j JSON)")
        else:
            load_array(con, rows, text.encode(), f"{path} ({key})")
        del text
    listed = ", ".join(sql_string(key) for key in _LISTS)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT map_from_entries(list_filter("
        f"map_entries(doc), lambda e: e.key NOT IN ({listed}))) AS doc FROM {table}"
    )
    return "dataset", list(keys)


def _parse(
    con: duckdb.DuckDBPyConnection,
    data: bytes,
    path: str,
    collector: SkipCollector,
    images: bytes | None,
    images_path: str | None,
    split: str | None,
    file: str | None,
) -> dict[str, Any]:
    kind, keys = _load(con, "coco_doc", data, path, file)
    metadata: dict[str, Any] = {}
    if kind == "dataset":
        image_source, image_path = "coco_doc", path
        others = [k for k in keys if k not in ("images", "annotations", "categories")]
        if others:
            members = ", ".join(f"doc[{sql_string(k)}]::VARCHAR" for k in others)
            values = con.sql(f"SELECT [{members}] FROM coco_doc").fetchall()[0][0]
            metadata = {k: json.loads(v) for k, v in zip(others, values, strict=True)}
    else:
        if images is None:
            raise ParseError(
                path,
                None,
                "a COCO results file holds no images or sizes; pass images=<the dataset's "
                "COCO file> (--read-option images=...)",
            )
        image_kind, _ = _load(con, "coco_imgdoc", images, images_path or "images")
        if image_kind != "dataset":
            raise ParseError(
                images_path or "images", None, "expected a COCO dataset file with images"
            )
        image_source, image_path = "coco_imgdoc", images_path or "images"
    _read_images(con, image_source, image_path, collector)
    _read_categories(con, image_source, image_path, collector)
    _read_annotations(con, path, collector, results=kind == "results")
    if kind == "results":
        metadata = {"coco_results": True}
    image_labels = con.sql(
        "SELECT count(*) FROM coco_ann WHERE bbox_j IS NULL AND caption_j IS NULL "
        "AND (segmentation_j IS NULL OR seg_t = 'NULL') AND keypoints_j IS NULL"
    ).fetchall()[0][0]
    if image_labels:
        # annotations with a category and no geometry: image-level labels (Datumaro writes them)
        metadata = {**metadata, "annostore_image_labels": True}
    return _assemble(con, split, results=kind == "results", metadata=metadata)


def _read_images(
    con: duckdb.DuckDBPyConnection, source: str, path: str, collector: SkipCollector
) -> None:
    image = _ITEM
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_img AS
        SELECT idx, {image.kind()} AS jt, v[1] AS id_j, v[2] AS name_j, v[3] AS w_j, v[4] AS h_j,
               {image.without(["id", "file_name", "width", "height"])} AS data
        FROM (SELECT j, idx, {image.members(["id", "file_name", "width", "height"])} AS v
              FROM {source}_images)
        """
    )
    con.execute(f"DROP TABLE {source}_images")
    bad = bad_rows(
        con,
        "(SELECT *, count(*) OVER (PARTITION BY id_j->>'$') AS same, "
        "min(idx) OVER (PARTITION BY id_j->>'$') AS first FROM coco_img)",
        [
            ("jt <> 'OBJECT'", "'expected an object, got ' || jt"),
            ("id_j IS NULL", "'missing key \"id\"'"),
            (
                "json_type(id_j) NOT IN ('UBIGINT', 'BIGINT', 'VARCHAR')",
                "'\"id\" must be an integer or a string, got ' || id_j::VARCHAR",
            ),
            (
                "name_j IS NOT NULL AND json_type(name_j) NOT IN ('VARCHAR', 'NULL')",
                "'\"file_name\" must be a string, got ' || name_j::VARCHAR",
            ),
            (
                _positive_integer("w_j"),
                "'\"width\" must be a positive integer, got ' || w_j::VARCHAR",
            ),
            (
                _positive_integer("h_j"),
                "'\"height\" must be a positive integer, got ' || h_j::VARCHAR",
            ),
            (
                "same > 1 AND idx > first",
                "'duplicate image id ' || id_j::VARCHAR || ' (first at images[' || first || '])'",
            ),
        ],
        path=path,
        what="images",
        collector=collector,
    )
    if bad:
        con.execute(f"DELETE FROM coco_img WHERE idx IN ({', '.join(map(str, bad))})")


def _read_categories(
    con: duckdb.DuckDBPyConnection, source: str, path: str, collector: SkipCollector
) -> None:
    category = _ITEM
    keys = ["id", "name", "supercategory", "keypoints", "skeleton"]
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_cat AS
        SELECT idx, {category.kind()} AS jt, v[1] AS id_j, v[2] AS name_j, v[3] AS super_j,
               v[4] AS kp_j, v[5] AS sk_j, {category.without(keys)} AS rest
        FROM (SELECT j, idx, {category.members(keys)} AS v FROM {source}_categories)
        """
    )
    con.execute(f"DROP TABLE {source}_categories")
    bad = bad_rows(
        con,
        "(SELECT *, count(*) OVER (PARTITION BY id_j->>'$') AS same_id, "
        "min(idx) OVER (PARTITION BY id_j->>'$') AS first_id, "
        "count(*) OVER (PARTITION BY name_j->>'$') AS same_name, "
        "min(idx) OVER (PARTITION BY name_j->>'$') AS first_name FROM coco_cat)",
        [
            ("jt <> 'OBJECT'", "'expected an object, got ' || jt"),
            ("id_j IS NULL", "'missing key \"id\"'"),
            (
                f"json_type(id_j) NOT IN {_INTEGER_TYPES}",
                "'\"id\" must be an integer, got ' || id_j::VARCHAR",
            ),
            (
                "name_j IS NULL OR json_type(name_j) <> 'VARCHAR'",
                "'\"name\" must be a string, got ' || coalesce(name_j::VARCHAR, 'nothing')",
            ),
            (
                "super_j IS NOT NULL AND json_type(super_j) NOT IN ('VARCHAR', 'NULL')",
                "'\"supercategory\" must be a string, got ' || super_j::VARCHAR",
            ),
            (
                "kp_j IS NOT NULL AND TRY_CAST(kp_j AS VARCHAR[]) IS NULL AND json_type(kp_j) <> 'NULL'",
                "'\"keypoints\" must be a list of names, got ' || kp_j::VARCHAR",
            ),
            (
                "sk_j IS NOT NULL AND json_type(sk_j) <> 'NULL' AND (TRY_CAST(sk_j AS BIGINT[][]) IS NULL "
                "OR len(list_filter(TRY_CAST(sk_j AS BIGINT[][]), lambda p: len(p) <> 2)) > 0)",
                "'\"skeleton\" must be a list of index pairs, got ' || sk_j::VARCHAR",
            ),
            (
                "same_id > 1 AND idx > first_id",
                "'duplicate category id ' || id_j::VARCHAR || ' (first at categories[' || first_id || '])'",
            ),
            (
                "same_name > 1 AND idx > first_name",
                "'duplicate category name ' || name_j::VARCHAR || ' (first at categories[' || first_name || '])'",
            ),
        ],
        path=path,
        what="categories",
        collector=collector,
    )
    if bad:
        con.execute(f"DELETE FROM coco_cat WHERE idx IN ({', '.join(map(str, bad))})")


_ANNOTATION_COLUMNS = [
    "id",
    "image_id",
    "category_id",
    "bbox",
    "segmentation",
    "keypoints",
    "score",
    "caption",
]


def _read_annotations(
    con: duckdb.DuckDBPyConnection, path: str, collector: SkipCollector, *, results: bool
) -> None:
    annotation = _ITEM
    fields = ", ".join(f"v[{i + 1}] AS {name}_j" for i, name in enumerate(_ANNOTATION_COLUMNS))
    without = [k for k in _REGION_DROPPED_KEYS if k != "category_id"]
    # Each JSON function parses the item again (0.15-0.8 s a million times), so the
    # members come from one extraction, segments_info's presence with them (a member
    # that is present reads as JSON, SQL NULL only when absent).
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_ann AS
        SELECT idx, {annotation.kind()} AS jt, {fields}, json_type(v[5]) AS seg_t,
               v[{len(_ANNOTATION_COLUMNS) + 1}] IS NOT NULL AS panoptic,
               {annotation.without(_REGION_DROPPED_KEYS)} AS rest,
               -- only captions keep their category in extra (one JSON rewrite a row fewer)
               CASE WHEN v[8] IS NOT NULL THEN {annotation.without(without)} END AS caption_rest
        FROM (SELECT idx, j, {annotation.members([*_ANNOTATION_COLUMNS, "segments_info"])} AS v
              FROM coco_doc_annotations)
        """
    )
    con.execute("DROP TABLE coco_doc_annotations")
    seg_ok = (
        "(segmentation_j IS NULL OR seg_t = 'NULL' OR "
        "(seg_t = 'ARRAY' AND TRY_CAST(segmentation_j AS DOUBLE[][]) IS NOT NULL) OR "
        "(seg_t = 'OBJECT' AND TRY_CAST(segmentation_j->'$.size' AS BIGINT[]) IS NOT NULL AND "
        "len(TRY_CAST(segmentation_j->'$.size' AS BIGINT[])) = 2 AND "
        "json_type(segmentation_j, '$.counts') IN ('VARCHAR', 'ARRAY')))"
    )
    checks = [
        ("jt <> 'OBJECT'", "'expected an object, got ' || jt"),
        (
            "panoptic",
            "'COCO panoptic annotations (segments_info with PNG masks) are not supported'",
        ),
        ("image_id_j IS NULL", "'missing key \"image_id\"'"),
        ("image_idx IS NULL", "'image_id ' || image_id_j::VARCHAR || ' matches no image'"),
        (
            "category_id_j IS NULL AND caption_j IS NULL",
            "'missing key \"category_id\"'",
        ),
        (
            "category_id_j IS NOT NULL AND cat_idx IS NULL AND caption_j IS NULL",
            "'category_id ' || category_id_j::VARCHAR || ' matches no category'",
        ),
    ]
    if not results:
        checks += [
            ("id_j IS NULL", "'missing key \"id\"'"),
            (
                "json_type(id_j) NOT IN ('UBIGINT', 'BIGINT', 'VARCHAR')",
                "'\"id\" must be an integer or a string, got ' || id_j::VARCHAR",
            ),
            (
                "same > 1 AND idx > first",
                "'duplicate annotation id ' || id_j::VARCHAR || ' (first at annotations[' || first || '])'",
            ),
        ]
    checks += [
        (
            "bbox_j IS NOT NULL AND (TRY_CAST(bbox_j AS DOUBLE[]) IS NULL OR len(TRY_CAST(bbox_j AS DOUBLE[])) <> 4)",
            "'\"bbox\" must be 4 numbers [x, y, width, height], got ' || bbox_j::VARCHAR",
        ),
        (
            "bbox_j IS NOT NULL AND NOT list_bool_and(list_transform(bbox_j::DOUBLE[], lambda v: isfinite(v)))",
            "'\"bbox\" holds a value that is not a finite number: ' || bbox_j::VARCHAR",
        ),
        (
            "seg_t = 'ARRAY' AND NOT coalesce(list_bool_and(list_transform(flatten(segmentation_j::DOUBLE[][]), lambda v: isfinite(v))), TRUE)",
            "'\"segmentation\" holds a value that is not a finite number'",
        ),
        (
            "json_type(keypoints_j) = 'ARRAY' AND TRY_CAST(keypoints_j AS DOUBLE[]) IS NOT NULL AND NOT coalesce(list_bool_and(list_transform(keypoints_j::DOUBLE[], lambda v: isfinite(v))), TRUE)",
            "'\"keypoints\" holds a value that is not a finite number'",
        ),
        (
            "score_j IS NOT NULL AND json_type(score_j) = 'DOUBLE' AND NOT isfinite(score_j::DOUBLE)",
            "'\"score\" is not a finite number: ' || score_j::VARCHAR",
        ),
        (
            "bbox_j IS NOT NULL AND ((bbox_j->>'$[2]')::DOUBLE < 0 OR (bbox_j->>'$[3]')::DOUBLE < 0)",
            "'\"bbox\" has a negative width or height: ' || bbox_j::VARCHAR",
        ),
        (
            f"NOT {seg_ok}",
            "'\"segmentation\" must be a list of polygons or an RLE object {size, counts}, got ' || left(segmentation_j::VARCHAR, 80)",
        ),
        (
            "seg_t = 'ARRAY' AND len(list_filter(TRY_CAST(segmentation_j AS DOUBLE[][]), lambda r: len(r) < 6 OR len(r) % 2 = 1)) > 0",
            "'\"segmentation\" has a polygon with fewer than 3 points or an odd number of values'",
        ),
        (
            "keypoints_j IS NOT NULL AND json_type(keypoints_j) <> 'NULL' AND (TRY_CAST(keypoints_j AS DOUBLE[]) IS NULL OR len(TRY_CAST(keypoints_j AS DOUBLE[])) % 3 <> 0)",
            "'\"keypoints\" must be x, y, v triples, got ' || left(keypoints_j::VARCHAR, 80)",
        ),
        (
            "score_j IS NOT NULL AND json_type(score_j) NOT IN ('UBIGINT', 'BIGINT', 'DOUBLE')",
            "'\"score\" must be a number, got ' || score_j::VARCHAR",
        ),
        (
            "caption_j IS NOT NULL AND json_type(caption_j) <> 'VARCHAR'",
            "'\"caption\" must be a string, got ' || caption_j::VARCHAR",
        ),
        (
            "(bbox_j IS NOT NULL OR seg_t = 'ARRAY' OR keypoints_j IS NOT NULL) AND (img_w IS NULL OR img_h IS NULL OR json_type(img_w) = 'NULL' OR json_type(img_h) = 'NULL')",
            "'its image ' || image_id_j::VARCHAR || ' has no width/height, needed to normalize its geometry'",
        ),
        (
            "seg_t = 'OBJECT' AND (TRY_CAST(segmentation_j->'$.size' AS BIGINT[])[1] <> (img_h->>'$')::DOUBLE OR TRY_CAST(segmentation_j->'$.size' AS BIGINT[])[2] <> (img_w->>'$')::DOUBLE)",
            "'RLE size ' || (segmentation_j->'$.size')::VARCHAR || ' differs from its image (height ' || img_h::VARCHAR || ', width ' || img_w::VARCHAR || ')'",
        ),
    ]
    # the window that finds repeated ids only when there are any (a grouping is cheaper)
    repeated = con.sql(
        "SELECT 1 FROM coco_ann GROUP BY id_j->>'$' HAVING count(*) > 1 LIMIT 1"
    ).fetchall()
    same = (
        "count(*) OVER (PARTITION BY a.id_j->>'$') AS same, "
        "min(a.idx) OVER (PARTITION BY a.id_j->>'$') AS first "
        if repeated
        else "1 AS same, a.idx AS first "
    )
    bad = bad_rows(
        con,
        "(SELECT a.*, i.idx AS image_idx, i.w_j AS img_w, i.h_j AS img_h, c.idx AS cat_idx, "
        + same
        + "FROM coco_ann a LEFT JOIN coco_img i ON i.id_j->>'$' = a.image_id_j->>'$' "
        "LEFT JOIN coco_cat c ON c.id_j->>'$' = a.category_id_j->>'$')",
        checks,
        path=path,
        what="annotations",
        collector=collector,
    )
    if bad:
        con.execute(f"DELETE FROM coco_ann WHERE idx IN ({', '.join(map(str, bad))})")


_REGION_DROPPED_KEYS = [
    "id",
    "image_id",
    "category_id",
    "bbox",
    "segmentation",
    "keypoints",
    "score",
    "caption",
]


def _assemble(
    con: duckdb.DuckDBPyConnection, split: str | None, *, results: bool, metadata: dict
) -> dict[str, Any]:
    """The four tables and metadata of the parsed file, as ``Tables`` arguments."""
    split_sql = sql_string(split) if split is not None else "NULL"
    tasks = con.sql(
        f"""
        SELECT id_j->>'$' AS task_id, name_j->>'$' AS uri,
               annostore_asset_key(name_j->>'$') AS asset_key, NULL AS text,
               (w_j->>'$')::DOUBLE::INTEGER AS width, (h_j->>'$')::DOUBLE::INTEGER AS height,
               {split_sql} AS split,
               data
        FROM coco_img ORDER BY idx
        """
    ).to_arrow_table()
    suffix = "':prediction'" if results else "''"
    kind = "'prediction'" if results else "'annotation'"
    annotations = con.sql(
        f"""
        SELECT id_j->>'$' || {suffix} AS annotation_id, id_j->>'$' AS task_id, {kind} AS kind
        FROM coco_img ORDER BY idx
        """
    ).to_arrow_table()
    region_id = "(a.idx + 1)::VARCHAR" if results else "a.id_j->>'$'"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_reg AS
        SELECT a.idx,
            a.image_id_j->>'$' || {suffix} AS annotation_id,
            {region_id} AS region_id,
            CASE WHEN a.keypoints_j IS NOT NULL AND json_type(a.keypoints_j) <> 'NULL' THEN 'keypoints'
                 WHEN a.seg_t = 'OBJECT' THEN 'mask'
                 WHEN a.seg_t = 'ARRAY' AND json_array_length(a.segmentation_j) > 0 THEN 'polygon'
                 WHEN a.bbox_j IS NOT NULL THEN 'bbox'
                 WHEN a.caption_j IS NOT NULL THEN 'text'
                 ELSE 'class' END AS type,
            CASE WHEN a.caption_j IS NULL THEN c.name_j->>'$' END AS label,
            (a.score_j->>'$')::DOUBLE AS score,
            a.bbox_j::DOUBLE[] AS bbox, (i.w_j->>'$')::DOUBLE AS iw, (i.h_j->>'$')::DOUBLE AS ih,
            CASE WHEN a.seg_t = 'ARRAY' THEN a.segmentation_j::DOUBLE[][] END AS rings,
            CASE WHEN a.seg_t = 'OBJECT' THEN (a.segmentation_j->'$.size')::BIGINT[] END AS rle_size,
            CASE WHEN a.seg_t = 'OBJECT' AND json_type(a.segmentation_j, '$.counts') = 'VARCHAR'
                 THEN a.segmentation_j->>'$.counts' END AS rle_string,
            CASE WHEN a.seg_t = 'OBJECT' AND json_type(a.segmentation_j, '$.counts') = 'ARRAY'
                 THEN (a.segmentation_j->'$.counts')::BIGINT[] END AS rle_list,
            CASE WHEN json_type(a.keypoints_j) = 'ARRAY' THEN a.keypoints_j::DOUBLE[] END AS kp,
            a.caption_j->>'$' AS caption,
            CASE WHEN a.caption_j IS NULL THEN a.rest ELSE a.caption_rest END AS rest
        FROM coco_ann a JOIN coco_img i ON i.id_j->>'$' = a.image_id_j->>'$'
        LEFT JOIN coco_cat c ON c.id_j->>'$' = a.category_id_j->>'$'
        """
    )
    con.execute("DROP TABLE coco_ann")  # (its JSON is the largest table held here)
    # List-form RLE counts are rare (crowd regions): convert them to the compressed string
    # the mask column holds, and remember the form in extra to write it back the same way.
    listed = con.sql("SELECT idx, rle_list FROM coco_reg WHERE rle_list IS NOT NULL").fetchall()
    if listed:
        strings = pa.table(
            {
                "idx": pa.array([row[0] for row in listed], pa.int64()),
                "counts": pa.array([coco_counts_to_string(row[1]) for row in listed], pa.string()),
            }
        )
        con.register("coco_listed", strings)
        con.execute(
            "UPDATE coco_reg SET rle_string = l.counts FROM coco_listed l WHERE coco_reg.idx = l.idx"
        )
        con.unregister("coco_listed")
    # Pixel values the writer's scaled() would not give back exactly (about 1 % of
    # full-precision values) are kept as written, so COCO → store → COCO keeps every digit.
    exact = json_object_sql(
        [
            ("bbox", "CASE WHEN bbox_off THEN bbox END"),
            ("segmentation", "CASE WHEN rings_off THEN rings END"),
            ("keypoints", "CASE WHEN kp_off THEN kp END"),
        ]
    )
    # cheap first: the plain product gives the value back and it is a short decimal
    # (what scaled() returns at once); only the rest pays for scaled()
    mismatch = """
        CASE WHEN bbox IS NULL THEN FALSE
             WHEN x * iw = bbox[1] AND y * ih = bbox[2] AND w * iw = bbox[3] AND h * ih = bbox[4]
                  AND list_bool_and(list_transform(bbox, lambda v: round(v, 6) = v)) THEN FALSE
             ELSE [scaled(x, iw), scaled(y, ih), scaled(w, iw), scaled(h, ih)] IS DISTINCT FROM bbox
        END AS bbox_off,
        CASE WHEN rings IS NULL THEN FALSE
             WHEN list_bool_and(list_transform(flatten(rings), lambda v: round(v, 6) = v))
                  AND flatten(list_transform(polygons, lambda ring: list_transform(ring,
                      lambda v, i: v * CASE WHEN i % 2 = 1 THEN iw ELSE ih END))) = flatten(rings)
             THEN FALSE
             ELSE list_transform(polygons, lambda ring: scaled_xy(ring, iw, ih)) IS DISTINCT FROM rings
        END AS rings_off,
        CASE WHEN kp IS NULL THEN FALSE
             ELSE scaled_xyv(keypoints, iw, ih) IS DISTINCT FROM kp END AS kp_off
    """
    extra_sql = merged_json_sql(
        "rest",
        [
            ("counts_format", "CASE WHEN rle_list IS NOT NULL THEN 'list' END"),
            (
                "area_geometry",
                f"CASE WHEN json_exists(rest, '$.area') THEN {_GEOMETRY_FINGERPRINT} END",
            ),
            ("exact", "nullif(exact_values, '{}')::JSON"),
        ],
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE coco_norm AS
            SELECT *, bbox[1] / iw AS x, bbox[2] / ih AS y, bbox[3] / iw AS w, bbox[4] / ih AS h,
                list_transform(rings, lambda ring: divided_xy(ring, iw, ih)) AS polygons,
                divided_xyv(kp, iw, ih) AS keypoints,
                CASE WHEN rle_size IS NOT NULL
                     THEN {'size': rle_size, 'counts': rle_string} END AS mask
            FROM coco_reg
        """
    )
    con.execute("DROP TABLE coco_reg")
    # The regions whose values may not come back exactly, found without list lambdas
    # (about 5 µs a value in DuckDB) by unnesting the polygons' coordinates: a value passes
    # at once when it is a short decimal that the plain product gives back, else when
    # scaled() gives it back.
    # Rings have even lengths (checked), so a coordinate's place in the flattened list
    # says whether it is an x or a y.
    box_off = " OR ".join(
        f"CASE WHEN round(bbox[{i}], 6) = bbox[{i}] AND {v} * {s} = bbox[{i}] THEN FALSE "
        f"ELSE scaled({v}, {s}) IS DISTINCT FROM bbox[{i}] END"
        for i, v, s in ((1, "x", "iw"), (2, "y", "ih"), (3, "w", "iw"), (4, "h", "ih"))
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_suspect AS
        -- the suspects' rows, materialized: a filter on the comparison below would be
        -- pushed under a join, onto every row
        SELECT idx, bbox, rings, kp, x, y, w, h, polygons, keypoints, iw, ih FROM coco_norm
        WHERE idx IN (SELECT idx FROM (
        SELECT DISTINCT idx FROM (
            SELECT idx, iw, ih, unnest(flatten(rings)) AS r, unnest(flatten(polygons)) AS p,
                   generate_subscripts(flatten(rings), 1) AS k
            FROM coco_norm WHERE rings IS NOT NULL)
        WHERE CASE WHEN round(r, 6) = r AND p * CASE WHEN k % 2 = 1 THEN iw ELSE ih END = r
                   THEN FALSE
                   ELSE scaled(p, CASE WHEN k % 2 = 1 THEN iw ELSE ih END) IS DISTINCT FROM r END
        UNION
        SELECT idx FROM coco_norm
        WHERE kp IS NOT NULL OR (bbox IS NOT NULL AND ({box_off}))))
        """
    )
    # a table of its own, holding only the rows that need it (nested in the JSON
    # expression below, the binder would spend a second planning it)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_exact AS
        SELECT idx, {exact} AS exact_values
        FROM (SELECT idx, bbox, rings, kp, {mismatch} FROM coco_suspect)
        WHERE bbox_off OR rings_off OR kp_off
        """
    )
    con.execute("DROP TABLE coco_suspect")
    # the pixel values have served their checks: dropping them (no copy) lowers the peak
    # of the statement below, which sorts every region
    for column in ("bbox", "rings", "kp", "iw", "ih", "rle_size", "rle_string"):
        con.execute(f"ALTER TABLE coco_norm DROP COLUMN {column}")
    regions = con.sql(
        f"""
        SELECT annotation_id, region_id, type, label, score, x, y, w, h,
               NULL::DOUBLE AS rotation, polygons, keypoints, mask,
               NULL::BIGINT AS start, NULL::BIGINT AS "end", caption AS value,
               NULL AS parent_id,
               nullif({extra_sql}, '{{}}') AS extra
        FROM coco_norm LEFT JOIN coco_exact USING (idx) ORDER BY idx
        """
    ).to_arrow_table()
    con.execute("DROP TABLE coco_norm")
    con.execute("DROP TABLE coco_exact")
    labels = con.sql(
        """
        SELECT name_j->>'$' AS label, (id_j->>'$')::BIGINT AS label_id,
               super_j->>'$' AS supercategory, NULL AS color,
               CASE WHEN json_type(kp_j) = 'ARRAY' THEN kp_j::VARCHAR[] END AS keypoint_names,
               CASE WHEN json_type(sk_j) = 'ARRAY' THEN sk_j::BIGINT[][] END AS skeleton,
               rest AS extra
        FROM coco_cat ORDER BY idx
        """
    ).to_arrow_table()
    return {
        "tasks": tasks,
        "annotations": annotations,
        "regions": regions,
        "labels": labels,
        "metadata": {"coco": metadata} if metadata else None,
    }


# ====================================================================== rendering

_INTERNAL_EXTRA = ["area_geometry", "counts_format", "exact"]


def render(
    tables: Tables,
    report: Report,
    *,
    policy: str = "latest",
    annotator: str | None = None,
    category_ids: str = "keep",
    image_sizes: dict[str, tuple[int, int]] | None = None,
) -> dict[str, TextPieces]:
    """The four tables → COCO JSON text, keyed by output name ('' for one file; the
    annotator's name under ``policy="all"``), each as pieces to write one after another
    (or ``b"".join``). Losses are counted in ``report``."""
    with connection() as con:
        install_number_macros(con)
        register_tables(con, tables)
        try:
            return _render(con, tables, report, policy, annotator, category_ids, image_sizes or {})
        finally:
            unregister_tables(con)
            for table in (
                "selected",
                "classes",
                "coco_out_img",
                "coco_out_reg",
                "coco_masks",
                "coco_sizes",
            ):
                con.execute(f"DROP TABLE IF EXISTS {table}")


#: the digits of numbers no COCO id and no parsed double takes (below -2**53, odd): they
#: stand for annotation ids while records are printed, the second for the (never yet
#: seen) record whose own data holds the first
_ID_PLACEHOLDERS = ("-9007199254740993", "-9007199254740995")


def _annotation_texts(
    body: pa.Table, group: str | None, prefix: bytes, suffix: bytes
) -> TextPieces:
    """The annotation records of ``body`` (those of ``group`` unless it is None) joined
    into a JSON list's items: their ``text``, or their ``head`` and ``tail`` around the
    numbers 1, 2, … (see ``numbered_json_sql``). A group's rows are picked out when its
    first piece is asked for, so one group's copy is held at a time."""
    rows = body if group is None else body.filter(pc.equal(body.column("grp"), group))
    if "text" in rows.column_names:
        yield from json_text_pieces(rows.column("text"), prefix, suffix)
    else:
        yield from numbered_json_text_pieces(
            rows.column("head"), rows.column("tail"), '{"id":', prefix, suffix
        )


def _render(
    con: duckdb.DuckDBPyConnection,
    tables: Tables,
    report: Report,
    policy: str,
    annotator: str | None,
    category_ids: str,
    image_sizes: dict[str, tuple[int, int]],
) -> dict[str, TextPieces]:
    metadata = dict(tables.metadata.get("coco", {}))
    metadata.pop("coco_results", None)
    image_labels = bool(metadata.pop("annostore_image_labels", False))
    annotation_selection(con, report, policy, annotator)
    geometry_labels(con, GEOMETRY_TYPES + (("class",) if image_labels else ()))
    class_numbering(con, report, category_ids)
    results = policy == "predictions"

    # images: integer ids kept, any other ids numbered 1.. in task order
    integer_ids = con.sql(
        "SELECT coalesce(bool_and(regexp_full_match(task_id, '-?(0|[1-9][0-9]{0,17})')), TRUE) FROM tasks"
    ).fetchall()[0][0]
    if not integer_ids:
        report.notes.append(
            "task ids are not all integers: COCO image ids were numbered 1.. in task-id order"
        )
    image_sizes_table(con, "coco_sizes", image_sizes)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_out_img AS
        SELECT t.task_id,
               {"t.task_id::BIGINT" if integer_ids else "row_number() OVER (ORDER BY t.task_id)"} AS image_id,
               coalesce(t.uri, t.task_id) AS file_name,
               coalesce(t.width, s.sw)::DOUBLE AS iw, coalesce(t.height, s.sh)::DOUBLE AS ih,
               t.data
        FROM tasks t LEFT JOIN coco_sizes s USING (task_id)
        """
    )
    con.execute("DROP TABLE coco_sizes")
    missing, lost_regions = con.sql(
        """
        SELECT count(DISTINCT i.task_id), count(r.region_id)
        FROM coco_out_img i LEFT JOIN selected s USING (task_id)
        LEFT JOIN regions r ON r.annotation_id = s.annotation_id
        WHERE i.iw IS NULL OR i.ih IS NULL
        """
    ).fetchall()[0]
    if missing:
        hint = (
            "COCO needs pixel sizes; pass image_root=<folder of the images> to read their headers"
        )
        report.drop(f"images without a known width/height ({hint})", missing)
        report.drop("regions on images without a known width/height", lost_regions)
        con.execute("DELETE FROM coco_out_img WHERE iw IS NULL OR ih IS NULL")
    unlabeled = con.sql("SELECT count(*) FROM tasks ANTI JOIN selected USING (task_id)").fetchall()[
        0
    ][0]
    if not results:
        report.approximate(
            "tasks without an exported annotation written as images without annotations "
            "(COCO cannot tell unlabeled from background)",
            unlabeled,
        )

    # regions of the selected annotations, in pixels
    shown_class = "'class'" if image_labels else "'-'"
    shown = f"""regions r JOIN selected s USING (annotation_id)
            JOIN coco_out_img i ON i.task_id = s.task_id
            LEFT JOIN classes c ON c.label = r.label
            WHERE r.type IN ('bbox', 'polygon', 'mask', 'keypoints', 'ellipse', 'text', {shown_class})"""
    integer_regions = con.sql(
        f"""
        SELECT coalesce(bool_and(regexp_full_match(region_id, '-?(0|[1-9][0-9]{{0,17}})')), TRUE)
               AND count(DISTINCT region_id) = count(*)
        FROM {shown} AND (r.type <> 'text' OR r.value IS NOT NULL)
        """
    ).fetchall()[0][0]
    if not integer_regions:
        report.notes.append(
            "region ids are not unique integers: COCO annotation ids were numbered 1.. per file"
        )
    # The table is made in file order, so the records are printed by scanning it (a scan
    # keeps a table's order): sorting the printed text held every record's text beside its
    # columns, and sorting a table of every column held the regions twice.
    order = "region_id::BIGINT" if integer_regions else "annotation_id, region_id"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE coco_out_reg AS
        WITH r AS (
            -- (no row numbers: numbering the rows made DuckDB gather them in one thread,
            -- 0.8 s of 1.7 s at a million regions; masks are matched back by key)
            SELECT r.*, s.grp, i.image_id, i.iw, i.ih, c.number AS category_id FROM {shown}
        ),
        kept AS (
            -- pixel values kept as read where scaled() would not give them back; used
            -- only while they still match the geometry
            SELECT *,
                TRY_CAST(ex->'$.bbox' AS DOUBLE[]) AS ex_bbox,
                TRY_CAST(ex->'$.segmentation' AS DOUBLE[][]) AS ex_seg,
                TRY_CAST(ex->'$.keypoints' AS DOUBLE[]) AS ex_kp
            -- extra is parsed only where its text names the member (most rows have none)
            FROM (SELECT *, {_extra_member("exact")} AS ex,
                         {_extra_member("area_geometry")}->>'$' AS area_geometry FROM r)
        ),
        px AS (
            SELECT *,
                CASE WHEN ex_bbox_ok THEN ex_bbox[1] ELSE scaled(x, iw) END AS b_x,
                CASE WHEN ex_bbox_ok THEN ex_bbox[2] ELSE scaled(y, ih) END AS b_y,
                CASE WHEN ex_bbox_ok THEN ex_bbox[3] ELSE scaled(w, iw) END AS b_w,
                CASE WHEN ex_bbox_ok THEN ex_bbox[4] ELSE scaled(h, ih) END AS b_h,
                CASE WHEN polygons IS NULL THEN NULL  -- (no lambda machinery for a box)
                     WHEN ex_seg IS NOT NULL
                          AND list_transform(ex_seg, lambda ring: divided_xy(ring, iw, ih)) = polygons
                     THEN ex_seg
                     ELSE list_transform(polygons, lambda ring: scaled_xy(ring, iw, ih)) END AS rings,
                CASE WHEN ex_kp IS NOT NULL AND divided_xyv(ex_kp, iw, ih) = keypoints THEN ex_kp
                     ELSE scaled_xyv(keypoints, iw, ih) END AS kp,
                coalesce(rotation, 0) % 360 <> 0 AS rotated
            FROM (SELECT *, coalesce(ex_bbox IS NOT NULL AND len(ex_bbox) = 4 AND
                      [ex_bbox[1] / iw, ex_bbox[2] / ih, ex_bbox[3] / iw, ex_bbox[4] / ih] = [x, y, w, h],
                      FALSE) AS ex_bbox_ok FROM kept)
        )
        -- only what the records print, and what the report counts: the rest of each
        -- region's columns (its normalized geometry, the kept pixel values) would be sorted too
        SELECT grp, image_id, annotation_id, region_id, category_id, type, value, mask, rings, kp,
            extra, score, rotated, NULL::VARCHAR AS counts_list, NULL::DOUBLE AS mask_area,
            CASE
                WHEN rotated AND type = 'ellipse' THEN [
                    b_x + b_w / 2 - sqrt(pow(b_w / 2 * cos(radians(rotation)), 2) + pow(b_h / 2 * sin(radians(rotation)), 2)),
                    b_y + b_h / 2 - sqrt(pow(b_w / 2 * sin(radians(rotation)), 2) + pow(b_h / 2 * cos(radians(rotation)), 2)),
                    2 * sqrt(pow(b_w / 2 * cos(radians(rotation)), 2) + pow(b_h / 2 * sin(radians(rotation)), 2)),
                    2 * sqrt(pow(b_w / 2 * sin(radians(rotation)), 2) + pow(b_h / 2 * cos(radians(rotation)), 2))]
                WHEN rotated THEN [
                    b_x + least(0, b_w * cos(radians(rotation)), b_w * cos(radians(rotation)) - b_h * sin(radians(rotation)), - b_h * sin(radians(rotation))),
                    b_y + least(0, b_w * sin(radians(rotation)), b_w * sin(radians(rotation)) + b_h * cos(radians(rotation)), b_h * cos(radians(rotation))),
                    greatest(0, b_w * cos(radians(rotation)), b_w * cos(radians(rotation)) - b_h * sin(radians(rotation)), - b_h * sin(radians(rotation)))
                      - least(0, b_w * cos(radians(rotation)), b_w * cos(radians(rotation)) - b_h * sin(radians(rotation)), - b_h * sin(radians(rotation))),
                    greatest(0, b_w * sin(radians(rotation)), b_w * sin(radians(rotation)) + b_h * cos(radians(rotation)), b_h * cos(radians(rotation)))
                      - least(0, b_w * sin(radians(rotation)), b_w * sin(radians(rotation)) + b_h * cos(radians(rotation)), b_h * cos(radians(rotation)))]
                WHEN b_x IS NOT NULL THEN [b_x, b_y, b_w, b_h]
                WHEN rings IS NOT NULL AND len(rings) > 0 THEN [
                    list_min(flatten(list_transform(rings, lambda g: list_filter(g, lambda v, i: i % 2 = 1)))),
                    list_min(flatten(list_transform(rings, lambda g: list_filter(g, lambda v, i: i % 2 = 0)))),
                    list_max(flatten(list_transform(rings, lambda g: list_filter(g, lambda v, i: i % 2 = 1))))
                      - list_min(flatten(list_transform(rings, lambda g: list_filter(g, lambda v, i: i % 2 = 1)))),
                    list_max(flatten(list_transform(rings, lambda g: list_filter(g, lambda v, i: i % 2 = 0))))
                      - list_min(flatten(list_transform(rings, lambda g: list_filter(g, lambda v, i: i % 2 = 0))))]
            END AS bbox,
            -- the fingerprint only where an area read from a file may be kept
            area_geometry IS NULL OR area_geometry <> {_GEOMETRY_FINGERPRINT} AS geometry_changed
        FROM px
        ORDER BY grp, image_id, {order}
        """
    )
    # what COCO cannot hold
    for what, condition in (
        (
            "rotated boxes written as their axis-aligned envelope (COCO bbox has no rotation)",
            "type = 'bbox' AND rotated",
        ),
        ("ellipses written as their bounding box", "type = 'ellipse'"),
        (
            "transcriptions on shapes dropped (COCO annotations hold no text)",
            "type <> 'text' AND value IS NOT NULL",
        ),
        (
            "scores of human annotations dropped (COCO datasets hold no scores)",
            "score IS NOT NULL" if not results else "FALSE",
        ),
        (
            "captions dropped (a results file holds no captions)",
            "type = 'text'" if results else "FALSE",
        ),
        (
            "captions without text dropped",
            "type = 'text' AND value IS NULL" if not results else "FALSE",
        ),
    ):
        count = con.sql(f"SELECT count(*) FROM coco_out_reg WHERE {condition}").fetchall()[0][0]
        if what.startswith("rotated") or what.startswith("ellipses"):
            report.approximate(what, count)
        else:
            report.drop(what, count)
    other = con.sql(
        f"""
        SELECT r.type, count(*) FROM regions r JOIN selected USING (annotation_id)
        WHERE r.type NOT IN ('bbox', 'polygon', 'mask', 'keypoints', 'ellipse', 'text', {shown_class})
        GROUP BY ALL ORDER BY ALL
        """
    ).fetchall()
    for region_type, count in other:
        report.drop(f"{region_type} regions (COCO has no place for them)", count)

    # Masks need Python only for their area or a list-form counts (crowd regions are few).
    masks = con.sql(
        """
        SELECT annotation_id, region_id, grp, mask.counts,
               (extra->>'$.counts_format') = 'list' AS as_list, geometry_changed AS needs_area
        FROM coco_out_reg WHERE mask IS NOT NULL
        """
    ).fetchall()
    mask_rows = []
    for annotation_id, region_id, group, counts, as_list, needs_area in masks:
        values = coco_counts_from_string(counts) if (as_list or needs_area) else None
        mask_rows.append(
            (
                annotation_id,
                region_id,
                group,
                json.dumps(values) if as_list else None,
                float(sum(values[1::2])) if needs_area and values is not None else None,
            )
        )
    rows_table(
        con,
        "coco_masks",
        {
            "annotation_id": ([m[0] for m in mask_rows], pa.string()),
            "region_id": ([m[1] for m in mask_rows], pa.string()),
            "grp": ([m[2] for m in mask_rows], pa.string()),
            "counts_list": ([m[3] for m in mask_rows], pa.string()),
            "mask_area": ([m[4] for m in mask_rows], pa.float64()),
        },
    )

    if mask_rows:
        # in place: an update keeps the table's order
        con.execute(
            """
            UPDATE coco_out_reg SET counts_list = m.counts_list, mask_area = m.mask_area
            FROM coco_masks m
            WHERE coco_out_reg.annotation_id = m.annotation_id
              AND coco_out_reg.region_id = m.region_id AND coco_out_reg.grp = m.grp
            """
        )
    con.execute("DROP TABLE coco_masks")
    shoelace = (
        "list_sum(list_transform(rings, lambda g: abs(list_sum(list_transform("
        "range(len(g) // 2), lambda k: g[2 * k + 1] * g[2 * ((k + 1) % (len(g) // 2)) + 2]"
        " - g[2 * ((k + 1) % (len(g) // 2)) + 1] * g[2 * k + 2]))) / 2))"
    )

    pairs = [
        ("image_id", "image_id"),
        ("category_id", "CASE WHEN type <> 'text' THEN category_id END"),
        ("caption", "CASE WHEN type = 'text' THEN value END"),
        ("bbox", "CASE WHEN type NOT IN ('text', 'class') THEN bbox END"),
        (
            "segmentation",
            """CASE
                        WHEN mask IS NOT NULL THEN json_object('size', mask.size,
                            'counts', coalesce(m.counts_list::JSON, to_json(mask.counts)))
                        WHEN rings IS NOT NULL THEN to_json(rings) END""",
        ),
        ("keypoints", "kp"),
        (
            "num_keypoints",
            f"""CASE WHEN kp IS NOT NULL AND (geometry_changed
                                          OR {_extra_member("num_keypoints")} IS NULL)
                                     THEN len(list_filter(kp, lambda v, i: i % 3 = 0 AND v > 0)) END""",
        ),
        (
            "area",
            f"""CASE WHEN type IN ('text', 'class') OR NOT geometry_changed THEN NULL
                                 WHEN mask IS NOT NULL THEN m.mask_area
                                 WHEN rings IS NOT NULL AND len(rings) > 0 THEN {shoelace}
                                 ELSE bbox[3] * bbox[4] END""",
        ),
        (
            "iscrowd",
            f"""CASE WHEN type NOT IN ('text', 'class') AND {_extra_member("iscrowd")} IS NULL
                                    THEN CASE WHEN mask IS NOT NULL THEN 1 ELSE 0 END END""",
        ),
        ("score", f"CASE WHEN {'TRUE' if results else 'FALSE'} THEN score END"),
    ]
    exported = (
        "FROM coco_out_reg m WHERE NOT "
        f"(type = 'text' AND (value IS NULL OR {'TRUE' if results else 'FALSE'}))"
    )

    def records(region_id: str, sort: str = "") -> pa.Table:
        text = merged_json_sql("extra", [("id", region_id), *pairs], drop=_INTERNAL_EXTRA)
        return con.sql(f"SELECT grp, image_id, {text} AS text {exported} {sort}").to_arrow_table()

    body = None
    if integer_regions:
        body = records("region_id::BIGINT")
    else:
        # Numbered 1, 2, … per file in the order written. The records are printed in two
        # parts around the number, which goes in as the file's text is joined: a window
        # numbering them sorted the million rows once more (0.6-0.9 s of 1.7-1.9 s).
        for placeholder in _ID_PLACEHOLDERS:
            inner, outer = numbered_json_sql("extra", "id", placeholder, pairs, _INTERNAL_EXTRA)
            parts = con.sql(
                f"SELECT grp, image_id, {outer} FROM (SELECT grp, image_id, {inner} {exported})"
            ).to_arrow_table()
            if pc.all(parts.column("ok")).as_py() is not False:
                body = parts.drop_columns(["ok"])
                break
        if body is None:  # every placeholder's digits are in some record's own data
            body = records(
                "row_number() OVER (PARTITION BY grp ORDER BY image_id, annotation_id, region_id)",
                "ORDER BY grp, image_id, annotation_id, region_id",
            )
    con.execute("DROP TABLE coco_out_reg")
    written = body.num_rows
    report.counts["regions"] = written
    images_json = (
        con.sql(
            f"""
        SELECT {
                merged_json_sql(
                    "data",
                    [
                        ("id", "image_id"),
                        ("file_name", "file_name"),
                        ("width", "iw::BIGINT"),
                        ("height", "ih::BIGINT"),
                    ],
                )
            }
        FROM coco_out_img ORDER BY image_id
        """
        )
        .to_arrow_table()
        .column(0)
    )
    report.counts["images"] = len(images_json)
    categories = (
        con.sql(
            f"""
        SELECT {
                merged_json_sql(
                    "extra",
                    [
                        ("id", "number"),
                        ("name", "label"),
                        ("supercategory", "supercategory"),
                        ("keypoints", "keypoint_names"),
                        ("skeleton", "skeleton"),
                    ],
                )
            }
        FROM classes ORDER BY number
        """
        )
        .to_arrow_table()
        .column(0)
    )
    report.counts["categories"] = len(categories)
    if not metadata and "coco" not in tables.metadata:
        metadata = {"info": {}, "licenses": []}

    groups = sorted(set(body.column("grp").to_pylist())) if policy == "all" else [""]
    outputs: dict[str, TextPieces] = {}
    for group in groups:
        picked = group if policy == "all" else None
        if results:
            outputs[group] = _annotation_texts(body, picked, b"[", b"]\n")
            continue
        head = b"".join(
            json.dumps(key).encode()
            + b": "
            + json.dumps(value, ensure_ascii=False).encode()
            + b",\n"
            for key, value in metadata.items()
        )
        # the annotations' text, by far the largest part, is copied a piece at a time
        outputs[group] = _annotation_texts(
            body,
            picked,
            b"{" + head + b'"images": [' + join_json_texts(images_json) + b'],\n"annotations": [',
            b'],\n"categories": [' + join_json_texts(categories) + b"]}\n",
        )
    return outputs
