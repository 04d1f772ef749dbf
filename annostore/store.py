"""``Store``: the root of annostore's storage on any fsspec URL, and ``open``."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any

import fsspec

from ._names import check_name
from ._storage import Storage
from .dataset import Dataset
from .errors import ConflictError, NotFoundError
from .maintenance import GcReport, VerifyReport, collect_garbage, verify_store

__all__ = ["DEFAULT_STORE", "Store", "open"]

#: Where the CLI and ``annostore.open()`` keep versions unless told otherwise.
DEFAULT_STORE = "./.annostore"
STORE_ENV = "ANNOSTORE_STORE"


def open(
    url: str | os.PathLike[str] | None = None,
    *,
    storage_options: dict[str, Any] | None = None,
    filesystem: fsspec.AbstractFileSystem | None = None,
    auto_compact: bool = True,
) -> Store:
    """Open (or create) a store at ``url``: a local path or any fsspec URL (``memory://x``,
    ``s3://bucket/prefix``, ``gs://…``).

    Without ``url``, ``$ANNOSTORE_STORE`` or ``./.annostore``. ``storage_options`` go to
    fsspec (credentials, endpoint_url…); ``filesystem`` uses an existing fsspec filesystem.
    """
    location = os.fspath(url) if url is not None else os.environ.get(STORE_ENV) or DEFAULT_STORE
    return Store(Storage.from_url(location, storage_options, filesystem), auto_compact=auto_compact)


class Store:
    """Datasets kept under one storage root. Create with :func:`annostore.open`."""

    def __init__(self, storage: Storage, *, auto_compact: bool = True):
        self._storage = storage
        self.auto_compact = auto_compact

    @property
    def url(self) -> str:
        return self._storage.url

    def datasets(self) -> list[str]:
        """Names of the datasets in this store, sorted."""
        return [
            name
            for name in self._storage.list("datasets")
            if not name.startswith(".") and self._storage.exists(f"datasets/{name}/dataset.json")
        ]

    def dataset(self, name: str) -> Dataset:
        """An existing dataset; :class:`~annostore.NotFoundError` if there is none by that name."""
        check_name(name, "dataset")
        if not self._storage.exists(f"datasets/{name}/dataset.json"):
            known = self.datasets()
            hint = f" (datasets: {', '.join(known)})" if known else " (the store has no datasets)"
            raise NotFoundError(f"no dataset {name!r} in {self.url}{hint}")
        return Dataset(self, name)

    def create_dataset(self, name: str, *, exist_ok: bool = False) -> Dataset:
        """Create an empty dataset (no versions until the first commit)."""
        check_name(name, "dataset")
        body = json.dumps(
            {
                "format": "annostore.dataset",
                "name": name,
                "created_at": datetime.now(timezone.utc).isoformat(),
            },
            indent=1,
        ).encode()
        if not self._storage.put_if_absent(f"datasets/{name}/dataset.json", body) and not exist_ok:
            raise ConflictError(f"dataset {name!r} already exists in {self.url}")
        return Dataset(self, name)

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset with all its versions and files. Cannot be undone."""
        self.dataset(name)
        # The marker goes first so that a half-finished delete leaves no visible dataset.
        self._storage.delete(f"datasets/{name}/dataset.json")
        self._storage.delete_tree(f"datasets/{name}")

    def gc(self, grace_seconds: float = 3600.0, *, dry_run: bool = False) -> GcReport:
        """Remove files no version references, if older than ``grace_seconds``.

        The grace period protects commits in flight: keep it longer than any commit takes.
        """
        return collect_garbage(self, grace_seconds, dry_run)

    def verify(self) -> VerifyReport:
        """Re-read every manifest and file and check it against its recorded sha256."""
        return verify_store(self)

    def __repr__(self) -> str:
        return f"<Store {self.url}>"
