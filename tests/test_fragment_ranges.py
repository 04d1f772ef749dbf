"""Finding the fragments whose key range can hold some keys: the Python bisection used
for a few keys must pick exactly what DuckDB's range join picks."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from annostore import _fragments
from annostore._manifest import Fragment

# code points from every UTF-8 length, so that Python's order is checked against DuckDB's
key_text = st.text(alphabet=st.sampled_from("aAz0_é€𝄞\u00ff\u0100"), max_size=4)
key = st.tuples(key_text, key_text)


def _fragment(low: tuple[str, str], high: tuple[str, str]) -> Fragment:
    return Fragment(
        path="objects/x.parquet",
        sha256="0" * 64,
        rows=1,
        bytes=1,
        seq=1,
        key_min=list(low),
        key_max=list(high),
        row_hash=0,
    )


@settings(max_examples=200, deadline=None)
@given(ranges=st.lists(st.tuples(key, key), max_size=8), keys=st.lists(key, max_size=12))
def test_few_keys_pick_the_same_fragments_as_the_range_join(ranges, keys):
    fragments = [_fragment(min(a, b), max(a, b)) for a, b in ranges]
    probe = pa.table(
        {"annotation_id": [k[0] for k in keys], "region_id": [k[1] for k in keys]},
        schema=pa.schema([("annotation_id", pa.string()), ("region_id", pa.string())]),
    )
    con = duckdb.connect()
    try:
        by_python = _fragments.overlapping_fragments(con, "regions", fragments, probe)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_fragments, "_FEW_KEYS", -1)
            by_duckdb = _fragments.overlapping_fragments(con, "regions", fragments, probe)
    finally:
        con.close()
    assert [id(f) for f in by_python] == [id(f) for f in by_duckdb]
    # and both are right: a fragment is picked when some key lies in its range
    expected = [
        f for f in fragments if any(tuple(f.key_min) <= k <= tuple(f.key_max) for k in keys)
    ]
    assert [id(f) for f in by_python] == [id(f) for f in expected]


@given(st.lists(st.integers(min_value=0, max_value=5), max_size=30), st.integers(0, 5))
@example([0, 1, 2, 3, 4, 5], 3)
@example([0, 1, 2, 3, 4, 5], 0)
@example([1, 2, 3], 1)
@example([0, 2, 1], 2)
def test_positions_count_up_only_when_they_are_0_1_2(values: list[int], cut: int) -> None:
    """A first commit trusts DuckDB's scan order only when the row positions it returns
    are 0, 1, 2, … (across chunk boundaries too); anything else is put back in place."""
    from annostore._commit import _counts_up

    chunks = [values[:cut], values[cut:]]
    positions = pa.chunked_array([pa.array(c, pa.int64()) for c in chunks], pa.int64())
    assert _counts_up(positions) == (values == list(range(len(values))))


_KEY_TEXT = st.text(alphabet="ab\x00é", max_size=2)


@given(
    st.lists(st.tuples(_KEY_TEXT, _KEY_TEXT, st.integers(1, 4)), max_size=25),
    st.lists(st.tuples(_KEY_TEXT, _KEY_TEXT), max_size=8),
    st.lists(st.tuples(_KEY_TEXT, _KEY_TEXT, st.integers(1, 5)), max_size=12),
)
def test_a_small_edit_finds_the_live_rows_of_its_keys(rows, wanted, dead) -> None:
    """For a few keys, the rows read back are those with a wanted key (both columns, as a
    pair) that no tombstone of a later commit names, in order: counted here row by row."""
    keys = ["annotation_id", "region_id"]

    def table(items, extra=None):
        columns = {
            key: pa.array([item[i] for item in items], pa.string()) for i, key in enumerate(keys)
        }
        if extra:
            columns[extra] = pa.array([item[2] for item in items], pa.int64())
        return pa.table(columns)

    row_table = table(rows, "_seq")
    until: dict = {}
    for a, r, seq in dead:
        until[(a, r)] = max(seq, until.get((a, r), seq))
    expected = [
        position
        for position, (a, r, seq) in enumerate(rows)
        if (a, r) in set(wanted) and until.get((a, r), seq) <= seq
    ]
    found = _fragments._few_live_positions(
        keys,
        row_table.select(keys),
        row_table.column("_seq"),
        table(wanted),
        table(dead, "_seq") if dead else None,
    )
    assert found.to_pylist() == expected
