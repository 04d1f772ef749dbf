"""The format registry: converter name → converter, loaded on first use.

Built-in formats are a sorted table of ``"module:attr"`` strings, imported only when a
format is asked for; third-party packages add formats through the ``annostore.converters``
entry-point group, read on the first lookup that misses the built-ins (never at import).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from annostore.errors import UnknownFormatError

from ._base import ANNOTATION_POLICIES, CATEGORY_ID_POLICIES, Converter, Report, Skipped
from ._io import check_target
from ._label_config import LabelConfig, parse_label_config
from ._label_config_build import TASKS as LABEL_CONFIG_TASKS
from ._label_config_build import build_label_config, infer_task

__all__ = [
    "ANNOTATION_POLICIES",
    "CATEGORY_ID_POLICIES",
    "ENTRY_POINT_GROUP",
    "LABEL_CONFIG_TASKS",
    "Converter",
    "LabelConfig",
    "Report",
    "Skipped",
    "build_label_config",
    "check_target",
    "get",
    "infer_task",
    "known",
    "names",
    "parse_label_config",
    "register",
]

ENTRY_POINT_GROUP = "annostore.converters"

#: name → "module:attr" (relative modules are inside annostore.converters)
_BUILTIN: dict[str, str] = {
    "coco": ".coco:converter",
    "csv": ".csv_format:converter",
    "label-studio": ".label_studio:converter",
    "label-studio-min": ".label_studio_min:converter",
    "yolo": ".yolo:converter",
}

_registry: dict[str, str | Any] = dict(sorted(_BUILTIN.items()))
_loaded: dict[str, Any] = {}
_entry_points_read = False
_lock = threading.Lock()


def register(name: str, target: str | Any, *, replace: bool = False) -> None:
    """Register a converter under ``name``: an object, or a ``"module:attr"`` string.

    Registering over an existing name needs ``replace=True``.
    """
    with _lock:
        if name in _registry and not replace:
            raise ValueError(
                f"format {name!r} is already registered; pass replace=True to replace it"
            )
        _registry[name] = target
        _loaded.pop(name, None)


def _read_entry_points() -> None:
    global _entry_points_read
    if _entry_points_read:
        return
    for point in entry_points(group=ENTRY_POINT_GROUP):
        _registry.setdefault(point.name, point.value)
    _entry_points_read = True


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    if module_name.startswith("."):
        module = importlib.import_module(module_name, __name__)
    else:
        module = importlib.import_module(module_name)
    return getattr(module, attr) if attr else module


def get(name: str) -> Any:
    """The converter registered as ``name``; :class:`~annostore.UnknownFormatError` if none."""
    with _lock:
        if name in _loaded:
            return _loaded[name]
        if name not in _registry:
            _read_entry_points()
        if name not in _registry:
            raise UnknownFormatError(name, sorted(_registry))
        target = _registry[name]
        converter = _load(target) if isinstance(target, str) else target
        _loaded[name] = converter
        return converter


def names() -> list[str]:
    """Every registered format name, sorted (entry points included)."""
    with _lock:
        _read_entry_points()
        return sorted(_registry)


def known() -> Mapping[str, str | Any]:
    """A read-only view of the registry: name → converter or its "module:attr"."""
    with _lock:
        _read_entry_points()
        return MappingProxyType(dict(sorted(_registry.items())))
