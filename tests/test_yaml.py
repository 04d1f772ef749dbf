"""data.yaml reading and writing: what annostore writes, it and PyYAML (Ultralytics'
reader) read back as the same values."""

from __future__ import annotations

import math

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from annostore import ParseError
from annostore.converters._yaml import dump_yaml, load_yaml

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=5),
    st.dictionaries(st.integers(0, 1000), st.text(max_size=12), max_size=5),
)
documents = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True), values, max_size=6
)


@settings(max_examples=400)
@given(documents)
def test_written_yaml_reads_back_the_same_here_and_in_pyyaml(document):
    text = dump_yaml(document)
    assert load_yaml(text, "data.yaml") == document
    assert yaml.safe_load(text) == (document or None)


def test_strings_with_quotes_hashes_and_line_separators_stay_one_value():
    names = {0: 'say "hi" # not a comment', 1: "a, b: c", 2: "x\u2028y\x85z", 3: "back\\slash"}
    text = dump_yaml({"names": names, "flow": list(names.values())})
    assert "\u2028" not in text and "\x85" not in text
    assert load_yaml(text, "data.yaml") == {"names": names, "flow": list(names.values())}


def test_hand_written_files_read_as_yaml_1_2_does():
    text = "path: ../datasets/coco8  # root\nnames:\n  0: person\n  1: 'it''s'\nlr: 1e-3\nscale: .inf\n"
    found = load_yaml(text, "data.yaml")
    assert found["path"] == "../datasets/coco8" and found["names"] == {0: "person", 1: "it's"}
    assert found["lr"] == 0.001 and math.isinf(found["scale"])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('names: ["a", "b]', "unbalanced brackets or quotes"),
        ('name: "a\\"', "bad double-quoted string"),
        ("x: &a 1", "unsupported YAML"),
    ],
)
def test_malformed_yaml_names_the_line(text, problem):
    with pytest.raises(ParseError, match=f"data.yaml:1: {problem}"):
        load_yaml(text, "data.yaml")
