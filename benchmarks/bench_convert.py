"""Conversion speed and memory: annostore next to the tools users would pick instead.

    python benchmarks/bench_convert.py --regions 100000 1000000 --repeat 3

Jobs: COCO → YOLO, YOLO → COCO, Label Studio JSON → COCO and → YOLO, and parsing alone.
Tools: annostore (this environment); Label Studio's converter (label-studio-converter and
label-studio-sdk), globox, Datumaro and supervision, installed by this script into their
own virtual environment (``--peers-venv``, created on first use, never this one). Floors
measured in the same run: json.load and a typed msgspec decode of the input, and creating
as many small files as the YOLO output has. Every measurement is a fresh process timed by
``/usr/bin/time`` (wall seconds, peak resident memory); the table shows medians.

Data is synthetic and deterministic: 7 boxes per 640 × 480 image (as in COCO), two-decimal
pixel coordinates and a 4-point polygon each for COCO; Label Studio exports with the same
boxes in percent and full-precision floats, as Label Studio writes them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

PEERS = [
    "label-studio-converter",
    "label-studio-sdk",
    "globox",
    "datumaro",
    "supervision",
    "msgspec",
]
PER_IMAGE = 7
#: tools left out above a size, with the reason (they would run out of memory here)
SKIP_ABOVE = {
    "supervision": (
        10_000,
        "decodes every image into memory: 4.2 GB at 7,000 regions, over 21 GB at 100,000",
    )
}
CLASSES = 80


def blank_png(width: int = 640, height: int = 480) -> bytes:
    """A valid gray PNG (tools that decode pixels to learn sizes need a real image)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


# ----------------------------------------------------------------------------- data


def make_coco(path: Path, regions: int) -> None:
    rng = random.Random(7)
    images = regions // PER_IMAGE
    with open(path, "w") as out:
        out.write('{"info": {"description": "annostore benchmark"}, "licenses": [], "images": [')
        out.write(
            ",".join(
                json.dumps(
                    {"id": i + 1, "file_name": f"img_{i:07d}.png", "width": 640, "height": 480}
                )
                for i in range(images)
            )
        )
        out.write('], "annotations": [')
        first = True
        for i in range(images):
            for k in range(PER_IMAGE):
                x, y = round(rng.uniform(0, 500), 2), round(rng.uniform(0, 400), 2)
                w, h = round(rng.uniform(1, 100), 2), round(rng.uniform(1, 70), 2)
                record = {
                    "id": i * PER_IMAGE + k + 1,
                    "image_id": i + 1,
                    "category_id": rng.randint(1, CLASSES),
                    "bbox": [x, y, w, h],
                    "area": round(w * h, 4),
                    "iscrowd": 0,
                    "segmentation": [
                        [
                            x,
                            y,
                            round(x + w, 2),
                            y,
                            round(x + w, 2),
                            round(y + h, 2),
                            x,
                            round(y + h, 2),
                        ]
                    ],
                }
                out.write(("" if first else ",") + json.dumps(record))
                first = False
        out.write('], "categories": [')
        out.write(
            ",".join(
                json.dumps({"id": c, "name": f"class_{c}", "supercategory": "thing"})
                for c in range(1, CLASSES + 1)
            )
        )
        out.write("]}")


def make_images(folder: Path, count: int) -> None:
    """Real 640 × 480 PNGs: a few small files, hard-linked (ext4 allows 65,000 links each;
    the YOLO copy links each image once more)."""
    folder.mkdir(parents=True, exist_ok=True)
    png = blank_png()
    source = None
    for i in range(count):
        path = folder / f"img_{i:07d}.png"
        if i % 30_000 == 0:
            path.write_bytes(png)
            source = path
        else:
            os.link(source, path)


def make_label_studio(path: Path, regions: int) -> None:
    rng = random.Random(11)
    images = regions // PER_IMAGE
    with open(path, "w") as out:
        out.write("[")
        for i in range(images):
            results = []
            for k in range(PER_IMAGE):
                results.append(
                    {
                        "id": f"r{i}_{k}",
                        "from_name": "label",
                        "to_name": "image",
                        "type": "rectanglelabels",
                        "original_width": 640,
                        "original_height": 480,
                        "image_rotation": 0,
                        "origin": "manual",
                        "value": {
                            "x": rng.uniform(0, 80),
                            "y": rng.uniform(0, 80),
                            "width": rng.uniform(1, 15),
                            "height": rng.uniform(1, 15),
                            "rotation": 0,
                            "rectanglelabels": [f"class_{rng.randint(1, CLASSES)}"],
                        },
                    }
                )
            task = {
                "id": i + 1,
                "data": {"image": f"/data/upload/1/{i:08x}-img_{i:07d}.png"},
                "annotations": [
                    {
                        "id": i + 1,
                        "completed_by": 1,
                        "result": results,
                        "was_cancelled": False,
                        "ground_truth": False,
                        "created_at": "2024-01-01T00:00:00.000000Z",
                        "updated_at": "2024-01-01T00:00:00.000000Z",
                        "lead_time": 10.5,
                    }
                ],
                "predictions": [],
            }
            out.write(("," if i else "") + json.dumps(task))
        out.write("]")


LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    + "".join(f'<Label value="class_{c}"/>' for c in range(1, CLASSES + 1))
    + "</RectangleLabels></View>"
)


def prepare(work: Path, regions: int) -> dict[str, Path]:
    folder = work / f"data-{regions}"
    done = folder / ".done"
    paths = {
        "coco": folder / "coco" / "annotations" / "instances_train.json",
        "coco_images": folder / "coco" / "images" / "train",
        "yolo": folder / "yolo",
        "ls": folder / "label_studio.json",
        "config": folder / "label_config.xml",
    }
    if done.exists():
        return paths
    shutil.rmtree(folder, ignore_errors=True)
    paths["coco"].parent.mkdir(parents=True)
    make_coco(paths["coco"], regions)
    make_images(paths["coco_images"], regions // PER_IMAGE)
    make_label_studio(paths["ls"], regions)
    paths["config"].write_text(LABEL_CONFIG)
    # YOLO input: annostore's own YOLO output of the COCO data, with the images beside it
    import annostore

    annostore.convert(paths["coco"], paths["yolo"], to="yolo", read_options={"split": "train"})
    for image in paths["coco_images"].iterdir():
        target = paths["yolo"] / "images" / "train" / image.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(image, target)
    done.write_text("ok")
    return paths


# ----------------------------------------------------------------------------- jobs

ANNOSTORE = {
    "parse COCO": "import annostore; annostore.read({coco!r}, 'coco')",
    "parse Label Studio": "import annostore; annostore.read({ls!r}, 'label-studio')",
    "COCO -> YOLO": "import annostore; annostore.convert({coco!r}, {out!r}, to='yolo')",
    "YOLO -> COCO": "import annostore; annostore.convert({yolo!r}, {out!r} + '.json', to='coco')",
    "Label Studio -> COCO": "import annostore; annostore.convert({ls!r}, {out!r} + '.json', to='coco')",
    "Label Studio -> YOLO": "import annostore; annostore.convert({ls!r}, {out!r}, to='yolo')",
}

PEER_JOBS = {
    "parse COCO": {
        "floor: json.load": "import json; json.load(open({coco!r}))",
        "floor: msgspec typed": textwrap.dedent(
            """
            import msgspec
            class Image(msgspec.Struct):
                id: int; file_name: str; width: int; height: int
            class Ann(msgspec.Struct):
                id: int; image_id: int; category_id: int; bbox: list[float]; area: float; iscrowd: int; segmentation: list[list[float]]
            class Cat(msgspec.Struct):
                id: int; name: str
            class Coco(msgspec.Struct):
                images: list[Image]; annotations: list[Ann]; categories: list[Cat]
            msgspec.json.decode(open({coco!r}, 'rb').read(), type=Coco)
            """
        ),
        "globox": "from globox import AnnotationSet; AnnotationSet.from_coco({coco!r})",
        "datumaro": "import datumaro as dm; dm.Dataset.import_from({coco_root!r}, 'coco_instances').__len__()",
        "supervision": "import supervision as sv; sv.DetectionDataset.from_coco({coco_images!r}, {coco!r})",
    },
    "parse Label Studio": {
        "floor: json.load": "import json; json.load(open({ls!r}))",
    },
    "COCO -> YOLO": {
        "globox": textwrap.dedent(
            """
            from globox import AnnotationSet
            a = AnnotationSet.from_coco({coco!r})
            labels = sorted(a._labels())
            a.save_yolo_v5({out!r}, label_to_id={{l: i for i, l in enumerate(labels)}})
            """
        ),
        "datumaro": "import datumaro as dm; dm.Dataset.import_from({coco_root!r}, 'coco_instances').export({out!r}, 'yolo', save_media=False)",
        "supervision": "import supervision as sv; d = sv.DetectionDataset.from_coco({coco_images!r}, {coco!r}); d.as_yolo(annotations_directory_path={out!r} + '/labels', data_yaml_path={out!r} + '/data.yaml')",
        "floor: create files": "import os; os.makedirs({out!r}); [open(os.path.join({out!r}, f'{{i}}.txt'), 'w').write('0 0.5 0.5 0.1 0.1\\n') for i in range({images})]",
    },
    "YOLO -> COCO": {
        "globox": "from globox import AnnotationSet; AnnotationSet.from_yolo_v5({yolo!r} + '/labels/train', image_folder={yolo!r} + '/images/train', image_extension='.png').save_coco({out!r} + '.json', auto_ids=True)",
        "datumaro": "import datumaro as dm; dm.Dataset.import_from({yolo!r}, 'yolo').export({out!r}, 'coco_instances', save_media=False)",
        "supervision": "import supervision as sv; d = sv.DetectionDataset.from_yolo({yolo!r} + '/images/train', {yolo!r} + '/labels/train', {yolo!r} + '/data.yaml'); d.as_coco(annotations_path={out!r} + '.json')",
    },
    "Label Studio -> COCO": {
        "label-studio-converter": "from label_studio_converter import Converter; Converter(config={config!r}, project_dir=None, download_resources=False).convert_to_coco({ls!r}, {out!r}, is_dir=False)",
        "label-studio-sdk": "from label_studio_sdk.converter import Converter; Converter(config={config!r}, project_dir=None, download_resources=False).convert_to_coco({ls!r}, {out!r}, is_dir=False)",
    },
    "Label Studio -> YOLO": {
        "label-studio-converter": "from label_studio_converter import Converter; Converter(config={config!r}, project_dir=None, download_resources=False).convert_to_yolo({ls!r}, {out!r}, is_dir=False)",
        "label-studio-sdk": "from label_studio_sdk.converter import Converter; Converter(config={config!r}, project_dir=None, download_resources=False).convert_to_yolo({ls!r}, {out!r}, is_dir=False)",
    },
}


def peers_python(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"installing peers into {venv} (once)…", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEERS], check=True)
    return python


def measure(python: Path, code: str, work: Path) -> tuple[float, float] | str:
    """(wall seconds, peak MB) of one fresh process, or the error it ended with."""
    stats = work / "time.txt"
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%e %M", "-o", str(stats), str(python), "-c", code],
        capture_output=True,
        text=True,
        cwd=work,
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["failed"]
        return lines[-1][:100]
    seconds, kilobytes = stats.read_text().split()[-2:]
    return float(seconds), int(kilobytes) / 1024


def run(sizes: list[int], repeat: int, work: Path, venv: Path, jobs: list[str]) -> None:
    peers = peers_python(venv)
    outputs = work / "outputs"
    shutil.rmtree(outputs, ignore_errors=True)
    outputs.mkdir()
    try:
        _run(sizes, repeat, work, peers, jobs, outputs)
    finally:
        shutil.rmtree(outputs, ignore_errors=True)


def _run(
    sizes: list[int], repeat: int, work: Path, peers: Path, jobs: list[str], outputs: Path
) -> None:
    rows = []
    numbers = itertools.count()
    for regions in sizes:
        paths = prepare(work, regions)
        values = {
            "coco": str(paths["coco"]),
            "coco_root": str(paths["coco"].parent.parent),
            "coco_images": str(paths["coco_images"]),
            "yolo": str(paths["yolo"]),
            "ls": str(paths["ls"]),
            "config": str(paths["config"]),
            "images": regions // PER_IMAGE,
        }
        for job in jobs:
            tools = [("annostore", Path(sys.executable), ANNOSTORE[job])]
            tools += [(name, peers, code) for name, code in PEER_JOBS.get(job, {}).items()]
            results = {}
            for name, python, template in tools:
                limit, reason = SKIP_ABOVE.get(name, (None, ""))
                if limit is not None and regions > limit:
                    results[name] = f"skipped: {reason}"
                    continue
                samples = []
                for _attempt in range(repeat):
                    # Outputs are removed only when the run ends: on this VM's disk
                    # (ext4 with discard) creating 143k files right after deleting as
                    # many took 31-54 s of kernel time, and 9-15 s otherwise.
                    out = outputs / str(next(numbers))
                    measured = measure(python, template.format(out=str(out), **values), work)
                    if isinstance(measured, str):
                        samples = measured
                        break
                    samples.append(measured)
                results[name] = samples
                if isinstance(samples, str):
                    print(f"{regions:>8} {job:<22} {name:<24} failed: {samples}", file=sys.stderr)
                else:
                    print(
                        f"{regions:>8} {job:<22} {name:<24} {statistics.median(s for s, _ in samples):8.2f} s "
                        f"{max(m for _, m in samples):8.0f} MB",
                        file=sys.stderr,
                    )
            ours = (
                statistics.median(s for s, _ in results["annostore"])
                if not isinstance(results["annostore"], str)
                else None
            )
            for name, samples in results.items():
                if isinstance(samples, str):
                    shown = samples if samples.startswith("skipped") else f"failed: {samples}"
                    rows.append((regions, job, name, None, None, shown))
                    continue
                median = statistics.median(s for s, _ in samples)
                peak = max(m for _, m in samples)
                ratio = f"{median / ours:.1f}×" if ours and name != "annostore" else ""
                rows.append((regions, job, name, median, peak, ratio))
    print("\n| regions | job | tool | median s | peak MB | time vs annostore |")
    print("|---:|---|---|---:|---:|---:|")
    for regions, job, name, median, peak, ratio in rows:
        shown = "" if median is None else f"{median:.2f}"
        memory = "" if peak is None else f"{peak:.0f}"
        print(f"| {regions:,} | {job} | {name} | {shown} | {memory} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--regions", type=int, nargs="+", default=[100_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "annostore-bench-convert"
    )
    parser.add_argument(
        "--peers-venv", type=Path, default=Path(__file__).resolve().parent / ".peers-venv"
    )
    parser.add_argument("--jobs", nargs="+", default=list(ANNOSTORE), choices=list(ANNOSTORE))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    run(args.regions, args.repeat, args.work, args.peers_venv, args.jobs)


if __name__ == "__main__":
    main()
