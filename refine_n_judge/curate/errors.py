"""The errors of the `curate` command.

Two families: `SettingsError` (the command cannot start: the CLI prints one line and exits
with code 2 before any model call) and `InputRowError` (one input row is bad: it becomes a
row of failures.jsonl and the run goes on).
"""

from __future__ import annotations


class CurateError(Exception):
    """Base class of every error the `curate` command raises on purpose."""


class SettingsError(CurateError):
    """A setting, an input path or the output directory makes the run impossible."""


class SettingsMismatchError(SettingsError):
    """The output directory holds a run made with other settings."""


class OutputCorruptError(SettingsError):
    """An output file is damaged somewhere other than its last line (which resume repairs)."""


class OutputWriteError(CurateError):
    """An output file could not be written (disk full, permissions): the run stops."""


class InputRowError(CurateError):
    """One input row (or a whole input file) cannot be turned into an item.

    `source` is the input file, `line` the 1-based line (JSONL, JSON, CSV) or row number
    (Parquet), `field` the field at fault when there is one. `raw` keeps the offending text,
    cut to a few hundred characters, so the failure row shows what was read.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str,
        line: int | None = None,
        field: str | None = None,
        item_id: str | None = None,
        raw: str | None = None,
        kind: str = "invalid",
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        self.item_id = item_id
        self.raw = raw
        self.kind = kind
        super().__init__(self.describe())

    @property
    def location(self) -> str:
        """`file:line` (or just the file when the whole file is at fault)."""
        return self.source if self.line is None else f"{self.source}:{self.line}"

    def describe(self) -> str:
        """One line naming the file, line and field, then what is wrong."""
        where = self.location
        if self.field:
            where += f": field {self.field!r}"
        return f"{where}: {self.message}"
