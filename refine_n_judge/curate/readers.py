"""Streaming readers for the input formats: JSONL, JSON array, CSV/TSV, Parquet.

Every reader yields one row at a time (memory stays flat however big the file is), each
row as an `InputItem` or, when it cannot be read or validated, an `InputRowError` that
names the file, the line and the field. A file that cannot be read at all yields one
error for the file and nothing else; the other input files are still read.
JSONL, JSON and CSV may be gzip-compressed (`.gz`).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

from refine_n_judge.curate.errors import InputRowError, SettingsError
from refine_n_judge.curate.json_stream import JsonArrayError, JsonArrayReader
from refine_n_judge.curate.records import InputItem
from refine_n_judge.curate.rows import FieldMap, RowConverter, preview

InputFormat = Literal["jsonl", "json", "csv", "tsv", "parquet"]
INPUT_FORMATS: tuple[InputFormat, ...] = ("jsonl", "json", "csv", "tsv", "parquet")

_SUFFIXES: dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
PARQUET_BATCH_ROWS = 512

ReadResult = InputItem | InputRowError


def detect_format(path: Path, explicit: InputFormat | None = None) -> InputFormat:
    """The format named by `--input-format`, else the one the file name says.

    A `.json` file that holds one object per line (a common mislabelling) is read as JSONL:
    the JSON reader checks the first character and the file is sniffed here.
    """
    if explicit is not None:
        if explicit == "json" and _first_char(path) == "{":
            _refuse_json_object(path)
        return explicit
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    found = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    if found is None:
        raise SettingsError(
            f"cannot tell the format of {path} from its name; pass --input-format "
            f"({'|'.join(INPUT_FORMATS)})"
        )
    if found == "json" and _first_char(path) == "{":
        _refuse_json_object(path)
        return "jsonl"
    return found


JSON_OBJECT_MAX_BYTES = 256 << 20
"""A JSON object input is parsed to name its array keys only up to this size."""


def _first_line_is_json(path: Path) -> bool:
    """True when the first non-empty line is a whole JSON value (JSONL), not the start
    of a pretty-printed object."""
    try:
        with _open_text(path) as handle:
            for line in handle:
                if line.strip("\ufeff \t\r\n"):
                    json.loads(line.lstrip("\ufeff"))
                    return True
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return False


def _refuse_json_object(path: Path) -> None:
    """Refuse a file that is one (pretty-printed) JSON object, naming its array keys.

    Raises:
        SettingsError: the file parses as one JSON object whose first line is not whole
            (JSONL's first row would be).
    """
    if _first_line_is_json(path):
        return
    try:
        if path.suffix.lower() != ".gz" and path.stat().st_size > JSON_OBJECT_MAX_BYTES:
            return  # not parsed whole: read as JSONL, whose rows then say what is wrong
        with _open_text(path) as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return  # not one JSON value: JSONL with bad rows, reported per line
    if not isinstance(data, dict):
        return
    head = f"{path} holds one JSON object, not an array of rows or one object per line"
    arrays = [(key, len(value)) for key, value in data.items() if isinstance(value, list)]
    if not arrays:
        keys = ", ".join(list(map(str, data))[:10])
        raise SettingsError(f"{head} (its keys: {keys}), and none of them holds an array")
    key, count = max(arrays, key=lambda pair: pair[1])
    raise SettingsError(
        f"{head}; its key {key!r} holds an array of {count} item(s): extract it into its own "
        f"file (e.g. jq '.{key}' {path.name} > rows.json) and pass that file"
    )


def _first_char(path: Path) -> str | None:
    try:
        with _open_text(path) as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
    except (OSError, UnicodeDecodeError):
        return None  # the reader reports the problem, with the line
    return head[:1] or None


def _open_text(path: Path, newline: str | None = None, errors: str = "strict") -> IO[str]:
    """The file as text. With `errors="surrogateescape"` an undecodable byte becomes a lone
    surrogate (U+DC80..U+DCFF) that the reader finds in the row it belongs to."""
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(
            gzip.open(path, "rb"), encoding="utf-8-sig", newline=newline, errors=errors
        )
    return open(path, encoding="utf-8-sig", newline=newline, errors=errors)


_UNDECODED = re.compile("[\udc80-\udcff]")


def undecoded_line(text: str, first_line: int) -> int | None:
    """The line of the first undecodable byte in `text` (which starts at `first_line`)."""
    match = _UNDECODED.search(text)
    if match is None:
        return None
    return first_line + text.count("\n", 0, match.start())


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def count_rows(path: Path, fmt: InputFormat) -> int | None:
    """A quick row count for the progress bar's total and ETA; None when not cheap."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq  # the `data` extra

            return int(pq.ParquetFile(path).metadata.num_rows)
        if path.suffix.lower() == ".gz" or fmt == "json":
            return None
        newlines, last = 0, b"\n"
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
        lines = newlines + (last != b"\n")
        return max(lines - 1, 0) if fmt in ("csv", "tsv") else lines
    except (OSError, ImportError, ValueError):
        return None


def read_items(
    path: Path,
    fmt: InputFormat,
    fields: FieldMap,
    *,
    source: str,
    max_chars: int,
    on_raw: Callable[[Any], None] | None = None,
) -> Iterator[ReadResult]:
    """The rows of one input file, validated, in file order (`on_raw` sees each row as
    read, before validation)."""
    converter = RowConverter(fields, source=source, max_chars=max_chars)
    readers = {
        "jsonl": _jsonl_rows,
        "json": _json_array_rows,
        "csv": _csv_rows,
        "tsv": _csv_rows,
        "parquet": _parquet_rows,
    }
    line = 0
    try:
        for line, value in readers[fmt](path, converter, fmt):
            if isinstance(value, InputRowError):
                yield value
                continue
            if on_raw is not None:
                on_raw(value)
            try:
                yield converter.convert(value, line)
            except InputRowError as exc:
                yield exc
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        where = f" after line {line}" if line else ""  # e.g. a truncated .gz: rows read stay
        yield InputRowError(
            f"cannot read the file{where}: {type(exc).__name__}: {exc}",
            source=source,
            line=line + 1 if line else None,
            kind="unreadable_file",
        )


RowStream = Iterator[tuple[int, Any]]


def _jsonl_rows(path: Path, converter: RowConverter, _fmt: str) -> RowStream:
    with _open_binary(path) as handle:
        for line, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    line,
                    converter.error(
                        f"is not valid UTF-8 ({exc.reason} at byte {exc.start})",
                        line=line,
                        kind="malformed",
                        row=raw.decode("utf-8", errors="replace"),
                    ),
                )
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield (
                    line,
                    converter.error(
                        f"is not valid JSON: {exc.msg} (column {exc.colno})",
                        line=line,
                        kind="malformed",
                        row=text.rstrip("\r\n"),
                    ),
                )
                continue
            yield line, value


def _json_array_rows(path: Path, converter: RowConverter, _fmt: str) -> RowStream:
    with _open_text(path, errors="surrogateescape") as handle:
        try:
            for element in JsonArrayReader(handle):
                bad_line = undecoded_line(element.text, element.line)
                if bad_line is not None:
                    yield (
                        element.line,
                        converter.error(
                            f"is not valid UTF-8 (an undecodable byte on line {bad_line})",
                            line=bad_line,
                            kind="malformed",
                            row=printable(element.text),
                        ),
                    )
                    continue
                try:
                    value = json.loads(element.text)
                except json.JSONDecodeError as exc:
                    yield (
                        element.line,
                        converter.error(
                            f"the array element is not valid JSON: {exc.msg}",
                            line=element.line + exc.lineno - 1,
                            kind="malformed",
                            row=element.text,
                        ),
                    )
                    continue
                yield element.line, value
        except JsonArrayError as exc:
            yield (
                exc.line,
                InputRowError(
                    f"cannot read the rest of the file: {exc}",
                    source=converter.source,
                    line=exc.line,
                    kind="unreadable_file",
                ),
            )


def _csv_rows(path: Path, converter: RowConverter, fmt: str) -> RowStream:
    """CSV/TSV records, read so that one bad record costs only itself.

    Python's csv reader parses the lines; the line source under it knows which physical
    lines each record took. A record over several lines is checked strictly: a quote that
    is never closed (or closes a field with no delimiter after it), or the wrong number of
    fields, is the sign of a stray quote that swallowed the lines after it: the record's
    first line fails and reading goes on at the line after it, so the swallowed rows are
    read as the rows they are. A record over `CSV_MAX_RECORD_CHARS` is taken for the same.
    An undecodable byte fails only the record holding it.
    """
    _raise_csv_field_limit()
    delimiter = "\t" if fmt == "tsv" else ","
    with _open_text(path, newline="", errors="surrogateescape") as handle:
        source = _LineSource(handle)
        reader = csv.reader(source, delimiter=delimiter)
        names, problem = _next_record(reader, source, delimiter)
        if names is None and problem is None:
            names, problem = None, "the CSV file is empty: it has no header row"
        elif problem is None and source.undecodable() is not None:
            problem = f"it is not valid UTF-8 (an undecodable byte on line {source.line})"
        if names is None or problem is not None:
            yield (
                source.line,
                InputRowError(
                    problem
                    if names is None and not source.lines
                    else f"cannot read the header row: {problem}",
                    source=converter.source,
                    line=source.line,
                    kind="unreadable_file",
                ),
            )
            return
        width = len(names)
        while True:
            fields, problem = _next_record(reader, source, delimiter)
            if fields is None and problem is None:
                return
            if problem is not None:  # the reader may be mid-record: start afresh
                reader = csv.reader(source, delimiter=delimiter)
            elif fields is not None and len(fields) != width:
                if len(source.lines) > 1 or len(fields) > width:
                    problem = f"it has {len(fields)} fields, the header has {width}"
                else:  # a short row: the missing cells are missing values
                    fields = fields + [""] * (width - len(fields))
            line = source.line
            if problem is not None and len(source.lines) > 1:
                problem += (
                    f"; its quoted field runs from line {line} to line {source.lines[-1][0]} "
                    f"(an unclosed quote?); reading goes on at line {line + 1}"
                )
                text = "".join(t for _, t in source.lines)
                source.push_back(source.lines[1:])
            else:
                text = "".join(t for _, t in source.lines)
                bad = source.undecodable()
                if problem is None and bad is not None:
                    line = bad
                    problem = f"it is not valid UTF-8 (an undecodable byte on line {bad})"
            if problem is not None or fields is None:
                yield (
                    line,
                    converter.error(
                        f"is not valid CSV: {problem}",
                        line=line,
                        kind="malformed",
                        row=printable(text),
                    ),
                )
                continue
            yield line, _csv_row(dict(zip(names, fields, strict=True)), line, converter)


def _next_record(
    reader: Any, source: _LineSource, delimiter: str
) -> tuple[list[str] | None, str | None]:
    """The next non-blank record's fields, or what is wrong with it; (None, None) at the
    end. `source.lines` are the lines it took."""
    while True:
        source.start_record()
        try:
            fields = next(reader)
        except StopIteration:
            if source.lines:  # a quote still open at the end of the file
                return None, f"a quoted field that starts on line {source.line} is never closed"
            return None, None
        except _RecordTooLongError:
            return None, (
                f"a quoted field that starts on line {source.line} runs over "
                f"{CSV_MAX_RECORD_CHARS} characters"
            )
        except csv.Error as exc:
            source.lines = source.lines or [(source.last_line, "")]
            return None, str(exc)
        if not fields:  # a blank line
            continue
        if len(source.lines) > 1:
            text = "".join(t for _, t in source.lines)
            try:  # strict: a quote must close a field, and the record must end
                list(csv.reader(io.StringIO(text), delimiter=delimiter, strict=True))
            except csv.Error as exc:
                if "unexpected end of data" in str(exc):
                    return (
                        fields,
                        f"a quoted field that starts on line {source.line} is never closed",
                    )
                return fields, str(exc)
        return fields, None


def _csv_row(record: dict[str, str], line: int, converter: RowConverter) -> Any:
    """The row of one CSV record (an empty cell is a missing value: CSV cannot say null);
    a messages column holding a JSON list is parsed."""
    row: dict[str, Any] = {k: v for k, v in record.items() if v != ""}
    messages = row.get(converter.fields.messages)
    if isinstance(messages, str) and messages.lstrip().startswith("["):
        try:
            row[converter.fields.messages] = json.loads(messages)
        except json.JSONDecodeError as exc:
            return converter.error(
                f"holds text that is not a valid JSON list of messages: {exc.msg}",
                line=line,
                field=converter.fields.messages,
                kind="malformed",
                row=preview(messages),
            )
    return row


CSV_MAX_RECORD_CHARS = 8 << 20
"""A record longer than this is taken for an unclosed quote (memory stays bounded)."""


class _RecordTooLongError(Exception):
    """Raised through the csv reader when a record passes `CSV_MAX_RECORD_CHARS`."""


class _LineSource:
    """The physical lines under a csv reader: numbered, recorded per record, and able to
    be pushed back to be read again."""

    def __init__(self, handle: IO[str]) -> None:
        self._lines = enumerate(handle, start=1)
        self._pending: deque[tuple[int, str]] = deque()
        self.lines: list[tuple[int, str]] = []
        self.last_line = 0
        self._size = 0

    def __iter__(self) -> _LineSource:
        return self

    def __next__(self) -> str:
        item = self._pending.popleft() if self._pending else next(self._lines)
        self.lines.append(item)
        self.last_line = item[0]
        self._size += len(item[1])
        if self._size > CSV_MAX_RECORD_CHARS:
            raise _RecordTooLongError
        return item[1]

    def start_record(self) -> None:
        self.lines = []
        self._size = 0

    @property
    def line(self) -> int:
        """The first line of the current record."""
        return self.lines[0][0] if self.lines else self.last_line + 1

    def push_back(self, lines: list[tuple[int, str]]) -> None:
        """Read these lines again, first, as the start of new records."""
        self._pending.extendleft(reversed(lines))

    def undecodable(self) -> int | None:
        """The line of the current record's first undecodable byte, if it has one."""
        for number, text in self.lines:
            if _UNDECODED.search(text):
                return number
        return None


def printable(text: str) -> str:
    """Text for a failure row: undecodable bytes shown as U+FFFD, cut to a preview."""
    return preview(_UNDECODED.sub("\ufffd", text))


def _raise_csv_field_limit() -> None:
    """Long answers exceed csv's default 128 KiB field limit; --max-chars is the real cap."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def _parquet_rows(path: Path, converter: RowConverter, _fmt: str) -> RowStream:
    try:  # the `data` extra
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SettingsError(
            "reading Parquet needs pyarrow: pip install 'refine-n-judge[data]'"
        ) from exc
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        yield (
            0,
            InputRowError(
                f"cannot read the file as Parquet: {exc}",
                source=converter.source,
                kind="unreadable_file",
            ),
        )
        return
    wanted = {name.split(".")[0] for name in converter.fields.model_dump().values()}
    columns = [name for name in parquet.schema_arrow.names if name in wanted] or None
    line = 0
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
            for row in batch.to_pylist():
                line += 1
                yield line, row
    except (pa.ArrowException, OSError) as exc:
        yield (
            line + 1,
            InputRowError(
                f"cannot read the rest of the file as Parquet: {exc}",
                source=converter.source,
                line=line + 1,
                kind="unreadable_file",
            ),
        )
