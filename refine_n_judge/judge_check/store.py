"""The `judge-check` output directory: append-only results that survive a kill.

judgments.jsonl (one `PairResult` per judged pair) and failures.jsonl (bad input rows and
pairs whose judge run raised, as `curate` writes them) are each pair's commit record: one
unbuffered write per line, a torn last line (a kill mid-write) cut on resume, and a pair
with a line is never judged again. The primitives are `curate`'s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from refine_n_judge.curate.errors import OutputCorruptError, SettingsError
from refine_n_judge.curate.outputs import (
    FAILURES,
    atomic_rewrite_lines,
    atomic_write_text,
    iter_lines,
    repair_torn_tail,
    write_all,
)
from refine_n_judge.curate.records import FailureRow
from refine_n_judge.judge_check.records import PairResult

JUDGMENTS = "judgments.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
CACHE = "llm_cache.sqlite"


class ResultsDir:
    """The files of one `judge-check` output directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.judgments = path / JUDGMENTS
        self.failures = path / FAILURES
        self.report_json = path / REPORT_JSON
        self.report_md = path / REPORT_MD
        self._handles: dict[str, IO[bytes]] = {}

    def create(self) -> None:
        """Make the directory, or refuse with a message saying why it cannot be used."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe = self.path / f".write-probe-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise SettingsError(f"cannot write to the output directory {self.path}: {exc}") from exc

    def repair(self) -> list[str]:
        """Cut torn last lines; the names of the files repaired."""
        return [p.name for p in (self.judgments, self.failures) if repair_torn_tail(p)]

    def load(self) -> tuple[list[PairResult], list[FailureRow]]:
        """Everything committed so far."""
        results = [
            _parse(PairResult, line, self.judgments, n) for n, line in iter_lines(self.judgments)
        ]
        failures = [
            _parse(FailureRow, line, self.failures, n) for n, line in iter_lines(self.failures)
        ]
        return results, failures

    def drop(self, ids: set[str]) -> None:
        """Remove the rows of `ids` from both files (atomically), so they are redone."""
        for path in (self.judgments, self.failures):
            kept = [line for _, line in iter_lines(path) if json.loads(line)["id"] not in ids]
            atomic_rewrite_lines(path, kept)

    def read_report(self) -> dict[str, Any] | None:
        """The previous report.json, or None."""
        if not self.report_json.exists():
            return None
        try:
            data = json.loads(self.report_json.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise OutputCorruptError(
                f"{self.report_json} cannot be read ({exc}); move it away (the judgments are "
                "kept and the report is rebuilt from them)"
            ) from exc
        return data if isinstance(data, dict) else None

    def write_report(self, document: dict[str, Any], markdown: str | None = None) -> None:
        """report.json (and report.md), each replaced atomically."""
        atomic_write_text(
            self.report_json, json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        )
        if markdown is not None:
            atomic_write_text(self.report_md, markdown)

    def open(self) -> None:
        """Open the result files for appending (unbuffered: one write per pair)."""
        for name, path in (("judgments", self.judgments), ("failures", self.failures)):
            self._handles[name] = open(path, "ab", buffering=0)  # noqa: SIM115 - closed in close()

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def write_result(self, result: PairResult) -> None:
        write_all(self._handles["judgments"], result.model_dump_json().encode("utf-8") + b"\n")

    def write_failure(self, row: FailureRow) -> None:
        write_all(self._handles["failures"], row.to_json_line().encode("utf-8") + b"\n")


def _parse(kind: Any, line: bytes, path: Path, number: int) -> Any:
    try:
        return kind.model_validate_json(line)
    except ValidationError as exc:
        raise OutputCorruptError(
            f"{path}:{number} is not a valid {kind.__name__} row: "
            f"{str(exc).splitlines()[0]}. Only a torn last line is repaired automatically; "
            "fix or remove that line and rerun"
        ) from exc
