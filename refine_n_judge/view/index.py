"""An index of a `curate` output folder by byte offsets, built on the fly and extended as the
files grow, so the viewer never reads a whole file to answer a page.

`LineIndex` follows one JSONL file: it remembers where its complete lines start and end and,
on `refresh()`, reads only the bytes appended since (a line still being written, with no
newline yet, waits for the next refresh). A file that shrank or was replaced (curate rewrites
failures.jsonl, sft.jsonl and dpo.jsonl atomically on resume and --retry-failed) is read
afresh. `RunIndex` keeps one `Entry` per item of chains.jsonl and failures.jsonl (what the
list page filters on) and the offsets of each item's sft.jsonl and dpo.jsonl rows.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from refine_n_judge.curate.outputs import CHAINS, DPO, FAILURES, SFT

READ_CHUNK = 1 << 20
STEP_BYTES = 8 << 20
"""Most bytes of each file one request (or one step of the follower) indexes, so a page
answers at once while a large folder is still being read."""
FOLLOW_POLL_SECONDS = 1.0
QUESTION_PREVIEW_CHARS = 200
SEARCH_CHARS = 500
"""Text search matches the id and the first SEARCH_CHARS characters of each question."""

UNREADABLE = "unreadable_line"
"""The kind of an entry whose line is not a JSON object."""

Source = Literal["chains", "failures"]
Status = Literal["all", "ok", "failed"]


@dataclass(frozen=True, slots=True)
class Span:
    """Where one line sits in its file."""

    offset: int
    length: int
    line: int


@dataclass(frozen=True, slots=True)
class Entry:
    """What the list page shows and filters on for one item, and where its row is."""

    source: Source
    span: Span
    id: str
    stop_reason: str | None
    chain_length: int | None
    alternate: bool
    kind: str | None
    question: str
    search: str

    @property
    def failed(self) -> bool:
        """The item has a failures.jsonl row (a bad input row or an unfinished chain)."""
        return self.source == "failures"


class LineIndex:
    """The complete lines of one JSONL file, read incrementally."""

    def __init__(
        self,
        path: Path,
        on_line: Callable[[Span, bytes], None],
        on_reset: Callable[[], None],
    ) -> None:
        self.path = path
        self._on_line = on_line
        self._on_reset = on_reset
        self._identity: tuple[int, int] | None = None
        self._end = 0
        self._lines = 0
        self._size = 0

    @property
    def indexed(self) -> int:
        """Bytes read so far (up to the end of the last complete line)."""
        return self._end

    @property
    def size(self) -> int:
        """The file's size at the last refresh."""
        return self._size

    def refresh(self, budget: int | None = None) -> bool:
        """Read what was appended since the last refresh, at most about `budget` bytes;
        True when every complete line is read. A file that shrank, was replaced or
        disappeared is started afresh: `on_reset` first, then its lines again."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._identity is not None:
                self._forget()
            self._size = 0
            return True
        identity = (stat.st_dev, stat.st_ino)
        if self._identity is not None and (identity != self._identity or stat.st_size < self._end):
            self._forget()
        self._identity = identity
        self._size = stat.st_size
        if stat.st_size > self._end:
            return self._read_from(self._end, budget)
        return True

    def restart(self) -> None:
        """Forget every line: the next refresh reads the file from its first byte."""
        self._forget()

    def _forget(self) -> None:
        self._identity = None
        self._end = 0
        self._lines = 0
        self._on_reset()

    def _read_from(self, start: int, budget: int | None) -> bool:
        with open(self.path, "rb") as handle:
            handle.seek(start)
            offset = start
            pending = b""
            while chunk := handle.read(READ_CHUNK):
                data = pending + chunk
                cut = data.rfind(b"\n") + 1
                pending = data[cut:]
                for line in data[:cut].splitlines(keepends=True):
                    self._lines += 1
                    if line.strip():
                        self._on_line(Span(offset, len(line), self._lines), line)
                    offset += len(line)
                self._end = offset
                if budget is not None and offset - start >= budget:
                    return False
        return True

    def read(self, span: Span) -> bytes:
        """The bytes of one indexed line (empty if the file is gone since its refresh)."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(span.offset)
                return handle.read(span.length)
        except FileNotFoundError:
            return b""


def _preview(text: str) -> str:
    flat = " ".join(text[: QUESTION_PREVIEW_CHARS * 2].split())
    if len(flat) > QUESTION_PREVIEW_CHARS or len(text) > QUESTION_PREVIEW_CHARS * 2:
        return flat[:QUESTION_PREVIEW_CHARS] + "…"
    return flat


def _entry(source: Source, span: Span, line: bytes, file_name: str) -> Entry:
    """The index entry of one row; an unreadable line becomes an entry saying so."""
    try:
        row = orjson.loads(line)
        if not isinstance(row, dict):
            raise ValueError("the line is not a JSON object")
    except ValueError as exc:
        where = f"{file_name}:{span.line}"
        text = f"unreadable line: {exc}"
        return Entry(source, span, where, None, None, False, UNREADABLE, text, where.casefold())
    state = row if source == "chains" else row.get("state")
    state = state if isinstance(state, dict) else {}
    chain = state.get("chain")
    chain = chain if isinstance(chain, list) else []
    question = state.get("question")
    if not isinstance(question, str):
        question = str(row.get("raw") or row.get("reason") or "") if source == "failures" else ""
    item_id = str(row.get("id"))
    stop = state.get("stop_reason")
    return Entry(
        source=source,
        span=span,
        id=item_id,
        stop_reason=stop if isinstance(stop, str) else None,
        chain_length=max(len(chain) - 1, 0) if chain else None,
        alternate=any(isinstance(a, dict) and a.get("role") == "alternate_refiner" for a in chain),
        kind=str(row["kind"]) if source == "failures" and "kind" in row else None,
        question=_preview(question),
        search=f"{item_id}\n{question[:SEARCH_CHARS]}".casefold(),
    )


@dataclass(frozen=True)
class ItemFilter:
    """The list page's filters; an empty field does not filter."""

    stop_reason: str | None = None
    chain_length: int | None = None
    status: Status = "all"
    alternate: bool = False
    text: str = ""

    def matches(self, entry: Entry) -> bool:
        if self.status != "all" and entry.failed != (self.status == "failed"):
            return False
        if self.stop_reason is not None and entry.stop_reason != self.stop_reason:
            return False
        if self.chain_length is not None and entry.chain_length != self.chain_length:
            return False
        if self.alternate and not entry.alternate:
            return False
        return not self.text or self.text.casefold() in entry.search


@dataclass(frozen=True)
class Page:
    """One page of the filtered list."""

    entries: list[Entry]
    number: int
    pages: int
    matched: int
    total: int


@dataclass(frozen=True)
class Progress:
    """Bytes of the folder's files indexed so far, of their size; `done` when all is read."""

    indexed: int
    size: int
    done: bool

    @property
    def share(self) -> float:
        return self.indexed / self.size if self.size else 1.0


@dataclass
class LiveTally:
    """Counts over what the files hold now (run.json is only rewritten every 30 s)."""

    succeeded: int = 0
    failed: int = 0
    unreadable: int = 0
    """Lines of chains.jsonl that are not JSON objects (a damaged file)."""
    accepted_refinements: int = 0
    alternate_items: int = 0
    stop_reasons: Counter[str] = field(default_factory=Counter)
    chain_lengths: Counter[int] = field(default_factory=Counter)
    failure_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def items(self) -> int:
        return self.succeeded + self.failed

    @property
    def mean_chain_length(self) -> float | None:
        return self.accepted_refinements / self.succeeded if self.succeeded else None


class RunIndex:
    """Every item of one output folder, and its export rows, by byte offsets.

    Thread-safe: the web server answers requests from a thread pool, and each call refreshes
    the index from the files first, under one lock.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._chains: list[Entry] = []
        self._failures: list[Entry] = []
        self._by_id: dict[str, Entry] = {}
        self._ids_stale = False
        self._caught_up = False
        self._version = 0  # bumped by every change of the item entries
        self._tally: tuple[int, LiveTally] | None = None
        self._dpo: dict[str, list[Span]] = {}
        self._sft: dict[str, Span] = {}
        self._files = {
            CHAINS: LineIndex(out / CHAINS, self._add_chain, self._chains_reset),
            FAILURES: LineIndex(out / FAILURES, self._add_failure, self._failures_reset),
            SFT: LineIndex(out / SFT, self._add_sft, self._sft.clear),
            DPO: LineIndex(out / DPO, self._add_dpo, self._dpo.clear),
        }

    # ------------------------------------------------------------------ building

    def _add_chain(self, span: Span, line: bytes) -> None:
        entry = _entry("chains", span, line, CHAINS)
        self._version += 1
        self._chains.append(entry)
        self._by_id.setdefault(entry.id, entry)

    def _add_failure(self, span: Span, line: bytes) -> None:
        entry = _entry("failures", span, line, FAILURES)
        self._version += 1
        self._failures.append(entry)
        self._by_id.setdefault(entry.id, entry)

    def _add_sft(self, span: Span, line: bytes) -> None:
        item_id = _row_id(line)
        if item_id is not None:
            self._sft[item_id] = span

    def _add_dpo(self, span: Span, line: bytes) -> None:
        item_id = _row_id(line)
        if item_id is not None:
            self._dpo.setdefault(item_id, []).append(span)

    def _chains_reset(self) -> None:
        self._chains.clear()
        self._ids_stale = True
        self._version += 1

    def _failures_reset(self) -> None:
        self._failures.clear()
        self._ids_stale = True
        self._version += 1

    def _refresh(self, budget: int | None = STEP_BYTES) -> None:
        done = [index.refresh(budget) for index in self._files.values()]
        self._caught_up = all(done)
        if self._ids_stale:  # a file was read afresh: its old ids may be gone
            self._by_id = {}
            for entry in self._all():
                self._by_id.setdefault(entry.id, entry)
            self._ids_stale = False

    def catch_up(self) -> None:
        """Index everything the files hold now, however long it takes."""
        with self._lock:
            self._refresh(budget=None)

    def follow(self, stop: threading.Event) -> None:
        """Keep indexing, a step at a time, until `stop` is set (the web server's
        background thread: a large folder gets read while pages already answer)."""
        while not stop.is_set():
            with self._lock:
                self._refresh()
                caught_up = self._caught_up
            if caught_up:
                stop.wait(FOLLOW_POLL_SECONDS)

    def progress(self) -> Progress:
        """How much of the folder is indexed."""
        with self._lock:
            files = self._files.values()
            return Progress(
                sum(f.indexed for f in files), sum(f.size for f in files), self._caught_up
            )

    def _all(self) -> Iterator[Entry]:
        yield from self._chains
        yield from self._failures

    # ------------------------------------------------------------------ queries

    def page(self, where: ItemFilter, number: int, per_page: int) -> Page:
        """Page `number` (1-based; past the end gives the last page) of the matching items,
        chains.jsonl's in file order, then failures.jsonl's."""
        with self._lock:
            self._refresh()
            total = len(self._chains) + len(self._failures)
            if where == ItemFilter():
                matched_count = total
                start = (min(number, _pages(total, per_page)) - 1) * per_page
                chosen = _slice(self._chains, self._failures, start, per_page)
            else:
                matched = [e for e in self._all() if where.matches(e)]
                matched_count = len(matched)
                start = (min(number, _pages(matched_count, per_page)) - 1) * per_page
                chosen = matched[start : start + per_page]
        pages = _pages(matched_count, per_page)
        return Page(chosen, min(number, pages), pages, matched_count, total)

    def load(self, item_id: str) -> tuple[Entry, dict[str, Any] | None] | None:
        """An item's entry and full row, read at its offset (None for the row of an
        unreadable line); None when no item has that id.

        The row must carry the id its entry has: when it does not, the file changed under
        the index (rewritten between two refreshes), so the file is read afresh and the
        item looked up again.

        Raises:
            ValueError: the row still does not match after the file was read afresh.
        """
        for _ in range(2):
            with self._lock:
                self._refresh()
                entry = self._by_id.get(item_id)
                if entry is None:
                    return None
                if entry.kind == UNREADABLE:
                    return entry, None
                lines = self._files[CHAINS if entry.source == "chains" else FAILURES]
                row = _load(lines.read(entry.span))
                if row is not None and str(row.get("id")) == entry.id:
                    return entry, row
                lines.restart()
        raise ValueError(f"the row of {item_id!r} changed while it was being read")

    def read_raw(self, entry: Entry, limit: int) -> str:
        """The first `limit` characters of an entry's line, for unreadable lines."""
        raw = self._files[CHAINS if entry.source == "chains" else FAILURES].read(entry.span)
        return raw[: limit * 4].decode("utf-8", errors="replace")[:limit]

    def exports(self, item_id: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The item's sft.jsonl row and dpo.jsonl rows."""
        with self._lock:
            self._refresh()
            sft_span = self._sft.get(item_id)
            dpo_spans = list(self._dpo.get(item_id, ()))
            sft = _load(self._files[SFT].read(sft_span)) if sft_span else None
            dpo = [_load(self._files[DPO].read(span)) for span in dpo_spans]
        # a row whose id is not the item's was read from a file rewritten since its refresh
        mine = [row for row in dpo if row is not None and str(row.get("id")) == item_id]
        return (sft if sft is not None and str(sft.get("id")) == item_id else None), mine

    def tally(self) -> LiveTally:
        """Counts over the items the files hold now, in run.json's terms."""
        with self._lock:
            self._refresh()
            if self._tally is not None and self._tally[0] == self._version:
                return self._tally[1]
            version, entries = self._version, list(self._all())
        tally = LiveTally()
        for entry in entries:
            if entry.stop_reason:
                tally.stop_reasons[entry.stop_reason] += 1
            if entry.alternate:
                tally.alternate_items += 1
            if entry.failed:
                tally.failed += 1
                tally.failure_kinds[entry.kind or "unknown"] += 1
            elif entry.kind == UNREADABLE:
                tally.unreadable += 1
            else:
                tally.succeeded += 1
                length = entry.chain_length or 0
                tally.accepted_refinements += length
                tally.chain_lengths[length] += 1
        with self._lock:
            self._tally = (version, tally)
        return tally


def _pages(count: int, per_page: int) -> int:
    return max(1, -(-count // per_page))


def _slice(first: list[Entry], second: list[Entry], start: int, count: int) -> list[Entry]:
    """`count` entries from `start` of the two lists read as one, without joining them."""
    if start < len(first):
        chosen = first[start : start + count]
        return chosen + second[: count - len(chosen)]
    return second[start - len(first) : start - len(first) + count]


def _row_id(line: bytes) -> str | None:
    row = _load(line)
    return None if row is None or "id" not in row else str(row["id"])


def _load(line: bytes) -> dict[str, Any] | None:
    try:
        row = orjson.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None
