"""Choices every one-label-set-per-image writer (COCO, YOLO) makes the same way:
which annotations to export, which labels are classes, and how classes are numbered.

All of it is SQL over the tables registered on a DuckDB connection as ``tasks``,
``annotations``, ``regions`` and ``labels``.
"""

from __future__ import annotations

from typing import Any

import duckdb

from annostore.errors import AnnostoreError

from ._base import ANNOTATION_POLICIES, Report
from ._sqljson import sql_string

__all__ = [
    "GEOMETRY_TYPES",
    "annotation_selection",
    "class_numbering",
    "geometry_labels",
    "register_tables",
]

#: Region types that are shapes on an image; only their labels become detection classes.
GEOMETRY_TYPES = ("bbox", "polygon", "mask", "keypoints", "ellipse")


def register_tables(con: duckdb.DuckDBPyConnection, tables: Any) -> None:
    """Register the four tables under their names (callers unregister them)."""
    for name, table in tables:
        con.register(name, table)


def unregister_tables(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("tasks", "annotations", "regions", "labels"):
        con.unregister(name)


def annotation_selection(
    con: duckdb.DuckDBPyConnection, report: Report, policy: str, annotator: str | None
) -> None:
    """Create temp table ``selected(annotation_id, task_id, grp)``: the annotations to
    export under ``policy``, at most one per task and group, and count what it leaves out.

    Policies: ``latest`` (default: each task's most recently updated human annotation),
    ``ground-truth`` (the latest one marked ground truth), ``annotator`` (the latest by
    ``annotator``), ``predictions`` (the latest prediction), ``all`` (the latest of every
    annotator, one output per annotator; ``grp`` names the annotator).
    """
    if policy not in ANNOTATION_POLICIES:
        raise AnnostoreError(
            f"unknown annotation policy {policy!r}; choose one of {', '.join(ANNOTATION_POLICIES)}"
        )
    if policy == "annotator" and not annotator:
        raise AnnostoreError("policy 'annotator' needs an annotator name (--annotator)")
    if policy != "annotator" and annotator:
        policy = "annotator"
    kind = "prediction" if policy == "predictions" else "annotation"
    condition = f"kind = '{kind}' AND NOT cancelled"
    if policy == "ground-truth":
        condition += " AND ground_truth"
    if policy == "annotator":
        condition += f" AND annotator = {sql_string(annotator or '')}"
    group = "coalesce(annotator, 'unknown')" if policy == "all" else "''"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE selected AS
        SELECT annotation_id, task_id, grp FROM (
            SELECT annotation_id, task_id, {group} AS grp,
                   row_number() OVER (
                       PARTITION BY task_id, {group}
                       ORDER BY coalesce(updated_at, created_at) DESC NULLS LAST,
                                annotation_id DESC) AS rank
            FROM annotations WHERE {condition})
        WHERE rank = 1
        """
    )
    report.options["policy"] = policy if policy != "annotator" else f"annotator={annotator}"
    counts = con.sql(
        """
        SELECT
            count(*) FILTER (WHERE a.kind = 'annotation' AND NOT a.cancelled AND s.annotation_id IS NULL),
            count(*) FILTER (WHERE a.kind = 'prediction' AND NOT a.cancelled AND s.annotation_id IS NULL),
            count(*) FILTER (WHERE a.cancelled)
        FROM annotations a LEFT JOIN selected s USING (annotation_id)
        """
    ).fetchall()[0]
    others, predictions, cancelled = counts
    report.drop(f"annotations not exported (policy {report.options['policy']})", others)
    report.drop(f"predictions not exported (policy {report.options['policy']})", predictions)
    report.drop("cancelled annotations (skipped tasks) not exported", cancelled)


def geometry_labels(
    con: duckdb.DuckDBPyConnection, types: tuple[str, ...] = GEOMETRY_TYPES
) -> None:
    """Create temp table ``classes(label, label_id, position)``: the labels that become
    detection classes, in label-set order (``label_id``, then name).

    A label is a class when a shape (bbox, polygon, mask, keypoints, ellipse) uses it, or
    when the label set defines it and nothing but shapes could use it; labels only ever
    used by choices, text spans or transcriptions are not classes. Labels a shape uses
    that the label set lacks are added after the defined ones. ``types`` widens what
    counts as a shape (COCO's image-level labels add ``class``).
    """
    shapes = "(" + ", ".join(sql_string(t) for t in types) + ")"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE classes AS
        WITH used AS (
            SELECT label,
                   bool_or(type IN {shapes}) AS by_shape,
                   bool_or(type NOT IN {shapes}) AS by_other
            FROM regions WHERE label IS NOT NULL GROUP BY label
        ),
        wanted AS (
            SELECT l.label, l.label_id, l.supercategory, l.keypoint_names, l.skeleton, l.extra,
                   0 AS undefined
            FROM labels l LEFT JOIN used u USING (label)
            WHERE coalesce(u.by_shape, NOT coalesce(u.by_other, FALSE))
            UNION ALL
            SELECT u.label, NULL, NULL, NULL, NULL, NULL, 1
            FROM used u ANTI JOIN labels l USING (label) WHERE u.by_shape
        )
        SELECT *, row_number() OVER (ORDER BY undefined, label_id NULLS LAST, label) - 1 AS position
        FROM wanted
        """
    )


def class_numbering(con: duckdb.DuckDBPyConnection, report: Report, policy: str) -> None:
    """Add ``number`` to ``classes``: the COCO category id under ``policy``.

    ``keep`` keeps each label's ``label_id`` and gives labels without one the next free
    ids; ``from-1`` and ``from-0`` number the classes contiguously in label-set order.
    """
    if policy == "keep":
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE classes AS
            SELECT *, coalesce(label_id,
                (SELECT coalesce(max(label_id), 0) FROM classes)
                + row_number() OVER (PARTITION BY label_id IS NULL ORDER BY position)) AS number
            FROM classes
            """
        )
        assigned = con.sql("SELECT count(*) FROM classes WHERE label_id IS NULL").fetchall()[0][0]
        if assigned:
            report.notes.append(f"{assigned} labels had no id and were given the next free ids")
    else:
        start = 1 if policy == "from-1" else 0
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE classes AS SELECT *, position + {start} AS number FROM classes"
        )
