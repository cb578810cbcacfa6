"""The real LangGraph API server (`langgraph_api`, in-memory runtime) in a subprocess.

`LangGraphServer` starts `langgraph_api.cli.run_server` the way `langgraph dev` does, but
for tests: reload off, no browser, no version check, a free loopback port, a temporary
working directory (so `.langgraph_api/` lands there, not in the repo), the graphs from our
`langgraph.json` with their paths made absolute, and an environment built from scratch
for LangSmith and model keys (a developer's `.env` or shell can not switch tracing on or
leak a key into the server). Readiness is polled on `/ok`; shutdown is SIGTERM to the
process group the server was started in, then SIGKILL if it does not exit.

Run as a script, this file is the child process::

    python langgraph_server.py --config /path/langgraph.json --port 12345 [--jobs 10] \
        [--parent-pid PID]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO_ROOT / "langgraph.json"

# Variables the server process never inherits: they could turn tracing on (and so reach
# LangSmith) or put a real key or endpoint within the graph's reach.
_SCRUBBED_PREFIXES = ("LANGSMITH_", "LANGCHAIN_", "REFINE_N_JUDGE_")
_SCRUBBED_NAMES = frozenset({"OPENAI_API_KEY", "OPENAI_BASE_URL", "LANGGRAPH_CLOUD_LICENSE_KEY"})


class ServerStartError(RuntimeError):
    """The server process exited or did not answer `/ok` in time; the message has its log."""


class PortTakenError(ServerStartError):
    """Another process took the picked port before the server could bind it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def graphs_from_config(config_path: Path) -> dict[str, str]:
    """The `graphs` of a `langgraph.json`, with file paths made absolute.

    `langgraph dev` resolves `./refine_n_judge/server.py:graph` against its working directory;
    the test server runs elsewhere, so the paths are resolved against the config's folder.
    """
    config = json.loads(config_path.read_text(encoding="utf-8"))
    graphs: dict[str, str] = {}
    for graph_id, spec in config["graphs"].items():
        path, sep, attr = str(spec).rpartition(":")
        if sep and (path.endswith(".py") or "/" in path):
            graphs[graph_id] = f"{(config_path.parent / path).resolve()}:{attr}"
        else:  # a module path (`package.module:attr`) resolves through sys.path
            graphs[graph_id] = str(spec)
    return graphs


def server_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The server process's environment: ours without tracing or model settings, plus
    `extra`, with LangSmith tracing and the PyPI version check explicitly off."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SCRUBBED_PREFIXES) and key not in _SCRUBBED_NAMES
    }
    env.update(
        {
            "LANGSMITH_TRACING": "false",
            "LANGGRAPH_NO_VERSION_CHECK": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


class LangGraphServer:
    """One `langgraph_api` server process; use as a context manager or start()/stop()."""

    def __init__(
        self,
        workdir: Path,
        *,
        config_path: Path = CONFIG_PATH,
        env: Mapping[str, str] | None = None,
        jobs_per_worker: int = 10,
        startup_timeout: float = 90.0,
    ) -> None:
        self.workdir = workdir
        self.config_path = config_path
        self.env = server_environment(env)
        self.jobs_per_worker = jobs_per_worker
        self.startup_timeout = startup_timeout
        self.log_path = workdir / "server.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. `http://127.0.0.1:41234`."""
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def start(self, attempts: int = 3) -> LangGraphServer:
        """Start the process and return once `/ok` answers 200.

        The port is free when picked but could be taken before the server binds it
        (`run_server` would then move to another port and say so in its log); that start
        is abandoned and retried on a new port.
        """
        for attempt in range(1, attempts + 1):
            try:
                return self._start_once()
            except PortTakenError:
                if attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> LangGraphServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            "--jobs",
            str(self.jobs_per_worker),
            "--parent-pid",
            str(os.getpid()),
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if "already in use" in self.log_tail():
                    raise PortTakenError(f"port {self.port} was taken:\n{self.log_tail()}")
                code = self._process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"langgraph_api server exited with code {code}:\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/ok").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise ServerStartError(
            f"langgraph_api server did not answer /ok within {self.startup_timeout:.0f}s:\n"
            f"{self.log_tail()}"
        )

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL it if it is still there after
        `grace` seconds, and reap it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)
        except ProcessLookupError:
            process.wait(timeout=grace)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> LangGraphServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _exit_with_parent(parent_pid: int) -> None:
    """SIGTERM ourselves once the test process is gone (e.g. killed before its teardown),
    so no server outlives the tests that started it."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    """Child process: serve the config's graphs on 127.0.0.1:<port> until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=CONFIG_PATH)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=10, help="concurrent runs per worker")
    parser.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    args = parser.parse_args(argv)
    if args.parent_pid:
        _exit_with_parent(args.parent_pid)

    config_path: Path = args.config.resolve()
    config = json.loads(config_path.read_text(encoding="utf-8"))
    # What `langgraph dev` does with "dependencies": make them importable.
    for dependency in config.get("dependencies", []):
        path = (config_path.parent / dependency).resolve()
        if path.is_dir():
            sys.path.append(str(path))

    from langgraph_api.cli import run_server

    run_server(
        host="127.0.0.1",
        port=args.port,
        reload=False,
        graphs=graphs_from_config(config_path),
        n_jobs_per_worker=args.jobs,
        open_browser=False,
        server_level="WARNING",
    )


if __name__ == "__main__":
    main()
