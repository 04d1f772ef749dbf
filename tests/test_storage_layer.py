"""The storage layer's publishing rules, and the converter registry's contract."""

from __future__ import annotations

import errno
import itertools

import pyarrow as pa
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import given
from hypothesis import strategies as st

import annostore
from annostore import converters
from annostore._storage import Storage


class ConditionalStore(MemoryFileSystem):
    """Answers conditional puts like S3: 409 while a competing write is in flight, then 412."""

    protocol = "conditional"

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)
        self.attempts = 0

    def pipe_file(self, path, value, mode="overwrite", **kwargs):
        self.attempts += 1
        answer = self.answers.pop(0) if self.answers else "write"
        if answer == "busy":
            raise OSError(errno.EBUSY, "ConditionalRequestConflict")
        if answer == "exists":
            raise FileExistsError(path)
        if answer == "unsupported":
            raise TypeError("pipe_file() got an unexpected keyword argument 'mode'")
        return super().pipe_file(path, value, **kwargs)


def _storage(answers) -> tuple[Storage, ConditionalStore]:
    fs = ConditionalStore(answers)
    storage = Storage(fs, "/conditional-test", "conditional://test")
    storage.is_memory = False  # behave like an object store
    return storage, fs


def test_a_409_is_retried_until_the_put_succeeds():
    storage, fs = _storage(["busy", "busy", "write"])
    assert storage.put_if_absent("versions/1.json", b"mine") is True
    assert fs.attempts == 3


def test_a_409_then_412_means_another_writer_won():
    storage, fs = _storage(["busy", "exists"])
    assert storage.put_if_absent("versions/1.json", b"mine") is False
    assert fs.attempts == 2


def test_a_filesystem_without_conditional_puts_is_refused():
    storage, _ = _storage(["unsupported"])
    with pytest.raises(annostore.AnnostoreError, match="cannot create a file only if it is absent"):
        storage.put_if_absent("versions/1.json", b"mine")


def test_persistent_409_gives_up_with_the_error():
    storage, fs = _storage(["busy"] * 20)
    with pytest.raises(OSError, match="ConditionalRequestConflict"):
        storage.put_if_absent("versions/1.json", b"mine")
    assert fs.attempts == 8


class Dummy:
    """A stand-in converter."""


def test_registry_registers_gets_and_lists():
    converters.register("dummy-format", Dummy)
    try:
        assert converters.get("dummy-format") is Dummy
        assert "dummy-format" in converters.names()
        assert converters.known()["dummy-format"] is Dummy
        with pytest.raises(ValueError, match="already registered"):
            converters.register("dummy-format", object)
        converters.register("dummy-format", "tests_helpers_missing:Thing", replace=True)
        with pytest.raises(TypeError):
            converters.known()["x"] = 1  # type: ignore[index]
    finally:
        converters._registry.pop("dummy-format", None)
        converters._loaded.pop("dummy-format", None)


def test_unknown_format_lists_the_known_ones():
    converters.register("dummy-b", Dummy)
    try:
        with pytest.raises(
            annostore.UnknownFormatError, match=r"known formats: .*dummy-b"
        ) as caught:
            converters.get("no-such-format")
        assert "dummy-b" in caught.value.known
    finally:
        converters._registry.pop("dummy-b", None)
        converters._loaded.pop("dummy-b", None)


def test_registry_loads_module_attr_strings_lazily():
    converters.register("lazy-json", "json:dumps")
    try:
        import json

        assert converters.get("lazy-json") is json.dumps
    finally:
        converters._registry.pop("lazy-json", None)
        converters._loaded.pop("lazy-json", None)


@given(rows=st.lists(st.tuples(st.text(max_size=3), st.text(max_size=3)), max_size=8))
def test_is_sorted_agrees_with_byte_order(rows):
    """The first-commit shortcut skips sorting only when keys are strictly ascending in the
    byte order DuckDB sorts by; a wrong answer would break fragment key ranges."""
    from annostore._arrow import is_sorted

    table = pa.table(
        {"a": [r[0] for r in rows], "b": [r[1] for r in rows]},
        schema=pa.schema([("a", pa.string()), ("b", pa.string())]),
    )
    encoded = [(a.encode(), b.encode()) for a, b in rows]
    expected = all(x < y for x, y in itertools.pairwise(encoded))
    assert is_sorted(table, ["a", "b"]) == expected


def test_parallel_reads_nest_and_survive_a_fork():
    # the reading threads are shared: a read started from one of them runs in place
    # instead of waiting for the busy pool, and a forked child starts threads of its own
    import multiprocessing
    import sys
    import threading

    from annostore._fragments import map_io

    def squares_of_squares(n: int) -> list[int]:
        return map_io(lambda m: m * m, [n, n + 1, n + 2])

    results = []
    worker = threading.Thread(target=lambda: results.append(map_io(squares_of_squares, [1, 2, 3])))
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "nested parallel reads waited for each other"
    assert results == [[[1, 4, 9], [4, 9, 16], [9, 16, 25]]]
    if sys.platform.startswith("linux"):
        child = multiprocessing.get_context("fork").Process(target=_map_in_child)
        child.start()
        child.join(timeout=30)
        assert child.exitcode == 0


def _map_in_child() -> None:
    from annostore._fragments import map_io

    raise SystemExit(0 if map_io(str, [1, 2, 3]) == ["1", "2", "3"] else 1)
