"""``annostore demo``: a small, generated object-detection dataset committed as two versions.

Round 1 is what a first labeling pass produces; round 2 is a review: a few boxes moved,
some relabeled, a few added or removed, a new class, and model predictions on new images.
Everything is generated from a fixed seed, so every run produces the same tables.
"""

from __future__ import annotations

import random
from typing import Any

from .convert import write
from .converters import Report
from .store import Store
from .tables import Tables
from .version import Version

LABELS = [("cat", "#f28e2b"), ("dog", "#4e79a7"), ("bird", "#59a14f")]
IMAGES = 60


def _box(rng: random.Random) -> dict[str, float]:
    w, h = rng.uniform(0.05, 0.5), rng.uniform(0.05, 0.5)
    return {"x": rng.uniform(0, 1 - w), "y": rng.uniform(0, 1 - h), "w": w, "h": h}


def round_one() -> dict[str, list[dict[str, Any]]]:
    """The first labeling pass: 60 images, 50 labeled by two annotators, 10 not yet."""
    rng = random.Random(7)
    tasks, annotations, regions = [], [], []
    for index in range(IMAGES):
        task_id = f"images/{index:04d}"
        width, height = rng.choice([(640, 480), (1280, 720), (800, 800)])
        tasks.append(
            {
                "task_id": task_id,
                "uri": f"s3://pets/{task_id}.jpg",
                "asset_key": f"pets/{task_id}.jpg",
                "width": width,
                "height": height,
                "split": "val" if index % 5 == 0 else "train",
            }
        )
        if index >= 50:
            continue
        annotation_id = f"{task_id}#ana"
        annotations.append(
            {
                "annotation_id": annotation_id,
                "task_id": task_id,
                "annotator": rng.choice(["ana", "ben"]),
                "lead_time": round(rng.uniform(3, 40), 2),
            }
        )
        for number in range(rng.randint(0, 4)):
            label = rng.choice(LABELS)[0]
            regions.append(
                {
                    "annotation_id": annotation_id,
                    "region_id": f"r{number}",
                    "type": "bbox",
                    "label": label,
                    **_box(rng),
                }
            )
    labels = [
        {"label": name, "label_id": i + 1, "color": color} for i, (name, color) in enumerate(LABELS)
    ]
    return {"tasks": tasks, "annotations": annotations, "regions": regions, "labels": labels}


def round_two(first: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """A review of round one plus predictions on the images nobody labeled yet."""
    rng = random.Random(11)
    regions = []
    for region in first["regions"]:
        roll = rng.random()
        if roll < 0.05:
            continue  # removed in review
        region = dict(region)
        if roll < 0.15:
            region["x"] = min(max(region["x"] + rng.uniform(-0.02, 0.02), 0.0), 1 - region["w"])
        elif roll < 0.22:
            region["label"] = "fox" if roll < 0.18 else "cat"
        regions.append(region)
    for annotation in first["annotations"][:8]:
        regions.append(
            {
                "annotation_id": annotation["annotation_id"],
                "region_id": "r9",
                "type": "bbox",
                "label": "fox",
                **_box(rng),
            }
        )
    annotations = list(first["annotations"])
    for task in first["tasks"][50:]:
        annotation_id = f"{task['task_id']}#model"
        annotations.append(
            {
                "annotation_id": annotation_id,
                "task_id": task["task_id"],
                "kind": "prediction",
                "model_version": "detector-v1",
                "score": 0.8,
            }
        )
        regions.append(
            {
                "annotation_id": annotation_id,
                "region_id": "p0",
                "type": "bbox",
                "label": "dog",
                "score": round(rng.uniform(0.3, 0.99), 3),
                **_box(rng),
            }
        )
    labels = [*first["labels"], {"label": "fox", "label_id": 4, "color": "#e15759"}]
    return {
        "tasks": first["tasks"],
        "annotations": annotations,
        "regions": regions,
        "labels": labels,
    }


def run_demo(store: Store, dataset: str = "demo") -> list[Version]:
    """(Re)create ``dataset`` in ``store`` with two committed rounds; returns their versions."""
    if dataset in store.datasets():
        store.delete_dataset(dataset)
    target = store.create_dataset(dataset)
    first = round_one()
    v1 = target.commit(
        Tables.from_pylist(**first), message="round 1: first labeling pass", author="ana"
    )
    v2 = target.commit(
        Tables.from_pylist(**round_two(first)),
        message="round 2: review, new class 'fox', predictions",
        author="ben",
    )
    target.tag("round-1", v1.number)
    return [v1, v2]


def export_demo(version: Version, folder: str) -> list[tuple[str, Report]]:
    """Write ``version`` to COCO and to YOLO under ``folder`` (replacing earlier exports);
    returns each target with its report of what the format could not hold."""
    import os

    os.makedirs(folder, exist_ok=True)
    tables = version.tables
    done = []
    for fmt, name in (("coco", "coco.json"), ("yolo", "yolo")):
        target = os.path.join(folder, name)
        done.append((target, write(tables, target, fmt, overwrite=True)))
    return done
