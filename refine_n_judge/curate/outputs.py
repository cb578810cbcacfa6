"""The output directory: its files, crash repair on resume, and per-item writes.

A row in chains.jsonl or failures.jsonl is an item's commit record: an item is done once
it has one, and exactly one. An item's sft.jsonl and dpo.jsonl rows are written before its
chains.jsonl row, each file with one unbuffered write, so a kill can leave (a) a torn last
line in any file and (b) export rows of an item that was never committed. On resume both
are removed (the torn line by truncation, the uncommitted rows by an atomic rewrite) and
the item is redone; nothing is duplicated and nothing committed is lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from pydantic import BaseModel, ValidationError

from nodes.state import ChainState
from refine_n_judge.curate.errors import OutputCorruptError, OutputWriteError, SettingsError
from refine_n_judge.curate.records import DpoRow, FailureRow, SftRow

CHAINS = "chains.jsonl"
SFT = "sft.jsonl"
DPO = "dpo.jsonl"
FAILURES = "failures.jsonl"
RETIRED_FAILURES = "failures.retried.jsonl"
REPLACED_CHAINS = "chains.replaced.jsonl"
REPORT = "run.json"
CACHE = "llm_cache.sqlite"


def write_all(handle: IO[bytes], data: bytes) -> None:
    """Write every byte with an unbuffered handle (a raw write may be partial).

    Raises:
        OutputWriteError: the write failed (disk full, permissions).
    """
    view = memoryview(data)
    try:
        while view:
            written = handle.write(view)
            if written is None:  # pragma: no cover - only non-blocking files return None
                raise OSError("the output file refused a write")
            view = view[written:]
    except OSError as exc:
        raise OutputWriteError(
            f"cannot write {handle.name}: {exc}; fix that (free space, permissions) and rerun "
            "the same command: the run resumes where it stopped"
        ) from exc


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader (or a crash) sees the old or the new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(text.encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json_document(path: Path, document: dict[str, Any]) -> None:
    """Replace the JSON document at `path` (indented, UTF-8) atomically."""
    atomic_write_text(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def read_json_document(path: Path, remedy: str) -> dict[str, Any] | None:
    """The JSON object at `path`; None when there is none.

    Raises:
        OutputCorruptError: the file cannot be read; the message ends with `remedy`.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise OutputCorruptError(f"{path} cannot be read ({exc}); {remedy}") from exc
    return data if isinstance(data, dict) else None


def create_output_dir(path: Path) -> None:
    """Make the directory, or fail with a settings error saying why it cannot be used.

    Raises:
        SettingsError: it cannot be made or written to.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SettingsError(f"cannot write to the output directory {path}: {exc}") from exc


def atomic_rewrite_lines(path: Path, lines: Iterable[bytes]) -> None:
    """Replace `path` with `lines` (each ending in a newline), atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        for line in lines:
            handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def repair_torn_tail(path: Path) -> bool:
    """Cut a last line that has no newline (a write cut short by a kill); True if cut."""
    if not path.exists():
        return False
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return False
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return False
        # Walk back to the last newline; the torn line is at most one item long.
        block = 1 << 16
        end = size
        keep = 0
        while end > 0:
            start = max(0, end - block)
            handle.seek(start)
            chunk = handle.read(end - start)
            index = chunk.rfind(b"\n")
            if index != -1:
                keep = start + index + 1
                break
            end = start
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-empty lines of a JSONL file with their 1-based numbers."""
    if not path.exists():
        return
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield number, line


@dataclass
class ResumeState:
    """What the directory already holds."""

    done: set[str] = field(default_factory=set)
    repaired: list[str] = field(default_factory=list)
    dropped_uncommitted: int = 0
    superseded_failures: int = 0
    retrying: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)
    """--retry-failed: id -> (kind, stage, stop reason) of each failure this run may redo."""
    sft_rows: int = 0
    dpo_rows: int = 0
    duplicates: list[str] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)


class _Rebuilder:
    """Writes rebuilt sft.jsonl / dpo.jsonl to temp files, moved into place on success."""

    def __init__(self, targets: list[Path]) -> None:
        self.targets = targets
        self.handles: dict[str, IO[bytes]] = {}

    def __enter__(self) -> _Rebuilder:
        for path in self.targets:
            tmp = path.with_name(f".{path.name}.rebuild")
            self.handles[path.name] = open(tmp, "wb")
        return self

    def add(self, sft: SftRow | None, dpo: list[DpoRow]) -> None:
        if SFT in self.handles and sft is not None:
            self.handles[SFT].write(_line(sft.model_dump_json()))
        if DPO in self.handles:
            for row in dpo:
                self.handles[DPO].write(_line(row.model_dump_json()))

    def __exit__(self, exc_type: object, *_: object) -> None:
        for path in self.targets:
            handle = self.handles[path.name]
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            tmp = Path(handle.name)
            if exc_type is None:
                os.replace(tmp, path)
            else:
                tmp.unlink(missing_ok=True)


class OutputDir:
    """The files of one output directory and the writes into them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chains = path / CHAINS
        self.sft = path / SFT
        self.dpo = path / DPO
        self.failures = path / FAILURES
        self.retired_failures = path / RETIRED_FAILURES
        self.replaced_chains = path / REPLACED_CHAINS
        self.report = path / REPORT
        self._handles: dict[str, IO[bytes]] = {}
        self._retrying: set[str] = set()
        self._redone_chains: set[str] = set()
        self._redone_failures: set[str] = set()

    def files(self) -> dict[str, str]:
        """Name -> path of every output file, for the report and the closing message."""
        return {
            "chains": str(self.chains),
            "sft": str(self.sft),
            "dpo": str(self.dpo),
            "failures": str(self.failures),
            "report": str(self.report),
        }

    def create(self) -> None:
        """Make the directory, or fail with a settings error saying why it cannot be used."""
        create_output_dir(self.path)

    def read_report(self) -> dict[str, Any] | None:
        """The previous run.json, or None when there is none."""
        return read_json_document(
            self.report, "move it away to start the run report afresh (the chains are kept)"
        )

    def scan(
        self,
        on_chain: Callable[[ChainState], None],
        on_failure: Callable[[FailureRow], None],
        on_retired: Callable[[FailureRow], None],
        exporter: Callable[[ChainState], tuple[SftRow | None, list[DpoRow]]],
        *,
        retry_failed: bool = False,
    ) -> ResumeState:
        """Repair what a kill may have left, then report every committed item.

        `on_chain` is called for each chains.jsonl row, `on_failure` for each
        failures.jsonl row, `on_retired` for each retired failure. A missing sft.jsonl or
        dpo.jsonl is rebuilt from chains.jsonl with `exporter`. With `retry_failed`, the
        failures are not done: they are in `retrying`, and each stays in failures.jsonl
        until its item is committed again (see `close`).
        """
        state = ResumeState()
        for path in (self.chains, self.failures, self.sft, self.dpo, self.retired_failures):
            if repair_torn_tail(path):
                state.repaired.append(path.name)
        rebuild = (
            [p for p in (self.sft, self.dpo) if not p.exists()] if self.chains.exists() else []
        )
        with _Rebuilder(rebuild) as rebuilder:
            for number, line in iter_lines(self.chains):
                chain = parse_row(ChainState, line, self.chains, number)
                if chain.id is None or chain.id in state.done:
                    state.duplicates.append(str(chain.id))
                    continue
                state.done.add(chain.id)
                on_chain(chain)
                if rebuild:
                    rebuilder.add(*exporter(chain))
        state.rebuilt = [p.name for p in rebuild]
        state.sft_rows = self._drop_uncommitted(self.sft, state)
        state.dpo_rows = self._drop_uncommitted(self.dpo, state)
        state.superseded_failures = self._retire_superseded(state.done)
        for number, line in iter_lines(self.failures):
            row = parse_row(FailureRow, line, self.failures, number)
            if row.id in state.done or row.id in state.retrying:
                state.duplicates.append(row.id)
                continue
            on_failure(row)
            if retry_failed:
                stop = row.state.stop_reason if row.state is not None else None
                state.retrying[row.id] = (row.kind, row.stage, stop)
            else:
                state.done.add(row.id)
        seen: set[bytes] = set()
        for number, line in iter_lines(self.retired_failures):
            digest = hashlib.sha256(line).digest()
            if digest in seen:  # archived twice by a kill inside `_retire_superseded`
                continue
            seen.add(digest)
            on_retired(parse_row(FailureRow, line, self.retired_failures, number))
        if retry_failed:
            self._retrying = set(state.retrying)
        return state

    def committed_keys(self) -> Iterator[str]:
        """The record keys of chains.jsonl and failures.jsonl, read only (a torn or bad
        line is passed over: the resume scan deals with it)."""
        for path in (self.chains, self.failures):
            for _, line in iter_lines(path):
                try:
                    key = json.loads(line)["id"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
                if isinstance(key, str):
                    yield key

    def _retire_superseded(self, chain_ids: set[str]) -> int:
        """Move failure rows that a later commit replaced to failures.retried.jsonl.

        A retried item's new row is appended while its old failure row stays, so a kill
        at any point leaves a directory that says what happened: the item's chain wins
        over its failure rows, and its last failure row over earlier ones. Called on every
        resume and when a run closes; the number of rows moved.
        """
        last: dict[str, int] = {}
        for number, line in iter_lines(self.failures):
            key = self._row_id(self.failures, number, line)
            if isinstance(key, str) and key not in chain_ids:
                last[key] = number

        def current(number: int, line: bytes) -> bool:
            return last.get(self._row_id(self.failures, number, line)) == number  # type: ignore[arg-type]

        return self._move_rows(self.failures, self.retired_failures, current)

    def _move_rows(
        self, path: Path, archive: Path | None, keep: Callable[[int, bytes], bool]
    ) -> int:
        """Append the rows of `path` that `keep` refuses to `archive`, then rewrite `path`
        with the others (atomically, streaming both passes); the number of rows moved.

        A kill between the two leaves the rows in both files: the next move archives them
        again, and the resume scan reads an archived row once.
        """
        moved = 0
        handle: IO[bytes] | None = None
        try:
            for number, line in iter_lines(path):
                if keep(number, line):
                    continue
                moved += 1
                if archive is not None:
                    if handle is None:
                        handle = open(archive, "ab", buffering=0)  # noqa: SIM115 - closed below
                    write_all(handle, line)
        finally:
            if handle is not None:
                os.fsync(handle.fileno())
                handle.close()
        if moved:
            atomic_rewrite_lines(path, (line for n, line in iter_lines(path) if keep(n, line)))
        return moved

    def drop_items(self, ids: set[str]) -> int:
        """Take the committed rows of `ids` out of every file (--force on changed input rows).

        Their chains go to chains.replaced.jsonl and their failures to
        failures.retried.jsonl, so nothing paid for disappears; the items are then not done
        and the run redoes them. The commit files are rewritten first: a kill before the
        exports are rewritten leaves export rows without a commit, which resume removes.
        """
        if not ids:
            return 0
        dropped = 0
        for path, archive in (
            (self.chains, self.replaced_chains),
            (self.failures, self.retired_failures),
            (self.sft, None),
            (self.dpo, None),
        ):
            repair_torn_tail(path)  # what resume would cut anyway: the rows must parse

            def keep(number: int, line: bytes, path: Path = path) -> bool:
                return self._row_id(path, number, line) not in ids

            moved = self._move_rows(path, archive, keep)
            if archive is not None:
                dropped += moved
        return dropped

    def _drop_uncommitted(self, path: Path, state: ResumeState) -> int:
        """Remove export rows of items with no chains.jsonl row; the number of rows kept.

        Only the rows of items in flight at a kill can be uncommitted, so the rewrite is
        rare; it streams, as the first pass does.
        """
        kept = dropped = 0
        for number, line in iter_lines(path):
            if self._row_id(path, number, line) in state.done:
                kept += 1
            else:
                dropped += 1
        if dropped:
            atomic_rewrite_lines(
                path,
                (
                    line
                    for number, line in iter_lines(path)
                    if self._row_id(path, number, line) in state.done
                ),
            )
            state.dropped_uncommitted += dropped
        return kept

    @staticmethod
    def _row_id(path: Path, number: int, line: bytes) -> object:
        try:
            return json.loads(line)["id"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise OutputCorruptError(
                f"{path}:{number} is not a valid row ({exc}); delete {path.name} and rerun: "
                f"it is rebuilt from {CHAINS}"
            ) from exc

    # ------------------------------------------------------------------- writing

    def open(self) -> None:
        """Open the files for appending (unbuffered: one write call per item and file)."""
        for name, path in (
            ("chains", self.chains),
            ("sft", self.sft),
            ("dpo", self.dpo),
            ("failures", self.failures),
        ):
            self._handles[name] = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        """Close the files; retire the failure rows of retried items that were redone."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self._redone_chains or self._redone_failures:
            self._retire_superseded(self._redone_chains)
            self._redone_chains.clear()
            self._redone_failures.clear()

    def write_chain(self, state: ChainState, sft: SftRow | None, dpo: list[DpoRow]) -> None:
        """Append a finished item: its exports first, then its commit row in chains.jsonl."""
        if sft is not None:
            write_all(self._handles["sft"], _line(sft.model_dump_json()))
        if dpo:
            write_all(self._handles["dpo"], b"".join(_line(r.model_dump_json()) for r in dpo))
        write_all(self._handles["chains"], _line(state.to_json_line()))
        if state.id in self._retrying:
            self._redone_chains.add(state.id)

    def write_failure(self, row: FailureRow) -> None:
        """Append a failed item or bad input row."""
        write_all(self._handles["failures"], _line(row.to_json_line()))
        if row.id in self._retrying:
            self._redone_failures.add(row.id)


def _line(text: str) -> bytes:
    return text.encode("utf-8") + b"\n"


_Row = TypeVar("_Row", bound=BaseModel)


def parse_row(kind: type[_Row], line: bytes, path: Path, number: int) -> _Row:
    """One committed row of `path` (line `number`).

    Raises:
        OutputCorruptError: the row is not a valid `kind`; the message says where.
    """
    try:
        return kind.model_validate_json(line)
    except ValidationError as exc:
        raise OutputCorruptError(
            f"{path}:{number} is not a valid {kind.__name__} row: "
            f"{str(exc).splitlines()[0]}. Only a torn last line is repaired automatically; "
            "fix or remove that line and rerun"
        ) from exc
