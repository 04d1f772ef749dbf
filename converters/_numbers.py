"""Exact number conversions between a format's units and the canonical normalized floats.

Readers normalize with one float64 operation (``x = x_px / width``, ``x = cx - w / 2``).
Writers must undo it so that reading the written file gives back exactly the same float:
``x * width`` is usually that number, but rounding can leave it one unit in the last
place off. The SQL macros below try the naive result and its two float neighbours, keep
those that map back to exactly the stored value, and prefer one that reads like a decimal
someone wrote (16 characters or fewer: ``123.45``, not ``123.45000000000002``), else the
plain product — which is what the source file held, whether it wrote 2 decimals or every
digit. Where no float maps back exactly (a value that came from another format), the
shortest text of the three is printed. Readers that meet a value these rules would not
give back keep the original in ``extra`` (YOLO centres, Label Studio percentages). DuckDB prints doubles as the shortest text that reads back as the
same double, so writers never lose digits and never print float32 noise.
"""

from __future__ import annotations

from typing import Any

__all__ = ["install_number_macros"]

_MACROS = """
-- Each value is bound once (a one-element list_transform is a let-binding): macros expand
-- their arguments textually, and without this a nested call grows exponentially.
CREATE OR REPLACE TEMP MACRO _annostore_choose(cs, ok) AS
    list_transform([list_transform(cs, lambda c: length(c::VARCHAR))], lambda n:
        CASE
            -- a candidate that maps back and reads like a decimal someone wrote (123.45)
            WHEN ok[1] AND n[1] <= 16 THEN cs[1]
            WHEN ok[2] AND n[2] <= 16 AND NOT (ok[3] AND n[3] < n[2]) THEN cs[2]
            WHEN ok[3] AND n[3] <= 16 THEN cs[3]
            -- full-precision values: the plain result when it maps back
            WHEN ok[1] THEN cs[1]
            WHEN ok[2] THEN cs[2]
            WHEN ok[3] THEN cs[3]
            -- no float maps back exactly (a value no file of this format could hold):
            -- the shortest text of the three, 0.3 rather than 0.30000000000000004
            WHEN n[1] <= n[2] AND n[1] <= n[3] THEN cs[1]
            WHEN n[2] <= n[3] THEN cs[2]
            ELSE cs[3]
        END)[1];
CREATE OR REPLACE TEMP MACRO _annostore_around(c) AS
    [c, nextafter(c, 'inf'::DOUBLE), nextafter(c, '-inf'::DOUBLE)];
-- the number c with c / scale = v exactly (pixels from a normalized value)
CREATE OR REPLACE TEMP MACRO scaled(v, scale) AS
    list_transform([{'v': v::DOUBLE, 's': scale::DOUBLE}], lambda p:
        CASE WHEN p.v IS NULL OR p.s IS NULL THEN NULL
             -- the common case, without building candidate lists or text: the plain
             -- product maps back and is a decimal with at most 6 places
             WHEN (p.v * p.s) / p.s = p.v AND round(p.v * p.s, 6) = p.v * p.s THEN p.v * p.s
             ELSE list_transform([_annostore_around(p.v * p.s)], lambda cs:
                 _annostore_choose(cs, list_transform(cs, lambda c: c / p.s = p.v)))[1]
        END)[1];
-- the centre c with c - size / 2 = corner exactly (YOLO's cx from the canonical x)
CREATE OR REPLACE TEMP MACRO centre(corner, size) AS
    list_transform([{'v': corner::DOUBLE, 'h': size::DOUBLE / 2}], lambda p:
        CASE WHEN p.v IS NULL OR p.h IS NULL THEN NULL
             WHEN (p.v + p.h) - p.h = p.v AND round(p.v + p.h, 9) = p.v + p.h THEN p.v + p.h
             ELSE list_transform([_annostore_around(p.v + p.h)], lambda cs:
                 _annostore_choose(cs, list_transform(cs, lambda c: c - p.h = p.v)))[1]
        END)[1];
-- a flat list of x, y pairs scaled by (sx, sy)
CREATE OR REPLACE TEMP MACRO scaled_xy(points, sx, sy) AS
    list_transform(range(len(points)),
        lambda i: scaled(points[i + 1], CASE WHEN i % 2 = 0 THEN sx ELSE sy END));
-- a flat list of x, y, v triples: x and y scaled, v kept
CREATE OR REPLACE TEMP MACRO scaled_xyv(points, sx, sy) AS
    list_transform(range(len(points)),
        lambda i: CASE i % 3 WHEN 0 THEN scaled(points[i + 1], sx)
                             WHEN 1 THEN scaled(points[i + 1], sy)
                             ELSE points[i + 1] END);
-- the same lists divided (normalizing what a reader found)
CREATE OR REPLACE TEMP MACRO divided_xy(points, sx, sy) AS
    list_transform(range(len(points)),
        lambda i: points[i + 1] / CASE WHEN i % 2 = 0 THEN sx ELSE sy END);
CREATE OR REPLACE TEMP MACRO divided_xyv(points, sx, sy) AS
    list_transform(range(len(points)),
        lambda i: CASE i % 3 WHEN 0 THEN points[i + 1] / sx
                             WHEN 1 THEN points[i + 1] / sy
                             ELSE points[i + 1] END);
"""


def install_number_macros(con: Any) -> None:
    """Create the macros above on a DuckDB connection (idempotent)."""
    con.execute(_MACROS)
