"""Reading, writing and converting label files through the format registry."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from typing import Any

import fsspec

from . import converters
from .converters import Report
from .errors import AnnostoreError, UnknownFormatError
from .tables import Tables

__all__ = ["convert", "detect_format", "read", "write"]


def detect_format(source: str) -> str:
    """The registered format most confident that it can read ``source``."""
    scores = []
    for name in converters.names():
        converter = converters.get(name)
        if not getattr(converter, "can_read", False):
            continue
        try:
            score = converter.detect(str(source))
        except (OSError, AnnostoreError, UnicodeDecodeError):
            score = 0.0
        if score > 0:
            scores.append((score, name))
    if not scores:
        raise AnnostoreError(
            f"cannot tell the format of {source}; pass it explicitly "
            f"(known formats: {', '.join(converters.names())})"
        )
    scores.sort(reverse=True)
    return scores[0][1]


def _converter(name: str, direction: str) -> Any:
    converter = converters.get(name)
    if not getattr(converter, f"can_{direction}", False):
        raise UnknownFormatError(
            f"{name} ({direction} not supported)",
            [
                n
                for n in converters.names()
                if getattr(converters.get(n), f"can_{direction}", False)
            ],
        )
    return converter


def read(
    source: str | os.PathLike[str],
    format: str | None = None,
    *,
    errors: str = "raise",
    **options: Any,
) -> tuple[Tables, Report]:
    """Read a label file or folder into the four tables; the format is detected when left
    out. ``errors="skip"`` leaves bad records out and lists them in the report."""
    source = os.fspath(source)
    name = format or detect_format(source)
    return _converter(name, "read").read(source, errors=errors, **options)


def write(
    tables: Tables,
    target: str | os.PathLike[str],
    format: str,
    *,
    strict: bool = False,
    **options: Any,
) -> Report:
    """Write the tables in ``format``; ``strict`` makes any loss an error (nothing written)."""
    return _converter(format, "write").write(tables, os.fspath(target), strict=strict, **options)


def _accepts(function: Any, option: str) -> bool:
    parameters = inspect.signature(function).parameters
    return option in parameters


def convert(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    from_: str | None = None,
    to: str | None = None,
    *,
    strict: bool = False,
    errors: str = "raise",
    read_options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> Report:
    """Convert ``source`` (format ``from_``, detected when left out) to ``target`` in
    format ``to``; returns one report of what was read, written and lost. ``progress``,
    when given, is called with a line as each stage starts.

    Writers that need pixel sizes the source lacks (YOLO → COCO) read them from the image
    headers under the source folder, unless ``image_root`` says where the images are.
    """
    source, target = os.fspath(source), os.fspath(target)
    source_format = from_ or detect_format(source)
    if to is None:
        raise AnnostoreError("pass the target format (to=..., --to)")
    reader = _converter(source_format, "read")
    writer = _converter(to, "write")
    converters.check_target(target, bool(options.get("overwrite")))
    tell = progress or (lambda line: None)
    tell(f"reading {source} ({source_format})")
    tables, read_report = reader.read(source, errors=errors, **(read_options or {}))
    read_report.check_strict(strict)
    counts = ", ".join(f"{n} {name}" for name, n in tables.counts.items())
    tell(f"read {counts}; writing {target} ({to})")
    if "image_root" not in options and _accepts(writer.write, "image_root"):
        options["image_root"] = source if _is_folder(source) else os.path.dirname(source) or "."
    write_report = writer.write(tables, target, strict=strict, **options)
    report = read_report.combined(write_report)
    return report


def _is_folder(path: str) -> bool:
    fs, inner = fsspec.core.url_to_fs(path)
    return fs.isdir(inner)
