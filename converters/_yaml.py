"""The small part of YAML that dataset files (Ultralytics ``data.yaml``) use.

Reading: top-level ``key: value`` pairs whose values are scalars (numbers, booleans,
null, plain or quoted strings), flow lists ``[a, 'b']``, flow mappings ``{0: a}``, or an
indented block of ``- item`` lines or ``key: value`` lines. Comments and blank lines are
ignored. Anything else (anchors, tags, multi-line strings, deeper nesting) is a
:class:`~annostore.ParseError` naming the line, never a silent misreading. Writing emits
the same subset with every string double-quoted, which any YAML parser reads back.

A full YAML parser would be one more runtime dependency for a file of a dozen lines; this
subset covers the files Ultralytics, Roboflow and CVAT write.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from annostore.errors import ParseError

__all__ = ["dump_yaml", "load_yaml"]

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?)")
_INTEGER = re.compile(r"[-+]?\d+")
_SPECIAL_FLOATS = {".nan": math.nan, ".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf}


def _unquoted(text: str) -> Iterator[tuple[int, str]]:
    """The characters of ``text`` outside quoted strings, with their positions. Inside
    double quotes a backslash escapes the next character (``"a\\"b"`` is one string);
    single quotes double themselves, which closing and reopening the string handles."""
    quote, escaped = None, False
    for index, char in enumerate(text):
        if quote == '"' and escaped:
            escaped = False
        elif quote == '"' and char == "\\":
            escaped = True
        elif quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        else:
            yield index, char
    if quote:
        yield len(text), ""  # an unclosed quote: marks the end for the callers' checks


def _strip_comment(line: str) -> str:
    for index, char in _unquoted(line):
        if char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index].rstrip()
    return line.rstrip()


def _scalar(text: str, path: str, line: int) -> Any:
    text = text.strip()
    if text == "" or text in ("~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if text[0] == '"':
        if len(text) < 2 or text[-1] != '"':
            raise ParseError(path, line, f"unterminated string {text}")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ParseError(path, line, f"bad double-quoted string {text} ({exc.msg})") from None
    if text[0] == "'":
        if len(text) < 2 or text[-1] != "'":
            raise ParseError(path, line, f"unterminated string {text}")
        return text[1:-1].replace("''", "'")
    if text[0] in "&*!|>@`%":
        raise ParseError(path, line, f"unsupported YAML ({text[0]!r}): {text}")
    if text.lower() in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text.lower()]
    if _INTEGER.fullmatch(text):
        return int(text)
    if _NUMBER.fullmatch(text):
        return float(text)
    return text


def _split_flow(body: str, path: str, line: int) -> list[str]:
    items, depth, start, closed = [], 0, 0, True
    for index, char in _unquoted(body):
        if char == "":
            closed = False
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(body[start:index])
            start = index + 1
    if not closed or depth:
        raise ParseError(path, line, "unbalanced brackets or quotes")
    tail = body[start:]
    if tail.strip():
        items.append(tail)
    return items


def _key_value(text: str, path: str, line: int) -> tuple[str, str]:
    for index, char in _unquoted(text):
        if char == ":" and (index + 1 == len(text) or text[index + 1] in " \t"):
            return text[:index].strip(), text[index + 1 :].strip()
    raise ParseError(path, line, f"expected 'key: value', got {text!r}")


def _value(text: str, path: str, line: int) -> Any:
    text = text.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ParseError(path, line, "a flow list must end on its line with ']'")
        return [_value(item, path, line) for item in _split_flow(text[1:-1], path, line)]
    if text.startswith("{"):
        if not text.endswith("}"):
            raise ParseError(path, line, "a flow mapping must end on its line with '}'")
        mapping = {}
        for item in _split_flow(text[1:-1], path, line):
            key, value = _key_value(
                item.strip() + (" " if item.rstrip().endswith(":") else ""), path, line
            )
            mapping[_scalar(key, path, line)] = _value(value, path, line)
        return mapping
    return _scalar(text, path, line)


def load_yaml(text: str, path: str) -> dict[Any, Any]:
    """Parse a dataset YAML file (the subset above) into a dict."""
    result: dict[Any, Any] = {}
    # only \n (and \r\n) end a line: splitlines() would also break inside a string
    # holding U+0085 or U+2028
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    index = 0
    while index < len(lines):
        number = index + 1
        raw = _strip_comment(lines[index])
        index += 1
        if not raw.strip() or raw.strip() in ("---", "..."):
            continue
        if raw[0] in " \t":
            raise ParseError(path, number, "unexpected indentation")
        key, rest = _key_value(raw, path, number)
        key_value = _scalar(key, path, number)
        if rest:
            result[key_value] = _value(rest, path, number)
            continue
        # a block: the following indented lines
        block: list[tuple[int, str]] = []
        while index < len(lines):
            candidate = _strip_comment(lines[index])
            if candidate.strip() and candidate[0] not in " \t":
                break
            if candidate.strip():
                block.append((index + 1, candidate.strip()))
            index += 1
        if not block:
            result[key_value] = None
        elif all(item.startswith("- ") or item == "-" for _, item in block):
            result[key_value] = [_value(item[1:], path, n) for n, item in block]
        elif not any(item.startswith("-") for _, item in block):
            mapping = {}
            for n, item in block:
                sub_key, sub_value = _key_value(item, path, n)
                if not sub_value:
                    raise ParseError(
                        path, n, "nested blocks deeper than one level are not supported"
                    )
                mapping[_scalar(sub_key, path, n)] = _value(sub_value, path, n)
            result[key_value] = mapping
        else:
            raise ParseError(path, block[0][0], "a block mixes '- item' and 'key: value' lines")
    return result


def _dump_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 readers (PyYAML, which Ultralytics uses) take 1e-05 for a string
        return text.replace("e", ".0e", 1) if "e" in text and "." not in text else text
    text = json.dumps(str(value), ensure_ascii=False)
    # characters a YAML reader takes for line breaks or may refuse, escaped
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_UNPRINTABLE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff\ufffe\uffff]")


def dump_yaml(data: dict[str, Any]) -> str:
    """Write a dict of scalars, lists of scalars and mappings of scalars as YAML."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict) and not value:
            lines.append(f"{key}: {{}}")  # an empty block would read back as null
        elif isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"  {_dump_scalar(k)}: {_dump_scalar(v)}" for k, v in value.items())
        elif isinstance(value, list):
            lines.append(f"{key}: [{', '.join(_dump_scalar(v) for v in value)}]")
        else:
            lines.append(f"{key}: {_dump_scalar(value)}")
    return "\n".join(lines) + "\n"
