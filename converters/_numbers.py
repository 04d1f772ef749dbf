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
CREATE OR REPLACE TEMP MACRO _annostore_short(c) AS length(c::VARCHAR) <= 16;
CREATE OR REPLACE TEMP MACRO _annostore_pick(c0, c1, c2, ok0, ok1, ok2) AS
    CASE
        -- a candidate that maps back and reads like a decimal someone wrote (123.45)
        WHEN ok0 AND _annostore_short(c0) THEN c0
        WHEN ok1 AND _annostore_short(c1)
             AND NOT (ok2 AND _annostore_short(c2) AND length(c2::VARCHAR) < length(c1::VARCHAR)) THEN c1
        WHEN ok2 AND _annostore_short(c2) THEN c2
        -- full-precision values: the plain product when it maps back
        WHEN ok0 THEN c0
        WHEN ok1 THEN c1
        WHEN ok2 THEN c2
        -- no float maps back exactly (a value no file of this format could hold):
        -- the shortest text of the three, 0.3 rather than 0.30000000000000004
        WHEN length(c0::VARCHAR) <= length(c1::VARCHAR) AND length(c0::VARCHAR) <= length(c2::VARCHAR) THEN c0
        WHEN length(c1::VARCHAR) <= length(c2::VARCHAR) THEN c1
        ELSE c2
    END;
-- the number c with c / scale = v exactly (pixels from a normalized value)
CREATE OR REPLACE TEMP MACRO scaled(v, scale) AS
    CASE
        WHEN v IS NULL OR scale IS NULL THEN NULL
        WHEN (v * scale) / scale = v AND _annostore_short(v * scale) THEN v * scale
        ELSE _annostore_pick(
            v * scale,
            nextafter(v * scale, 'inf'::DOUBLE),
            nextafter(v * scale, '-inf'::DOUBLE),
            (v * scale) / scale = v,
            nextafter(v * scale, 'inf'::DOUBLE) / scale = v,
            nextafter(v * scale, '-inf'::DOUBLE) / scale = v)
    END;
-- the centre c with c - size / 2 = corner exactly (YOLO's cx from the canonical x)
CREATE OR REPLACE TEMP MACRO centre(corner, size) AS
    CASE
        WHEN corner IS NULL OR size IS NULL THEN NULL
        WHEN (corner + size / 2) - size / 2 = corner
             AND _annostore_short(corner + size / 2) THEN corner + size / 2
        ELSE _annostore_pick(
            corner + size / 2,
            nextafter(corner + size / 2, 'inf'::DOUBLE),
            nextafter(corner + size / 2, '-inf'::DOUBLE),
            (corner + size / 2) - size / 2 = corner,
            nextafter(corner + size / 2, 'inf'::DOUBLE) - size / 2 = corner,
            nextafter(corner + size / 2, '-inf'::DOUBLE) - size / 2 = corner)
    END;
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
