"""Crashes: a writer killed at any point, or a filesystem failing any call, leaves every
published version readable and correct, and the store verifying clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
import workers
from fsspec.implementations.memory import MemoryFileSystem
from helpers import boxes

import annostore
from annostore._fragments import clear_cache

TESTS = Path(__file__).parent


def _check_versions(store: annostore.Store, name: str, skip: set[int] = frozenset()) -> set[int]:
    """Verify the store and read back every version not in ``skip``; returns the numbers."""
    report = store.verify()
    assert report.ok, report.problems
    dataset = store.dataset(name)
    previous = None
    for version in reversed(dataset.log()):
        if version.operation == "compact":
            expected = previous
        else:
            expected = workers.state(int(version.message.split()[1]))
        if version.number not in skip:
            clear_cache()
            assert version.tables == expected, (
                f"version {version.number} ({version.message}) reads back wrong"
            )
        previous = expected
    return {v.number for v in dataset.log()}


@pytest.mark.slow
def test_a_writer_killed_at_random_points_never_breaks_published_versions(tmp_path):
    url = str(tmp_path / "store")
    rng = random.Random(1234)
    kills = 12
    checked: set[int] = set()
    for _ in range(kills):
        with subprocess.Popen(
            [sys.executable, str(TESTS / "workers.py"), url],
            stdout=subprocess.PIPE,
            cwd=TESTS,
            env={**os.environ, "PYTHONPATH": str(TESTS)},
        ) as process:
            assert process.stdout.readline().strip() == b"ready"
            time.sleep(rng.uniform(0.0, 0.8))
            process.send_signal(signal.SIGKILL)
            process.wait()
        checked = _check_versions(annostore.open(url), "crash", skip=checked)
    assert len(checked) >= 5, "the writer never got far enough to test anything"
    store = annostore.open(url)
    store.gc(grace_seconds=0)
    report = store.verify()
    assert report.ok and report.orphans == 0
    _check_versions(store, "crash")


class FailingFileSystem(MemoryFileSystem):
    """A memory filesystem whose Nth data call raises OSError (a dropped connection)."""

    protocol = "failing"
    fail_at: int | None = None
    calls = 0

    def _maybe_fail(self, name: str) -> None:
        type(self).calls += 1
        if self.fail_at is not None and type(self).calls == self.fail_at:
            raise OSError(f"injected failure in {name} (call {self.calls})")

    def cat_file(self, path, *args, **kwargs):
        self._maybe_fail("cat_file")
        return super().cat_file(path, *args, **kwargs)

    def pipe_file(self, path, *args, **kwargs):
        self._maybe_fail("pipe_file")
        return super().pipe_file(path, *args, **kwargs)

    def ls(self, path, *args, **kwargs):
        self._maybe_fail("ls")
        return super().ls(path, *args, **kwargs)

    def exists(self, path, **kwargs):
        self._maybe_fail("exists")
        return super().exists(path, **kwargs)


def test_a_filesystem_failing_at_any_call_leaves_the_store_consistent():
    before = boxes(30)
    after = boxes(32, label="dog")
    total_calls = None
    failures_seen = 0
    for fail_at in range(1, 200):
        root = f"/failing-{uuid.uuid4().hex}"
        filesystem = FailingFileSystem()
        FailingFileSystem.fail_at = None
        store = annostore.open(root, filesystem=filesystem, auto_compact=False)
        dataset = store.create_dataset("d")
        dataset.commit(before, message="before")
        clear_cache()
        FailingFileSystem.calls = 0
        FailingFileSystem.fail_at = fail_at
        try:
            dataset.commit(after, message="after")
            dataset.compact()
        except OSError:
            failures_seen += 1
        else:
            total_calls = FailingFileSystem.calls
        FailingFileSystem.fail_at = None
        clear_cache()
        reopened = annostore.open(root, filesystem=filesystem)
        assert reopened.verify().ok
        log = reopened.dataset("d").log()
        for version in log:
            assert version.tables == (before if version.message == "before" else after)
        # The store still takes commits after the failure.
        assert reopened.dataset("d").commit(boxes(3)).tables == boxes(3)
        if total_calls is not None and fail_at > total_calls:
            break
    assert failures_seen >= 10, "the injected failures never hit the commit"
    assert total_calls is not None


def test_commit_changes_failing_at_any_call_publishes_all_or_nothing():
    for fail_at in range(1, 60):
        root = f"/failing-{uuid.uuid4().hex}"
        filesystem = FailingFileSystem()
        FailingFileSystem.fail_at = None
        dataset = annostore.open(root, filesystem=filesystem).create_dataset("d")
        dataset.commit(boxes(10))
        FailingFileSystem.calls = 0
        FailingFileSystem.fail_at = fail_at
        change = {
            "regions": pa.Table.from_pylist(
                [{"annotation_id": "a00001", "region_id": "new", "type": "bbox"}]
            )
        }
        try:
            dataset.commit_changes(change, deletes={"regions": [("a00002", "r0")]})
            completed = True
        except OSError:
            completed = False
        FailingFileSystem.fail_at = None
        clear_cache()
        latest = annostore.open(root, filesystem=filesystem).dataset("d").latest
        keys = {(r["annotation_id"], r["region_id"]) for r in latest.tables.regions.to_pylist()}
        if latest.number == 2:
            assert ("a00001", "new") in keys and ("a00002", "r0") not in keys and len(keys) == 20
        else:
            assert not completed and latest.tables == boxes(10)
        if completed:
            break
