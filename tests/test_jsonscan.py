"""Finding a JSON object's big lists without parsing it: the bytes found must be exactly
the lists' JSON, whatever strings, escapes and spacing surround them, and anything the
scan cannot be sure of must send the reader to the whole-document parse."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annostore.converters import _jsonscan
from annostore.converters._jsonscan import split_lists

# strings that try to fool a bracket counter: quotes, backslashes, brackets, non-ASCII
tricky_text = st.text(alphabet=st.sampled_from('ab"\\[]{},: é\n'), max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=20,
)
WANTED = ("images", "annotations", "categories")
documents = st.dictionaries(
    st.sampled_from([*WANTED, "info", "licenses"]) | tricky_text,
    values,
    max_size=6,
).flatmap(
    lambda doc: st.fixed_dictionaries(
        {key: st.lists(values, max_size=4) for key in WANTED if key not in doc}
    ).map(lambda lists: {**doc, **lists})
)


def render(document: dict, indent: int | None, spaced: bool, bom: bool) -> bytes:
    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(document, indent=indent, separators=separators, ensure_ascii=False)
    return (b"\xef\xbb\xbf" if bom else b"") + b"\n " + text.encode() + b" \n"


@settings(max_examples=300)
@given(
    documents,
    st.sampled_from([None, 0, 2]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([3, 7, 64, 1 << 18]),
)
def test_the_lists_found_are_exactly_the_lists_json(
    document: dict, indent: int | None, spaced: bool, bom: bool, chunk: int
) -> None:
    data = render(document, indent, spaced, bom)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_jsonscan, "_CHUNK", chunk)  # chunk edges inside strings and escapes
        split = split_lists(data, WANTED)
    escaped_key = any(
        isinstance(value, list) and json.dumps(key, ensure_ascii=False)[1:-1] != key
        for key, value in document.items()
    )
    lists = {key for key in WANTED if isinstance(document[key], list)}
    if escaped_key or not lists:  # a list under a key written with escapes: parsed whole
        assert split is None
        return
    assert split is not None
    rest, spans = split
    assert set(spans) == lists
    for key, (start, end) in spans.items():
        assert json.loads(data[start:end]) == document[key]
    emptied = {key: ([] if key in lists else value) for key, value in document.items()}
    assert json.loads(rest.decode("utf-8-sig")) == emptied
    assert list(json.loads(rest.decode("utf-8-sig"))) == list(document)  # member order kept


@pytest.mark.parametrize(
    "data",
    [
        b'["images", []]',  # a list, not an object
        b'{"images": [1, 2}',  # brackets that do not balance
        b'{"images": [1]] , "x": 1}',
        b'{"images": [], "images": [2]}',  # a key given twice
        b'{"ima\\u0067es": [1]}',  # a key written with an escape
        b'{"images": ["a]"] "annotations": []}',  # no comma: not a member key
        b'{"images": []} trailing',
        b'{"info": {"a": 1}}',  # none of the lists
    ],
)
def test_what_the_scan_cannot_be_sure_of_is_left_to_the_parser(data: bytes) -> None:
    assert split_lists(data, WANTED) is None
