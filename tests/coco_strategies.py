"""hypothesis strategies for COCO documents, and a comparison that ignores 1 vs 1.0."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Pixel coordinates as tools write them: integers, or decimals with up to 6 places.
pixels = st.one_of(
    st.integers(0, 4000),
    st.decimals(0, 4000, places=2, allow_nan=False, allow_infinity=False).map(float),
    st.decimals(0, 4000, places=6, allow_nan=False, allow_infinity=False).map(float),
)
# Any float at all, as converters that print every digit write them.
any_pixels = st.floats(0, 4000, allow_nan=False, allow_infinity=False)
names = st.text(min_size=1, max_size=10)


@st.composite
def coco_documents(draw: st.DrawFn, pixels: st.SearchStrategy[float] = pixels) -> dict[str, Any]:
    """A valid COCO dataset."""
    image_ids = draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=5, unique=True))
    images = [
        {
            "id": image_id,
            "file_name": draw(names) + ".jpg",
            "width": draw(st.integers(1, 5000)),
            "height": draw(st.integers(1, 5000)),
            **draw(st.dictionaries(st.sampled_from(["license", "coco_url"]), st.integers(0, 9))),
        }
        for image_id in image_ids
    ]
    category_ids = draw(st.lists(st.integers(0, 200), min_size=1, max_size=4, unique=True))
    category_names = draw(
        st.lists(names, min_size=len(category_ids), max_size=len(category_ids), unique=True)
    )
    categories = [
        {"id": cid, "name": name, "supercategory": draw(st.sampled_from(["", "thing", "animal"]))}
        for cid, name in zip(category_ids, category_names, strict=True)
    ]
    annotations = []
    ann_ids = draw(st.lists(st.integers(1, 10**12), max_size=12, unique=True))
    for ann_id in ann_ids:
        image = draw(st.sampled_from(images))
        shape = draw(st.sampled_from(["bbox", "polygon", "rle", "keypoints"]))
        annotation: dict[str, Any] = {
            "id": ann_id,
            "image_id": image["id"],
            "category_id": draw(st.sampled_from(category_ids)),
            "bbox": [draw(pixels), draw(pixels), draw(pixels), draw(pixels)],
            "area": draw(pixels),
            "iscrowd": 0,
        }
        if shape == "polygon":
            rings = draw(
                st.lists(st.lists(pixels, min_size=6, max_size=12), min_size=1, max_size=3)
            )
            annotation["segmentation"] = [ring[: len(ring) // 2 * 2] for ring in rings]
        elif shape == "rle":
            total = image["width"] * image["height"]
            cut = draw(st.integers(0, total))
            annotation["segmentation"] = {
                "size": [image["height"], image["width"]],
                "counts": [cut, total - cut] if draw(st.booleans()) else [0, total],
            }
            annotation["iscrowd"] = 1
        elif shape == "keypoints":
            count = draw(st.integers(1, 4))
            annotation["keypoints"] = [
                value
                for _ in range(count)
                for value in (draw(pixels), draw(pixels), draw(st.sampled_from([0, 1, 2])))
            ]
            annotation["num_keypoints"] = sum(1 for v in annotation["keypoints"][2::3] if v > 0)
        if draw(st.booleans()):
            annotation["attributes"] = {"occluded": draw(st.booleans())}
        annotations.append(annotation)
    document = {
        "info": {"description": draw(st.text(max_size=8))},
        "licenses": [{"id": 1, "name": "x"}],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return document


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values, with 1 and 1.0 the same number."""
    return json.loads(json.dumps(a), parse_int=float) == json.loads(json.dumps(b), parse_int=float)


def same_coco(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The same COCO document, order of images, annotations and categories aside."""

    def ordered(document: dict[str, Any]) -> dict[str, Any]:
        document = json.loads(json.dumps(document), parse_int=float)
        for key in ("images", "annotations", "categories"):
            if isinstance(document.get(key), list):
                document[key] = sorted(
                    document[key], key=lambda item: json.dumps(item, sort_keys=True)
                )
        return document

    return ordered(a) == ordered(b)
