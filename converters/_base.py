"""What every converter shares: the Report, the options, and the Converter base class."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from annostore.errors import ConversionError, ParseError
from annostore.tables import Tables

__all__ = [
    "ANNOTATION_POLICIES",
    "CATEGORY_ID_POLICIES",
    "Converter",
    "Report",
    "SkipCollector",
    "Skipped",
]

#: Which annotations a one-label-set-per-image format (COCO, YOLO) receives.
ANNOTATION_POLICIES = ("latest", "ground-truth", "annotator", "predictions", "all")
#: How COCO category ids are chosen when writing.
CATEGORY_ID_POLICIES = ("keep", "from-1", "from-0")

Errors = Literal["raise", "skip"]


@dataclass(frozen=True)
class Skipped:
    """A source record left out under ``errors="skip"``."""

    path: str
    location: str | int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.location}" if self.location not in (None, "") else self.path
        return f"{where}: {self.reason}"


@dataclass
class Report:
    """What a read, a write or a conversion did, with counts of everything it lost.

    ``dropped`` counts data the target cannot hold at all; ``approximated`` counts data
    kept in a lossy form (a rotated box written as its axis-aligned envelope). Each maps a
    short description to a number of items. ``skipped`` lists bad source records left out
    under ``errors="skip"``.
    """

    format: str
    direction: Literal["read", "write", "convert"]
    counts: dict[str, int] = field(default_factory=dict)
    dropped: Counter[str] = field(default_factory=Counter)
    approximated: Counter[str] = field(default_factory=Counter)
    skipped: list[Skipped] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    files_written: int = 0

    @property
    def lossless(self) -> bool:
        """Nothing dropped, approximated or skipped."""
        return not (self.dropped or self.approximated or self.skipped)

    def drop(self, what: str, count: int) -> None:
        if count:
            self.dropped[what] += int(count)

    def approximate(self, what: str, count: int) -> None:
        if count:
            self.approximated[what] += int(count)

    def check_strict(self, strict: bool) -> None:
        """Raise :class:`~annostore.ConversionError` listing the losses when ``strict``."""
        if strict and not self.lossless:
            losses = [f"{n} {what}" for what, n in sorted(self.dropped.items())]
            losses += [f"{n} {what}" for what, n in sorted(self.approximated.items())]
            losses += [f"{len(self.skipped)} bad source records skipped"] if self.skipped else []
            raise ConversionError(
                f"{self.format} {self.direction} would lose data (strict): " + "; ".join(losses)
            )

    def combined(self, other: Report, direction: Literal["convert"] = "convert") -> Report:
        """This report (a read) followed by ``other`` (a write), as one conversion report."""
        merged = Report(
            format=f"{self.format} -> {other.format}",
            direction=direction,
            counts={f"read {k}": v for k, v in self.counts.items()}
            | {f"written {k}": v for k, v in other.counts.items()},
            dropped=self.dropped + other.dropped,
            approximated=self.approximated + other.approximated,
            skipped=self.skipped + other.skipped,
            options=self.options | other.options,
            notes=self.notes + other.notes,
            files_written=other.files_written,
        )
        return merged

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary."""
        return {
            "format": self.format,
            "direction": self.direction,
            "counts": dict(self.counts),
            "dropped": dict(sorted(self.dropped.items())),
            "approximated": dict(sorted(self.approximated.items())),
            "skipped": [
                {"path": s.path, "location": s.location, "reason": s.reason} for s in self.skipped
            ],
            "options": dict(self.options),
            "notes": list(self.notes),
            "files_written": self.files_written,
            "lossless": self.lossless,
        }

    def rows(self) -> list[dict[str, Any]]:
        """The report as (what, count) rows for a human table."""
        rows = [{"what": what, "count": n} for what, n in self.counts.items()]
        rows += [
            {"what": f"dropped: {what}", "count": n} for what, n in sorted(self.dropped.items())
        ]
        rows += [
            {"what": f"approximated: {what}", "count": n}
            for what, n in sorted(self.approximated.items())
        ]
        if self.skipped:
            rows.append({"what": "skipped bad records", "count": len(self.skipped)})
        return rows


class SkipCollector:
    """Raises a :class:`~annostore.ParseError` for a bad record, or notes it under
    ``errors="skip"``."""

    def __init__(self, errors: Errors):
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
        self.errors = errors
        self.skipped: list[Skipped] = []

    def bad(self, path: str, location: str | int | None, reason: str) -> None:
        if self.errors == "raise":
            raise ParseError(path, location, reason)
        self.skipped.append(Skipped(path, location, reason))


class Converter:
    """One format, both directions.

    Subclasses set ``name``, ``description`` and ``represents`` (the region types the
    format holds) and implement :meth:`read`, :meth:`write` and :meth:`detect`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    #: region types the format can hold without loss
    represents: ClassVar[tuple[str, ...]]
    can_read: ClassVar[bool] = True
    can_write: ClassVar[bool] = True

    def detect(self, source: str) -> float:
        """How confident (0–1) that ``source`` is in this format, from names and a peek."""
        raise NotImplementedError

    def read(
        self, source: str, *, errors: Errors = "raise", **options: Any
    ) -> tuple[Tables, Report]:
        """Read ``source`` (a path or fsspec URL) into the four tables."""
        raise NotImplementedError

    def write(self, tables: Tables, target: str, *, strict: bool = False, **options: Any) -> Report:
        """Write ``tables`` to ``target`` whole or not at all."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
