"""The manifest: one JSON file per version that says which files make up each table."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annostore.schemas import TABLE_NAMES

from .errors import CorruptionError

MANIFEST_FORMAT = "annostore.version"
MANIFEST_FORMAT_VERSION = 1
NUMBER_WIDTH = 10


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileRef(_Strict):
    """A content-addressed file under the dataset folder."""

    path: str
    sha256: str
    rows: int
    bytes: int


class Fragment(FileRef):
    """Rows of one table, sorted by key; ``seq`` orders it against tombstones."""

    seq: int
    key_min: list[str]
    key_max: list[str]
    #: identifies the function that computed the ``_row_hash`` column (see ``_rowhash``)
    row_hash: int


class Tombstone(FileRef):
    """Keys whose rows in fragments with a smaller ``seq`` no longer belong to the version."""

    seq: int


class Changeset(FileRef):
    """The keys a commit inserted (I), updated (U) or deleted (D), with old and new row hashes."""

    inserted: int
    updated: int
    deleted: int


class TableState(_Strict):
    """What one table of a version is made of."""

    rows: int = 0
    fragments: list[Fragment] = Field(default_factory=list)
    tombstones: list[Tombstone] = Field(default_factory=list)
    changeset: Changeset | None = None


class Manifest(_Strict):
    """One version of a dataset. Never rewritten once published."""

    format: Literal["annostore.version"] = MANIFEST_FORMAT
    format_version: int = MANIFEST_FORMAT_VERSION
    schema_version: int
    dataset: str
    number: int
    parent: int | None
    operation: Literal["commit", "commit_changes", "compact"]
    created_at: datetime
    author: str | None = None
    message: str | None = None
    tables: dict[str, TableState]
    stats: dict[str, int] = Field(default_factory=dict)
    #: dataset-level facts of the source (COCO info/licenses, a label config, …)
    metadata: dict[str, Any] = Field(default_factory=dict)
    id: str = ""

    @property
    def counts(self) -> dict[str, int]:
        return {name: self.tables[name].rows for name in TABLE_NAMES if name in self.tables}

    def with_id(self) -> Manifest:
        return self.model_copy(update={"id": _content_id(self)})

    def to_bytes(self) -> bytes:
        body = self.model_dump(mode="json", exclude=None if self.metadata else {"metadata"})
        return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> Manifest:
        try:
            manifest = cls.model_validate_json(data)
        except ValidationError as exc:
            raise CorruptionError(
                f"{where}: not a valid version manifest ({exc.errors()[0]['msg']})", path=where
            ) from exc
        if manifest.id != _content_id(manifest):
            raise CorruptionError(f"{where}: manifest content does not match its id", path=where)
        return manifest


def _content_id(manifest: Manifest) -> str:
    # Empty metadata is left out, so manifests written before the field existed keep their id.
    exclude = {"id"} if manifest.metadata else {"id", "metadata"}
    body = manifest.model_dump(mode="json", exclude=exclude)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def version_path(number: int) -> str:
    return f"versions/{number:0{NUMBER_WIDTH}d}.json"


def parse_version_name(name: str) -> int | None:
    stem, _dot, extension = name.partition(".")
    if extension != "json" or not stem.isdigit():
        return None
    return int(stem)
