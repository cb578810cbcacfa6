"""The run lifecycle both `curate` engines share (`local_engine`, `ray_engine`).

`command.curate` checks everything and hands an engine a `CheckedRun`. The engine then goes
through the same steps around its own way of running the items: `resume` (the directory's
resume scan, the tally, run.json's writer with this invocation's entry), `start_message`,
the items read with `iter_all_inputs`, `ReportWriter.finish` and `summary`, then an exit
code (`finished_code`, or `EXIT_INTERRUPTED`/`EXIT_ENDPOINT` for a run cut short).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nodes.state import ChainState
from refine_n_judge.curate.checks import InputFile
from refine_n_judge.curate.exports import DpoPairs, dpo_rows, sft_row
from refine_n_judge.curate.outputs import OutputDir, ResumeState, write_json_document
from refine_n_judge.curate.pricing import PriceTable
from refine_n_judge.curate.progress import Counters
from refine_n_judge.curate.readers import ReadResult, count_rows, read_items
from refine_n_judge.curate.records import DpoRow, SftRow
from refine_n_judge.curate.report import Invocation, RunReport, Tally, now_iso
from refine_n_judge.curate.rows import FieldMap
from refine_n_judge.curate.run_settings import RecordedSettings

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_SETTINGS = 2
EXIT_ENDPOINT = 3
"""The endpoint stopped the run (auth/not-found errors, connection failures, a stall):
the items written are kept, the rest are left for the next run."""
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class CheckedRun:
    """What `curate`'s checks found: everything an engine starts from."""

    files: list[InputFile]
    outputs: OutputDir
    prices: PriceTable
    settings: RecordedSettings
    previous: dict[str, Any] | None
    """The directory's run.json before this invocation (None: there was none)."""
    changed: list[str]
    """The setting and input changes --force lets through (empty without one)."""


def iter_all_inputs(
    files: list[InputFile], *, fields: FieldMap, max_chars: int
) -> Iterator[ReadResult]:
    """The rows of every input file, in order."""
    for file in files:
        yield from read_items(
            file.path, file.format, fields, source=file.display, max_chars=max_chars
        )


def total_rows(files: list[InputFile]) -> int | None:
    """The rows of every input file, when each can be counted cheaply."""
    counts = [count_rows(f.path, f.format) for f in files]
    return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)


class ReportWriter:
    """Writes run.json from the tally (at the start, at the end, on interruption)."""

    def __init__(self, run: CheckedRun, tally: Tally) -> None:
        self.outputs = run.outputs
        self.settings = run.settings
        self.prices = run.prices
        self.tally = tally
        self.inputs = [
            {"path": str(f.path), "format": f.format, "name": f.display} for f in run.files
        ]
        earlier = (run.previous or {}).get("invocations") or []
        self.invocations = [Invocation.model_validate(i) for i in earlier]
        for invocation in self.invocations:
            if invocation.status == "running":  # it never wrote its end: it was killed
                invocation.status = "killed"
        self.current = Invocation(started_at=now_iso())
        self.invocations.append(self.current)
        self._started = time.monotonic()

    def build(self, status: str) -> RunReport:
        """The report as of now."""
        self.current.status = status
        self.current.wall_seconds = round(time.monotonic() - self._started, 3)
        if status != "running":
            self.current.finished_at = now_iso()
        return RunReport.build(
            tally=self.tally,
            status=status,
            output_dir=str(self.outputs.path),
            files=self.outputs.files(),
            inputs=self.inputs,
            settings=self.settings.reported,
            prices=self.prices,
            invocations=self.invocations,
        )

    def write(self, status: str) -> RunReport:
        """Write run.json atomically and return the report."""
        report = self.build(status)
        document = report.model_dump(mode="json")
        document["compared_settings"] = self.settings.compared
        write_json_document(self.outputs.report, document)
        return report

    def finish(self, status: str, counters: Counters) -> RunReport:
        """Write the last run.json of this invocation, with what it did."""
        self.current.new_items = counters.succeeded
        self.current.new_failures = counters.failed
        self.current.skipped_done = counters.skipped
        return self.write(status)


@dataclass
class Resumed:
    """What the output directory holds, and this invocation's record over it."""

    state: ResumeState
    tally: Tally
    writer: ReportWriter

    @property
    def retried(self) -> int:
        """Failures this invocation may redo (--retry-failed)."""
        return len(self.state.retrying)


def resume(
    run: CheckedRun, *, dpo_pairs: DpoPairs, retry_failed: bool, concurrency: int
) -> Resumed:
    """Repair and read the directory (`OutputDir.scan`), tally what it holds and start this
    invocation's entry in run.json (not written yet)."""
    tally = Tally()

    def export(state: ChainState) -> tuple[SftRow | None, list[DpoRow]]:
        return sft_row(state), dpo_rows(state, dpo_pairs)

    state = run.outputs.scan(
        tally.add_chain,
        tally.add_failure,
        tally.add_retired,
        export,
        retry_failed=retry_failed,
    )
    tally.sft_rows, tally.dpo_rows = state.sft_rows, state.dpo_rows
    tally.expect_retries(state.retrying)  # a retried failure stays one until redone
    writer = ReportWriter(run, tally)
    writer.current.retried_failures = len(state.retrying)
    writer.current.concurrency = concurrency
    writer.current.forced_settings_changes = run.changed
    writer.current.repaired = state.repaired + [f"rebuilt {name}" for name in state.rebuilt]
    return Resumed(state=state, tally=tally, writer=writer)


def resume_notes(state: ResumeState, changed: list[str]) -> list[str]:
    """What the resume scan repaired and what --force let through, one note each."""
    notes = [
        f"repaired a torn last line in {name} (a kill mid-write); redoing that item"
        for name in state.repaired
    ]
    if state.dropped_uncommitted:
        notes.append(
            f"removed {state.dropped_uncommitted} export row(s) of items that were in flight "
            "at the last stop; they are redone"
        )
    notes += [f"rebuilt {name} from chains.jsonl" for name in state.rebuilt]
    if changed:
        notes.append("--force: continuing with changed settings: " + "; ".join(changed))
    return notes


def start_message(run: CheckedRun, refiner: str | None, done: set[str], retried: int) -> str:
    """The first line a run shows: its inputs, its model, its directory, what it resumes."""
    names = ", ".join(f.display for f in run.files)
    model = refiner or run.settings.default_model
    text = f"curating {names} with {model} -> {run.outputs.path}"
    if done:
        text += f" (resuming: {len(done)} item(s) already done)"
    if retried:
        text += f" (retrying {retried} failure(s))"
    return text


def summary(report: RunReport, counters: Counters, outputs: OutputDir) -> dict[str, Any]:
    """The end-of-run table."""
    health = report.judge_health
    return {
        "items in directory": report.counts["items"],
        "this run": (
            f"{counters.processed} processed, {counters.skipped} skipped (done before), "
            f"{counters.elapsed:.1f}s, {counters.rate:.2f} items/s"
        ),
        "succeeded": report.counts["succeeded"],
        "failed": report.counts["failed"],
        "failures by kind": report.failures_by_kind,
        "accepted refinements": report.counts["accepted_refinements"],
        "mean refinements per chain": report.mean_chain_length,
        "refinements per chain": report.chain_length_histogram,
        "stop reasons": report.stop_reasons,
        "model calls": report.total_calls,
        "tokens": report.total_tokens,
        "cost (USD)": report.cost_usd if report.cost_usd is not None else "unknown prices",
        "judge swap consistency": health.get("swap_consistency"),
        "first-position preference": health.get("first_position_preference"),
        "sft rows": report.counts["sft_rows"],
        "dpo rows": report.counts["dpo_rows"],
    }


def where_message(report: RunReport, outputs: OutputDir) -> str:
    """The closing line: every output file and its row count."""
    return (
        f"outputs in {outputs.path}/: {outputs.chains.name} ({report.counts['succeeded']}), "
        f"{outputs.sft.name} ({report.counts['sft_rows']}), "
        f"{outputs.dpo.name} ({report.counts['dpo_rows']}), "
        f"{outputs.failures.name} ({report.counts['failed']}), {outputs.report.name}"
    )


def finished_code(report: RunReport, outputs: OutputDir, *, show_where: bool) -> int:
    """The exit code of a run that went through its input (the closing line printed when
    `show_where`): `EXIT_FAILURES` when the directory holds failures."""
    if show_where:
        print(where_message(report, outputs))
    return EXIT_FAILURES if report.counts["failed"] else EXIT_OK
