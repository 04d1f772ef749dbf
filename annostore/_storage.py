"""The thin layer between annostore and an fsspec filesystem.

Two guarantees live here: every file appears whole or not at all, and a manifest is
published with an atomic put-if-absent, so that exactly one of several racing writers wins.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from fsspec.implementations.memory import MemoryFileSystem

from .errors import AnnostoreError, CorruptionError, NotFoundError

TEMP_PREFIX = ".tmp-"
_MEMORY_LOCK = threading.Lock()
_CONFLICT_RETRIES = 8


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Storage:
    """Files under one root of one fsspec filesystem; paths given to methods are relative."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str):
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self.is_local = isinstance(fs, LocalFileSystem)
        self.is_memory = isinstance(fs, MemoryFileSystem)

    @classmethod
    def from_url(
        cls,
        url: str,
        storage_options: dict[str, Any] | None = None,
        filesystem: fsspec.AbstractFileSystem | None = None,
    ) -> Storage:
        if filesystem is None:
            options = dict(storage_options or {})
            protocol = fsspec.core.split_protocol(url)[0] or "file"
            if protocol not in ("file", "local", "memory"):
                # Other writers change the store: never answer a listing from a cache.
                options.setdefault("use_listings_cache", False)
            filesystem, root = fsspec.core.url_to_fs(url, **options)
        else:
            root = filesystem._strip_protocol(url)
        storage = cls(filesystem, root, url)
        if storage.is_local:
            os.makedirs(storage.full(""), exist_ok=True)
        return storage

    def full(self, path: str) -> str:
        return f"{self.root}/{path}" if path else self.root

    # reading -------------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        try:
            return self.fs.cat_file(self.full(path))
        except FileNotFoundError as exc:
            raise NotFoundError(f"{self.url}: missing file {path}") from exc

    def read_verified(self, path: str, sha256: str) -> bytes:
        """The file's bytes, after checking them against the sha256 recorded for it."""
        data = self.read_bytes(path)
        actual = sha256_hex(data)
        if actual != sha256:
            raise CorruptionError(
                f"{self.url}: {path} is corrupted (sha256 {actual[:12]}…, manifest says {sha256[:12]}…)",
                path=path,
            )
        return data

    def exists(self, path: str) -> bool:
        return self.fs.exists(self.full(path))

    def list(self, folder: str) -> list[str]:
        """Names (not paths) of the entries directly in ``folder``; empty when it is missing."""
        full = self.full(folder)
        self.fs.invalidate_cache(full)
        try:
            entries = self.fs.ls(full, detail=False)
        except FileNotFoundError:
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in entries)

    def list_files(self, folder: str) -> list[tuple[str, float | None, int]]:
        """(relative path, modification time in epoch seconds or None if unknown, size) of every
        file below ``folder``."""
        full = self.full(folder)
        self.fs.invalidate_cache(full)
        try:
            found = self.fs.find(full, detail=True)
        except FileNotFoundError:
            return []
        files = []
        prefix = self.root + "/"
        for path, info in found.items():
            if info.get("type") == "directory":
                continue
            relative = path[len(prefix) :] if path.startswith(prefix) else path
            files.append((relative, _modified(info), int(info.get("size") or 0)))
        return sorted(files)

    # writing -------------------------------------------------------------------------

    def write_whole(self, path: str, data: bytes) -> None:
        """Write a file so that it appears whole or not at all (replacing one with the same name)."""
        full = self.full(path)
        if self.is_local:
            folder = os.path.dirname(full)
            os.makedirs(folder, exist_ok=True)
            temp = self._write_local_temp(folder, data)
            os.replace(temp, full)
            _fsync_dir(folder)
        else:
            self.fs.pipe_file(full, data)

    def put_if_absent(self, path: str, data: bytes) -> bool:
        """Create ``path`` with ``data`` unless it exists; True when this call created it.

        Atomic across processes and machines: on local disk a finished, fsynced temp file is
        hard-linked into place; on object stores the put is conditional (If-None-Match);
        in memory it happens under a lock.
        """
        full = self.full(path)
        if self.is_local:
            folder = os.path.dirname(full)
            os.makedirs(folder, exist_ok=True)
            temp = self._write_local_temp(folder, data)
            try:
                os.link(temp, full)
            except FileExistsError:
                return False
            finally:
                os.unlink(temp)
            _fsync_dir(folder)
            return True
        if self.is_memory:
            with _MEMORY_LOCK:
                if self.fs.exists(full):
                    return False
                self.fs.pipe_file(full, data)
                return True
        return self._put_if_absent_remote(full, data)

    def _put_if_absent_remote(self, full: str, data: bytes) -> bool:
        for attempt in range(_CONFLICT_RETRIES):
            try:
                self.fs.pipe_file(full, data, mode="create")
                return True
            except FileExistsError:
                return False
            except TypeError as exc:
                raise AnnostoreError(
                    f"{self.url}: this filesystem ({type(self.fs).__name__}) cannot create a file only "
                    "if it is absent, so versions cannot be published safely on it"
                ) from exc
            except OSError as exc:
                # S3 answers 409 while a competing conditional write is in flight.
                if exc.errno != errno.EBUSY or attempt == _CONFLICT_RETRIES - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def delete(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.full(path))

    def delete_tree(self, folder: str) -> None:
        full = self.full(folder)
        if self.fs.exists(full):
            self.fs.rm(full, recursive=True)

    def _write_local_temp(self, folder: str, data: bytes) -> str:
        temp = os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return temp


def _modified(info: dict[str, Any]) -> float | None:
    for key in ("mtime", "LastModified", "last_modified", "created", "updated", "mtime_ns"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=timezone.utc)
            return value.timestamp()
        if isinstance(value, str):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        if key == "mtime_ns":
            return float(value) / 1e9
        return float(value)
    return None


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
