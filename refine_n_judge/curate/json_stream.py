"""Split a JSON array file into its elements without loading the whole file.

`json.load` of a 2 GB dataset needs several times that in memory; this reads the file in
chunks and cuts it at the commas between top-level elements (tracking nesting and strings,
escapes included), so memory holds one element at a time. Each element is handed over as
text with the line it starts on; parsing it is the caller's job, so one malformed element
becomes one bad row while the elements around it are still read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

CHUNK_CHARS = 1 << 16

_STRUCTURE = re.compile(r'[\[\]{}",]')
_IN_STRING = re.compile(r'["\\]')
_NOT_SPACE = re.compile(r"\S")


class JsonArrayError(ValueError):
    """The file is not a JSON array, or its structure breaks off; `line` says where."""

    def __init__(self, message: str, line: int) -> None:
        self.line = line
        super().__init__(message)


@dataclass(frozen=True)
class Element:
    """One top-level element of the array: its text and the line it starts on."""

    line: int
    text: str


class JsonArrayReader:
    """Iterate over `Element`s of the JSON array read from `handle` (a text file)."""

    def __init__(self, handle: TextIO, chunk_chars: int = CHUNK_CHARS) -> None:
        self._handle = handle
        self._chunk_chars = chunk_chars
        self._buf = ""
        self._buf_line = 1  # line number of self._buf[0]
        self._eof = False

    def _more(self) -> bool:
        """Append the next chunk to the buffer; False at the end of the file."""
        if self._eof:
            return False
        chunk = self._handle.read(self._chunk_chars)
        if not chunk:
            self._eof = True
            return False
        self._buf += chunk
        return True

    def _line_at(self, index: int) -> int:
        return self._buf_line + self._buf.count("\n", 0, index)

    def _drop_before(self, index: int) -> None:
        """Forget the buffer before `index` (keeps memory at one element)."""
        self._buf_line += self._buf.count("\n", 0, index)
        self._buf = self._buf[index:]

    def _find(self, pattern: re.Pattern[str], start: int) -> re.Match[str] | None:
        """The next match at or after `start`, reading more of the file as needed."""
        while True:
            match = pattern.search(self._buf, start)
            if match is not None:
                return match
            start = len(self._buf)
            if not self._more():
                return None

    def __iter__(self) -> Iterator[Element]:
        first = self._find(_NOT_SPACE, 0)
        if first is None:
            raise JsonArrayError("the file is empty, not a JSON array", 1)
        if first.group() == "\ufeff":  # a UTF-8 byte order mark read as text
            self._drop_before(first.end())
            first = self._find(_NOT_SPACE, 0)
            if first is None:
                raise JsonArrayError("the file is empty, not a JSON array", 1)
        if first.group() != "[":
            raise JsonArrayError(
                f"the file is not a JSON array: it starts with {first.group()!r} "
                "(a file of one JSON object per line is read with --input-format jsonl)",
                self._line_at(first.start()),
            )
        self._drop_before(first.end())
        yield from self._elements()
        rest = self._find(_NOT_SPACE, 0)
        if rest is not None:
            raise JsonArrayError(
                "unexpected text after the closing ']' of the array", self._line_at(rest.start())
            )

    def _elements(self) -> Iterator[Element]:
        depth = 0
        pos = 0
        seen_elements = False
        while True:
            match = self._find(_STRUCTURE, pos)
            if match is None:
                start = _NOT_SPACE.search(self._buf)
                raise JsonArrayError(
                    "the file ends before the array is closed with ']'",
                    self._line_at(start.start() if start else len(self._buf)),
                )
            char, pos = match.group(), match.end()
            if char == '"':
                pos = self._skip_string(pos)
            elif char in "[{":
                depth += 1
            elif char == "}" or (char == "]" and depth > 0):
                depth = max(depth - 1, 0)  # a stray '}' is left for the element's parser
            elif depth == 0:  # a ',' or ']' of the array itself: the end of an element
                element = self._take(match.start())
                if element is not None:
                    seen_elements = True
                    yield element
                elif char == "," or seen_elements:
                    raise JsonArrayError(
                        "an element of the array is empty (two commas in a row, or a "
                        "trailing comma)",
                        self._line_at(match.start()),
                    )
                self._drop_before(match.end())
                pos = 0
                if char == "]":
                    return

    def _take(self, end: int) -> Element | None:
        """The element text before `end` (None when it is only whitespace)."""
        start = _NOT_SPACE.search(self._buf, 0, end)
        if start is None:
            return None
        return Element(
            line=self._line_at(start.start()), text=self._buf[start.start() : end].rstrip()
        )

    def _skip_string(self, pos: int) -> int:
        """The index just after the string whose opening quote ends before `pos`."""
        while True:
            match = self._find(_IN_STRING, pos)
            if match is None:
                raise JsonArrayError("the file ends inside a string", self._line_at(pos))
            if match.group() == '"':
                return match.end()
            # A backslash escapes the next character, which may be in the next chunk.
            while match.end() >= len(self._buf):
                if not self._more():
                    raise JsonArrayError("the file ends inside a string", self._line_at(pos))
            pos = match.end() + 1
