"""The errors annostore raises.

Every error is an :class:`AnnostoreError`; catch that to handle them all::

    AnnostoreError
    ├── SchemaError               tables that do not conform to the canonical schema
    │   └── ParseError            a source file that cannot be read (path, location, reason)
    ├── NotFoundError             an unknown dataset, version, tag or file
    │   └── UnknownFormatError    an unknown converter name (lists the known ones)
    ├── InvalidNameError          a dataset or tag name that is not allowed
    ├── ConflictError             a concurrent commit touched the same rows; an existing name
    ├── CorruptionError           a stored file whose bytes do not match its recorded sha256
    ├── ConversionError           a loss during conversion under ``strict``
    ├── QueryError                SQL that is not a single read-only SELECT, or fails
    ├── RemoteError               a server (Label Studio) that refused, failed or did not answer
    └── MissingDependencyError    an optional dependency is not installed (with install hint)

The CLI prints the message of an ``AnnostoreError`` as one line and exits with status 1.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AnnostoreError",
    "ConflictError",
    "ConversionError",
    "CorruptionError",
    "InvalidNameError",
    "MissingDependencyError",
    "NotFoundError",
    "ParseError",
    "QueryError",
    "RemoteError",
    "SchemaError",
    "UnknownFormatError",
]


class AnnostoreError(Exception):
    """Base class of every error annostore raises on purpose."""


class SchemaError(AnnostoreError):
    """Tables or records that do not conform to the canonical schema.

    ``table`` and ``column`` name where the problem is, when known.
    """

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None):
        super().__init__(message)
        self.table = table
        self.column = column


class ParseError(SchemaError):
    """A source that cannot be parsed: ``path:location: reason``."""

    def __init__(self, path: str, location: str | int | None, reason: str):
        where = f"{path}:{location}" if location not in (None, "") else path
        super().__init__(f"{where}: {reason}")
        self.path = path
        self.location = location
        self.reason = reason


class NotFoundError(AnnostoreError):
    """A dataset, version, tag or file that does not exist."""


class UnknownFormatError(NotFoundError):
    """A converter name that is not registered; ``known`` lists the registered names."""

    def __init__(self, name: str, known: Sequence[str]):
        listed = ", ".join(known) if known else "none registered"
        super().__init__(f"unknown format {name!r} (known formats: {listed})")
        self.name = name
        self.known = list(known)


class InvalidNameError(AnnostoreError):
    """A dataset or tag name that cannot be used."""


class ConflictError(AnnostoreError):
    """A write that cannot proceed because of what is already there.

    Raised when a concurrent commit changed the same rows (``rows`` lists some of their
    keys, per table) or when a name is taken.
    """

    def __init__(self, message: str, *, rows: dict[str, list] | None = None):
        super().__init__(message)
        self.rows = rows or {}


class CorruptionError(AnnostoreError):
    """A stored file whose content does not match the sha256 its manifest records."""

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class ConversionError(AnnostoreError):
    """A conversion that would lose or approximate data while ``strict`` is on."""


class QueryError(AnnostoreError):
    """User SQL that is not allowed (not one SELECT, reaching outside the store) or fails."""


class RemoteError(AnnostoreError):
    """A server annostore talks to (Label Studio) refused the request, failed or did not
    answer; ``status`` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class MissingDependencyError(AnnostoreError):
    """An optional dependency is missing; the message says what to install."""

    def __init__(self, package: str, purpose: str, extra: str | None = None):
        hint = f"pip install 'annostore[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs {package!r}, which is not installed: {hint}")
        self.package = package
