"""Tests that drive real processes: wait for what another process writes, and run the fake
OpenAI server in a process of its own (so a test can kill the client, or the server)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 60.0


def wait_for(
    condition: Callable[[], object],
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    *,
    deadline: float = DEADLINE_SECONDS,
) -> None:
    """Poll an observable condition (a file the other process writes) until it holds; fail
    when `process` exits first or `deadline` seconds pass."""
    until = time.monotonic() + deadline
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}) before {what}")
        if time.monotonic() > until:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start_fake_server(
    port_file: Path,
    responder: str,
    *,
    latency: float,
    model: str | None = None,
    port: int = 0,
) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m tests.support.fake_openai` with `responder` (`module:attr`) and `latency`
    seconds per reply; the process and its base URL once it listens."""
    port_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "tests.support.fake_openai", "--responder", responder,
        "--latency", str(latency), "--port-file", str(port_file), "--port", str(port),
    ]  # fmt: skip
    if model is not None:
        command += ["--model", model]
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_for(port_file.exists, "the fake server's port file", process)
    return process, f"http://127.0.0.1:{int(port_file.read_text())}/v1"


def stop_fake_server(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=10)


@contextmanager
def fake_server(port_file: Path, responder: str, *, latency: float) -> Iterator[str]:
    """The fake server's base URL while the block runs."""
    process, url = start_fake_server(port_file, responder, latency=latency)
    try:
        yield url
    finally:
        stop_fake_server(process)
