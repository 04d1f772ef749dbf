"""Statistics of a version, computed by DuckDB over the version's files in place (once:
they are kept in the store, see ``_stats_store``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import duckdb

from ._fragments import map_io
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


def _rows_on_cursor(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    cursor = con.cursor()
    try:
        return cursor.execute(sql).fetchall()
    finally:
        cursor.close()


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
    # Each table is read once (merging its fragments and tombstones), only the columns
    # used. An annotation's rowid is its "owner" number: the regions' table holds only
    # narrow columns (an integer for the owner, booleans for its kind), because at ten
    # million regions writing its memory costs more than the join. The tables are not
    # temporary: the statements run side by side below use cursors, which see no
    # temporary tables of ``con`` (nor Arrow tables registered on it).
    con.execute(
        f"""CREATE TABLE s_owners AS
            SELECT a.task_id, a.kind, a.annotator, a.model_version,
                   coalesce({LABELED}, false) AS labeled,
                   coalesce(a.kind = 'annotation' AND a.cancelled, false) AS skipped,
                   a.kind = 'prediction' AS predicted, a.annotation_id, t.width, t.height
            FROM _raw_annotations a LEFT JOIN (SELECT task_id, width, height FROM _raw_tasks) t
            USING (task_id)"""
    )
    # One join gives every region its annotation's kind and its task's size. Writing
    # this table is most of its cost (10M rows: the join alone took 0.22 s, the whole
    # statement 0.73-0.89 s), so it holds no more than the questions below need: no
    # type text (a box flag; types are counted from the fragments) and a 32-bit owner.
    con.execute(
        """CREATE TABLE s_regions AS
           SELECT r.label, r.type = 'bbox' AS box, r.w, r.h, o.owner::INTEGER AS owner, o.predicted,
                  coalesce(o.labeled, false) AS labeled,
                  r.w * o.width AS w_px, r.h * o.height AS h_px
           FROM _raw_regions r
           LEFT JOIN (SELECT rowid AS owner, annotation_id, predicted, labeled, width, height
                      FROM s_owners) o USING (annotation_id)"""
    )
    columns = ("w", "h", "w_px", "h_px")
    # A median is mostly one thread's work, so these run two at a time on cursors: the
    # four medians took 0.74 s one after the other and 0.52 s side by side at 10M
    # regions on 2 cores (one query with all four: 0.82 s).
    _, _, *medians = map_io(
        lambda sql: _rows_on_cursor(con, sql),
        [
            # Per task: whether it is labeled, skipped or predicted, and how many regions
            # its labeled annotations have (a labeled task with none is background).
            """CREATE TABLE s_tasks AS
               SELECT o.task_id, bool_or(o.labeled) AS labeled, bool_or(o.skipped) AS skipped,
                      bool_or(o.predicted) AS predicted, coalesce(sum(r.n), 0) AS n
               FROM (SELECT rowid::INTEGER AS owner, task_id, labeled, skipped, predicted FROM s_owners) o
               LEFT JOIN (SELECT owner, count(*) AS n FROM s_regions WHERE labeled GROUP BY owner) r
               USING (owner)
               GROUP BY o.task_id""",
            # Every count by label and kind comes from this small table.
            """CREATE TABLE s_label_counts AS
               SELECT label, predicted, count(*) AS n FROM s_regions GROUP BY ALL""",
            *(
                f"SELECT min({column}), median({column}), max({column}) FROM s_regions WHERE box"
                for column in columns
            ),
        ],
    )
    sizes = {column: rows[0] for column, rows in zip(columns, medians, strict=True)}
    labeled, skipped, background, predicted, *per_task = con.sql(
        """SELECT count(*) FILTER (WHERE labeled),
                  count(*) FILTER (WHERE skipped AND NOT labeled),
                  count(*) FILTER (WHERE labeled AND n = 0),
                  count(*) FILTER (WHERE predicted),
                  min(n) FILTER (WHERE labeled), median(n) FILTER (WHERE labeled),
                  max(n) FILTER (WHERE labeled)
           FROM s_tasks"""
    ).fetchall()[0]
    box_counts = con.sql("SELECT count(*), count(w_px) FROM s_regions WHERE box").fetchall()[0]
    by_kind = con.sql(
        """SELECT CASE WHEN predicted THEN 'prediction' ELSE 'annotation' END, label, sum(n)::BIGINT
           FROM s_label_counts WHERE predicted IS NOT NULL GROUP BY ALL ORDER BY 1, 3 DESC, 2"""
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
            con,
            "SELECT label, sum(n)::BIGINT FROM s_label_counts GROUP BY 1 ORDER BY 2 DESC, 1",
        ),
        "regions_per_label_by_kind": regions_per_label_by_kind,
        "regions_per_type": _pairs(
            con, "SELECT type, count(*) FROM _raw_regions GROUP BY 1 ORDER BY 2 DESC, 1"
        ),
        "annotations_per_annotator": _pairs(
            con,
            "SELECT annotator, count(*) FROM s_owners WHERE kind = 'annotation' GROUP BY 1 ORDER BY 2 DESC, 1",
        ),
        "predictions_per_model_version": _pairs(
            con,
            "SELECT model_version, count(*) FROM s_owners WHERE kind = 'prediction' GROUP BY 1 ORDER BY 2 DESC, 1",
        ),
        "tasks_per_split": _pairs(
            con, "SELECT split, count(*) FROM _raw_tasks GROUP BY 1 ORDER BY 2 DESC, 1"
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
                "SELECT label FROM _raw_labels ANTI JOIN s_label_counts USING (label) ORDER BY 1"
            ).fetchall()
        ],
        "labels_undefined": [
            row[0]
            for row in con.sql(
                "SELECT DISTINCT label FROM s_label_counts WHERE label IS NOT NULL "
                "AND label NOT IN (SELECT label FROM _raw_labels) ORDER BY 1"
            ).fetchall()
        ],
    }
