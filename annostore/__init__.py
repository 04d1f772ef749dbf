"""annostore: versioned, immutable snapshots of ML dataset labels.

>>> import annostore
>>> store = annostore.open("memory://doc")
>>> ds = store.create_dataset("pets")
>>> v = ds.commit(annostore.Tables.from_pylist(tasks=[{"task_id": "img1"}]), message="first")
>>> v.number, v.counts["tasks"]
(1, 1)
"""

from __future__ import annotations

from .convert import convert, detect_format, read, write
from .converters import Report
from .dataset import Dataset
from .diff import Diff, TableDiff
from .errors import (
    AnnostoreError,
    ConflictError,
    ConversionError,
    CorruptionError,
    InvalidNameError,
    MissingDependencyError,
    NotFoundError,
    ParseError,
    QueryError,
    RemoteError,
    SchemaError,
    UnknownFormatError,
)
from .label_configs import TASK_TYPES, label_config
from .maintenance import GcReport, Problem, VerifyReport
from .store import DEFAULT_STORE, Store, open
from .tables import Tables
from .version import Version

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_STORE",
    "TASK_TYPES",
    "AnnostoreError",
    "ConflictError",
    "ConversionError",
    "CorruptionError",
    "Dataset",
    "Diff",
    "GcReport",
    "InvalidNameError",
    "MissingDependencyError",
    "NotFoundError",
    "ParseError",
    "Problem",
    "QueryError",
    "RemoteError",
    "Report",
    "SchemaError",
    "Store",
    "TableDiff",
    "Tables",
    "UnknownFormatError",
    "VerifyReport",
    "Version",
    "__version__",
    "convert",
    "detect_format",
    "label_config",
    "open",
    "read",
    "write",
]
