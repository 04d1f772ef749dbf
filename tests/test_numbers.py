"""The writers' number rules: a normalized value is printed back as the number it was read
from (``annostore.converters._numbers``)."""

from __future__ import annotations

import math

import duckdb
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from annostore.converters._numbers import install_number_macros

SCALES = st.sampled_from([100.0, 640.0, 480.0, 1920.0, 1080.0, 3.0, 7.0, 4032.0])


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    install_number_macros(connection)
    yield connection
    connection.close()


def _scaled(con, value: float, scale: float) -> float:
    return con.execute("SELECT scaled(?::DOUBLE, ?::DOUBLE)", [value, scale]).fetchall()[0][0]


def _centre(con, corner: float, size: float) -> float:
    return con.execute("SELECT centre(?::DOUBLE, ?::DOUBLE)", [corner, size]).fetchall()[0][0]


@settings(max_examples=300, deadline=None)
@given(units=st.integers(0, 10_000 * 10**6), places=st.integers(0, 6), scale=SCALES)
def test_a_decimal_someone_wrote_is_printed_back_as_written(con, units, places, scale):
    # 123.45 px read as 123.45 / 640 must be written as 123.45, not 123.45000000000002
    written = round(units / 10**6, places)
    assert _scaled(con, written / scale, scale) == written


@settings(max_examples=300, deadline=None)
@given(value=st.floats(0, 1, allow_nan=False), scale=SCALES)
def test_the_printed_number_reads_back_as_the_stored_value(con, value, scale):
    product = value * scale
    candidates = [product, math.nextafter(product, math.inf), math.nextafter(product, -math.inf)]
    printed = _scaled(con, value, scale)
    assert printed in candidates
    if any(candidate / scale == value for candidate in candidates):
        assert printed / scale == value


@settings(max_examples=300, deadline=None)
@given(
    centre=st.integers(0, 10**6).map(lambda n: n / 10**6),
    size=st.integers(0, 10**6).map(lambda n: n / 10**6),
)
def test_a_yolo_centre_is_printed_back_as_written(con, centre, size):
    # YOLO's "0.512345 0.3": the reader stores the corner centre - size / 2; the writer
    # must print 0.512345 again wherever that float is one it could choose
    corner = centre - size / 2
    product = corner + size / 2
    candidates = [product, math.nextafter(product, math.inf), math.nextafter(product, -math.inf)]
    assume(centre in candidates and centre - size / 2 == corner)
    assert _centre(con, corner, size) == centre


def test_null_stays_null(con):
    assert _scaled(con, None, 640.0) is None
    assert _centre(con, 0.5, None) is None
