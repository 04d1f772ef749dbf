"""Label Studio label configs for a dataset's label set (``annostore.label_config``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from .converters import LABEL_CONFIG_TASKS, build_label_config, infer_task
from .tables import Tables

__all__ = ["TASK_TYPES", "label_config"]

TASK_TYPES = tuple(LABEL_CONFIG_TASKS)

_SHAPES = {"bbox", "polygon", "mask", "keypoints", "ellipse", "text"}
_CLASSES = {"class", "taxonomy"}
#: the region types whose labels a task's controls list (a box dataset gives its labels to
#: a polygon config too: re-labeling with another shape is a common round)
_TYPES_OF_TASK = {
    "image-classification": _CLASSES,
    "text-classification": _CLASSES,
    "taxonomy": _CLASSES,
    "object-detection": _SHAPES,
    "ocr": _SHAPES,
    "polygon-segmentation": _SHAPES,
    "keypoints": _SHAPES,
    "brush-segmentation": _SHAPES,
    "ner": {"span"},
}


def _ordered_rows(labels: pa.Table) -> list[dict[str, Any]]:
    ordered = labels.sort_by([("label_id", "ascending"), ("label", "ascending")])
    return ordered.select(["label", "color"]).to_pylist()


def label_config(
    task: str | None,
    labels: Tables | pa.Table | Iterable[Any],
    *,
    data_key: str | None = None,
) -> str:
    """A valid Label Studio config (XML text) for ``task`` with ``labels``.

    ``task`` is one of :data:`TASK_TYPES`; with ``labels`` a :class:`Tables` it may be
    ``None`` and is inferred from the region types present, and only the labels that the
    task's kind of region uses (or that nothing uses yet) are included, in label-set order
    with their colors. ``labels`` may also be a labels table, or names / ``{"label",
    "color"}`` records. Escaping is done by the XML library: any label text is safe.
    """
    if isinstance(labels, Tables):
        regions = labels.regions
        types = set(pc.unique(regions.column("type")).to_pylist()) if regions.num_rows else set()
        has_text = (
            labels.tasks.num_rows > 0
            and labels.tasks.column("text").null_count < labels.tasks.num_rows
        )
        chosen = task or infer_task(types, has_text=has_text)
        rows = _ordered_rows(labels.labels)
        if regions.num_rows:
            wanted = _TYPES_OF_TASK.get(chosen, set())
            used = regions.filter(pc.is_valid(regions.column("label"))).select(["label", "type"])
            by_label: dict[str, set[str]] = {}
            for label, region_type in zip(
                used.column("label").to_pylist(), used.column("type").to_pylist(), strict=True
            ):
                by_label.setdefault(label, set()).add(region_type)
            rows = [r for r in rows if r["label"] not in by_label or by_label[r["label"]] & wanted]
            rows += [
                {"label": name}
                for name in sorted(by_label)
                if by_label[name] & wanted and name not in {r["label"] for r in rows}
            ]
        return build_label_config(chosen, rows, data_key=data_key)
    if task is None:
        raise ValueError("task is needed unless labels is a Tables (then it is inferred)")
    if isinstance(labels, pa.Table):
        return build_label_config(task, _ordered_rows(labels), data_key=data_key)
    return build_label_config(task, labels, data_key=data_key)
