"""Readers for labelled answer pairs: PandaLM, LLMBar, JudgeBench and a plain JSONL.

Every layout becomes a `LabelledPair`: a question, answers `a` and `b` in the file's
order, and which one people preferred (`a`, `b` or `tie`). The layout is detected from the
first row's fields or chosen with `--format`; the file may be JSONL or a JSON array
(`.json`, read element by element). A row that cannot be used becomes an `InputRowError`
naming the file, the line and the field (as in `curate`), and the others are still read.

- pandalm: `instruction`, `input`, `response1`, `response2`, `annotator1..3` (1, 2, or 0 for
  a tie); the label is the annotators' majority.
- llmbar: `input`, `output_1`, `output_2`, `label` (1 or 2).
- judgebench: `question`, `response_A`, `response_B`, `label` (`A>B`, `B>A`, or `A=B`).
- plain: `question`, `better`, `worse`, optional `reference` and `id`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from refine_n_judge.curate.errors import InputRowError, SettingsError
from refine_n_judge.curate.json_stream import JsonArrayError, JsonArrayReader
from refine_n_judge.curate.readers import printable, undecoded_line

PairFormat = Literal["pandalm", "llmbar", "judgebench", "plain"]
PAIR_FORMATS: tuple[PairFormat, ...] = ("pandalm", "llmbar", "judgebench", "plain")
Side = Literal["a", "b", "tie"]

# The fields that tell a layout apart (all must be present in the first row).
_SIGNATURES: dict[PairFormat, frozenset[str]] = {
    "pandalm": frozenset({"response1", "response2"}),
    "llmbar": frozenset({"output_1", "output_2"}),
    "judgebench": frozenset({"response_A", "response_B"}),
    "plain": frozenset({"better", "worse"}),
}
_ID_FIELDS: dict[PairFormat, tuple[str, ...]] = {
    "pandalm": ("idx", "id"),
    "llmbar": ("id",),
    "judgebench": ("pair_id", "id"),
    "plain": ("id",),
}
_PANDALM_LABELS: dict[object, Side] = {1: "a", 2: "b", 0: "tie"}
_LLMBAR_LABELS: dict[object, Side] = {1: "a", 2: "b"}
_JUDGEBENCH_LABELS: dict[object, Side] = {"A>B": "a", "B>A": "b", "A=B": "tie"}


class LabelledPair(BaseModel):
    """Two answers to one question and the people's verdict on them."""

    id: str
    question: str = Field(min_length=1)
    a: str = Field(description="The first answer, in the file's order.")
    b: str = Field(description="The second answer.")
    label: Side = Field(description="Which answer people preferred (the majority).")
    reference: str | None = None
    annotators: list[Side] = Field(
        default_factory=list, description="Each person's verdict, when the file has them."
    )
    has_sides: bool = Field(
        default=True,
        description=(
            "False when the layout always puts the better answer first (plain), so a "
            "chance-corrected agreement with people means nothing."
        ),
    )
    source: str
    line: int

    @property
    def unanimous(self) -> bool:
        """Every annotator gave the label (a single label counts as unanimous)."""
        return all(a == self.label for a in self.annotators)

    @property
    def better(self) -> str:
        """The preferred answer (a non-tie pair only)."""
        if self.label == "tie":
            raise ValueError(f"pair {self.id} is a tie")
        return self.a if self.label == "a" else self.b

    @property
    def worse(self) -> str:
        """The other answer (a non-tie pair only)."""
        if self.label == "tie":
            raise ValueError(f"pair {self.id} is a tie")
        return self.b if self.label == "a" else self.a


ReadPair = LabelledPair | InputRowError


def detect_pair_format(path: Path, explicit: PairFormat | None = None) -> PairFormat:
    """The layout named by `--format`, else the one the first row's fields show.

    Raises:
        SettingsError: the file is missing, empty, or its first row fits no known layout.
    """
    if not path.is_file():
        raise SettingsError(f"pairs file {path} does not exist")
    if explicit is not None:
        return explicit
    for _, record in iter_records(path, source=str(path)):
        if isinstance(record, InputRowError):
            continue
        keys = set(record)
        for name, signature in _SIGNATURES.items():
            if signature <= keys:
                return name
        raise SettingsError(
            f"cannot tell the layout of {path} from its first row (fields: "
            f"{', '.join(sorted(keys)) or 'none'}); pass --format ({'|'.join(PAIR_FORMATS)})"
        )
    raise SettingsError(f"pairs file {path} holds no readable row")


def read_pairs(path: Path, fmt: PairFormat, *, source: str | None = None) -> Iterator[ReadPair]:
    """The pairs of one file, in file order; bad rows as `InputRowError`s. Ids repeated
    within the file are refused as `duplicate_id` rows."""
    source = source or path.name
    seen: set[str] = set()
    try:
        for line, record in iter_records(path, source=source):
            if isinstance(record, InputRowError):
                yield record
                continue
            try:
                pair = convert_row(record, fmt, source=source, line=line)
            except InputRowError as exc:
                yield exc
                continue
            if pair.id in seen:
                yield InputRowError(
                    f"repeats the id {pair.id!r} of an earlier row; give each row its own id",
                    source=source,
                    line=line,
                    field=_ID_FIELDS[fmt][0],
                    item_id=pair.id,
                    kind="duplicate_id",
                )
                continue
            seen.add(pair.id)
            yield pair
    except (OSError, UnicodeDecodeError) as exc:
        yield InputRowError(
            f"cannot read the file: {type(exc).__name__}: {exc}",
            source=source,
            kind="unreadable_file",
        )


def iter_records(
    path: Path, *, source: str
) -> Iterator[tuple[int, dict[str, Any] | InputRowError]]:
    """(line, JSON object) for each row of a JSONL file or element of a JSON array."""
    # An undecodable byte becomes a lone surrogate that _parse_object reports in its row.
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
        head = handle.read(4096).lstrip(" \t\r\n")
        handle.seek(0)
        if head.startswith("["):
            yield from _array_records(handle, source)
            return
        for line, text in enumerate(handle, start=1):
            if text.strip():
                yield line, _parse_object(text, source, line)


def _array_records(handle: Any, source: str) -> Iterator[tuple[int, Any]]:
    try:
        for element in JsonArrayReader(handle):
            yield element.line, _parse_object(element.text, source, element.line)
    except JsonArrayError as exc:
        yield (
            exc.line,
            InputRowError(
                f"cannot read the rest of the file: {exc}",
                source=source,
                line=exc.line,
                kind="unreadable_file",
            ),
        )


def _parse_object(text: str, source: str, line: int) -> dict[str, Any] | InputRowError:
    bad_line = undecoded_line(text, line)
    if bad_line is not None:
        return InputRowError(
            f"is not valid UTF-8 (an undecodable byte on line {bad_line})",
            source=source,
            line=bad_line,
            raw=printable(text.strip()),
            kind="malformed",
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return InputRowError(
            f"is not valid JSON: {exc.msg} (column {exc.colno})",
            source=source,
            line=line,
            raw=text.strip()[:300],
            kind="malformed",
        )
    if not isinstance(value, dict):
        return InputRowError(
            f"is a JSON {type(value).__name__}, not an object",
            source=source,
            line=line,
            raw=text.strip()[:300],
            kind="malformed",
        )
    return value


def convert_row(record: dict[str, Any], fmt: PairFormat, *, source: str, line: int) -> LabelledPair:
    """One row in layout `fmt` as a `LabelledPair`.

    Raises:
        InputRowError: a field is missing, empty, of the wrong type, or a label is unknown.
    """
    row = _Row(record, source, line, fmt)
    if fmt == "pandalm":
        instruction = row.text("instruction")
        extra = row.text("input", required=False)
        question = f"{instruction}\n\n{extra}" if extra else instruction
        annotators = [
            row.label(name, _PANDALM_LABELS)
            for name in ("annotator1", "annotator2", "annotator3")
            if name in record
        ]
        if not annotators:
            raise row.error(
                "has no annotator labels (annotator1..3)", "annotator1", "missing_field"
            )
        return row.pair(
            question,
            row.answer("response1"),
            row.answer("response2"),
            _majority(row, annotators),
            annotators=annotators,
        )
    if fmt == "llmbar":
        label = row.label("label", _LLMBAR_LABELS)
        return row.pair(row.text("input"), row.answer("output_1"), row.answer("output_2"), label)
    if fmt == "judgebench":
        label = row.label("label", _JUDGEBENCH_LABELS)
        return row.pair(
            row.text("question"), row.answer("response_A"), row.answer("response_B"), label
        )
    return row.pair(
        row.text("question"),
        row.answer("better"),
        row.answer("worse"),
        "a",
        reference=row.text("reference", required=False),
        has_sides=False,
    )


def _majority(row: _Row, annotators: list[Side]) -> Side:
    (top, count), *rest = Counter(annotators).most_common()
    if rest and rest[0][1] == count:
        raise row.error(
            f"the annotators disagree with no majority ({annotators})", "annotator1", "no_majority"
        )
    return top


class _Row:
    """Field access on one raw row, raising errors that name the field."""

    def __init__(self, record: dict[str, Any], source: str, line: int, fmt: PairFormat) -> None:
        self.record, self.source, self.line, self.fmt = record, source, line, fmt

    def error(self, message: str, field: str | None, kind: str) -> InputRowError:
        return InputRowError(
            message,
            source=self.source,
            line=self.line,
            field=field,
            item_id=self.item_id(),
            raw=json.dumps(self.record, ensure_ascii=False, default=str)[:300],
            kind=kind,
        )

    def item_id(self) -> str | None:
        for name in _ID_FIELDS[self.fmt]:
            value = self.record.get(name)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        return None

    def text(self, field: str, *, required: bool = True, blank: bool = False) -> str:
        """A text field; `blank`: an empty string is allowed (an answer a model left
        empty is still an answer people judged)."""
        value = self.record.get(field)
        if value is None:
            if required:
                raise self.error(f"is missing (a {self.fmt} row needs it)", field, "missing_field")
            return ""
        if not isinstance(value, str):
            raise self.error(
                f"must be text, got {type(value).__name__} {value!r:.60}", field, "wrong_type"
            )
        if required and not blank and not value.strip():
            raise self.error("is empty", field, "empty_field")
        return value

    def answer(self, field: str) -> str:
        return self.text(field, blank=True)

    def label(self, field: str, labels: dict[object, Side]) -> Side:
        if field not in self.record:
            raise self.error("is missing (the pair has no label)", field, "missing_field")
        value = self.record[field]
        key = value.strip() if isinstance(value, str) else value
        if isinstance(key, str) and key.isdigit() and int(key) in labels:
            key = int(key)
        if isinstance(key, bool) or key not in labels:
            allowed = ", ".join(repr(k) for k in labels)
            raise self.error(f"is {value!r}; expected one of {allowed}", field, "invalid_label")
        return labels[key]

    def pair(
        self,
        question: str,
        a: str,
        b: str,
        label: Side,
        *,
        annotators: list[Side] | None = None,
        reference: str | None = None,
        has_sides: bool = True,
    ) -> LabelledPair:
        return LabelledPair(
            id=self.item_id() or f"{self.source}:{self.line}",
            question=question,
            a=a,
            b=b,
            label=label,
            reference=reference or None,
            annotators=annotators or [],
            has_sides=has_sides,
            source=self.source,
            line=self.line,
        )
