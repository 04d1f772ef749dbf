"""The files DuckDB reads for a query, each checked against its sha256 before it is read.

A local store's files are read where they are, each verified once per process. A remote or
memory store's files are downloaded once per process, verified, and written to a folder of
this process's own in the system's temporary folder, which DuckDB then reads with its own
Parquet reader. The folder is removed when the process exits. The copies are named by
content, so they are never stale, and DuckDB reads exactly the bytes that were checked.

Reading through fsspec from inside DuckDB, by ``register_filesystem``, was slower. DuckDB
made one Python call for every glob, open and read of every listed file, and on S3 each
call was a request. A query of a three-commit version on moto's S3 made 139 such calls
and took 1.9 s. It also read the bytes a second time, after they had been verified.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence

from ._fragments import map_io
from ._manifest import FileRef
from ._storage import Storage

__all__ = ["forget", "query_files"]

_lock = threading.Lock()
#: (store url, sha256) of each file checked in this process → the path DuckDB reads
_checked: dict[tuple[str, str], str] = {}
#: [pid, folder] of this process's copies
_copies: list = [None, None]


def query_files(storage: Storage, folder: str, refs: Sequence[FileRef]) -> list[str]:
    """Local paths of ``refs`` (files of the dataset in ``folder``), verified, in order."""
    with _lock:
        pending = {ref.sha256: ref for ref in refs if (storage.url, ref.sha256) not in _checked}
    if pending:
        found = map_io(lambda ref: _check(storage, folder, ref), list(pending.values()))
        with _lock:
            _checked.update(
                ((storage.url, ref.sha256), path)
                for ref, path in zip(pending.values(), found, strict=True)
            )
    with _lock:
        return [_checked[(storage.url, ref.sha256)] for ref in refs]


def forget() -> None:
    """Check every file again on its next query (tests use it after damaging a file)."""
    with _lock:
        _checked.clear()


def _check(storage: Storage, folder: str, ref: FileRef) -> str:
    relative = f"{folder}/{ref.path}"
    data = storage.read_verified(relative, ref.sha256)  # raises CorruptionError
    if storage.is_local:
        return storage.full(relative)
    target = os.path.join(_copy_folder(), f"{ref.sha256}.parquet")
    if not os.path.exists(target):
        # written whole under a name of this thread's, then renamed: a query of another
        # thread never reads half a file
        partial = f"{target}.{threading.get_ident()}.part"
        with open(partial, "wb") as out:
            out.write(data)
        os.replace(partial, target)
    return target


def _copy_folder() -> str:
    with _lock:
        if _copies[0] != os.getpid():
            folder = tempfile.mkdtemp(prefix="annostore-query-")
            _copies[:] = [os.getpid(), folder]
            atexit.register(_remove, os.getpid(), folder)
        return _copies[1]


def _remove(pid: int, folder: str) -> None:
    if os.getpid() == pid:
        # a temporary folder at exit: a file that cannot be removed is left to the system
        shutil.rmtree(folder, ignore_errors=True)


def _after_fork_in_child() -> None:
    # The parent removes its folder when it exits, and may exit first: a child makes its
    # own. The lock may have been held by another of the parent's threads.
    global _lock
    _lock = threading.Lock()
    _checked.clear()
    _copies[:] = [None, None]


os.register_at_fork(after_in_child=_after_fork_in_child)
