"""`refine-n-judge view OUT`: serve the viewer of a curate output folder on 127.0.0.1."""

from __future__ import annotations

import argparse
import errno
import socket
import sys
import webbrowser
from pathlib import Path

from refine_n_judge.curate.errors import SettingsError
from refine_n_judge.curate.outputs import CHAINS, FAILURES, REPORT

HOST = "127.0.0.1"


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `refine-n-judge view`."""
    parser.add_argument(
        "out", metavar="OUT", type=Path, help="a curate output folder (the --out of `curate`)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="port on 127.0.0.1 (default: a free one, printed)",
    )
    parser.add_argument(
        "--open", action="store_true", help="open the page in the default web browser"
    )


def bind(port: int) -> socket.socket:
    """A listening socket on the loopback address.

    Raises:
        SettingsError: the port is out of range or already taken.
    """
    if not 0 <= port <= 65535:
        raise SettingsError(f"--port must be between 0 and 65535 (0: a free one), not {port}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise SettingsError(
                f"port {port} on {HOST} is taken; pick another --port or leave it out for a "
                "free one"
            ) from exc
        raise SettingsError(f"cannot listen on {HOST}:{port}: {exc}") from exc
    return sock


def run_view(args: argparse.Namespace) -> int:
    """Serve the viewer until interrupted; the exit code."""
    out: Path = args.out
    if not out.is_dir():
        raise SettingsError(
            f"{out} is not a folder: pass the --out folder of a curate run (e.g. runs/demo)"
        )
    try:
        # The `view` extra (Starlette, uvicorn, Jinja2): imported only for this command.
        import uvicorn

        from refine_n_judge.view.app import create_app
    except ImportError as exc:
        raise SettingsError(
            f"the viewer needs the `view` extra ({exc.name} is missing): "
            "pip install 'refine-n-judge[view]'"
        ) from exc

    if not any((out / name).exists() for name in (CHAINS, FAILURES, REPORT)):
        print(
            f"note: {out} holds no curate output yet ({CHAINS}, {FAILURES}, {REPORT}); "
            "the pages fill in as a run writes them",
            file=sys.stderr,
        )
    sock = bind(args.port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    print(f"refine-n-judge view: {out} on {url} (read-only; Ctrl+C stops)", flush=True)
    if args.open:
        webbrowser.open(url)  # the socket already listens: the browser's request waits for us
    config = uvicorn.Config(
        create_app(out.resolve()), log_level="warning", access_log=False, lifespan="on"
    )
    with sock:
        uvicorn.Server(config).run(sockets=[sock])
    return 0
