"""Where the big lists of a JSON object lie, found without parsing it.

A COCO file is one object whose ``annotations`` list holds almost all of its bytes. DuckDB
streams the items of a *file that is a list* into rows quickly (about 1 s for a million
annotations), but taking a list out of an object means parsing the whole document into
one value and writing each member back as JSON text (4–5 s at that size, plus 1.4 s to
hand the text to Python). Finding the list's bytes instead costs one vectorized pass
over the document: quotes are counted to know what is inside a string, brackets outside
strings to know the depth. Nothing here decides whether the JSON is valid; the readers
parse every byte of it afterwards, and fall back to parsing the whole document when
anything does not fit (that path also names the byte of an error).
"""

from __future__ import annotations

from collections.abc import Collection

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["BYTE_ORDER_MARK", "content_start", "split_lists", "top_level_spans"]

BYTE_ORDER_MARK = b"\xef\xbb\xbf"
_QUOTE, _BACKSLASH = 0x22, 0x5C
_WHITESPACE = b" \t\r\n"
#: +1 for an opening bracket, -1 for a closing one, 0 for every other byte
_STEP = pa.array([1 if b in b"[{" else -1 if b in b"]}" else 0 for b in range(256)], pa.int8())
#: bytes scanned per step: small enough for the per-byte arrays to stay in cache
_CHUNK = 1 << 18


def top_level_spans(data: bytes) -> list[tuple[int, int]] | None:
    """The byte spans ``[start, end)`` of the members of the top-level object in ``data``
    whose values are lists or objects, in document order. None when ``data`` is not an
    object whose brackets balance outside strings (the caller parses it whole instead)."""
    offset = content_start(data)
    last = _back(data, len(data) - 1)
    if data[offset : offset + 1] != b"{" or last < 0 or data[last] != ord("}"):
        return None
    view = pa.Array.from_buffers(pa.uint8(), len(data), [None, pa.py_buffer(data)])
    inside = 0  # 1 while the scan is inside a string
    depth = 0
    events: list[int] = []  # positions where the depth goes 1 → 2 or 2 → 1
    for start in range(offset, len(data), _CHUNK):
        stop = min(start + _CHUNK, len(data))
        chunk = view.slice(start, stop - start)
        quotes = pc.equal(chunk, _QUOTE)
        if data.find(b"\\", max(start - 1, 0), stop) >= 0:  # (a backslash just before counts)
            quotes = pc.and_(quotes, pc.invert(_escaped(data, start, stop)))
        steps = pc.take(_STEP, chunk)
        brackets = pc.indices_nonzero(steps)
        quote_count = pc.cumulative_sum(pc.cast(quotes, pa.int32()))
        if len(brackets):
            # a bracket is outside strings when an even number of quotes precede it
            before = pc.add(pc.take(quote_count, brackets), inside)
            brackets = pc.filter(brackets, pc.equal(pc.bit_wise_and(before, 1), 0))
            moves = pc.cast(pc.take(steps, brackets), pa.int32())
            depths = pc.add(pc.cumulative_sum(moves), depth)
            if len(depths):
                opened = pc.and_(pc.equal(depths, 2), pc.equal(moves, 1))
                closed = pc.and_(pc.equal(depths, 1), pc.equal(moves, -1))
                found = pc.filter(brackets, pc.or_(opened, closed))
                events.extend(start + p for p in found.to_pylist())
                if pc.min(depths).as_py() < 0:
                    return None
                depth = depths[-1].as_py()
        if len(quote_count):
            inside = (inside + quote_count[-1].as_py()) & 1
    if depth != 0 or inside or len(events) % 2:
        return None
    return [(events[i], events[i + 1] + 1) for i in range(0, len(events), 2)]


def _escaped(data: bytes, start: int, stop: int) -> pa.Array:
    """Booleans over ``data[start:stop]``: true at quotes escaped by a backslash (an odd
    run of backslashes before them). Only chunks holding a backslash pay for this."""
    marks = bytearray(stop - start)
    position = data.find(b'\\"', max(start - 1, 0), stop)
    while position >= 0:
        quote = position + 1
        run = 0
        while quote - 1 - run >= 0 and data[quote - 1 - run] == _BACKSLASH:
            run += 1
        if run % 2 and start <= quote < stop:
            marks[quote - start] = 1
        position = data.find(b'\\"', position + 1, stop)
    flags = pa.Array.from_buffers(pa.uint8(), len(marks), [None, pa.py_buffer(bytes(marks))])
    return pc.not_equal(flags, 0)


def content_start(data: bytes | memoryview) -> int:
    """Where a JSON document's value starts: after a UTF-8 byte-order mark and whitespace."""
    return _forward(data, len(BYTE_ORDER_MARK) if data[:3] == BYTE_ORDER_MARK else 0)


def _forward(data: bytes | memoryview, position: int) -> int:
    """The first position at or after ``position`` that is not whitespace."""
    while position < len(data) and data[position] in _WHITESPACE:
        position += 1
    return position


def _back(data: bytes, position: int) -> int:
    """The last position at or before ``position`` that is not whitespace (-1: none)."""
    while position >= 0 and data[position] in _WHITESPACE:
        position -= 1
    return position


def _member_key(data: bytes, start: int) -> str | None:
    """The key of the member whose value starts at ``start``, or None when the bytes
    before it are not ``"key":`` with a plain key (no escapes)."""
    colon = _back(data, start - 1)
    if colon < 0 or data[colon] != ord(":"):
        return None
    close = _back(data, colon - 1)
    if close < 0 or data[close] != _QUOTE:
        return None
    open_ = data.rfind(b'"', 0, close)
    if open_ < 0:
        return None
    key = data[open_ + 1 : close]
    before = _back(data, open_ - 1)
    if b"\\" in key or before < 0 or data[before] not in b",{":
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return None


def split_lists(
    data: bytes, keys: Collection[str]
) -> tuple[bytes, dict[str, tuple[int, int]]] | None:
    """``data``, a JSON object, with the list values of members ``keys`` cut out: the rest
    of the document with ``[]`` in their place, and where each list lies in ``data``.

    None when the layout cannot be told without parsing (not an object, a key written
    with escapes, a key given twice, brackets that do not balance): parse it whole then.
    """
    spans = top_level_spans(data)
    if spans is None:
        return None
    cut: dict[str, tuple[int, int]] = {}
    for start, end in spans:
        if data[start] != ord("["):
            continue
        key = _member_key(data, start)
        if key is None:
            return None
        if key in keys:
            if key in cut:
                return None
            cut[key] = (start, end)
    if not cut:
        return None
    pieces, position = [], 0
    for start, end in sorted(cut.values()):
        pieces += [data[position:start], b"[]"]
        position = end
    pieces.append(data[position:])
    return b"".join(pieces), cut
