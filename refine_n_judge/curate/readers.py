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
import sys
from collections.abc import Iterator
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
        return "jsonl"
    return found


def _first_char(path: Path) -> str | None:
    try:
        with _open_text(path) as handle:
            head = handle.read(4096).lstrip("\ufeff \t\r\n")
    except (OSError, UnicodeDecodeError):
        return None  # the reader reports the problem, with the line
    return head[:1] or None


def _open_text(path: Path, newline: str | None = None) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline=newline)
    return open(path, encoding="utf-8-sig", newline=newline)


def _open_binary(path: Path) -> IO[bytes]:
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def count_rows(path: Path, fmt: InputFormat) -> int | None:
    """A quick row count for the progress bar's total and ETA; None when not cheap."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

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
    path: Path, fmt: InputFormat, fields: FieldMap, *, source: str, max_chars: int
) -> Iterator[ReadResult]:
    """The rows of one input file, validated, in file order."""
    converter = RowConverter(fields, source=source, max_chars=max_chars)
    readers = {
        "jsonl": _jsonl_rows,
        "json": _json_array_rows,
        "csv": _csv_rows,
        "tsv": _csv_rows,
        "parquet": _parquet_rows,
    }
    try:
        for line, value in readers[fmt](path, converter, fmt):
            if isinstance(value, InputRowError):
                yield value
                continue
            try:
                yield converter.convert(value, line)
            except InputRowError as exc:
                yield exc
    except (OSError, UnicodeDecodeError, EOFError, csv.Error) as exc:
        yield InputRowError(
            f"cannot read the file: {type(exc).__name__}: {exc}",
            source=source,
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
    with _open_text(path) as handle:
        try:
            for element in JsonArrayReader(handle):
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
    _raise_csv_field_limit()
    with _open_text(path, newline="") as handle:
        reader = csv.DictReader(handle, delimiter="\t" if fmt == "tsv" else ",")
        if reader.fieldnames is None:
            yield (
                1,
                InputRowError(
                    "the CSV file is empty: it has no header row",
                    source=converter.source,
                    line=1,
                    kind="unreadable_file",
                ),
            )
            return
        header_width = len(reader.fieldnames)
        end_of_previous = reader.line_num
        while True:
            line = end_of_previous + 1
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                end_of_previous = reader.line_num
                yield line, converter.error(f"is not valid CSV: {exc}", line=line, kind="malformed")
                continue
            end_of_previous = reader.line_num
            if None in record:
                extra = record.pop(None)  # type: ignore[call-overload]
                yield (
                    line,
                    converter.error(
                        f"has {header_width + len(extra)} fields, the header has {header_width}",
                        line=line,
                        kind="malformed",
                        row=record,
                    ),
                )
                continue
            # An empty cell is a missing value (CSV cannot say null).
            row: dict[str, Any] = {k: v for k, v in record.items() if v not in (None, "")}
            messages = row.get(converter.fields.messages)
            if isinstance(messages, str) and messages.lstrip().startswith("["):
                try:
                    row[converter.fields.messages] = json.loads(messages)
                except json.JSONDecodeError as exc:
                    yield (
                        line,
                        converter.error(
                            f"holds text that is not a valid JSON list of messages: {exc.msg}",
                            line=line,
                            field=converter.fields.messages,
                            kind="malformed",
                            row=preview(messages),
                        ),
                    )
                    continue
            yield line, row


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
    try:
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
