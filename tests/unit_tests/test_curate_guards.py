"""The guards around a curate run: the directory lock, the input record, URL redaction,
the endpoint health rules and the --cache path check."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from endpoints.redact import redact_url
from nodes.state import ChainState, Failure
from refine_n_judge.curate.cache import check_cache_path
from refine_n_judge.curate.checks import InputFile
from refine_n_judge.curate.endpoint_health import (
    CONNECTION_FAILURES_TO_STOP,
    EndpointWatch,
    endpoint_trouble,
    stall_limit,
)
from refine_n_judge.curate.errors import SettingsError, SettingsMismatchError
from refine_n_judge.curate.folder_lock import FolderInUseError, FolderLock
from refine_n_judge.curate.input_record import apply_input, check_input
from refine_n_judge.curate.options import DEFAULT_MAX_CHARS
from refine_n_judge.curate.outputs import OutputDir
from refine_n_judge.curate.records import FailureRow
from refine_n_judge.curate.rows import FieldMap


def test_a_second_lock_on_a_directory_is_refused(tmp_path: Path) -> None:
    with (
        FolderLock(tmp_path),
        pytest.raises(
            FolderInUseError, match=rf"in use by another curate run \(pid {os.getpid()}\)"
        ),
    ):
        FolderLock(tmp_path).acquire()
    with FolderLock(tmp_path):  # released: free again
        pass


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path\n"
         "from refine_n_judge.curate.folder_lock import FolderLock\n"
         "lock = FolderLock(Path(sys.argv[1])); lock.acquire()\n"
         "print('held', flush=True); time.sleep(60)",
         str(tmp_path)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match=f"pid {holder.pid}"):
            FolderLock(tmp_path).acquire()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with FolderLock(tmp_path):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def reading(*, fields: FieldMap | None = None, force: bool = False) -> dict[str, Any]:
    """`check_input`'s settings: the field flags (default: none given), the default
    --max-chars, and --force."""
    return {"fields": fields or FieldMap(), "max_chars": DEFAULT_MAX_CHARS, "force": force}


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def commit(outputs: OutputDir, *ids: str) -> None:
    outputs.open()
    for key in ids:
        outputs.write_failure(FailureRow(id=key, stage="feedback", kind="model_error", reason="x"))
    outputs.close()


def test_the_input_record_refuses_a_changed_or_missing_row_unless_forced(tmp_path: Path) -> None:
    rows = [{"id": f"r{k}", "question": f"q{k}"} for k in range(4)]
    data = write_rows(tmp_path / "in.jsonl", rows)
    outputs = OutputDir(tmp_path / "out")
    outputs.create()
    files = [InputFile(data, "jsonl", "in.jsonl")]
    apply_input(outputs, check_input(outputs, files, **reading()))
    commit(outputs, "r0", "r1", "r2")
    # Appending a row and editing one not done yet is no change to what is done.
    write_rows(data, [*rows[:3], {"id": "r3", "question": "new"}, {"id": "r4", "question": "q"}])
    assert not check_input(outputs, files, **reading()).differs
    # Editing a done row, dropping another: refused, with the ids.
    write_rows(data, [rows[0], {"id": "r1", "question": "edited"}, rows[3]])
    with pytest.raises(
        SettingsMismatchError,
        match=r"1 row\(s\) changed .*first ids: r1\).*"
        r"1 done row\(s\) are not in the input any more \(first ids: r2\)",
    ):
        check_input(outputs, files, **reading())
    forced = check_input(outputs, files, **reading(force=True))
    assert forced.changed == ["r1"] and forced.gone == ["r2"]
    assert apply_input(outputs, forced) == 1  # r1's result taken out, to be redone
    assert [json.loads(x)["id"] for x in outputs.failures.read_text().splitlines()] == ["r0", "r2"]
    # After --force the kept row r2 is no longer compared.
    assert not check_input(outputs, files, **reading()).differs


def test_the_input_record_refuses_other_input_files(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "a.jsonl", [{"id": "x", "question": "q"}])
    other = write_rows(tmp_path / "b.jsonl", [{"id": "x", "question": "q"}])
    outputs = OutputDir(tmp_path / "out")
    outputs.create()
    apply_input(
        outputs,
        check_input(outputs, [InputFile(data, "jsonl", "a.jsonl")], **reading()),
    )
    commit(outputs, "x")
    with pytest.raises(
        SettingsMismatchError, match=r"the input files were \[.*a.jsonl'\], now \[.*b.jsonl'\]"
    ):
        check_input(outputs, [InputFile(other, "jsonl", "b.jsonl")], **reading())


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"answer": "response"}, "invalid --answer-field 'response': none of the first 3 rows"),
        ({"id": "idd"}, "invalid --id-field 'idd'"),
    ],
)
def test_a_field_flag_no_row_has_is_refused(
    tmp_path: Path, fields: dict[str, str], words: str
) -> None:
    rows = [{"id": f"r{k}", "question": "q", "answer": "a"} for k in range(3)]
    data = write_rows(tmp_path / "in.jsonl", rows)
    outputs = OutputDir(tmp_path / "out")
    options = reading(fields=FieldMap(**fields))
    with pytest.raises(SettingsError, match=words):
        check_input(outputs, [InputFile(data, "jsonl", "in.jsonl")], **options)
    # A default field missing everywhere is fine (the refiner writes the answers).
    write_rows(data, [{"id": "r", "question": "q"}])
    check_input(outputs, [InputFile(data, "jsonl", "in.jsonl")], **reading())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
        ("https://h/v1?api_key=s3cret&x=", "https://h/v1?api_key=REDACTED&x=REDACTED"),
        ("https://h/v1#token=s3cret", "https://h/v1#REDACTED"),
        ("https://h/v1?s3cret", "https://h/v1?REDACTED"),
        ("http://u:s3cret@h:99999999/v1?k=s3cret", "http://h:99999999/v1?k=REDACTED"),
        ("http://[::1/v1?k=s3cret", "<a URL that cannot be parsed (23 characters)>"),
        ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ],
)
def test_urls_lose_every_secret(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def failed_state(reason: str) -> ChainState:
    return ChainState(
        id="a",
        question="q",
        stop_reason="model_error",
        failures=[Failure(stage="feedback", model="m", reason=reason, iteration=0)],
    )


def test_endpoint_trouble_is_told_from_item_trouble() -> None:
    assert endpoint_trouble(failed_state("AuthenticationError: Error code: 401")) == "fatal"
    assert endpoint_trouble(failed_state("NotFoundError: Error code: 404 - model")) == "fatal"
    assert endpoint_trouble(failed_state("APIConnectionError: Connection error.")) == "connection"
    assert endpoint_trouble(failed_state("APITimeoutError: Request timed out.")) == "connection"
    # langchain-openai's own classes, as recorded by the nodes
    assert endpoint_trouble(failed_state("OpenAIAuthenticationError: Error code: 401")) == "fatal"
    assert endpoint_trouble(failed_state("OpenAIModelNotFoundError: Error code: 404")) == "fatal"
    assert endpoint_trouble(failed_state("OpenAIConnectionError: Connection error.")) == (
        "connection"
    )
    assert endpoint_trouble(failed_state("unparseable reply: not JSON")) is None
    assert endpoint_trouble(failed_state("InternalServerError: Error code: 500")) is None


def test_connection_failures_stop_only_in_a_row() -> None:
    watch = EndpointWatch()
    for _ in range(CONNECTION_FAILURES_TO_STOP - 1):
        assert not watch.item_ended("connection")
    assert not watch.item_ended(None)  # one item got through: the count starts again
    results = [watch.item_ended("connection") for _ in range(CONNECTION_FAILURES_TO_STOP)]
    assert results == [False] * (CONNECTION_FAILURES_TO_STOP - 1) + [True]


def test_the_watch_counts_waiting_only_while_calls_are_out() -> None:
    watch = EndpointWatch()
    assert watch.waiting_seconds() == 0.0
    watch.on_chat_model_start()
    watch.last_reply -= 30
    assert watch.waiting_seconds() >= 30
    watch.on_llm_error(TimeoutError())  # no reply: the wait goes on
    watch.on_chat_model_start()
    assert watch.waiting_seconds() >= 30
    watch.on_llm_end()
    assert watch.waiting_seconds() < 1
    assert (
        stall_limit(120, None) == 240 and stall_limit(1, None) == 5 and stall_limit(1, 0.01) == 200
    )
    time.sleep(0)


def test_bad_cache_paths_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="is a directory"):
        check_cache_path(tmp_path)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(SettingsError, match="not an SQLite file"):
        check_cache_path(text)
    check_cache_path(tmp_path / "new" / "cache.sqlite")  # a new file is fine
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SettingsError, match="is not a directory"):
        check_cache_path(blocker / "cache.sqlite")


def test_a_fixed_bad_row_is_read_again_without_force(tmp_path: Path) -> None:
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a", "question": "q"}\n{"id": "b", "question": 5}\n')
    outputs = OutputDir(tmp_path / "out")
    outputs.create()
    files = [InputFile(data, "jsonl", "in.jsonl")]
    apply_input(outputs, check_input(outputs, files, **reading()))
    outputs.open()
    outputs.write_failure(FailureRow(id="in.jsonl:2", stage="input", kind="wrong_type", reason="x"))
    outputs.close()
    data.write_text('{"id": "a", "question": "q"}\n{"id": "b", "question": "five"}\n')
    check = check_input(outputs, files, **reading())
    assert not check.differs and check.bad_rows_redone == ["in.jsonl:2"]
    apply_input(outputs, check)
    assert outputs.failures.read_text() == ""
    assert json.loads(outputs.retired_failures.read_text())["id"] == "in.jsonl:2"
