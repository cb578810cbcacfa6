"""The `judge-check` output directory: append-only results that survive a kill.

judgments.jsonl (one `PairResult` per judged pair) and failures.jsonl (bad input rows and
pairs whose judge run raised, as `curate` writes them) are each pair's commit record: one
unbuffered write per line, a torn last line (a kill mid-write) cut on resume, and a pair
with a line is never judged again. The primitives are `curate`'s.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from refine_n_judge.curate.outputs import (
    FAILURES,
    atomic_rewrite_lines,
    atomic_write_text,
    create_output_dir,
    iter_lines,
    parse_row,
    read_json_document,
    repair_torn_tail,
    write_all,
    write_json_document,
)
from refine_n_judge.curate.records import FailureRow
from refine_n_judge.judge_check.records import PairResult

JUDGMENTS = "judgments.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


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
        create_output_dir(self.path)

    def repair(self) -> list[str]:
        """Cut torn last lines; the names of the files repaired."""
        return [p.name for p in (self.judgments, self.failures) if repair_torn_tail(p)]

    def load(self) -> tuple[list[PairResult], list[FailureRow]]:
        """Everything committed so far."""
        results = [
            parse_row(PairResult, line, self.judgments, n) for n, line in iter_lines(self.judgments)
        ]
        failures = [
            parse_row(FailureRow, line, self.failures, n) for n, line in iter_lines(self.failures)
        ]
        return results, failures

    def drop(self, ids: set[str]) -> None:
        """Remove the rows of `ids` from both files (atomically), so they are redone."""
        for path in (self.judgments, self.failures):
            kept = [line for _, line in iter_lines(path) if json.loads(line)["id"] not in ids]
            atomic_rewrite_lines(path, kept)

    def read_report(self) -> dict[str, Any] | None:
        """The previous report.json, or None."""
        return read_json_document(
            self.report_json,
            "move it away (the judgments are kept and the report is rebuilt from them)",
        )

    def write_report(self, document: dict[str, Any], markdown: str | None = None) -> None:
        """report.json (and report.md), each replaced atomically."""
        write_json_document(self.report_json, document)
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
