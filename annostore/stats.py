"""Statistics of a version, computed by DuckDB over the version's files in place (once:
they are kept in the store, see ``_stats_store``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from ._manifest import Manifest
from ._stats_store import read_stored
from ._stats_store import store as keep
from .query import open_version_connection

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["version_stats"]

#: A task is labeled when a person submitted an annotation for it that was not cancelled.
LABELED = "kind = 'annotation' AND NOT cancelled"
LABELED_TASKS = (
    f"SELECT * FROM tasks WHERE task_id IN (SELECT task_id FROM annotations WHERE {LABELED})"
)
UNLABELED_TASKS = (
    f"SELECT * FROM tasks WHERE task_id NOT IN (SELECT task_id FROM annotations WHERE {LABELED})"
)


def _pairs(con: duckdb.DuckDBPyConnection, sql: str) -> dict[Any, int]:
    return {key: count for key, count in con.sql(sql).fetchall()}


def _distribution(row: tuple) -> dict[str, float | None]:
    low, median, high = row
    return {"min": low, "median": median, "max": high}


def version_stats(dataset: Dataset, manifest: Manifest, *, stored: bool = True) -> dict[str, Any]:
    """Counts and distributions a user asks of a labeling round (see ``docs/cli.md``).

    Computed once per version and kept in the store (see ``_stats_store``); with
    ``stored=False`` they are computed again (and kept)."""
    if stored:
        found = read_stored(dataset._storage, dataset._folder, manifest)
        if found is not None:
            return found
    con = open_version_connection(dataset, manifest)
    try:
        stats = _compute(con, manifest)
    finally:
        con.close()
    keep(dataset._storage, dataset._folder, manifest, stats)
    return stats


def _compute(con: duckdb.DuckDBPyConnection, manifest: Manifest) -> dict[str, Any]:
    counts = manifest.counts
    # Read each table once (merging its fragments and tombstones), only the columns used.
    con.execute(
        """CREATE TEMP TABLE s_annotations AS
           SELECT annotation_id, task_id, kind, cancelled, annotator, model_version FROM _raw_annotations"""
    )
    con.execute("CREATE TEMP TABLE s_tasks AS SELECT task_id, split, width, height FROM _raw_tasks")
    # One join gives every region its annotation's kind and its task's size: the small
    # tables are joined first, so the regions meet one hash table, not two. The regions'
    # table holds only narrow columns (an integer for the owner, booleans for its kind):
    # at ten million regions, writing its memory costs more than the join.
    con.execute(
        f"""CREATE TEMP TABLE s_owners AS
            SELECT row_number() OVER ()::INTEGER AS owner, a.annotation_id, a.task_id,
                   coalesce({LABELED}, false) AS labeled, a.kind = 'prediction' AS predicted,
                   t.width, t.height
            FROM s_annotations a LEFT JOIN s_tasks t USING (task_id)"""
    )
    con.execute(
        """CREATE TEMP TABLE s_regions AS
           SELECT r.type, r.label, r.w, r.h, o.owner, o.predicted,
                  coalesce(o.labeled, false) AS labeled,
                  r.w * o.width AS w_px, r.h * o.height AS h_px
           FROM _raw_regions r LEFT JOIN s_owners o USING (annotation_id)"""
    )
    # Regions of labeled annotations, per task (tasks with none are background).
    con.execute(
        """CREATE TEMP TABLE s_task_regions AS
           SELECT o.task_id, sum(n) AS n
           FROM (SELECT owner, count(*) AS n FROM s_regions WHERE labeled GROUP BY owner) r
           JOIN s_owners o USING (owner) GROUP BY o.task_id"""
    )
    labeled, skipped, background, predicted = con.sql(
        f"""WITH per_task AS (
                SELECT task_id,
                       bool_or({LABELED}) AS labeled,
                       bool_or(kind = 'annotation' AND cancelled) AS skipped,
                       bool_or(kind = 'prediction') AS predicted
                FROM s_annotations GROUP BY task_id)
            SELECT count(*) FILTER (WHERE labeled),
                   count(*) FILTER (WHERE skipped AND NOT labeled),
                   count(*) FILTER (WHERE labeled AND w.task_id IS NULL),
                   count(*) FILTER (WHERE predicted)
            FROM per_task p LEFT JOIN s_task_regions w USING (task_id)"""
    ).fetchall()[0]
    per_task = con.sql(
        f"""WITH per_task AS (
                SELECT DISTINCT task_id FROM s_annotations WHERE {LABELED})
            SELECT min(n), median(n), max(n)
            FROM (SELECT coalesce(r.n, 0) AS n FROM per_task LEFT JOIN s_task_regions r USING (task_id))"""
    ).fetchall()[0]
    box_counts = con.sql(
        "SELECT count(*), count(w_px) FROM s_regions WHERE type = 'bbox'"
    ).fetchall()[0]
    # One query per column: DuckDB took twice as long for the four medians in one query.
    sizes = {
        column: con.sql(
            f"SELECT min({column}), median({column}), max({column}) FROM s_regions WHERE type = 'bbox'"
        ).fetchall()[0]
        for column in ("w", "h", "w_px", "h_px")
    }
    by_kind = con.sql(
        """SELECT CASE WHEN predicted THEN 'prediction' ELSE 'annotation' END, label, count(*)
           FROM s_regions WHERE predicted IS NOT NULL GROUP BY ALL ORDER BY 1, 3 DESC, 2"""
    ).fetchall()
    regions_per_label_by_kind: dict[str, dict[Any, int]] = {"annotation": {}, "prediction": {}}
    for kind, label, count in by_kind:
        regions_per_label_by_kind[kind][label] = count
    return {
        "task_count": counts["tasks"],
        "labeled_task_count": labeled,
        "unlabeled_task_count": counts["tasks"] - labeled,
        "skipped_task_count": skipped,
        "background_task_count": background,
        "predicted_task_count": predicted,
        "annotation_count": counts["annotations"],
        "region_count": counts["regions"],
        "label_count": counts["labels"],
        "regions_per_label": _pairs(
            con, "SELECT label, count(*) FROM s_regions GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
        "regions_per_label_by_kind": regions_per_label_by_kind,
        "regions_per_type": _pairs(
            con, "SELECT type, count(*) FROM s_regions GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
        "annotations_per_annotator": _pairs(
            con,
            "SELECT annotator, count(*) FROM s_annotations WHERE kind = 'annotation' GROUP BY 1 ORDER BY 2 DESC, 1",
        ),
        "predictions_per_model_version": _pairs(
            con,
            "SELECT model_version, count(*) FROM s_annotations WHERE kind = 'prediction' GROUP BY 1 ORDER BY 2 DESC, 1",
        ),
        "tasks_per_split": _pairs(
            con, "SELECT split, count(*) FROM s_tasks GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
        "regions_per_labeled_task": _distribution(per_task),
        "box_count": box_counts[0],
        "box_width": _distribution(sizes["w"]),
        "box_height": _distribution(sizes["h"]),
        "box_count_with_pixels": box_counts[1],
        "box_width_px": _distribution(sizes["w_px"]),
        "box_height_px": _distribution(sizes["h_px"]),
        "labels_unused": [
            row[0]
            for row in con.sql(
                "SELECT label FROM _raw_labels ANTI JOIN (SELECT DISTINCT label FROM s_regions) USING (label) ORDER BY 1"
            ).fetchall()
        ],
        "labels_undefined": [
            row[0]
            for row in con.sql(
                "SELECT DISTINCT label FROM s_regions WHERE label IS NOT NULL "
                "AND label NOT IN (SELECT label FROM _raw_labels) ORDER BY 1"
            ).fetchall()
        ],
    }
