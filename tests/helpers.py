"""Small builders shared by the tests."""

from __future__ import annotations

import annostore


def boxes(
    task_count: int, per_task: int = 2, label: str = "cat", shift: float = 0.0
) -> annostore.Tables:
    """A detection dataset: ``task_count`` images with ``per_task`` boxes each."""
    tasks = [
        {"task_id": f"t{i:05d}", "uri": f"img/{i}.jpg", "width": 640, "height": 480}
        for i in range(task_count)
    ]
    annotations = [
        {"annotation_id": f"a{i:05d}", "task_id": f"t{i:05d}", "annotator": "ana"}
        for i in range(task_count)
    ]
    regions = [
        {
            "annotation_id": f"a{i:05d}",
            "region_id": f"r{j}",
            "type": "bbox",
            "label": label,
            "x": 0.1 + shift,
            "y": 0.2,
            "w": 0.3,
            "h": 0.4 + j / 100,
        }
        for i in range(task_count)
        for j in range(per_task)
    ]
    return annostore.Tables.from_pylist(
        tasks=tasks,
        annotations=annotations,
        regions=regions,
        labels=[{"label": label, "label_id": 1}],
    )
