"""Run-length encodings of masks: COCO's RLE and Label Studio's brush RLE.

COCO RLE counts alternate runs of 0 and 1 over the mask in column-major (Fortran) order,
starting with a (possibly empty) run of 0. Its compressed string form is the one
pycocotools writes (``rleToString`` in maskApi.c): each count, after the first two as a
difference from the count two places back, in 5-bit groups offset by 48 with a
continuation bit. The canonical ``mask`` column always holds the compressed string.

Label Studio's brush RLE is unrelated: the bit-packed run-length encoding of
thi.ng/rle-pack over the RGBA bytes of the whole image (height × width × 4, row-major);
the mask is the alpha channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby

__all__ = [
    "coco_area",
    "coco_counts_from_string",
    "coco_counts_to_mask",
    "coco_counts_to_string",
    "decode_label_studio_rle",
    "encode_label_studio_rle",
    "mask_to_coco_counts",
]


def coco_counts_to_string(counts: Sequence[int]) -> str:
    """COCO's compressed string for a list of run lengths."""
    out = bytearray()
    for i, count in enumerate(counts):
        x = int(count)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(c + 48)
    return out.decode("ascii")


def coco_counts_from_string(text: str) -> list[int]:
    """The run lengths of a COCO compressed RLE string; ValueError if it is malformed."""
    counts: list[int] = []
    data = text.encode("ascii")
    p = 0
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(data):
                raise ValueError("RLE string ends in the middle of a count")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"RLE string holds an invalid character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_area(counts: Sequence[int]) -> int:
    """Pixels set in a mask: the sum of the runs of ones."""
    return int(sum(counts[1::2]))


def mask_to_coco_counts(mask_row_major: bytes | bytearray, height: int, width: int) -> list[int]:
    """COCO run lengths of a row-major mask of bytes (non-zero = set)."""
    if len(mask_row_major) != height * width:
        raise ValueError(f"mask has {len(mask_row_major)} pixels, expected {height} × {width}")
    column_major = b"".join(bytes(mask_row_major[col::width]) for col in range(width))
    counts: list[int] = []
    expected = 0  # runs alternate, starting with a run of zeros (possibly empty)
    for is_set, run in groupby(column_major, key=bool):
        if int(is_set) != expected:
            counts.append(0)
            expected ^= 1
        counts.append(sum(1 for _ in run))
        expected ^= 1
    return counts


def coco_counts_to_mask(counts: Sequence[int], height: int, width: int) -> bytearray:
    """A row-major mask (bytes 0/1) from COCO run lengths."""
    column_major = bytearray()
    value = 0
    for run in counts:
        column_major += bytes([value]) * int(run)
        value ^= 1
    if len(column_major) != height * width:
        raise ValueError(
            f"RLE covers {len(column_major)} pixels, expected {height} × {width} = {height * width}"
        )
    row_major = bytearray(height * width)
    for col in range(width):
        row_major[col::width] = column_major[col * height : (col + 1) * height]
    return row_major


class _Bits:
    """Reads big-endian bit fields from bytes."""

    def __init__(self, data: Sequence[int]):
        self.value = int.from_bytes(bytes(data), "big")
        self.remaining = len(data) * 8

    def read(self, size: int) -> int:
        if size > self.remaining:
            raise ValueError("brush RLE ends early")
        self.remaining -= size
        return (self.value >> self.remaining) & ((1 << size) - 1)


def decode_label_studio_rle(rle: Sequence[int]) -> bytearray:
    """Label Studio's brush RLE → the decoded bytes (RGBA, row-major)."""
    bits = _Bits(rle)
    num = bits.read(32)
    word_size = bits.read(5) + 1
    rle_sizes = [bits.read(4) + 1 for _ in range(4)]
    out = bytearray(num)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = i + 1 + bits.read(rle_sizes[bits.read(2)])
        if j > num:
            raise ValueError("brush RLE run goes past the end of the image")
        if repeat:
            value = bits.read(word_size)
            out[i:j] = bytes([value & 0xFF]) * (j - i)
            i = j
        else:
            while i < j:
                out[i] = bits.read(word_size) & 0xFF
                i += 1
    return out


class _BitWriter:
    def __init__(self) -> None:
        self.value = 0
        self.size = 0

    def write(self, value: int, size: int) -> None:
        self.value = (self.value << size) | (value & ((1 << size) - 1))
        self.size += size

    def to_list(self) -> list[int]:
        padding = (-self.size) % 8
        data = (self.value << padding).to_bytes((self.size + padding) // 8, "big")
        return list(data)


def encode_label_studio_rle(
    values: bytes | bytearray, word_size: int = 8, rle_sizes: Sequence[int] = (3, 4, 8, 16)
) -> list[int]:
    """Bytes (RGBA, row-major) → Label Studio's brush RLE, as thi.ng/rle-pack encodes."""
    out = _BitWriter()
    num = len(values)
    out.write(num, 32)
    out.write(word_size - 1, 5)
    for size in rle_sizes:
        out.write(size - 1, 4)
    limits = [(1 << size) for size in rle_sizes]
    largest = limits[-1]

    def write_count(count: int) -> None:
        # the smallest count field that holds count - 1
        for index, limit in enumerate(limits):
            if count - 1 < limit:
                out.write(index, 2)
                out.write(count - 1, rle_sizes[index])
                return
        raise AssertionError("count larger than the largest field")

    i = 0
    literal: list[int] = []

    def flush_literal() -> None:
        start = 0
        while start < len(literal):
            chunk = literal[start : start + largest]
            out.write(0, 1)
            write_count(len(chunk))
            for value in chunk:
                out.write(value, word_size)
            start += largest
        literal.clear()

    while i < num:
        value = values[i]
        j = i + 1
        while j < num and values[j] == value and j - i < largest:
            j += 1
        run = j - i
        if run > 1:
            flush_literal()
            out.write(1, 1)
            write_count(run)
            out.write(value, word_size)
        else:
            literal.append(value)
        i = j
    flush_literal()
    return out.to_list()
