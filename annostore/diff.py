"""Differences between two versions of a dataset, row by row and field by field.

Rows are matched by key. History is a line, so between two versions lie the commits that
made the newer one: their changesets name the keys that differ, and the fragments they
wrote hold the newer rows (see ``_diff_counts``); only the older version's rows of those
keys are looked up in it. Where the changesets cannot answer (too many commits apart, too
much changed, row hashes of another hash function), only the rows whose files the two
versions do not share are compared: a fragment listed by both versions (same file, same
``seq``) holds rows that are identical in both unless a tombstone that only one version
has removes them, so the candidates are the keys of the fragments and tombstones the
versions do not share.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from annostore.schemas import COLUMNS, KEYS, TABLE_NAMES, arrow_schema

from ._diff_counts import LineTable, key_counts, line_changes
from ._diff_store import read_kept
from ._diff_store import store as keep
from ._fragments import SEQ, read_files
from ._manifest import Fragment, Manifest, TableState
from ._rowhash import ROW_HASH, row_hash_check, row_hash_expression
from ._sql import column_list, quote
from .query import ViewBinder

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["Diff", "TableDiff", "diff_versions"]

#: Above this share of a table's rows, candidate keys are compared without range pruning.
_PRUNE_LIMIT = 0.25


class TableDiff:
    """Row counts of one table's difference, and the changed keys with their status.

    The counts come first (from the commits' changesets where they can); ``rows`` and
    ``fields_changed`` are computed when first asked for.
    """

    def __init__(
        self,
        added: int,
        removed: int,
        changed: int,
        unchanged: int,
        rows: pa.Table | None = None,
        fields_changed: dict[str, int] | None = None,
        *,
        details: Callable[[], TableDiff] | None = None,
    ):
        self.added = added
        self.removed = removed
        self.changed = changed
        self.unchanged = unchanged
        self._rows = rows
        self._fields_changed = fields_changed
        self._details = details

    @property
    def rows(self) -> pa.Table:
        """Key columns, ``status`` ('added' | 'removed' | 'changed') and, for changed rows,
        ``fields``: the columns whose values differ."""
        if self._rows is None and self._details is not None:
            self._rows = self._details().rows
        return self._rows

    @property
    def fields_changed(self) -> dict[str, int]:
        """Column → number of changed rows in which it differs."""
        if self._fields_changed is None and self._details is not None:
            self._fields_changed = self._details().fields_changed
        return self._fields_changed or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "fields_changed": self.fields_changed,
        }

    def __repr__(self) -> str:
        return (
            f"TableDiff(added={self.added}, removed={self.removed}, changed={self.changed}, "
            f"unchanged={self.unchanged})"
        )


@dataclass
class _Details:
    """Everything a diff says beyond the key-level counts (computed on first use)."""

    tables: dict[str, TableDiff]
    regions: pa.Table
    label_changes: list[dict[str, Any]]
    tasks_newly_labeled: list[str]
    tasks_newly_unlabeled: list[str]
    labels_added: list[str]
    labels_removed: list[str]
    regions_paired: int

    def parts(self) -> tuple[dict[str, Any], dict[str, pa.Table]]:
        """Everything as JSON-ready facts and Arrow tables (what ``_diff_store`` keeps)."""
        facts = {
            "tables": {
                name: {
                    "counts": [diff.added, diff.removed, diff.changed, diff.unchanged],
                    "fields_changed": list(diff.fields_changed.items()),
                }
                for name, diff in self.tables.items()
            },
            "label_changes": self.label_changes,
            "tasks_newly_labeled": self.tasks_newly_labeled,
            "tasks_newly_unlabeled": self.tasks_newly_unlabeled,
            "labels_added": self.labels_added,
            "labels_removed": self.labels_removed,
            "regions_paired": self.regions_paired,
        }
        tables = {f"rows/{name}": diff.rows for name, diff in self.tables.items()}
        return facts, {**tables, "regions": self.regions}

    @classmethod
    def from_parts(cls, facts: dict[str, Any], tables: dict[str, pa.Table]) -> _Details:
        """The inverse of :meth:`parts`."""
        return cls(
            tables={
                name: TableDiff(
                    *table["counts"],
                    tables[f"rows/{name}"],
                    dict(table["fields_changed"]),
                )
                for name, table in facts["tables"].items()
            },
            regions=tables["regions"],
            label_changes=facts["label_changes"],
            tasks_newly_labeled=facts["tasks_newly_labeled"],
            tasks_newly_unlabeled=facts["tasks_newly_unlabeled"],
            labels_added=facts["labels_added"],
            labels_removed=facts["labels_removed"],
            regions_paired=facts["regions_paired"],
        )


class Diff:
    """What changed from version ``a`` to version ``b`` of a dataset.

    ``tables`` (rows added, removed, changed and unchanged per table, by key) is known at
    once; everything else — the per-region rows, fields changed, label changes, IoU,
    tasks newly labeled — is computed on first use, by comparing the rows that differ,
    and kept in the store: a later diff of the same pair reads it (``_diff_store``).
    """

    def __init__(
        self,
        dataset: Dataset,
        a: Manifest,
        b: Manifest,
        iou_threshold: float | None = 0.5,
        *,
        recompute: bool = False,
    ):
        self.dataset = dataset.name
        self.a = a.number
        self.b = b.number
        self.iou_threshold = iou_threshold
        self._inputs = (dataset, a, b)
        self._recompute = recompute
        self._lines: dict[str, LineTable] | None = None
        self._tables: dict[str, TableDiff] | None = None
        # Adjacent versions' counts are in the newer manifest (nothing to read); others'
        # take the changesets between them, and a kept diff has them all in one file.
        adjacent = b.parent == a.number or a.parent == b.number
        if not adjacent and self._kept is not None:
            return
        found = key_counts(dataset, a, b)
        if found is not None:
            counts, self._lines = found
            self._tables = {
                table: TableDiff(*counts[table], details=functools.partial(self._table, table))
                for table in TABLE_NAMES
            }

    @functools.cached_property
    def _kept(self) -> _Details | None:
        """The details kept in the store for this pair and threshold, if any."""
        if self._recompute:
            return None
        dataset, a, b = self._inputs
        kept = read_kept(dataset._storage, dataset._folder, a, b, self.iou_threshold)
        return _Details.from_parts(*kept) if kept is not None else None

    @functools.cached_property
    def _details(self) -> _Details:
        if self._kept is not None:
            return self._kept
        dataset, a, b = self._inputs
        details = _compute_details(dataset, a, b, self.iou_threshold, self._lines)
        keep(dataset._storage, dataset._folder, a, b, self.iou_threshold, *details.parts())
        return details

    def _table(self, table: str) -> TableDiff:
        return self._details.tables[table]

    @property
    def tables(self) -> dict[str, TableDiff]:
        """Per table: rows added, removed, changed (same key, other content), unchanged."""
        return self._tables if self._tables is not None else self._details.tables

    @property
    def regions(self) -> pa.Table:
        """One row per region added, removed or changed: keys, status, task_id, label_a,
        label_b, iou (boxes whose geometry changed, or IoU-paired regions), fields, paired."""
        return self._details.regions

    @property
    def label_changes(self) -> list[dict[str, Any]]:
        return self._details.label_changes

    @property
    def tasks_newly_labeled(self) -> list[str]:
        return self._details.tasks_newly_labeled

    @property
    def tasks_newly_unlabeled(self) -> list[str]:
        return self._details.tasks_newly_unlabeled

    @property
    def labels_added(self) -> list[str]:
        return self._details.labels_added

    @property
    def labels_removed(self) -> list[str]:
        return self._details.labels_removed

    @property
    def regions_paired(self) -> int:
        return self._details.regions_paired

    @property
    def regions_added(self) -> int:
        return int(pc.sum(pc.equal(self.regions.column("status"), "added")).as_py() or 0)

    @property
    def regions_removed(self) -> int:
        return int(pc.sum(pc.equal(self.regions.column("status"), "removed")).as_py() or 0)

    @property
    def regions_changed(self) -> int:
        return int(pc.sum(pc.equal(self.regions.column("status"), "changed")).as_py() or 0)

    @property
    def regions_unchanged(self) -> int:
        return self.tables["regions"].unchanged

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``annostore diff --json`` prints)."""
        ious = self.regions.column("iou").drop_null()
        return {
            "dataset": self.dataset,
            "from": self.a,
            "to": self.b,
            "regions_added": self.regions_added,
            "regions_removed": self.regions_removed,
            "regions_changed": self.regions_changed,
            "regions_unchanged": self.regions_unchanged,
            "regions_paired_by_iou": self.regions_paired,
            "iou_threshold": self.iou_threshold,
            "region_fields_changed": self.tables["regions"].fields_changed,
            "geometry_iou": {
                "count": len(ious),
                "min": pc.min(ious).as_py() if len(ious) else None,
                "median": pc.approximate_median(ious).as_py() if len(ious) else None,
            },
            "label_changes": self.label_changes,
            "tasks_newly_labeled": len(self.tasks_newly_labeled),
            "tasks_newly_unlabeled": len(self.tasks_newly_unlabeled),
            "annotations_added": self.tables["annotations"].added,
            "annotations_removed": self.tables["annotations"].removed,
            "annotations_changed": self.tables["annotations"].changed,
            "tasks": self.tables["tasks"].to_dict(),
            "labels_added": self.labels_added,
            "labels_removed": self.labels_removed,
            "labels_changed": self.tables["labels"].changed,
        }

    def write_parquet(self, path: str) -> None:
        """Write the per-region changes as a Parquet file."""
        pq.write_table(self.regions, path, compression="zstd")


def _listing(state: TableState) -> set[tuple[str, int]]:
    return {(f.sha256, f.seq) for f in state.fragments} | {
        (t.sha256, -t.seq - 1) for t in state.tombstones
    }


def _files_that_can_differ(mine: TableState, theirs: TableState) -> TableState:
    """``mine`` without the fragments whose live rows are certainly live in ``theirs`` too.

    A row of a fragment both versions list (same file, same seq) is removed from
    ``theirs`` only by a tombstone that ``theirs`` lists and ``mine`` does not (one that
    both list would remove it from ``mine`` as well). So when ``theirs`` has no tombstone of
    its own, the shared fragments hold no differing row and need not be read: the newer
    side of a forward diff reads only the fragments written since the older version.
    """
    shared = _listing(mine) & _listing(theirs)
    if any((t.sha256, -t.seq - 1) not in shared for t in theirs.tombstones):
        return mine
    own = [f for f in mine.fragments if (f.sha256, f.seq) not in shared]
    return mine.model_copy(update={"fragments": own})


def _candidate_keys(dataset: Dataset, table: str, a: TableState, b: TableState) -> pa.Table:
    """Keys whose rows may differ: those of the files one version lists and the other not."""
    shared = _listing(a) & _listing(b)
    refs = [f for state in (a, b) for f in state.fragments if (f.sha256, f.seq) not in shared]
    refs += [
        t for state in (a, b) for t in state.tombstones if (t.sha256, -t.seq - 1) not in shared
    ]
    keys = list(KEYS[table])
    unique = {ref.sha256: ref for ref in refs}
    if not unique:
        return pa.table({k: pa.array([], pa.string()) for k in keys})
    parts = read_files(dataset._storage, dataset._folder, list(unique.values()), keys)
    return pa.concat_tables([p.cast(parts[0].schema) for p in parts])


class _Views:
    """Both versions' tables as DuckDB views over their files in place, with row hashes.

    A view is made on first use: binding one checks the sha256 of its files, and a diff
    along a line of commits never needs most of the newer version's."""

    def __init__(self, con: duckdb.DuckDBPyConnection, dataset: Dataset, a: Manifest, b: Manifest):
        self.con = con
        self._binder = ViewBinder(con, dataset)
        self._versions = {"a": a, "b": b}
        self._made: set[str] = set()
        current = row_hash_check(con)
        # Hashes written by another hash function cannot be compared: recompute those.
        self.hash_sql = {
            table: ROW_HASH
            if all(f.row_hash == current for m in (a, b) for f in m.tables[table].fragments)
            else row_hash_expression(table)
            for table in TABLE_NAMES
        }

    def view(self, table: str, side: str, *, changed_only: bool = False) -> str:
        """The name of a view of one version's table: all its live rows, or with
        ``changed_only`` only those that can differ from the other version's."""
        name = f"_{'changed' if changed_only else 'raw'}_{table}_{side}"
        if name not in self._made:
            mine = self._versions[side].tables[table]
            if changed_only:
                theirs = self._versions["b" if side == "a" else "a"].tables[table]
                mine = _files_that_can_differ(mine, theirs)
            sql = self._binder.table_sql(table, mine, name, with_hash=True)
            self.con.execute(f"CREATE VIEW {quote(name)} AS {sql}")
            self._made.add(name)
        return quote(name)

    def rows(
        self,
        table: str,
        side: str,
        keys: pa.Table | None,
        columns: list[str] | None = None,
        *,
        changed_only: bool = False,
    ) -> pa.Table:
        """Rows of one version's table (all canonical columns by default), only ``keys`` if
        given; with ``changed_only``, only rows that can differ from the other version's."""
        names = columns or [c.name for c in COLUMNS[table]]
        if keys is not None and keys.num_rows == 0:
            return pa.schema([arrow_schema(table).field(n) for n in names]).empty_table()
        wanted = column_list(names, "r.")
        source = self.view(table, side, changed_only=changed_only)
        if keys is None:
            return self.con.sql(f"SELECT {wanted} FROM {source} r").to_arrow_table()
        self.con.register("wanted_keys", keys)
        on = " AND ".join(f"r.{quote(k)} = w.{quote(k)}" for k in keys.column_names)
        result = self.con.sql(
            f"SELECT {wanted} FROM {source} r SEMI JOIN wanted_keys w ON {on}"
        ).to_arrow_table()
        self.con.unregister("wanted_keys")
        return result

    def differing(self, table: str, candidates: pa.Table | None) -> pa.Table:
        """Keys (among ``candidates``, or all) whose row hash differs between the versions."""
        keys = list(KEYS[table])
        key_sql = column_list(keys)
        hashed = {
            side: f"SELECT {key_sql}, {self.hash_sql[table]} AS _h FROM {self.view(table, side)}"
            for side in ("a", "b")
        }
        if candidates is not None:
            self.con.register("candidate_keys", candidates)
            hashed = {
                side: f"{sql} SEMI JOIN candidate_keys USING ({key_sql})"
                for side, sql in hashed.items()
            }
        result = self.con.sql(
            f"""SELECT {key_sql} FROM ({hashed["a"]}) a FULL OUTER JOIN ({hashed["b"]}) b USING ({key_sql})
                WHERE a._h IS DISTINCT FROM b._h"""
        ).to_arrow_table()
        if candidates is not None:
            self.con.unregister("candidate_keys")
        return result.cast(pa.schema([pa.field(k, pa.string()) for k in keys]))


def _compared_rows(
    views: _Views, dataset: Dataset, table: str, a: TableState, b: TableState
) -> tuple[pa.Table, pa.Table]:
    """The rows of each side that can differ, found from the files the versions do not share."""
    candidates: pa.Table | None = _candidate_keys(dataset, table, a, b)
    if candidates.num_rows > _PRUNE_LIMIT * max(a.rows, b.rows, 1):
        # Most rows are candidates (a compaction in between): compare row hashes of all rows
        # first, and read whole rows only where they differ.
        candidates = views.differing(table, None)
    return (
        views.rows(table, "a", candidates, changed_only=True),
        views.rows(table, "b", candidates, changed_only=True),
    )


def _line_rows(
    views: _Views, dataset: Dataset, table: str, a_is_older: bool, line: LineTable
) -> tuple[pa.Table, pa.Table]:
    """The rows of each side that differ, for versions on a line of commits: the keys come
    from the commits' changesets, the newer rows from the fragments those commits wrote
    (as small as the change); only the older version's rows are looked up in it."""
    keys = list(KEYS[table])
    status = line.keys.column("status")
    in_older = line.keys.filter(pc.not_equal(status, "added")).select(keys)
    in_newer = line.keys.filter(pc.not_equal(status, "removed")).select(keys)
    older_side = "a" if a_is_older else "b"
    older = views.rows(table, older_side, in_older, changed_only=True)
    newer = _newest_written(views.con, dataset, table, line.written, in_newer)
    return (older, newer) if a_is_older else (newer, older)


def _newest_written(
    con: duckdb.DuckDBPyConnection,
    dataset: Dataset,
    table: str,
    written: list[Fragment],
    keys: pa.Table,
) -> pa.Table:
    """Each key's row in the last of ``written`` (fragments, by seq) that holds it."""
    names = [c.name for c in COLUMNS[table]]
    if keys.num_rows == 0 or not written:
        return arrow_schema(table).empty_table()
    parts = [
        part.append_column(SEQ, pa.repeat(pa.scalar(f.seq, pa.int64()), f.rows))
        for f, part in zip(
            written, read_files(dataset._storage, dataset._folder, written, names), strict=True
        )
    ]
    key_sql = column_list(keys.column_names)
    con.register("written_rows", pa.concat_tables(parts))
    con.register("wanted_keys", keys)
    try:
        return con.sql(
            f"""SELECT {column_list(names)} FROM written_rows SEMI JOIN wanted_keys USING ({key_sql})
                QUALIFY row_number() OVER (PARTITION BY {key_sql} ORDER BY {SEQ} DESC) = 1"""
        ).to_arrow_table()
    finally:
        con.unregister("written_rows")
        con.unregister("wanted_keys")


def _table_diff(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows_a: pa.Table,
    rows_b: pa.Table,
    rows: int,
    carry: tuple[str, ...] = (),
) -> tuple[TableDiff, pa.Table]:
    """The diff of one table from the rows of each side that can differ (``rows``: how many
    the table has in version b), and its rows with each side's ``carry`` columns
    (``a_<column>``, ``b_<column>``) for the per-region details."""
    keys = list(KEYS[table])
    if rows_a.num_rows == 0 and rows_b.num_rows == 0:
        # nothing differs (a table the versions share): planning the query below alone
        # took 8-9 ms
        compared = _compared_schema(table, carry).empty_table()
        result = compared.select([*keys, "status", "fields"])
        return TableDiff(0, 0, 0, rows, result, {}), compared
    columns = [c.name for c in COLUMNS[table] if c.name not in keys]
    con.register("rows_a", rows_a)
    con.register("rows_b", rows_b)
    differs = [
        f"CASE WHEN a.{quote(c)} IS DISTINCT FROM b.{quote(c)} THEN '{c}' END" for c in columns
    ]
    fields_sql = (
        f"list_filter([{', '.join(differs)}], lambda f: f IS NOT NULL)"
        if differs
        else "[]::VARCHAR[]"
    )
    carried = "".join(
        f", a.{quote(c)} AS {quote('a_' + c)}, b.{quote(c)} AS {quote('b_' + c)}" for c in carry
    )
    compared = con.sql(
        f"""SELECT {column_list(keys)},
                   CASE WHEN a._present IS NULL THEN 'added' WHEN b._present IS NULL THEN 'removed' ELSE 'changed' END AS status,
                   CASE WHEN a._present AND b._present THEN {fields_sql} END AS fields{carried}
            FROM (SELECT *, true AS _present FROM rows_a) a
            FULL OUTER JOIN (SELECT *, true AS _present FROM rows_b) b USING ({column_list(keys)})
            WHERE a._present IS NULL OR b._present IS NULL OR len({fields_sql}) > 0
            ORDER BY {column_list(keys)}"""
    ).to_arrow_table()
    con.unregister("rows_a")
    con.unregister("rows_b")
    result = compared.select([*keys, "status", "fields"])
    status = result.column("status")
    added = int(pc.sum(pc.equal(status, "added")).as_py() or 0)
    removed = int(pc.sum(pc.equal(status, "removed")).as_py() or 0)
    changed = int(pc.sum(pc.equal(status, "changed")).as_py() or 0)
    fields_changed: dict[str, int] = {}
    if changed:
        flat = pc.list_flatten(result.column("fields").drop_null())
        counts = pc.value_counts(flat)
        fields_changed = {item["values"].as_py(): item["counts"].as_py() for item in counts}
        fields_changed = dict(sorted(fields_changed.items(), key=lambda kv: (-kv[1], kv[0])))
    diff = TableDiff(added, removed, changed, rows - added - changed, result, fields_changed)
    return diff, compared


def _compared_schema(table: str, carry: tuple[str, ...]) -> pa.Schema:
    """The schema of :func:`_table_diff`'s rows, as DuckDB gives it."""
    canonical = arrow_schema(table)
    fields = [pa.field(k, pa.string()) for k in KEYS[table]]
    fields += [
        pa.field("status", pa.string()),
        pa.field("fields", pa.list_(pa.field("l", pa.string()))),
    ]
    for column in carry:
        kind = canonical.field(column).type
        fields += [pa.field(f"a_{column}", kind), pa.field(f"b_{column}", kind)]
    return pa.schema(fields)


def diff_versions(
    dataset: Dataset,
    a: Manifest,
    b: Manifest,
    iou_threshold: float | None = 0.5,
    *,
    recompute: bool = False,
) -> Diff:
    """Compare version ``a`` with version ``b`` (either may be the older); with
    ``recompute``, the details are computed even when kept in the store."""
    return Diff(dataset, a, b, iou_threshold, recompute=recompute)


def _compute_details(
    dataset: Dataset,
    a: Manifest,
    b: Manifest,
    iou_threshold: float | None,
    lines: dict[str, LineTable] | None = None,
) -> _Details:
    """Everything beyond the counts; ``lines``: the tables' line changes if already known."""
    con = duckdb.connect(":memory:")
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        views = _Views(con, dataset, a, b)
        if lines is None:
            lines = line_changes(dataset, a, b)
        tables, sides, compared = {}, {}, {}
        for table in TABLE_NAMES:
            if lines is not None:
                rows_a, rows_b = _line_rows(
                    views, dataset, table, a.number <= b.number, lines[table]
                )
            else:
                rows_a, rows_b = _compared_rows(
                    views, dataset, table, a.tables[table], b.tables[table]
                )
            carry = _REGION_CARRIED if table == "regions" else ()
            tables[table], compared[table] = _table_diff(
                con, table, rows_a, rows_b, b.tables[table].rows, carry
            )
            sides[table] = (rows_a, rows_b)
        regions, paired = _region_details(con, views, compared["regions"], iou_threshold)
        labeled, unlabeled = _labeled_changes(con, views, sides["annotations"])
        label_rows = tables["labels"].rows
        label_status = dict(
            zip(
                label_rows.column("label").to_pylist(),
                label_rows.column("status").to_pylist(),
                strict=True,
            )
        )
        matrix = (
            con.sql(
                """SELECT label_a AS "from", label_b AS "to", count(*) AS count FROM region_details
               WHERE status = 'changed' AND label_a IS DISTINCT FROM label_b GROUP BY ALL ORDER BY 3 DESC, 1, 2"""
            )
            .to_arrow_table()
            .to_pylist()
        )
    finally:
        con.close()
    return _Details(
        tables=tables,
        regions=regions,
        label_changes=matrix,
        tasks_newly_labeled=labeled,
        tasks_newly_unlabeled=unlabeled,
        labels_added=sorted(k for k, v in label_status.items() if v == "added"),
        labels_removed=sorted(k for k, v in label_status.items() if v == "removed"),
        regions_paired=paired,
    )


def _iou_sql(a: dict[str, str], b: dict[str, str]) -> str:
    """IoU of two axis-aligned boxes (normalized coordinates are fine: IoU does not change
    when each axis is scaled); NULL unless both are unrotated boxes."""
    width = f"greatest(least({a['x']} + {a['w']}, {b['x']} + {b['w']}) - greatest({a['x']}, {b['x']}), 0)"
    height = f"greatest(least({a['y']} + {a['h']}, {b['y']} + {b['h']}) - greatest({a['y']}, {b['y']}), 0)"
    both_boxes = (
        f"{a['type']} = 'bbox' AND {b['type']} = 'bbox' "
        f"AND coalesce({a['rotation']}, 0) = 0 AND coalesce({b['rotation']}, 0) = 0"
    )
    union = f"{a['w']} * {a['h']} + {b['w']} * {b['h']} - {width} * {height}"
    return f"CASE WHEN {both_boxes} THEN {width} * {height} / nullif({union}, 0) END"


def _geometry(prefix: str, names: str = "") -> dict[str, str]:
    return {key: f"{prefix}.{names}{key}" for key in ("x", "y", "w", "h", "type", "rotation")}


#: The columns of both sides that the per-region details use (labels, IoU)
_REGION_CARRIED = ("label", "x", "y", "w", "h", "type", "rotation")


def _region_details(
    con: duckdb.DuckDBPyConnection,
    views: _Views,
    changes: pa.Table,
    iou_threshold: float | None,
) -> tuple[pa.Table, int]:
    """Per-region rows with task, labels and IoU; IoU-paired add/remove pairs become changes.

    ``changes`` are the regions' diff rows with both sides' label and geometry. A removed
    region belongs to its annotation's task in version a, the others to the one in b."""

    def owners(side: str, ids: pa.Array) -> pa.Table:
        wanted = pa.table({"annotation_id": pc.unique(ids)})
        return views.rows("annotations", side, wanted, ["annotation_id", "task_id"])

    removed = pc.equal(changes.column("status"), "removed")
    ids_b = changes.filter(pc.invert(removed)).column("annotation_id").combine_chunks()
    owners_b = owners("b", ids_b)
    missing_in_b = pc.filter(ids_b, pc.invert(pc.is_in(ids_b, owners_b.column("annotation_id"))))
    ids_removed = changes.filter(removed).column("annotation_id").combine_chunks()
    owners_a = owners("a", pa.concat_arrays([ids_removed, missing_in_b]))
    con.register("changes", changes)
    con.register("owners_a", owners_a)
    con.register("owners_b", owners_b)
    # Steps are kept as Arrow tables, not DuckDB tables: writing 30k rows into a DuckDB
    # table took 18-20 ms, handing them to Arrow 7-8 ms.
    _keep_as(
        con,
        "region_pairs",
        f"""SELECT c.annotation_id, c.region_id, c.status, c.fields,
                   CASE WHEN c.status = 'removed' THEN coalesce(oa.task_id, ob.task_id)
                        ELSE coalesce(ob.task_id, oa.task_id) END AS task_id,
                   c.a_label AS label_a, c.b_label AS label_b,
                   CASE WHEN c.status = 'changed' AND list_has_any(c.fields, ['x', 'y', 'w', 'h', 'rotation'])
                        THEN {_iou_sql(_geometry("c", "a_"), _geometry("c", "b_"))} END AS iou,
                   NULL::VARCHAR AS paired_annotation_id, NULL::VARCHAR AS paired_region_id,
                   c.a_x, c.a_y, c.a_w, c.a_h, c.a_type, c.a_rotation,
                   c.b_x, c.b_y, c.b_w, c.b_h, c.b_type, c.b_rotation
            FROM changes c
            LEFT JOIN owners_a oa ON oa.annotation_id = c.annotation_id
            LEFT JOIN owners_b ob ON ob.annotation_id = c.annotation_id""",
    )
    paired = 0
    if iou_threshold is not None:
        iou = _iou_sql(_geometry("r", "a_"), _geometry("d", "b_"))
        _keep_as(
            con,
            "iou_pairs",
            f"""WITH candidates AS (
                    SELECT r.annotation_id AS ra_id, r.region_id AS rr_id, d.annotation_id AS da_id, d.region_id AS dr_id,
                           {iou} AS iou
                    FROM region_pairs r JOIN region_pairs d
                      ON r.status = 'removed' AND d.status = 'added' AND r.task_id = d.task_id
                     AND r.label_a IS NOT DISTINCT FROM d.label_b),
                ranked AS (
                    SELECT *, row_number() OVER (PARTITION BY ra_id, rr_id ORDER BY iou DESC, da_id, dr_id) AS best_for_removed,
                              row_number() OVER (PARTITION BY da_id, dr_id ORDER BY iou DESC, ra_id, rr_id) AS best_for_added
                    FROM candidates WHERE iou >= {float(iou_threshold)})
                SELECT * FROM ranked WHERE best_for_removed = 1 AND best_for_added = 1""",
        )
        paired = con.sql("SELECT count(*) FROM iou_pairs").fetchall()[0][0]
        if paired:
            _keep_as(
                con,
                "region_pairs",
                """SELECT r.annotation_id, r.region_id,
                          CASE WHEN p.ra_id IS NOT NULL THEN 'changed' ELSE r.status END AS status,
                          CASE WHEN p.ra_id IS NOT NULL THEN ['region_id', 'x', 'y', 'w', 'h'] ELSE r.fields END AS fields,
                          r.task_id, r.label_a,
                          CASE WHEN p.ra_id IS NOT NULL THEN r.label_a ELSE r.label_b END AS label_b,
                          coalesce(p.iou, r.iou) AS iou,
                          p.da_id AS paired_annotation_id, p.dr_id AS paired_region_id
                   FROM region_pairs r
                   LEFT JOIN iou_pairs p ON r.annotation_id = p.ra_id AND r.region_id = p.rr_id
                   ANTI JOIN iou_pairs q ON r.annotation_id = q.da_id AND r.region_id = q.dr_id""",
            )
        con.unregister("iou_pairs")
    details = con.sql(
        """SELECT annotation_id, region_id, status, task_id, label_a, label_b, iou, fields,
                  paired_annotation_id, paired_region_id
           FROM region_pairs ORDER BY annotation_id, region_id"""
    ).to_arrow_table()
    for name in ("region_pairs", "changes", "owners_a", "owners_b"):
        con.unregister(name)
    con.register("region_details", details)
    return details, paired


def _keep_as(con: duckdb.DuckDBPyConnection, name: str, query: str) -> None:
    """Run ``query`` and register its result on ``con`` as ``name`` (replacing it)."""
    result = con.sql(query).to_arrow_table()
    con.register(name, result)


def _labeled_changes(
    con: duckdb.DuckDBPyConnection, views: _Views, annotations: tuple[pa.Table, pa.Table]
) -> tuple[list[str], list[str]]:
    """Tasks labeled in ``b`` but not in ``a``, and the other way round.

    Only tasks that own a changed annotation can change status; their annotations are
    read from both versions."""
    touched = pc.unique(
        pa.concat_arrays([side.column("task_id").combine_chunks() for side in annotations])
    )
    if len(touched) == 0:
        return [], []
    con.register("touched", pa.table({"task_id": touched}))
    status = [
        {
            task
            for (task,) in con.sql(
                f"SELECT DISTINCT task_id FROM {views.view('annotations', side)} SEMI JOIN touched USING (task_id) "
                "WHERE kind = 'annotation' AND NOT cancelled"
            ).fetchall()
        }
        for side in ("a", "b")
    ]
    con.unregister("touched")
    return sorted(status[1] - status[0]), sorted(status[0] - status[1])
