"""Writers join their records' JSON texts into one list body straight from Arrow buffers:
whatever the chunking, slicing and string type, the bytes are the texts joined by ",\\n"."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from annostore.converters._sqljson import join_json_texts


@given(
    st.lists(st.lists(st.text(max_size=6), max_size=5), max_size=5),
    st.integers(0, 2),
    st.booleans(),
    st.binary(max_size=3),
    st.binary(max_size=3),
)
def test_joined_texts_are_the_texts_and_separators(
    chunks: list[list[str]], skip: int, large: bool, prefix: bytes, suffix: bytes
) -> None:
    kind = pa.large_string() if large else pa.string()
    arrays = [pa.array(["skipped"] * skip + texts, kind).slice(skip) for texts in chunks]
    column = pa.chunked_array(arrays, kind)
    expected = ",\n".join(text for texts in chunks for text in texts).encode()
    assert join_json_texts(column) == expected
    assert join_json_texts(column, prefix, suffix) == prefix + expected + suffix


def test_a_null_text_is_refused() -> None:
    with pytest.raises(ValueError, match="null"):
        join_json_texts(pa.chunked_array([pa.array(["{}", None])]))
