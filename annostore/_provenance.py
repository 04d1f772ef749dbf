"""Tables known to hold a version's rows, remembered so that a commit can skip comparing them.

A pyarrow Table never changes: the very object a version's table was read into still
holds exactly those rows. A user who reads ``v.tables``, edits the regions and commits
``Tables(v.tables.tasks, v.tables.annotations, new_regions, v.tables.labels)`` passes
three such objects back. When the commit's base stores the same files for that table as
the version it was read from, the table cannot have changed, and comparing its rows one
by one with the base (a hash of every row and a join on the key) is skipped.

The tables of a full-state commit are remembered the same way once it is published (or
found identical to its base): they hold exactly the rows of the version made, so editing
the regions of the :class:`Tables` just committed and committing again compares only the
regions. A commit rebased onto another writer's version is not remembered: that version
also holds the other writer's rows.

Only the object itself counts: a copy, a slice, a cast or a filtered table is compared
as usual. An entry lives as long as its table object does (a weak reference), so an
address reused by a later table can never be taken for it.
"""

from __future__ import annotations

import threading
import weakref

import pyarrow as pa

from ._manifest import TableState

__all__ = ["Origin", "is_version_table", "origin", "read_from", "remember"]

#: where a table's rows came from: store, dataset folder, table name and the files
Origin = tuple[str, str, str, tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]]

_ORIGINS: dict[int, tuple[weakref.ref[pa.Table], Origin]] = {}
# Re-entrant: a table can be collected (and its entry forgotten) by the garbage collector
# while this thread holds the lock.
_LOCK = threading.RLock()


def origin(store_url: str, folder: str, table: str, state: TableState) -> Origin:
    """What identifies the live rows of ``table`` in a version: the fragments and
    tombstones it is merged from (with the order they apply in)."""
    return (
        store_url,
        folder,
        table,
        tuple((f.sha256, f.seq) for f in state.fragments),
        tuple((t.sha256, t.seq) for t in state.tombstones),
    )


def remember(table: pa.Table, where: Origin) -> None:
    """Note that ``table`` holds exactly the live rows that ``where`` identifies."""
    key = id(table)

    def forget(_: weakref.ref, key: int = key) -> None:
        with _LOCK:
            entry = _ORIGINS.get(key)
            if entry is not None and entry[0]() is None:
                del _ORIGINS[key]

    with _LOCK:
        _ORIGINS[key] = (weakref.ref(table, forget), where)


def read_from(table: pa.Table) -> Origin | None:
    """Where ``table`` was read from, if it is a version's table object itself."""
    with _LOCK:
        entry = _ORIGINS.get(id(table))
    if entry is None or entry[0]() is not table:
        return None
    return entry[1]


def is_version_table(table: pa.Table, name: str) -> bool:
    """True when ``table`` is the object some version's table ``name`` was read into."""
    where = read_from(table)
    return where is not None and where[2] == name
