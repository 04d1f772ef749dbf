"""JSON documents parsed into columns by DuckDB, and record checks as SQL.

Converters never turn a large JSON document into Python dicts: DuckDB's JSON reader
parses the bytes once into typed columns (about 5× faster than ``json.load`` on a
230 MB COCO file, and without a Python object per region). Checks are SQL conditions
evaluated over all records at once; the bad ones are reported with their position.
"""

from __future__ import annotations

import json
import mmap
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from annostore._arrow import counting
from annostore._sql import literal as sql_string
from annostore.errors import ParseError

from ._base import SkipCollector
from ._jsonscan import BYTE_ORDER_MARK, content_start

__all__ = [
    "Items",
    "bad_rows",
    "load_array",
    "load_document",
    "sql_string",
    "without_keys",
]


def without_keys(expression: str, keys: Sequence[str]) -> str:
    """SQL for the JSON object ``expression`` minus ``keys``; NULL when nothing is left."""
    patch = json.dumps({key: None for key in keys})
    return f"nullif(json_merge_patch({expression}, {sql_string(patch)}::JSON)::VARCHAR, '{{}}')"


_BYTE = re.compile(r"at byte (\d+)")
_GLOB = re.compile(r"[*?\[\]{}]")


def load_document(
    con: duckdb.DuckDBPyConnection, name: str, data: bytes | memoryview | mmap.mmap, path: str
) -> str:
    """Parse ``data`` (a JSON document) once into temp table ``name`` with one row and a
    column ``doc``: a MAP(VARCHAR, JSON) of its members for an object, a JSON[] of its
    items for an array, else the JSON value. Returns 'OBJECT', 'ARRAY' or 'SCALAR'.

    Malformed JSON raises a :class:`~annostore.ParseError` naming the byte offset.
    """
    try:
        text = str(data, "utf-8-sig")  # any buffer: bytes, a view, a mapped file
    except UnicodeDecodeError as exc:
        raise ParseError(path, f"byte {exc.start}", "not UTF-8 text") from None
    first = text.lstrip()[:1]
    kind = "OBJECT" if first == "{" else "ARRAY" if first == "[" else "SCALAR"
    shape = {
        "OBJECT": "json_transform(text, '\"MAP(VARCHAR, JSON)\"')",
        "ARRAY": "json_transform(text, '[\"JSON\"]')",
        "SCALAR": "text::JSON",
    }[kind]
    table = pa.table({"text": pa.array([text], pa.large_string())})
    con.register(f"{name}_text", table)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT {shape} AS doc FROM {name}_text"
        )
    except duckdb.OutOfMemoryException:
        raise  # the machine's limit, not the file's fault: never "malformed JSON"
    except duckdb.Error as exc:
        message = str(exc).split("\n")[0]
        found = _BYTE.search(message)
        where = f"byte {found.group(1)}" if found else None
        # DuckDB quotes the input after "Input:"; the file is the user's, keep the reason
        reason = message.split("Error: ", 1)[-1].split(" Input:", 1)[0][:200]
        raise ParseError(path, where, f"malformed JSON ({reason})") from None
    finally:
        con.unregister(f"{name}_text")
    return kind


def load_array(
    con: duckdb.DuckDBPyConnection,
    name: str,
    data: bytes | memoryview | mmap.mmap,
    path: str,
    *,
    objects: bool = False,
    file: str | None = None,
) -> str | None:
    """Parse ``data`` (bytes or a view of them), a JSON document that is a list, into temp
    table ``name(idx, j)``: one row per item, ``idx`` its position. Returns None, creating
    nothing, when the document is not a list.

    With ``objects``, the items are first read as ``MAP(VARCHAR, JSON)`` (their members,
    in order, a JSON null as SQL NULL), which saves parsing each item again to take its
    members apart; if an item is not an object or repeats a key, they are read as JSON
    instead. Returns ``"objects"`` or ``"items"`` to say which; a JSON null item is SQL
    NULL either way.

    DuckDB's reader streams the items into rows from a file: at a 400 MB export that is
    1.4 s, where parsing the text into one list value (:func:`load_document`) took 7 s and
    unnesting it 2 s more. Malformed JSON raises a :class:`~annostore.ParseError` naming the
    byte offset in the document.

    ``file``, a local file whose whole content is ``data``, is read in place; otherwise
    the bytes are staged in a temporary file for DuckDB (writing 400 MB cost 1 s here).
    """
    start = content_start(data)
    if data[start : start + 1] != b"[":
        return None
    with tempfile.TemporaryDirectory(prefix="annostore-json-") as folder:
        # DuckDB's reader skips whitespace, not a byte-order mark, and expands a path
        # with glob characters (``b*.json`` would read every file it matches)
        if file is not None and data[:3] != BYTE_ORDER_MARK and not _GLOB.search(file):
            staged = file
        else:
            staged = os.path.join(folder, "document.json")
            with open(staged, "wb") as out:
                out.write(data)

        def read(item_type: str) -> None:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {name}_rows AS SELECT json AS j FROM read_json("
                f"{sql_string(staged)}, format = 'array', records = false, "
                f"columns = {{'json': {sql_string(item_type)}}}, "
                f"maximum_object_size = {max(len(data), 1 << 24)})"
            )

        shape = "items"
        try:
            if objects:
                try:
                    read("MAP(VARCHAR, JSON)")
                    shape = "objects"
                except duckdb.OutOfMemoryException:
                    raise
                except duckdb.Error:
                    read("JSON")
            else:
                read("JSON")
        except duckdb.OutOfMemoryException:
            raise
        except duckdb.Error as exc:
            # DuckDB's reader counts bytes within an item; the document parser names the
            # offset in the file
            load_document(con, name, data, path)
            con.execute(f"DROP TABLE IF EXISTS {name}")
            reason = str(exc).split("\n")[0].split("Error: ", 1)[-1][:200]
            raise ParseError(path, None, f"could not read the list ({reason})") from None
    # a table's rowid is its insertion order, which is the file's
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT rowid AS idx, j FROM {name}_rows")
    con.execute(f"DROP TABLE {name}_rows")
    return shape


@dataclass(frozen=True)
class Items:
    """SQL over a column of list items as :func:`load_array` left them: objects read as
    ``MAP(VARCHAR, JSON)`` (``maps``) or items as JSON. Each method gives what the same
    expression on the item's JSON would, so that the readings give the same tables."""

    column: str = "j"
    maps: bool = False

    def kind(self) -> str:
        """The item's JSON type ('OBJECT', 'ARRAY', …; NULL for a JSON null)."""
        if self.maps:
            return f"CASE WHEN {self.column} IS NOT NULL THEN 'OBJECT' END"
        # the item's text is DuckDB's own (no leading space): a brace says OBJECT without
        # parsing it again, which json_type does (0.15 s a million items)
        c = self.column
        return f"CASE WHEN starts_with({c}::VARCHAR, '{{') THEN 'OBJECT' ELSE json_type({c}) END"

    def members(self, keys: Sequence[str]) -> str:
        """A list of the members ``keys`` as ``json_extract(item, ['$.key', …])`` gives
        them: SQL NULL when absent, JSON ``null`` when null."""
        if not self.maps:
            paths = ", ".join(sql_string("$." + key) for key in keys)
            return f"json_extract({self.column}, [{paths}])"
        return "[" + ", ".join(self._member(key) for key in keys) + "]"

    def has(self, key: str) -> str:
        """Whether the item has member ``key``."""
        if self.maps:
            return f"map_contains({self.column}, {sql_string(key)})"
        return f"json_exists({self.column}, {sql_string('$.' + key)})"

    def without(self, keys: Sequence[str]) -> str:
        """The item minus ``keys`` as JSON text, NULL when nothing is left (the same text
        as :func:`without_keys`)."""
        if not self.maps:
            return without_keys(self.column, keys)
        listed = ", ".join(sql_string(key) for key in keys)
        return (
            f"nullif(to_json(map_from_entries(list_filter(map_entries({self.column}), "
            f"lambda e: e.key NOT IN ({listed}))))::VARCHAR, '{{}}')"
        )

    def _member(self, key: str) -> str:
        m, k = self.column, sql_string(key)
        return f"CASE WHEN {m}[{k}] IS NULL AND map_contains({m}, {k}) THEN 'null'::JSON ELSE {m}[{k}] END"


def bad_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    checks: Sequence[tuple[str, str]],
    *,
    path: str,
    what: str,
    collector: SkipCollector,
    label: str = "idx",
    location: str | None = None,
) -> list[int]:
    """Positions of the rows of ``table`` failing any check, reported to ``collector``.

    ``checks`` are (condition, message) SQL pairs, tried in order; a row fails at the
    first condition that is true. Under ``errors="raise"`` the first bad row raises.
    Locations read ``<what>[<position>]``, or whatever the SQL ``location`` gives.
    """
    if not checks:
        return []
    cases = " ".join(f"WHEN {condition} THEN {message}" for condition, message in checks)
    where = location or f"{sql_string(what + '[')} || {label} || ']'"
    query = (
        f"SELECT {label}, msg, loc FROM (SELECT {label}, CASE {cases} END AS msg, "
        f"{where} AS loc FROM {table}) WHERE msg IS NOT NULL ORDER BY {label}"
    )
    if collector.errors == "raise":
        query += " LIMIT 1"
    rows: list[Any] = con.sql(query).fetchall()
    for _, message, place in rows:
        collector.bad(path, place, message)
    return [position for position, _, _ in rows]


def json_object_sql(pairs: Sequence[tuple[str, str]]) -> str:
    """SQL building a JSON object of ``(key, SQL expression)`` pairs, in order, leaving out
    the keys whose value is NULL (a JSON merge patch would read a null as "delete")."""
    # text joined by concat_ws, which skips NULLs: a list of entries filtered by a lambda
    # and made a map, per row, took most of a million-region COCO write
    return f"{json_object_text(pairs)}::JSON"


def json_object_text(pairs: Sequence[tuple[str, str]]) -> str:
    """:func:`json_object_sql` as VARCHAR text: each value printed by ``to_json``, the
    same printer that parsing and printing the object again would use, so the text is
    what ``json(...)`` of it gives (checked on a million generated COCO records)."""
    return f"('{{' || {_entries_text(pairs)} || '}}')"


def _entries_text(pairs: Sequence[tuple[str, str]]) -> str:
    """SQL: the ``"key":value`` entries of the non-null pairs, joined by commas."""
    entries = ", ".join(
        f"{sql_string(json.dumps(key) + ':')} || to_json({value})::VARCHAR" for key, value in pairs
    )
    return f"concat_ws(',', {entries})"


def merged_json_sql(base: str, pairs: Sequence[tuple[str, str]], drop: Sequence[str] = ()) -> str:
    """SQL: the JSON object ``base`` (JSON text or NULL) without ``drop`` keys, with the
    non-null ``pairs`` set on top; the result is VARCHAR."""
    cleaned = _cleaned(base, drop)
    # most records have no base: their object is the text built, without a merge (which
    # parses it and prints it again: 2.4 s against 0.6 s for a million COCO records)
    return (
        f"CASE WHEN {base} IS NULL THEN {json_object_text(pairs)} "
        f"ELSE json_merge_patch({cleaned}, {json_object_sql(pairs)})::VARCHAR END"
    )


def numbered_json_sql(
    base: str,
    key: str,
    placeholder: str,
    pairs: Sequence[tuple[str, str]],
    drop: Sequence[str] = (),
) -> tuple[str, str]:
    """:func:`merged_json_sql` of ``(key, <a number>)`` followed by ``pairs``, printed in
    two parts around the number, which is given later (:func:`join_numbered_json_texts`):
    a record's text is its ``head``, the number, its ``tail``.

    Returns two SELECT lists: the inner one computes ``_merged`` and ``_rest`` per row,
    the outer one (over the inner) ``head``, ``tail`` and ``ok``. Where ``base`` is NULL,
    head is NULL (standing for ``{"key":``) and the tail is the other pairs' text. Else the
    merged object is printed with ``placeholder`` (the digits of a number no record
    holds) as the number and cut there; ``ok`` is false where the base's own data holds
    those digits too, so that the cut could be in the wrong place.
    """
    number = sql_string(placeholder)
    inner = (
        f"CASE WHEN {base} IS NOT NULL THEN "
        f"json_merge_patch({_cleaned(base, drop)}, {json_object_sql([(key, placeholder), *pairs])})::VARCHAR "
        f"END AS _merged, CASE WHEN {base} IS NULL THEN {_entries_text(pairs)} END AS _rest"
    )
    after = f"strpos(_merged, {number}) + {len(placeholder)}"
    outer = f"""
        CASE WHEN _merged IS NOT NULL THEN substr(_merged, 1, strpos(_merged, {number}) - 1) END AS head,
        CASE WHEN _merged IS NOT NULL THEN substr(_merged, {after})
             WHEN _rest = '' THEN '}}' ELSE ',' || _rest || '}}' END AS tail,
        _merged IS NULL OR (strpos(_merged, {number}) > 0
                            AND strpos(substr(_merged, {after}), {number}) = 0) AS ok"""
    return inner, outer


def _cleaned(base: str, drop: Sequence[str]) -> str:
    """SQL: the JSON object ``base`` without the ``drop`` keys."""
    if not drop:
        return f"{base}::JSON"
    patch = json.dumps({key: None for key in drop})
    return f"json_merge_patch({base}::JSON, {sql_string(patch)}::JSON)"


#: rows of records given their separator by one Arrow kernel at a time: a piece of the
#: output is this many records' text, so a writer holds one piece beside the records
_PIECE_ROWS = 1 << 16

#: pieces of a text, in order: write them one after another, or ``b"".join`` them
TextPieces = Iterator["bytes | memoryview"]


def numbered_json_text_pieces(
    heads: pa.ChunkedArray,
    tails: pa.ChunkedArray,
    null_head: str,
    prefix: bytes = b"",
    suffix: bytes = b"",
    rows_per_piece: int = _PIECE_ROWS,
) -> TextPieces:
    """:func:`json_text_pieces` of records printed in two parts around a number
    (:func:`numbered_json_sql`), numbered 1, 2, … in order; a NULL head is ``null_head``.

    The numbers are put in by the same kernel that appends the separators, so the text
    is still copied once."""
    numbers = pc.cast(pc.add(counting(len(tails)), 1), pa.string())  # "1", "2", "3", …
    options = pc.JoinOptions(null_handling="replace", null_replacement=null_head)
    table = pa.table({"head": heads, "tail": tails})

    def suffixed() -> Iterator[pa.Array]:
        offset = 0
        # batches of one table: the heads and tails of a batch are the same rows
        for batch in table.to_batches(max_chunksize=rows_per_piece):
            tail = batch.column("tail")
            yield pc.binary_join_element_wise(
                batch.column("head"),
                numbers.slice(offset, batch.num_rows),
                tail,
                pa.scalar(",\n", tail.type),
                pa.scalar("", tail.type),
                options=options,
            )
            offset += batch.num_rows

    return _pieces(suffixed(), prefix, suffix)


def json_text_pieces(
    column: pa.ChunkedArray,
    prefix: bytes = b"",
    suffix: bytes = b"",
    rows_per_piece: int = _PIECE_ROWS,
) -> TextPieces:
    """JSON texts joined by ``,\\n`` (the items of a JSON list), between ``prefix`` and
    ``suffix``, as pieces made one at a time, without a Python string per item.

    Each slice of records gets the separator appended by one Arrow kernel as its piece is
    asked for, and is handed out as the kernel's data buffer: a writer holds one piece of
    copied text at a time. Joining the whole text first held it twice more beside the
    records (the separated copy and the joined bytes: 0.6 GB of the Label Studio → COCO
    peak at a million regions)."""
    if column.null_count:
        raise ValueError("a JSON text to join is null")

    def suffixed() -> Iterator[pa.Array]:
        for chunk in column.chunks:
            separator = pa.scalar(",\n", chunk.type)
            for offset in range(0, len(chunk), rows_per_piece):
                rows = chunk.slice(offset, rows_per_piece)
                yield pc.binary_join_element_wise(rows, pa.scalar("", chunk.type), separator)

    return _pieces(suffixed(), prefix, suffix)


def join_json_texts(column: pa.ChunkedArray, prefix: bytes = b"", suffix: bytes = b"") -> bytes:
    """The text of :func:`json_text_pieces` as one bytes object."""
    return b"".join(json_text_pieces(column, prefix, suffix))


def _pieces(items: Iterator[pa.Array], prefix: bytes, suffix: bytes) -> TextPieces:
    """The text of ``items`` (chunks of strings that each end in ``,\n``) without the
    last separator, between ``prefix`` and ``suffix``: each chunk's data buffer as it is."""
    yield prefix
    held = None  # a piece is handed out once the next one shows it was not the last
    for suffixed in items:
        if len(suffixed) == 0:
            continue
        large = pa.types.is_large_string(suffixed.type) or pa.types.is_large_binary(suffixed.type)
        offsets = memoryview(suffixed.buffers()[1]).cast("q" if large else "i")
        start, end = offsets[suffixed.offset], offsets[suffixed.offset + len(suffixed)]
        if held is not None:
            yield held
        held = memoryview(suffixed.buffers()[2])[start:end]
    if held is not None:
        yield held[:-2]  # no separator after the last item
    yield suffix


def rows_table(
    con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, tuple[list[Any], pa.DataType]]
) -> None:
    """Temp table ``name`` from a few rows computed in Python (column → values, type)."""
    table = pa.table({column: pa.array(values, kind) for column, (values, kind) in columns.items()})
    con.register(f"{name}_arrow", table)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    finally:
        con.unregister(f"{name}_arrow")


def image_sizes_table(
    con: duckdb.DuckDBPyConnection, name: str, sizes: dict[str, tuple[int, int]]
) -> None:
    """Temp table ``name(task_id, sw, sh)`` of sizes read from image headers."""
    rows_table(
        con,
        name,
        {
            "task_id": (list(sizes), pa.string()),
            "sw": ([s[0] for s in sizes.values()], pa.int32()),
            "sh": ([s[1] for s in sizes.values()], pa.int32()),
        },
    )
