"""`curate` used wrongly, the way a new user would: two runs on one folder, a limited
retry, a changed input, a broken CSV, an endpoint that refuses, stalls or dies, and flags
that do not fit. Each case is reproduced, then exactly-once is checked by id."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from refine_n_judge import cli
from tests.support.fake_openai import ChatRequest, FakeOpenAIServer, Reply
from tests.support.processes import PROJECT_ROOT, start_fake_server, stop_fake_server, wait_for
from tests.support.scripts import http_responder, versioned_handler


def write_items(path: Path, n: int) -> tuple[Path, set[str]]:
    rows = [{"id": f"i{k}", "question": f"What is {k}?", "answer": "v0"} for k in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, {r["id"] for r in rows}


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ids_once(out: Path) -> tuple[set[str], set[str]]:
    """(chain ids, failure ids) after checking no id is in the directory twice."""
    chains = [r["id"] for r in rows_of(out / "chains.jsonl")]
    failures = [r["id"] for r in rows_of(out / "failures.jsonl")]
    twice = [k for k, n in Counter(chains + failures).items() if n > 1]
    assert not twice, twice
    assert sorted(r["id"] for r in rows_of(out / "sft.jsonl")) == sorted(chains)
    return set(chains), set(failures)


def curate(url: str, data: Path, out: Path, *flags: str, refiner: str = "fake") -> int:
    model = ["--refiner", refiner] if refiner else []
    return cli.main(
        ["curate", str(data), "--out", str(out), *model, "--base-url", url,
         "--concurrency", "4", *flags]
    )  # fmt: skip


class Script:
    """The versioned script (chains grow to v1), switchable while the server runs."""

    def __init__(self) -> None:
        self.handler: Any = versioned_handler(stop_at=1)
        self.calls = 0
        self.after: tuple[int, Reply] | None = None  # (n, reply): from call n on, reply

    def __call__(self, request: ChatRequest) -> Reply:
        self.calls += 1
        if self.after is not None and self.calls > self.after[0]:
            return self.after[1]
        return http_responder(self.handler)(request)


@pytest.fixture
def script() -> Script:
    return Script()


@pytest.fixture
def server(script: Script) -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(script, model="fake") as srv:
        yield srv


# --------------------------------------------------------------------------- one writer


DEFAULT_RESPONDER = "tests.support.scripts:versioned_responder"


def start_server(
    port_file: Path, responder: str = DEFAULT_RESPONDER, port: int = 0
) -> tuple[subprocess.Popen[bytes], str]:
    """The fake server in its own process, 0.1 s per reply (a run takes several seconds)."""
    return start_fake_server(port_file, responder, latency=0.1, model="fake", port=port)


@pytest.fixture
def slow_server_url(tmp_path: Path) -> Iterator[str]:
    process, url = start_server(tmp_path / "port")
    try:
        yield url
    finally:
        stop_fake_server(process)


def test_a_second_run_on_a_folder_in_use_is_refused_at_once(
    slow_server_url: str, tmp_path: Path
) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 24)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "refine_n_judge.cli", "curate", str(data), "--out", str(out),
        "--refiner", "fake", "--base-url", slow_server_url, "--concurrency", "4", "--quiet",
    ]  # fmt: skip
    first = subprocess.Popen(command, cwd=PROJECT_ROOT)
    try:
        wait_for((out / "chains.jsonl").exists, "the first run's first chain", first)
        second = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True)
        assert first.poll() is None, "the first run ended before the second started"
    finally:
        first.wait(timeout=120)
    assert second.returncode == 2
    assert f"is in use by another curate run (pid {first.pid})" in second.stderr
    assert second.stderr.count("\n") == 1  # one line
    assert first.returncode == 0
    chains, failures = ids_once(out)
    assert chains == expected and not failures


# --------------------------------------------------------------------------- retry


def broken_refiner(role: str, prompt: str) -> object:
    if role.startswith("refine"):
        return "I cannot produce JSON today."
    return versioned_handler(stop_at=1)(role, prompt)


def broken_chains() -> Any:
    """The fake server's script with a refiner that never writes JSON (loaded by name)."""
    return http_responder(broken_refiner)


def test_a_retry_killed_mid_run_then_resumed_keeps_exactly_once(tmp_path: Path) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 24)
    out = tmp_path / "out"
    broken, url = start_server(
        tmp_path / "port", "tests.integration_tests.test_curate_misuse:broken_chains"
    )
    command = [
        sys.executable, "-m", "refine_n_judge.cli", "curate", str(data), "--out", str(out),
        "--refiner", "fake", "--base-url", url, "--concurrency", "4", "--max-attempts", "1",
        "--quiet",
    ]  # fmt: skip
    try:
        assert subprocess.run(command, cwd=PROJECT_ROOT).returncode == 1
    finally:
        stop_fake_server(broken)
    assert ids_once(out) == (set(), expected)
    good, _ = start_server(tmp_path / "port", port=int(url.split(":")[2].split("/")[0]))
    try:
        retry = subprocess.Popen([*command, "--retry-failed"], cwd=PROJECT_ROOT)
        try:
            wait_for(lambda: len(rows_of(out / "chains.jsonl")) >= 3, "3 retried items", retry)
            retry.kill()  # SIGKILL: the redone items' old failure rows are still there
        finally:
            retry.wait(timeout=10)
        redone = {r["id"] for r in rows_of(out / "chains.jsonl")}
        assert 3 <= len(redone) < 24
        # A plain resume: the redone items are chains, every other one is still a failure.
        assert subprocess.run(command, cwd=PROJECT_ROOT).returncode == 1
        chains, failures = ids_once(out)
        assert chains == redone and failures == expected - redone
        assert subprocess.run([*command, "--retry-failed"], cwd=PROJECT_ROOT).returncode == 0
        assert ids_once(out) == (expected, set())
    finally:
        stop_fake_server(good)


def test_a_limited_retry_keeps_the_failures_it_did_not_retry(
    server: FakeOpenAIServer, script: Script, tmp_path: Path
) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 30)
    out = tmp_path / "out"
    script.handler = broken_refiner
    quick = ("--max-attempts", "1", "--quiet")
    assert curate(server.base_url, data, out, *quick) == 1
    assert ids_once(out) == (set(), expected)

    script.handler = versioned_handler(stop_at=1)
    assert curate(server.base_url, data, out, "--retry-failed", "--limit", "10", *quick) == 1
    chains, failures = ids_once(out)
    assert len(chains) == 10 and len(failures) == 20 and chains | failures == expected
    report = json.loads((out / "run.json").read_text())
    assert (report["counts"]["succeeded"], report["counts"]["failed"]) == (10, 20)
    assert report["invocations"][-1]["retried_failures"] == 10
    assert len(rows_of(out / "failures.retried.jsonl")) == 10

    # A plain resume does not touch failures; a full retry redoes the rest.
    assert curate(server.base_url, data, out, *quick) == 1
    assert ids_once(out) == (chains, failures)
    assert curate(server.base_url, data, out, "--retry-failed", *quick) == 0
    assert ids_once(out) == (expected, set())
    report = json.loads((out / "run.json").read_text())
    assert (report["counts"]["succeeded"], report["counts"]["failed"]) == (30, 0)
    assert sum(report["stop_reasons"].values()) == 30


# --------------------------------------------------------------------------- input


def test_a_changed_input_is_refused_unless_forced(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 6)
    out = tmp_path / "out"
    assert curate(server.base_url, data, out, "--quiet") == 0
    rows = rows_of(data)
    rows[2]["question"] = "What is 2, really?"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls = len(server.requests)
    capsys.readouterr()
    assert curate(server.base_url, data, out, "--quiet") == 2
    err = capsys.readouterr().err
    assert "was made from other input: 1 row(s) changed since they were done (first ids: i2)" in err
    assert len(server.requests) == calls
    other, _ = write_items(tmp_path / "other.jsonl", 6)
    assert curate(server.base_url, other, out, "--quiet") == 2
    assert "the input files were" in capsys.readouterr().err

    assert curate(server.base_url, data, out, "--force", "--quiet") == 0
    chains, failures = ids_once(out)
    assert chains == expected and not failures
    [redone] = [c for c in rows_of(out / "chains.jsonl") if c["id"] == "i2"]
    assert redone["question"] == "What is 2, really?"
    assert [c["id"] for c in rows_of(out / "chains.replaced.jsonl")] == ["i2"]
    assert curate(server.base_url, data, out, "--quiet") == 0  # the record is the new input


def test_a_csv_with_an_unclosed_quote_loses_one_row_only(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    lines = ["id,question,answer"] + [f"i{k},What is {k}?,v0" for k in range(1, 201)]
    lines[4] = 'i4,"What is 4?,v0'
    data = tmp_path / "in.csv"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    flags = ("--concurrency", "8", "--max-iterations", "1", "--quiet")  # 4 calls per item
    assert curate(server.base_url, data, out, *flags) == 1
    chains, failures = ids_once(out)
    assert len(chains) == 199 and chains == {f"i{k}" for k in range(1, 201)} - {"i4"}
    assert failures == {"in.csv:5"}
    [failure] = rows_of(out / "failures.jsonl")
    assert failure["line"] == 5 and "never closed" in failure["reason"]


# --------------------------------------------------------------------------- endpoints


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        listener.close()


def test_an_endpoint_that_never_answers_fails_before_the_first_item(
    silent_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = write_items(tmp_path / "in.jsonl", 3)
    started = time.monotonic()
    assert curate(f"http://127.0.0.1:{silent_port}/v1", data, tmp_path / "out") == 2
    assert time.monotonic() - started < 30
    err = capsys.readouterr().err
    assert "accepted the connection but gave no reply to GET /models within 5 s" in err


class _Refuse(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error": {"message": "Incorrect API key provided"}}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_a_wrong_key_fails_before_the_first_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = write_items(tmp_path / "in.jsonl", 3)
    with ThreadingHTTPServer(("127.0.0.1", 0), _Refuse) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        assert curate(url, data, tmp_path / "out") == 2
        httpd.shutdown()
    err = capsys.readouterr().err
    assert f"{url} refused the API key (GET /models: HTTP 401: Incorrect API key" in err


def test_a_model_the_endpoint_does_not_serve_fails_before_the_first_item(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = write_items(tmp_path / "in.jsonl", 3)
    missing = Reply(status=404, error_message="The model `nope` does not exist.")
    with FakeOpenAIServer(lambda _r: missing) as fake:
        assert curate(fake.base_url, data, tmp_path / "out", refiner="nope") == 2
    err = capsys.readouterr().err
    assert "invalid --refiner 'nope':" in err and "does not serve it (it lists: fake-model)" in err


def test_a_401_mid_run_stops_the_run_and_leaves_the_rest_for_resume(
    server: FakeOpenAIServer, script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 16)
    out = tmp_path / "out"
    script.after = (24, Reply(status=401, error_message="key revoked"))
    assert curate(server.base_url, data, out, "--concurrency", "2") == 3
    err = capsys.readouterr().err
    assert "stopped early: the endpoint" in err and "refused the API key" in err
    assert "key revoked" in err
    chains, failures = ids_once(out)
    assert 0 < len(chains) < 16 and not failures  # none of the rest is written as failed
    report = json.loads((out / "run.json").read_text())
    assert report["invocations"][-1]["status"] == "stopped"

    script.after = None
    assert curate(server.base_url, data, out, "--quiet") == 0
    assert ids_once(out) == (expected, set())


def test_a_stalled_endpoint_shows_in_the_progress_and_stops_the_run(
    server: FakeOpenAIServer, script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 6)
    out = tmp_path / "out"
    script.after = (0, Reply(content="v1", delay=600))
    started = time.monotonic()
    assert curate(server.base_url, data, out, "--request-timeout", "7") == 3
    assert time.monotonic() - started < 40
    err = capsys.readouterr().err
    assert "no reply for 1" in err  # the progress line, from 10 s on
    assert "stopped early: no reply from the endpoint" in err
    assert "a run stops after 14 s without one" in err
    assert ids_once(out) == (set(), set())

    script.after = None
    assert curate(server.base_url, data, out, "--quiet") == 0
    assert ids_once(out) == (expected, set())


def test_an_endpoint_that_dies_mid_run_stops_after_a_few_connection_failures(
    script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 40)
    out = tmp_path / "out"
    fake = FakeOpenAIServer(script, model="fake").start()
    port = fake.port

    dying = threading.Event()

    def respond(request: ChatRequest) -> Reply:
        if script.calls >= 60 and not dying.is_set():  # about the 60th call is the last
            dying.set()
            threading.Thread(target=fake.stop, daemon=True).start()
        return script(request)

    fake.responder = respond
    flags = ("--concurrency", "2", "--max-attempts", "1")
    assert curate(fake.base_url, data, out, *flags) == 3
    fake.stop()
    err = capsys.readouterr().err
    assert "3 items in a row could not reach the endpoint" in err
    chains, failures = ids_once(out)
    assert 0 < len(chains) < 40 and not failures

    with FakeOpenAIServer(script, model="fake", port=port) as again:
        assert curate(again.base_url, data, out, *flags, "--quiet") == 0
    assert ids_once(out) == (expected, set())


# --------------------------------------------------------------------------- flags


def test_base_url_alone_uses_the_model_the_endpoint_serves(script: Script, tmp_path: Path) -> None:
    data, expected = write_items(tmp_path / "in.jsonl", 2)
    out = tmp_path / "out"
    with FakeOpenAIServer(script, model="served-model") as fake:
        assert curate(fake.base_url, data, out, "--quiet", refiner="") == 0
        assert {r.model for r in fake.requests} == {"served-model"}
    report = json.loads((out / "run.json").read_text())
    assert report["settings"]["context"]["refiner"] == "served-model"
    assert ids_once(out) == (expected, set())


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--answer-field", "response"], "invalid --answer-field 'response': none of the first"),
        (["--id-field", "idd"], "invalid --id-field 'idd'"),
    ],
)
def test_a_field_flag_no_row_has_is_exit_2(
    server: FakeOpenAIServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    words: str,
) -> None:
    data, _ = write_items(tmp_path / "in.jsonl", 3)
    assert curate(server.base_url, data, tmp_path / "out", *flags) == 2
    assert words in capsys.readouterr().err
    assert not server.requests


def test_a_json_object_input_and_a_bad_cache_are_one_line_exit_2(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "in.json"
    data.write_text(json.dumps({"meta": {}, "rows": [{"question": "q"}]}, indent=2))
    assert curate(server.base_url, data, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "holds one JSON object" in err and "'rows' holds an array of 1" in err
    good, _ = write_items(tmp_path / "in.jsonl", 1)
    for cache in (tmp_path, data):
        assert curate(server.base_url, good, tmp_path / "out2", "--cache", str(cache)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: invalid --cache") and "\n" not in err
    assert not server.requests


def test_secrets_in_endpoint_urls_are_never_shown_or_written(
    server: FakeOpenAIServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    data, _ = write_items(tmp_path / "in.jsonl", 1)
    out = tmp_path / "out"
    url = server.base_url.replace("http://", "http://user:pw-SECRET@")
    assert curate(url, data, out) == 0
    shown = capsys.readouterr()
    assert "SECRET" not in shown.out + shown.err
    assert "SECRET" not in (out / "run.json").read_text()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("REFINE_N_JUDGE_BASE_URL", f"http://127.0.0.1:{port}/v1?key=SECRET#t=SECRET")
    code = cli.main(["curate", str(data), "--out", str(tmp_path / "o2")])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot connect to http://127.0.0.1" in err and "key=REDACTED" in err
    assert "SECRET" not in err
