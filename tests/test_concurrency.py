"""Races between processes: atomic publishing, rebasing and conflicts (local disk and S3)."""

from __future__ import annotations

import multiprocessing
from collections import defaultdict

import pytest
import workers
from helpers import boxes

import annostore

CONTEXT = multiprocessing.get_context("spawn")


def _run(target, args_per_worker, timeout=120):
    processes = [CONTEXT.Process(target=target, args=args) for args in args_per_worker]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
        assert process.exitcode == 0, f"worker exited with {process.exitcode}"


def _backend(request, tmp_path, kind):
    if kind == "local":
        return str(tmp_path / "store"), {}
    server = request.getfixturevalue("s3_server")
    return server.url(), server.options


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "rounds"), [("local", 60), pytest.param("s3", 15, marks=pytest.mark.s3)]
)
def test_exactly_one_of_many_racing_publishers_wins(request, tmp_path, kind, rounds):
    url, options = _backend(request, tmp_path, kind)
    workers_count = 6
    barrier = CONTEXT.Barrier(workers_count)
    results = CONTEXT.Queue()
    _run(
        workers.race_put,
        [(i, rounds, barrier, url, options, results) for i in range(workers_count)],
    )
    winners = defaultdict(list)
    for _ in range(rounds * workers_count):
        round_number, index, won = results.get(timeout=10)
        if won:
            winners[round_number].append(index)
    assert {r: len(w) for r, w in winners.items()} == dict.fromkeys(range(rounds), 1)
    storage = annostore.open(url, storage_options=options)._storage
    for round_number, (index,) in winners.items():
        assert storage.read_bytes(f"race/{round_number}.json") == f"worker {index}".encode()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_concurrent_commits_of_different_rows_all_land(request, tmp_path, kind):
    url, options = _backend(request, tmp_path, kind)
    annostore.open(url, storage_options=options).create_dataset("race").commit(boxes(5))
    count = 4
    barrier, results = CONTEXT.Barrier(count), CONTEXT.Queue()
    _run(
        workers.race_commit, [(i, barrier, url, options, None, None, results) for i in range(count)]
    )
    outcomes = sorted(results.get(timeout=10) for _ in range(count))
    assert [status for _, status, _ in outcomes] == ["ok"] * count
    assert sorted(number for _, _, number in outcomes) == [2, 3, 4, 5]
    store = annostore.open(url, storage_options=options)
    latest = store.dataset("race").latest
    region_ids = set(latest.tables.regions.column("region_id").to_pylist())
    assert {f"w{i}" for i in range(count)} <= region_ids
    assert latest.counts["regions"] == 10 + count
    assert store.verify().ok


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_two_writers_changing_the_same_rows_give_exactly_one_conflict(request, tmp_path, kind):
    url, options = _backend(request, tmp_path, kind)
    annostore.open(url, storage_options=options).create_dataset("race").commit(boxes(5))
    barrier, results = CONTEXT.Barrier(2), CONTEXT.Queue()
    _run(
        workers.race_commit,
        [(i, barrier, url, options, 1, label, results) for i, label in enumerate(["dog", "bird"])],
    )
    outcomes = sorted(results.get(timeout=10) for _ in range(2))
    statuses = sorted(status for _, status, _ in outcomes)
    assert statuses == ["conflict", "ok"]
    winner = next(index for index, status, _ in outcomes if status == "ok")
    loser_message = next(detail for _, status, detail in outcomes if status == "conflict")
    assert "a00000" in loser_message and "r0" in loser_message
    latest = annostore.open(url, storage_options=options).dataset("race").latest
    assert latest.number == 2
    region = next(
        r
        for r in latest.tables.regions.to_pylist()
        if (r["annotation_id"], r["region_id"]) == ("a00000", "r0")
    )
    assert region["label"] == ["dog", "bird"][winner]
