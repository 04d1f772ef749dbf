"""Writers join their records' JSON texts into one list body straight from Arrow buffers,
a piece at a time: whatever the chunking, slicing, piece size and string type, the bytes
are the texts joined by ",\\n"."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from annostore.converters._sqljson import join_json_texts, json_text_pieces


@given(
    st.lists(st.lists(st.text(max_size=6), max_size=5), max_size=5),
    st.integers(0, 2),
    st.booleans(),
    st.binary(max_size=3),
    st.binary(max_size=3),
    st.integers(1, 4),
)
def test_joined_texts_are_the_texts_and_separators(
    chunks: list[list[str]], skip: int, large: bool, prefix: bytes, suffix: bytes, rows: int
) -> None:
    kind = pa.large_string() if large else pa.string()
    arrays = [pa.array(["skipped"] * skip + texts, kind).slice(skip) for texts in chunks]
    column = pa.chunked_array(arrays, kind)
    expected = ",\n".join(text for texts in chunks for text in texts).encode()
    assert join_json_texts(column) == expected
    assert join_json_texts(column, prefix, suffix) == prefix + expected + suffix
    pieces = list(json_text_pieces(column, prefix, suffix, rows_per_piece=rows))
    assert b"".join(pieces) == prefix + expected + suffix
    # the prefix, one piece per ``rows`` records of each chunk, the suffix
    assert len(pieces) == 2 + sum(-(-len(texts) // rows) for texts in chunks)


def test_a_null_text_is_refused() -> None:
    with pytest.raises(ValueError, match="null"):
        join_json_texts(pa.chunked_array([pa.array(["{}", None])]))


BASES = [None, '{"exact": {"x": 1}}', '{"keep": "k"}', '{"exact": 1, "keep": [2]}', "{}"]


@given(
    st.lists(
        st.tuples(
            st.floats(allow_nan=False, allow_infinity=False),
            st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.one_of(st.none(), st.text()),
            st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=4),
            st.sampled_from(BASES),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_built_objects_are_the_text_a_merge_would_print(rows: list) -> None:
    """Records without a base object are written as the text built from their values,
    without the merge that parses and prints it again; it must be the text the merge
    gives (COCO and Label Studio output stays byte-identical), and every record valid
    JSON with its base's kept keys and the values set on top."""
    import json

    from annostore._sql import connection
    from annostore.converters._sqljson import json_object_sql, merged_json_sql

    table = pa.table(
        {
            "x": pa.array([r[0] for r in rows], pa.float64()),
            "n": pa.array([r[1] for r in rows], pa.int64()),
            "s": pa.array([r[2] for r in rows], pa.string()),
            "v": pa.array([r[3] for r in rows], pa.list_(pa.float64())),
            "base": pa.array([r[4] for r in rows], pa.string()),
        }
    )
    pairs = [("x", "x"), ("n", "n"), ("s", "s"), ("v", "v")]
    always_merged = (
        "json_merge_patch(json_merge_patch(coalesce(base, '{}')::JSON, "
        f"""'{{"exact": null}}'::JSON), {json_object_sql(pairs)})::VARCHAR"""
    )
    with connection() as con:
        con.register("records", table)
        try:
            written, merged = zip(
                *con.sql(
                    f"SELECT {merged_json_sql('base', pairs, drop=['exact'])}, {always_merged} FROM records"
                ).fetchall(),
                strict=True,
            )
        finally:
            con.unregister("records")
    assert list(written) == list(merged)
    for text, (x, n, s, v, base) in zip(written, rows, strict=True):
        kept = {k: value for k, value in json.loads(base or "{}").items() if k != "exact"}
        expected = kept | {"x": x, "n": n, "v": v} | ({"s": s} if s is not None else {})
        assert json.loads(text) == expected


@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text()),
            st.sampled_from(
                [*BASES, '{"id": "-9007199254740993"}', '{"keep": "x-9007199254740993"}']
            ),
        ),
        min_size=1,
        max_size=20,
    ),
    st.integers(1, 3),
    st.integers(1, 4),
)
def test_numbered_records_are_the_records_merged_with_their_numbers(
    rows: list, chunks: int, piece: int
) -> None:
    """COCO annotation ids given as a file's text is joined: the same bytes as printing
    each record with its number 1, 2, …, and ``ok`` false only where a base holds the
    placeholder's digits."""
    from annostore._sql import connection
    from annostore.converters._sqljson import (
        merged_json_sql,
        numbered_json_sql,
        numbered_json_text_pieces,
    )

    placeholder = "-9007199254740993"
    table = pa.table(
        {
            "i": pa.array(range(1, len(rows) + 1), pa.int64()),
            "s": pa.array([r[0] for r in rows], pa.string()),
            "base": pa.array([r[1] for r in rows], pa.string()),
        }
    )
    pairs = [("s", "s"), ("n", "i * 2")]
    inner, outer = numbered_json_sql("base", "id", placeholder, pairs, drop=["exact"])
    with connection() as con:
        con.register("records", table)
        try:
            expected, marked = zip(
                *con.sql(
                    f"SELECT {merged_json_sql('base', [('id', 'i'), *pairs], drop=['exact'])}, "
                    f"{merged_json_sql('base', [('id', placeholder), *pairs], drop=['exact'])} "
                    "FROM records ORDER BY i"
                ).fetchall(),
                strict=True,
            )
            parts = con.sql(
                f"SELECT {outer} FROM (SELECT i, {inner} FROM records) ORDER BY i"
            ).to_arrow_table()
        finally:
            con.unregister("records")
    # the cut is safe where the placeholder's digits appear once: as the number
    clashing = [text.count(placeholder) != 1 for text in marked]
    assert parts.column("ok").to_pylist() == [not c for c in clashing]
    if any(clashing):
        return
    size = -(-parts.num_rows // chunks)
    parts = pa.Table.from_batches(parts.to_batches(max_chunksize=size))
    pieces = numbered_json_text_pieces(
        parts.column("head"), parts.column("tail"), '{"id":', rows_per_piece=piece
    )
    assert b"".join(pieces) == ",\n".join(expected).encode()
