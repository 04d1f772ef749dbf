"""Results computed from versions alone, kept next to them in the store.

A version never changes, so neither does anything computed from versions alone: a
version's stats (``_stats_store``) and the details of a diff between two versions
(``_diff_store``). Each kind is kept under ``<dataset>/<kind>/<computation>/``, where
``<computation>`` fingerprints the modules that compute it: a release that computes it
differently never reads what an older one kept, and ``gc`` removes those folders.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from ._storage import sha256_hex
from .errors import NotFoundError

if TYPE_CHECKING:
    from ._storage import Storage

__all__ = ["fingerprint", "keep", "read"]

T = TypeVar("T")


def fingerprint(*modules: str) -> str:
    """A fingerprint of the named modules' source (changes when they do).

    An installation without their source (only compiled files) falls back to the release
    number, so what is kept is computed again once per release."""
    here = Path(__file__).parent
    try:
        code = b"".join((here / name).read_bytes() for name in modules)
    except OSError:
        from . import __version__

        return f"release-{__version__}"
    return sha256_hex(code)[:16]


def keep(storage: Storage, path: str, data: bytes, what: str) -> None:
    """Write ``data`` to ``path`` whole or not at all. A store that cannot be written
    (read-only) still answers: a warning says that ``what`` was not kept."""
    try:
        storage.write_whole(path, data)
    except OSError as exc:
        warnings.warn(
            f"{storage.url}: could not keep {what} ({type(exc).__name__}: {exc}); "
            "they will be computed again next time",
            stacklevel=4,
        )


def read(storage: Storage, path: str, parse: Callable[[bytes], T | str], then: str) -> T | None:
    """What the file at ``path`` holds, parsed; None when it is missing, or damaged
    (``parse`` says what is wrong): a warning says so and that the caller will ``then``."""
    try:
        data = storage.read_bytes(path)
    except NotFoundError:
        return None
    parsed = parse(data)
    if isinstance(parsed, str):
        warnings.warn(f"{storage.url}: {path}: {parsed}; {then}", stacklevel=4)
        return None
    return parsed
