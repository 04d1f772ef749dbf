"""Code that runs in other processes for the race, concurrency and crash tests."""

from __future__ import annotations

import sys

import pyarrow as pa

import annostore
from annostore._storage import Storage


def race_put(index: int, rounds: int, barrier, url: str, options: dict, results) -> None:
    """Each round, every worker tries to create the same file at the same moment."""
    storage = Storage.from_url(url, options)
    for round_number in range(rounds):
        barrier.wait()
        won = storage.put_if_absent(f"race/{round_number}.json", f"worker {index}".encode())
        results.put((round_number, index, won))


def race_commit(
    index: int, barrier, url: str, options: dict, base: int | None, label: str | None, results
) -> None:
    """Commit a change released by the barrier; report the version number or the error."""
    dataset = annostore.open(url, storage_options=options).dataset("race")
    if label is None:
        upserts = {
            "regions": pa.Table.from_pylist(
                [{"annotation_id": "a00000", "region_id": f"w{index}", "type": "bbox"}]
            )
        }
    else:
        upserts = {
            "regions": pa.Table.from_pylist(
                [{"annotation_id": "a00000", "region_id": "r0", "type": "bbox", "label": label}]
            )
        }
    barrier.wait()
    try:
        version = dataset.commit_changes(upserts, base=base, message=f"worker {index}")
        results.put((index, "ok", version.number))
    except annostore.ConflictError as exc:
        results.put((index, "conflict", str(exc)))


def state(step: int) -> annostore.Tables:
    """The deterministic state a crash-test writer commits at ``step``."""
    tasks = [{"task_id": f"t{i:04d}", "width": 100 + i} for i in range(300)]
    annotations = [{"annotation_id": f"a{i:04d}", "task_id": f"t{i:04d}"} for i in range(300)]
    regions = [
        {
            "annotation_id": f"a{i:04d}",
            "region_id": f"r{j}",
            "type": "bbox",
            "label": "cat" if (i * 7 + j + step) % 11 else f"dog{step}",
            "x": ((i + j * 31 + step * 17) % 97) / 97,
        }
        for i in range(300)
        for j in range(3)
        if (i + j + step) % 29
    ]
    return annostore.Tables.from_pylist(tasks=tasks, annotations=annotations, regions=regions)


def crash_writer(url: str) -> None:
    """Commit state after state (with a compaction now and then) until killed."""
    store = annostore.open(url)
    dataset = store.create_dataset("crash", exist_ok=True)
    latest = dataset.latest
    step = (
        int(latest.message.split()[1])
        if latest is not None and latest.message.startswith("state ")
        else 0
    )
    if latest is not None and latest.operation == "compact":
        step = int(next(v for v in dataset.log() if v.operation != "compact").message.split()[1])
    print("ready", flush=True)
    while True:
        step += 1
        dataset.commit(state(step), message=f"state {step}")
        if step % 4 == 0:
            dataset.compact(message="compact")


if __name__ == "__main__":
    crash_writer(sys.argv[1])
