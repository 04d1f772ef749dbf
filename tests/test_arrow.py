"""take_rows gathers rows across chunks exactly as Table.take does."""

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from annostore._arrow import take_rows

SCHEMA = pa.schema([("key", pa.string()), ("points", pa.list_(pa.float64()))])


def chunked_table(sizes: list[int]) -> pa.Table:
    start, batches = 0, []
    for size in sizes:
        numbers = list(range(start, start + size))
        batches.append(
            pa.record_batch(
                {
                    "key": [f"k{n:05d}" for n in numbers],
                    "points": [[float(n), n / 3] if n % 4 else None for n in numbers],
                },
                schema=SCHEMA,
            )
        )
        start += size
    return pa.Table.from_batches(batches, schema=SCHEMA)


@given(
    sizes=st.lists(st.integers(0, 6), min_size=1, max_size=5),
    picks=st.lists(st.integers(0, 10**6), max_size=30),
)
def test_take_rows_equals_table_take(sizes, picks):
    table = chunked_table(sizes)
    if table.num_rows == 0:
        picks = []
    indices = pa.array([p % table.num_rows for p in picks] if picks else [], pa.int64())
    assert take_rows(table, indices).equals(table.take(indices))


def test_take_rows_keeps_the_order_asked_for_across_chunks():
    table = chunked_table([3, 3, 3])
    taken = take_rows(table, pa.chunked_array([[8, 0, 4], [4, 1]]))
    assert taken.column("key").to_pylist() == ["k00008", "k00000", "k00004", "k00004", "k00001"]


def test_take_rows_rejects_rows_past_the_end():
    with pytest.raises(IndexError):
        take_rows(chunked_table([2, 2]), pa.array([4]))
