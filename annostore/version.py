"""``Version``: one immutable snapshot of a dataset."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from annostore.schemas import TABLE_NAMES

from ._commit import changeset_schema
from ._fragments import live_rows, read_file
from ._manifest import Manifest
from ._provenance import origin, remember
from ._sql import connection
from .tables import Tables

if TYPE_CHECKING:
    from .dataset import Dataset

__all__ = ["Version"]


class Version:
    """One published version of a dataset: its number, content id, provenance and tables.

    Reading :attr:`tables` checks every file against the sha256 in the manifest; a changed
    byte raises :class:`~annostore.CorruptionError`.
    """

    def __init__(self, dataset: Dataset, manifest: Manifest):
        self.dataset = dataset
        self.manifest = manifest

    @property
    def number(self) -> int:
        """1, 2, 3… in commit order."""
        return self.manifest.number

    @property
    def id(self) -> str:
        """The sha256 of the version's manifest (64 hex digits); any unique prefix is a ref."""
        return self.manifest.id

    @property
    def parent(self) -> int | None:
        """The number of the version this one was committed on, or None for the first."""
        return self.manifest.parent

    @property
    def message(self) -> str | None:
        return self.manifest.message

    @property
    def author(self) -> str | None:
        return self.manifest.author

    @property
    def created_at(self) -> datetime:
        return self.manifest.created_at

    @property
    def operation(self) -> str:
        """'commit', 'commit_changes' or 'compact'."""
        return self.manifest.operation

    @property
    def counts(self) -> dict[str, int]:
        """Row count of each table."""
        return self.manifest.counts

    @property
    def changes(self) -> dict[str, dict[str, int]]:
        """Rows inserted, updated and deleted by this version's commit, per table."""
        result = {}
        for name in TABLE_NAMES:
            ref = self.manifest.tables[name].changeset
            result[name] = {
                "inserted": ref.inserted if ref else 0,
                "updated": ref.updated if ref else 0,
                "deleted": ref.deleted if ref else 0,
            }
        return result

    @functools.cached_property
    def tables(self) -> Tables:
        """The four tables of this version (read on first use, then kept)."""
        return Tables._trusted(
            metadata=self.manifest.metadata, **{name: self.table(name) for name in TABLE_NAMES}
        )

    @property
    def metadata(self) -> dict[str, Any]:
        """Dataset-level facts kept with this version (COCO info/licenses, a label config…)."""
        return dict(self.manifest.metadata)

    def table(self, name: str) -> pa.Table:
        """One table of this version, read from storage."""
        if name not in TABLE_NAMES:
            raise KeyError(f"unknown table {name!r}; tables are {', '.join(TABLE_NAMES)}")
        storage, folder, state = (
            self.dataset._storage,
            self.dataset._folder,
            self.manifest.tables[name],
        )
        with connection() as con:
            rows = live_rows(con, storage, folder, name, state)
        remember(rows, origin(storage.url, folder, name, state))
        return rows

    def changeset(self, name: str) -> pa.Table:
        """The keys this version's commit changed in table ``name``, with op I/U/D and row hashes."""
        ref = self.manifest.tables[name].changeset
        if ref is None:
            return changeset_schema(name).empty_table()
        return read_file(self.dataset._storage, self.dataset._folder, ref)

    def sql(self, query: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pa.Table:
        """Run one read-only SELECT over this version; returns an Arrow table.

        Views: ``tasks``, ``annotations``, ``labels``, and ``regions`` with ``task_id``
        and pixel columns (``x_px``, ``y_px``, ``w_px``, ``h_px``, ``area_px`` for boxes)
        where the task size is known; ``<table>_v<N>`` reads version N of the same
        dataset. ``params`` fill ``?`` or ``$name`` placeholders. Anything but a single
        SELECT, or any access to files outside the store, raises
        :class:`~annostore.QueryError`.
        """
        from .query import run_query

        return run_query(self.dataset, self.manifest, query, params)

    def stats(self, *, recompute: bool = False) -> dict[str, Any]:
        """Task, region, label, annotator and box-size statistics (JSON-ready).

        A version never changes: its stats are computed on the first call and kept in the
        store, and later calls read them (``recompute=True`` computes them again)."""
        from .stats import version_stats

        return version_stats(self.dataset, self.manifest, stored=not recompute)

    def labeled_tasks(self) -> pa.Table:
        """Tasks with at least one annotation by a person that was not cancelled."""
        from .stats import LABELED_TASKS

        return self.sql(LABELED_TASKS)

    def unlabeled_tasks(self) -> pa.Table:
        """Tasks that no person has annotated yet (predictions alone do not count)."""
        from .stats import UNLABELED_TASKS

        return self.sql(UNLABELED_TASKS)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``annostore log --json`` prints)."""
        return {
            "dataset": self.dataset.name,
            "number": self.number,
            "id": self.id,
            "parent": self.parent,
            "operation": self.operation,
            "message": self.message,
            "author": self.author,
            "created_at": self.created_at.isoformat(),
            "counts": self.counts,
            "changes": self.changes,
            "tags": self.dataset._tags_of(self.number),
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Version {self.dataset.name}@{self.number} {self.id[:12]} {self.counts}>"
