"""Which dataset and tag names are allowed: names become path segments on any storage."""

from __future__ import annotations

import re

from .errors import InvalidNameError

MAX_NAME_LENGTH = 128
_ALLOWED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
RESERVED_REFS = ("latest",)


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid dataset or tag name, else raise InvalidNameError."""
    if not isinstance(name, str):
        raise InvalidNameError(f"{what} name must be a string, got {type(name).__name__}")
    if not name:
        raise InvalidNameError(f"{what} name must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(
            f"{what} name {name[:20]!r}… is longer than {MAX_NAME_LENGTH} characters"
        )
    if ".." in name or not _ALLOWED.fullmatch(name):
        raise InvalidNameError(
            f"{what} name {name!r} is not allowed: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit, without '..'"
        )
    return name


def check_tag_name(name: object) -> str:
    """Tag names follow dataset names and must not look like a version number or 'latest'."""
    tag = check_name(name, "tag")
    if tag.isdigit() or tag in RESERVED_REFS:
        raise InvalidNameError(
            f"tag name {tag!r} is not allowed: it would read as a version reference"
        )
    return tag
