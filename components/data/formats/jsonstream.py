"""A JSON object read member by member, its large arrays one element at a time.

A COCO export of 200,000 annotations is a 40 MB document that `json.load` turns into about
half a gigabyte of dicts; a converter needs one annotation at a time. `members` walks the top
level of the object itself and hands each element of the arrays it is asked to stream to the
caller with the line it starts on, decoding each element with the standard library's
`JSONDecoder.raw_decode` over a window of the file: memory stays at the window plus what the
caller keeps. Invalid JSON is one sentence naming the file and line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from kfp_yolo.components.errors import UserError

__all__ = ["invalid_json", "members"]

_CHUNK = 1 << 20
_SKIP = re.compile(r"[ \t\n\r]*").match
_NUMBER = frozenset("0123456789+-.eE")
_DECODER = json.JSONDecoder()


def invalid_json(shown: str, line: int, reason: str, column: int | None = None) -> UserError:
    """The one sentence for a file that is not valid JSON (the column helps in a file written
    on one line)."""
    where = f"line {line}" + (f" column {column}" if column else "")
    return UserError(f"{shown} {where}: not valid JSON ({reason}); fix the file or export it "
                     "again.")


class _Reader:
    """A window over a text file: buf[pos:] is unread; lines counted up to pos."""

    def __init__(self, handle: Any, shown: str) -> None:
        self.handle, self.shown = handle, shown
        self.buf, self.pos, self.eof = "", 0, False
        self.line, self._counted = 1, 0  # line of buf[_counted]
        self._start = 0  # position in the file of buf[0]

    def fill(self) -> bool:
        """Reads one more chunk; False at the end of the file."""
        if self.eof:
            return False
        chunk = self.handle.read(_CHUNK)
        if not chunk:
            self.eof = True
            return False
        if self.pos > _CHUNK:  # drop what was read, counting its lines first
            self.line_at(self.pos)
            self._start += self.pos
            self.buf, self._counted, self.pos = self.buf[self.pos:], 0, 0
        self.buf += chunk
        return True

    def line_at(self, pos: int) -> int:
        """The line number of buf[pos] (pos at or after the last position asked)."""
        self.line += self.buf.count("\n", self._counted, pos)
        self._counted = pos
        return self.line

    def column(self, pos: int) -> int | None:
        """The column of buf[pos], when the window still holds the start of its line."""
        newline = self.buf.rfind("\n", 0, pos)
        if newline < 0 and self._start:
            return None
        return pos - newline

    def error(self, pos: int, reason: str) -> UserError:
        line = self.line_at(self.pos) + self.buf.count("\n", self.pos, pos)
        return invalid_json(self.shown, line, reason, self.column(pos))

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the file)."""
        while True:
            self.pos = _SKIP(self.buf, self.pos).end()
            if self.pos < len(self.buf) or not self.fill():
                return self.buf[self.pos: self.pos + 1]

    def expect(self, chars: str, what: str) -> str:
        char = self.peek()
        if not char or char not in chars:
            found = repr(char) if char else "the end of the file"
            raise self.error(self.pos, f"expected {what}, found {found}")
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decodes the value at pos; a value cut by the window's end is read again, whole."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                if self.fill():
                    continue
                raise self.error(exc.pos, exc.msg) from None
            # A number cut by the window's end ('1' of '12', '0' of '0.5') goes on in the next
            # chunk; in valid JSON no value is followed by a number's character.
            if (end == len(self.buf) or self.buf[end] in _NUMBER) and self.fill():
                continue
            self.pos = end
            return value


def members(path: Path, shown: str, stream: frozenset[str] | set[str]
            ) -> Iterator[tuple[str, Any, int]]:
    """(key, value, line) for each member of the JSON object in path.

    Args:
        path: the file; its top level must be an object.
        shown: the file's name in messages.
        stream: keys whose value is an array: each element is yielded as (key, element, line)
            instead of the whole array.
    """
    try:
        handle = path.open(encoding="utf-8-sig")
    except OSError as exc:
        raise UserError(f"{shown}: cannot be read ({exc.strerror}); fix its permissions.") from None
    with handle:
        reader = _Reader(handle, shown)
        try:
            yield from _object(reader, stream)
        except UnicodeDecodeError:
            raise UserError(f"{shown}: not UTF-8 text; export the annotations again as UTF-8 "
                            "JSON.") from None


def _object(reader: _Reader, stream: frozenset[str] | set[str]) -> Iterator[tuple[str, Any, int]]:
    if reader.peek() != "{":
        found = reader.peek()
        what = {"": "the file is empty", "[": "its top level is a list"}.get(
            found, f"it starts with {found!r}")
        raise UserError(f"{reader.shown}: not a COCO annotation file ({what}, not an object "
                        "with images, annotations and categories); export the dataset as COCO "
                        "JSON.")
    reader.pos += 1
    if reader.peek() == "}":
        reader.pos += 1
    else:
        while True:
            reader.peek()
            line = reader.line_at(reader.pos)
            key = reader.value()
            if not isinstance(key, str):
                raise invalid_json(reader.shown, line, "expected a member name in quotes")
            reader.expect(":", "':'")
            if key in stream:
                yield from _array(reader, key)
            else:
                reader.peek()
                line = reader.line_at(reader.pos)
                yield key, reader.value(), line
            if reader.expect(",}", "',' or '}'") == "}":
                break
    if reader.peek():
        raise reader.error(reader.pos, "extra data after the top-level object")


def _array(reader: _Reader, key: str) -> Iterator[tuple[str, Any, int]]:
    if reader.peek() != "[":
        raise UserError(f"{reader.shown} line {reader.line_at(reader.pos)}: {key!r} is not a "
                        "list; export the annotations again.")
    reader.pos += 1
    if reader.peek() == "]":
        reader.pos += 1
        return
    decode = _DECODER.raw_decode
    while True:
        reader.peek()  # the element's own line, not the comma's
        buf, pos = reader.buf, reader.pos
        # Fast path, nearly every element: whole in the window and followed by ',' or ']'.
        try:
            value, end = decode(buf, pos)
            after = _SKIP(buf, end).end()
            delimiter = buf[after] if after < len(buf) else ""
        except json.JSONDecodeError:
            delimiter = ""
        if delimiter in (",", "]"):
            line = reader.line_at(pos)
            reader.pos = after + 1
            yield key, value, line
            if delimiter == "]":
                return
            continue
        line = reader.line_at(pos)
        yield key, reader.value(), line
        if reader.expect(",]", "',' or ']'") == "]":
            return
