"""hypothesis strategies for canonical tables."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

import annostore

identifiers = st.text(min_size=1, max_size=8)
texts = st.none() | st.text(max_size=12)
finite = st.floats(allow_nan=False, width=64)
json_text = st.none() | st.dictionaries(
    st.text(max_size=5),
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5),
    max_size=3,
).map(lambda d: json.dumps(d, ensure_ascii=False))
timestamps = st.none() | st.datetimes(
    min_value=__import__("datetime").datetime(1970, 1, 2),
    max_value=__import__("datetime").datetime(2200, 1, 1),
).map(lambda d: d.replace(microsecond=d.microsecond, tzinfo=__import__("datetime").timezone.utc))


@st.composite
def region_records(draw: st.DrawFn, annotation_id: str, region_id: str) -> dict[str, Any]:
    return {
        "annotation_id": annotation_id,
        "region_id": region_id,
        "type": draw(
            st.sampled_from(["bbox", "polygon", "keypoints", "mask", "class", "span", "text"])
        ),
        "label": draw(texts),
        "score": draw(st.none() | finite),
        "x": draw(st.none() | finite),
        "y": draw(st.none() | finite),
        "w": draw(st.none() | finite),
        "h": draw(st.none() | finite),
        "rotation": draw(st.none() | finite),
        "polygons": draw(st.none() | st.lists(st.lists(finite, max_size=6), max_size=2)),
        "keypoints": draw(st.none() | st.lists(finite, max_size=6)),
        "mask": draw(
            st.none()
            | st.fixed_dictionaries(
                {
                    "size": st.lists(st.integers(0, 5000), min_size=2, max_size=2),
                    "counts": st.text(max_size=8),
                }
            )
        ),
        "start": draw(st.none() | st.integers(0, 2**40)),
        "end": draw(st.none() | st.integers(0, 2**40)),
        "value": draw(texts),
        "parent_id": draw(st.none() | identifiers),
        "extra": draw(json_text),
    }


@st.composite
def tables(draw: st.DrawFn, max_tasks: int = 6) -> annostore.Tables:
    """Conforming Tables with references intact and every column exercised."""
    task_ids = draw(st.lists(identifiers, unique=True, max_size=max_tasks))
    tasks, annotations, regions = [], [], []
    annotation_ids = iter(
        draw(
            st.lists(
                identifiers, unique=True, min_size=3 * len(task_ids), max_size=3 * len(task_ids)
            )
        )
    )
    for task_id in task_ids:
        tasks.append(
            {
                "task_id": task_id,
                "uri": draw(texts),
                "asset_key": draw(texts),
                "text": draw(texts),
                "width": draw(st.none() | st.integers(1, 2**31 - 1)),
                "height": draw(st.none() | st.integers(1, 2**31 - 1)),
                "split": draw(st.none() | st.sampled_from(["train", "val", "test"])),
                "data": draw(json_text),
            }
        )
        for _ in range(draw(st.integers(0, 2))):
            annotation_id = next(annotation_ids)
            prediction = draw(st.booleans())
            annotations.append(
                {
                    "annotation_id": annotation_id,
                    "task_id": task_id,
                    "kind": "prediction" if prediction else "annotation",
                    "annotator": None if prediction else draw(texts),
                    "model_version": draw(texts) if prediction else None,
                    "score": draw(st.none() | finite),
                    "ground_truth": draw(st.booleans()),
                    "cancelled": draw(st.booleans()),
                    "lead_time": draw(st.none() | st.floats(0, 1e6)),
                    "created_at": draw(timestamps),
                    "updated_at": draw(timestamps),
                    "extra": draw(json_text),
                }
            )
            for region_id in draw(st.lists(identifiers, unique=True, max_size=3)):
                regions.append(draw(region_records(annotation_id, region_id)))
    labels = [
        {
            "label": name,
            "label_id": draw(st.none() | st.integers(-(2**62), 2**62)),
            "supercategory": draw(texts),
            "color": draw(texts),
            "keypoint_names": draw(st.none() | st.lists(st.text(max_size=4), max_size=3)),
            "skeleton": draw(
                st.none()
                | st.lists(st.lists(st.integers(1, 17), min_size=2, max_size=2), max_size=3)
            ),
            "extra": draw(json_text),
        }
        for name in draw(st.lists(identifiers, unique=True, max_size=4))
    ]
    return annostore.Tables.from_pylist(
        tasks=tasks, annotations=annotations, regions=regions, labels=labels
    )
