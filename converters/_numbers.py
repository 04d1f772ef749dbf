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
-- Scalar CASE expressions only: list lambdas cost about 5 µs a value in DuckDB, which at a
-- million boxes was most of a conversion. Macros expand their arguments textually, so the
-- candidates are passed on as arguments (each computed by one expression, not re-nested).
CREATE OR REPLACE TEMP MACRO _annostore_choose(c1, c2, c3, ok1, ok2, ok3) AS
    CASE
        -- the only candidate that maps back, whatever its text (no text is made)
        WHEN ok1 AND NOT ok2 AND NOT ok3 THEN c1
        WHEN ok2 AND NOT ok1 AND NOT ok3 THEN c2
        WHEN ok3 AND NOT ok1 AND NOT ok2 THEN c3
        -- a candidate that maps back and reads like a decimal someone wrote (123.45)
        WHEN ok1 AND length(c1::VARCHAR) <= 16 THEN c1
        WHEN ok2 AND length(c2::VARCHAR) <= 16
             AND NOT (ok3 AND length(c3::VARCHAR) < length(c2::VARCHAR)) THEN c2
        WHEN ok3 AND length(c3::VARCHAR) <= 16 THEN c3
        -- full-precision values: the plain result when it maps back
        WHEN ok1 THEN c1
        WHEN ok2 THEN c2
        WHEN ok3 THEN c3
        -- no float maps back exactly (a value no file of this format could hold):
        -- the shortest text of the three, 0.3 rather than 0.30000000000000004
        WHEN length(c1::VARCHAR) <= length(c2::VARCHAR)
             AND length(c1::VARCHAR) <= length(c3::VARCHAR) THEN c1
        WHEN length(c2::VARCHAR) <= length(c3::VARCHAR) THEN c2
        ELSE c3
    END;
CREATE OR REPLACE TEMP MACRO _annostore_scaled3(v, s, c1, c2, c3) AS
    _annostore_choose(c1, c2, c3, c1 / s = v, c2 / s = v, c3 / s = v);
CREATE OR REPLACE TEMP MACRO _annostore_scaled(v, s, c) AS
    -- the common case, without candidates or text: the plain product maps back and is a
    -- decimal with at most 6 places
    CASE WHEN c / s = v AND round(c, 6) = c THEN c
         ELSE _annostore_scaled3(v, s, c, nextafter(c, 'inf'::DOUBLE), nextafter(c, '-inf'::DOUBLE))
    END;
-- the number c with c / scale = v exactly (pixels from a normalized value)
CREATE OR REPLACE TEMP MACRO scaled(v, scale) AS
    _annostore_scaled(v::DOUBLE, scale::DOUBLE, v::DOUBLE * scale::DOUBLE);
CREATE OR REPLACE TEMP MACRO _annostore_centre3(v, h, c1, c2, c3) AS
    _annostore_choose(c1, c2, c3, c1 - h = v, c2 - h = v, c3 - h = v);
CREATE OR REPLACE TEMP MACRO _annostore_centre(v, h, c) AS
    CASE WHEN (c - h) = v AND round(c, 9) = c THEN c
         ELSE _annostore_centre3(v, h, c, nextafter(c, 'inf'::DOUBLE), nextafter(c, '-inf'::DOUBLE))
    END;
-- the centre c with c - size / 2 = corner exactly (YOLO's cx from the canonical x)
CREATE OR REPLACE TEMP MACRO centre(corner, size) AS
    _annostore_centre(corner::DOUBLE, size::DOUBLE / 2, corner::DOUBLE + size::DOUBLE / 2);
-- (each list macro returns NULL for a NULL list before list_transform: DuckDB runs a lambda's
-- machinery for NULL lists too, which was 0.8 s of writing a million boxes to COCO)
-- a flat list of x, y pairs scaled by (sx, sy)
CREATE OR REPLACE TEMP MACRO scaled_xy(points, sx, sy) AS
    CASE WHEN points IS NULL THEN NULL ELSE
    list_transform(range(len(points)),
            lambda i: scaled(points[i + 1], CASE WHEN i % 2 = 0 THEN sx ELSE sy END))
    END;
-- a flat list of x, y, v triples: x and y scaled, v kept
CREATE OR REPLACE TEMP MACRO scaled_xyv(points, sx, sy) AS
    CASE WHEN points IS NULL THEN NULL ELSE
    list_transform(range(len(points)),
            lambda i: CASE i % 3 WHEN 0 THEN scaled(points[i + 1], sx)
                                 WHEN 1 THEN scaled(points[i + 1], sy)
                                 ELSE points[i + 1] END)
    END;
-- the same lists divided (normalizing what a reader found)
CREATE OR REPLACE TEMP MACRO divided_xy(points, sx, sy) AS
    CASE WHEN points IS NULL THEN NULL ELSE
    list_transform(range(len(points)),
            lambda i: points[i + 1] / CASE WHEN i % 2 = 0 THEN sx ELSE sy END)
    END;
CREATE OR REPLACE TEMP MACRO divided_xyv(points, sx, sy) AS
    CASE WHEN points IS NULL THEN NULL ELSE
    list_transform(range(len(points)),
            lambda i: CASE i % 3 WHEN 0 THEN points[i + 1] / sx
                                 WHEN 1 THEN points[i + 1] / sy
                                 ELSE points[i + 1] END)
    END;
"""


def install_number_macros(con: Any) -> None:
    """Create the macros above on a DuckDB connection (idempotent)."""
    con.execute(_MACROS)
