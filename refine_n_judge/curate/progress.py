"""What a running `curate` shows: a live bar, plain lines, JSON events, or nothing.

- `text` on a terminal: a rich progress bar (items done/failed, accepted refinements, mean
  chain length, tokens, rate, ETA), then a summary table.
- `text` elsewhere (a log file, CI): one plain progress line every few seconds.
- `json`: one JSON object per line on stderr (`start`, `input_error`, `item`, `progress`,
  `summary`), for batch jobs and log shippers.
- `--quiet`: nothing but errors.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from refine_n_judge.curate.errors import InputRowError

MAX_PRINTED_INPUT_ERRORS = 20
PLAIN_INTERVAL_SECONDS = 10.0
JSON_PROGRESS_INTERVAL_SECONDS = 10.0
DEFAULT_TITLE = "refine-n-judge curate"


@dataclass
class Counters:
    """Live counts of this invocation (`skipped`: already done by an earlier one)."""

    total: int | None = None
    skipped: int = 0
    succeeded: int = 0
    failed: int = 0
    input_errors: int = 0
    accepted_refinements: int = 0
    tokens: int = 0
    stalled_seconds: float = 0.0
    """How long model calls have waited with no reply (0 unless long enough to show)."""
    started: float = field(default_factory=time.monotonic)

    @property
    def processed(self) -> int:
        """Items finished by this invocation (succeeded or failed)."""
        return self.succeeded + self.failed

    @property
    def completed(self) -> int:
        """Input rows accounted for, including those skipped as done."""
        return self.processed + self.skipped

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Items per second in this invocation."""
        return self.processed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mean_chain_length(self) -> float | None:
        """Mean accepted refinements per item finished in this invocation."""
        return self.accepted_refinements / self.succeeded if self.succeeded else None

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate, when the total is known."""
        if self.total is None or self.rate <= 0:
            return None
        return max(self.total - self.completed, 0) / self.rate

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON events."""
        return {
            "total": self.total,
            "skipped": self.skipped,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "input_errors": self.input_errors,
            "accepted_refinements": self.accepted_refinements,
            "mean_chain_length": _round(self.mean_chain_length),
            "tokens": self.tokens,
            "items_per_second": _round(self.rate),
            "eta_seconds": _round(self.eta_seconds),
            "elapsed_seconds": _round(self.elapsed),
            "no_reply_seconds": round(self.stalled_seconds),
        }

    def line(self, *, with_done: bool = True) -> str:
        """One line of text for the plain progress and the bar's description."""
        done = f"{self.completed}" + (f"/{self.total}" if self.total is not None else "")
        mean = self.mean_chain_length
        parts = [f"done {done}"] if with_done else []
        parts += [
            f"failed {self.failed}",
            f"accepted {self.accepted_refinements}",
            f"mean chain {mean:.2f}" if mean is not None else "mean chain -",
            f"tokens {_human(self.tokens)}",
            f"{self.rate:.1f} items/s",
        ]
        eta = self.eta_seconds
        if eta is not None:
            parts.append(f"ETA {_clock(eta)}")
        if self.stalled_seconds:
            parts.append(f"no reply for {self.stalled_seconds:.0f} s")
        return " · ".join(parts)


class Reporter(Protocol):
    """Receives the run's events."""

    def start(self, counters: Counters, message: str) -> None: ...
    def note(self, message: str) -> None: ...
    def input_error(self, error: InputRowError) -> None: ...
    def item(self, counters: Counters, event: dict[str, Any]) -> None: ...
    def tick(self, counters: Counters) -> None: ...
    def finish(self, counters: Counters, summary: dict[str, Any]) -> None: ...


class QuietReporter:
    """Shows nothing."""

    def start(self, counters: Counters, message: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def input_error(self, error: InputRowError) -> None:
        pass

    def item(self, counters: Counters, event: dict[str, Any]) -> None:
        pass

    def tick(self, counters: Counters) -> None:
        pass

    def finish(self, counters: Counters, summary: dict[str, Any]) -> None:
        pass


class JsonLogReporter:
    """One JSON object per line: every item, every input error, progress every 10 s."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._last_progress = time.monotonic()

    def _emit(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self.stream.write(json.dumps(record, default=str) + "\n")
        self.stream.flush()

    def start(self, counters: Counters, message: str) -> None:
        self._emit("start", message=message, **counters.as_dict())

    def note(self, message: str) -> None:
        self._emit("note", message=message)

    def input_error(self, error: InputRowError) -> None:
        self._emit(
            "input_error",
            source=error.source,
            line=error.line,
            field=error.field,
            kind=error.kind,
            message=error.describe(),
        )

    def item(self, counters: Counters, event: dict[str, Any]) -> None:
        self._emit("item", **event)
        if time.monotonic() - self._last_progress >= JSON_PROGRESS_INTERVAL_SECONDS:
            self._last_progress = time.monotonic()
            self._emit("progress", **counters.as_dict())

    def tick(self, counters: Counters) -> None:
        """Every second: a progress event every 10 s while model calls get no reply."""
        if counters.stalled_seconds and (
            time.monotonic() - self._last_progress >= JSON_PROGRESS_INTERVAL_SECONDS
        ):
            self._last_progress = time.monotonic()
            self._emit("progress", **counters.as_dict())

    def finish(self, counters: Counters, summary: dict[str, Any]) -> None:
        self._emit("summary", this_run=counters.as_dict(), **summary)


class PlainReporter:
    """Plain lines on stderr: notes, the first input errors, progress every 10 s."""

    def __init__(self, stream: TextIO | None = None, *, title: str = DEFAULT_TITLE) -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self._printed_errors = 0
        self._last = time.monotonic()

    def _print(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def start(self, counters: Counters, message: str) -> None:
        self._print(message)

    def note(self, message: str) -> None:
        self._print(message)

    def input_error(self, error: InputRowError) -> None:
        self._printed_errors += 1
        if self._printed_errors <= MAX_PRINTED_INPUT_ERRORS:
            self._print(f"input error: {error.describe()}")
        elif self._printed_errors == MAX_PRINTED_INPUT_ERRORS + 1:
            self._print("input error: more bad rows; all are in failures.jsonl")

    def item(self, counters: Counters, event: dict[str, Any]) -> None:
        if time.monotonic() - self._last >= PLAIN_INTERVAL_SECONDS:
            self._last = time.monotonic()
            self._print(counters.line())

    def tick(self, counters: Counters) -> None:
        """Every second: the progress line every 10 s while model calls get no reply."""
        if counters.stalled_seconds and time.monotonic() - self._last >= PLAIN_INTERVAL_SECONDS:
            self._last = time.monotonic()
            self._print(counters.line())

    def finish(self, counters: Counters, summary: dict[str, Any]) -> None:
        self._print(counters.line())
        print_summary(summary, None, title=self.title)


class RichReporter(PlainReporter):
    """A live progress bar on the terminal, and a summary table at the end."""

    def __init__(self, *, title: str = DEFAULT_TITLE) -> None:
        super().__init__(title=title)
        self.console = Console(stderr=True)
        self.progress = Progress(
            SpinnerColumn(),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: Any = None

    def _print(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def start(self, counters: Counters, message: str) -> None:
        self._print(message)
        self.progress.start()
        self.task = self.progress.add_task(
            counters.line(with_done=False), total=counters.total, completed=counters.completed
        )

    def item(self, counters: Counters, event: dict[str, Any]) -> None:
        self.progress.update(
            self.task,
            completed=counters.completed,
            total=counters.total,
            description=counters.line(with_done=False),
        )

    def tick(self, counters: Counters) -> None:
        self.item(counters, {})

    def finish(self, counters: Counters, summary: dict[str, Any]) -> None:
        if self.task is not None:
            self.progress.update(
                self.task, completed=counters.completed, description=counters.line(with_done=False)
            )
        self.progress.stop()
        print_summary(summary, self.console, title=self.title)


def make_reporter(*, quiet: bool, log_format: str, title: str = DEFAULT_TITLE) -> Reporter:
    """The reporter for these flags (rich only on a terminal)."""
    if quiet:
        return QuietReporter()
    if log_format == "json":
        return JsonLogReporter()
    if sys.stderr.isatty():
        return RichReporter(title=title)
    return PlainReporter(title=title)


def print_summary(summary: dict[str, Any], console: Any, *, title: str = DEFAULT_TITLE) -> None:
    """The end-of-run table (rich when a console is given, plain text otherwise)."""
    rows: list[tuple[str, str]] = [(str(k), _cell(v)) for k, v in summary.items()]
    if console is not None:
        table = Table(title=title, show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        for key, value in rows:
            table.add_row(key, value)
        console.print(table)
        return
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        sys.stderr.write(f"  {key.ljust(width)}  {value}\n")
    sys.stderr.flush()


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "-"
    return str(value)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _human(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
