"""The output directory remembers its input: `OUT/inputs.json`.

It holds the input files (absolute path, format, size) and a fingerprint of every row, by
record key (the item id; `file:line` for a bad or duplicate row): the sha256 of the row's
content fields as the graph gets them (not its line, which moves when rows are added above
it). Before a run, the input is read once and compared with the record for every row the
directory already holds a result for: a changed row, a row gone from the input or other
input files refuse the run like a changed setting (`SettingsMismatchError`) unless
`--force`, which redoes the changed rows. A bad row that was fixed or changed is no such
change: its failure row is retired and the row read again (it cost no model call). Rows
added to an input, and input files added to the command, are new items, not a change.
The same pass checks the field flags against the first rows of each file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from refine_n_judge.curate.checks import InputFile
from refine_n_judge.curate.errors import InputRowError, SettingsError, SettingsMismatchError
from refine_n_judge.curate.outputs import OutputDir, atomic_write_text
from refine_n_judge.curate.readers import read_items
from refine_n_judge.curate.records import InputItem
from refine_n_judge.curate.rows import FieldMap

RECORD = "inputs.json"
FIELD_CHECK_ROWS = 100
"""A field flag no row among the first this many of a file has is refused."""
DETACHED = "-"
"""The fingerprint of a done row that left the input and was kept with --force."""
SHOWN_IDS = 5
_NOT_CONTENT = {"source", "line"}


class InputFileRecord(BaseModel):
    """One input file as a run saw it."""

    path: str
    format: str
    size: int | None = None


class InputRecord(BaseModel):
    """The contents of inputs.json."""

    files: list[InputFileRecord]
    items: dict[str, str] = Field(default_factory=dict)


def fingerprint_item(item: InputItem) -> str:
    """The sha256 (hex, 32 digits) of the content the graph gets for this row."""
    payload = item.model_dump_json(exclude=_NOT_CONTENT)  # fields in declaration order
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


BAD_ROW_PREFIX = "e:"


def fingerprint_error(error: InputRowError) -> str:
    """The fingerprint of a bad row (`e:` and the hash of its text and what is wrong)."""
    payload = json.dumps([error.message, error.field, error.raw], ensure_ascii=False)
    return BAD_ROW_PREFIX + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:30]


@dataclass
class _FieldSeen:
    """Which field names the first rows of one file have."""

    rows: int = 0
    names: set[str] = field(default_factory=set)
    found: set[str] = field(default_factory=set)


@dataclass
class InputCheck:
    """What reading the input found, compared with the directory's record."""

    record: InputRecord
    changed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)
    bad_rows_redone: list[str] = field(default_factory=list)
    """Failures of bad rows that were fixed or changed: read again, no model call lost."""
    files_before: list[str] | None = None

    @property
    def differs(self) -> bool:
        return bool(self.changed or self.gone or self.files_before is not None)

    def describe(self) -> str:
        parts = []
        if self.files_before is not None:
            now = [f.path for f in self.record.files]
            parts.append(f"the input files were {self.files_before}, now {now}")
        if self.changed:
            parts.append(
                f"{len(self.changed)} row(s) changed since they were done "
                f"(first ids: {', '.join(self.changed[:SHOWN_IDS])})"
            )
        if self.gone:
            parts.append(
                f"{len(self.gone)} done row(s) are not in the input any more "
                f"(first ids: {', '.join(self.gone[:SHOWN_IDS])})"
            )
        return "; ".join(parts)


def read_input(files: list[InputFile], *, fields: FieldMap, max_chars: int) -> InputRecord:
    """Fingerprint every row of the inputs, read with `fields` and `max_chars` (keys as the
    runner makes them); check the field flags the user changed against the first rows of
    each file.

    Raises:
        SettingsError: a changed field flag names a field none of a file's first rows has.
    """
    items: dict[str, str] = {}
    changed_fields = _changed_fields(fields)
    for file in files:
        seen = _FieldSeen()

        def observe(raw: Any, seen: _FieldSeen = seen) -> None:
            if seen.rows >= FIELD_CHECK_ROWS:
                return
            seen.rows += 1
            if isinstance(raw, Mapping):
                seen.names.update(str(k) for k in raw)
                seen.found.update(n for n in changed_fields if _has_field(raw, n))

        for row in read_items(
            file.path,
            file.format,
            fields,
            source=file.display,
            max_chars=max_chars,
            on_raw=observe if changed_fields else None,
        ):
            if isinstance(row, InputRowError):
                items.setdefault(row.location, fingerprint_error(row))
            elif row.id in items:  # a duplicate id: the runner keys it by its place
                items.setdefault(f"{row.source}:{row.line}", fingerprint_item(row))
            else:
                items[row.id] = fingerprint_item(row)
        _check_fields(file, fields, changed_fields, seen)
    return InputRecord(files=[_file_record(f) for f in files], items=items)


def _changed_fields(fields: FieldMap) -> dict[str, str]:
    """Field name -> flag, for the field flags set to something other than the default."""
    default = FieldMap()
    return {
        getattr(fields, name): f"--{name}-field"
        for name in FieldMap.model_fields
        if getattr(fields, name) != getattr(default, name)
    }


def _has_field(row: Mapping[str, Any], name: str) -> bool:
    if name in row:
        return True
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return False
        value = value[part]
    return True


def _check_fields(
    file: InputFile, fields: FieldMap, changed: dict[str, str], seen: _FieldSeen
) -> None:
    missing = [name for name in changed if name not in seen.found]
    if not missing or seen.rows == 0:
        return
    name = missing[0]
    has = ", ".join(sorted(seen.names)[:12]) or "none"
    raise SettingsError(
        f"invalid {changed[name]} {name!r}: none of the first {seen.rows} rows of "
        f"{file.display} has that field (their fields: {has})"
    )


def _file_record(file: InputFile) -> InputFileRecord:
    try:
        size: int | None = file.path.stat().st_size
    except OSError:
        size = None
    return InputFileRecord(path=str(file.path.resolve()), format=file.format, size=size)


def load_record(outputs: OutputDir) -> InputRecord | None:
    """The directory's inputs.json, or None (a new directory, or one made before it)."""
    path = outputs.path / RECORD
    if not path.exists():
        return None
    try:
        return InputRecord.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None  # unreadable: rewritten after this run's check, nothing to compare


def compare(outputs: OutputDir, current: InputRecord) -> InputCheck:
    """The rows the directory holds a result for that differ from the current input."""
    check = InputCheck(record=current)
    before = load_record(outputs)
    if before is None:
        return check
    old_paths = [f.path for f in before.files]
    new_paths = {f.path for f in current.files}
    if any(path not in new_paths for path in old_paths):  # an added file is new rows only
        check.files_before = old_paths
    for key in outputs.committed_keys():
        old = before.items.get(key)
        new = current.items.get(key)
        if old == DETACHED and new is None:
            check.detached.append(key)
        if old is None or old == DETACHED:
            continue
        if old.startswith(BAD_ROW_PREFIX) and new != old:
            check.bad_rows_redone.append(key)
            continue
        if new is None:
            check.gone.append(key)
        elif new != old:
            check.changed.append(key)
    return check


def check_input(
    outputs: OutputDir, files: list[InputFile], *, fields: FieldMap, max_chars: int, force: bool
) -> InputCheck:
    """Read the input (as `read_input`) and compare it with the directory's record.

    Raises:
        SettingsMismatchError: the input differs and `force` (--force) is not given.
        SettingsError: a field flag names a field the input does not have.
    """
    check = compare(outputs, read_input(files, fields=fields, max_chars=max_chars))
    if check.differs and not force:
        raise SettingsMismatchError(
            f"{outputs.path} was made from other input: {check.describe()}; rerun with the "
            "same input to resume, use another --out, or pass --force to redo the changed "
            "rows"
        )
    return check


def apply_input(outputs: OutputDir, check: InputCheck) -> int:
    """Take the results of changed rows out (--force) and save the record; rows redone."""
    dropped = outputs.drop_items({*check.changed, *check.bad_rows_redone})
    record = check.record
    for key in [*check.gone, *check.detached]:  # kept with --force: no longer compared
        record.items[key] = DETACHED
    atomic_write_text(outputs.path / RECORD, record.model_dump_json() + "\n")
    return dropped
