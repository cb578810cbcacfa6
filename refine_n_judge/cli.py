"""The `refine-n-judge` command line (also `python -m refine_n_judge.cli`).

Subcommands are registered in `SUBCOMMANDS`, one entry each (name, help, a function that
adds its flags, a function that runs it and returns the exit code).

Exit codes: 0 success, 1 some items failed or the run could not go on (curate), 2 bad
settings, input or endpoint, or an output directory in use (nothing was run), 3 the
endpoint stopped a curate run early (what was written is kept; rerun to resume),
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from endpoints import embedded
from endpoints.tokens import TokenizerUnavailableError, ensure_tiktoken_cache
from refine_n_judge.curate import CurateError, SettingsError, curate
from refine_n_judge.curate.options import add_curate_arguments, options_from_args
from refine_n_judge.judge_check import judge_check
from refine_n_judge.judge_check.options import (
    add_judge_check_arguments,
    judge_check_options_from_args,
)
from refine_n_judge.view.command import add_view_arguments, run_view

EXIT_FAILED = 1
EXIT_SETTINGS = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Subcommand:
    """One `refine-n-judge <name>` subcommand."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _run_curate(args: argparse.Namespace) -> int:
    return curate(options_from_args(args))


def _run_judge_check(args: argparse.Namespace) -> int:
    return judge_check(judge_check_options_from_args(args))


# --------------------------------------------------------------------------- prepare


def _add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-model",
        action="store_true",
        help="only seed the tokenizer cache; leave the embedded model alone",
    )


def _run_prepare(args: argparse.Namespace) -> int:
    """Seed tiktoken's cache; assemble and verify the embedded model when it is installed."""
    try:
        directory = ensure_tiktoken_cache()
    except TokenizerUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"tokenizer: tiktoken encodings ready in {directory}")
    if args.skip_model:
        return 0
    try:
        embedded.require_llama_cpp_server()
        path = embedded.assemble_model()
    except embedded.ModelIntegrityError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except embedded.EmbeddedModelError as exc:
        print(f"embedded model: not available ({exc})")
        print(
            "note: runs need --base-url, REFINE_N_JUDGE_BASE_URL/MODEL or OPENAI_API_KEY "
            "until the local extra is installed"
        )
        return 0
    print(f"embedded model: verified {path} (sha256 matches the official file)")
    return 0


SUBCOMMANDS: list[Subcommand] = [
    Subcommand(
        "curate",
        "run Refine-n-Judge over a dataset: chains, SFT rows, DPO pairs, failures, run report",
        add_curate_arguments,
        _run_curate,
    ),
    Subcommand(
        "judge-check",
        "measure the judge on labelled answer pairs as the loop uses it; calibrate its margin",
        add_judge_check_arguments,
        _run_judge_check,
    ),
    Subcommand(
        "serve-model",
        "serve the embedded local model on 127.0.0.1 (OpenAI-compatible)",
        embedded.add_serve_arguments,
        embedded.serve_main,
    ),
    Subcommand(
        "view",
        "browse a curate output folder in a local web page: the run, the items, each chain",
        add_view_arguments,
        run_view,
    ),
    Subcommand(
        "prepare",
        "seed the tokenizer cache and assemble + verify the embedded model (run by make setup)",
        _add_prepare_arguments,
        _run_prepare,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    """The parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="refine-n-judge",
        description="Refine-n-Judge: iterative refinement verified by an LLM judge.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for sub in SUBCOMMANDS:
        sub_parser = commands.add_parser(sub.name, help=sub.help, description=sub.help)
        sub.add_arguments(sub_parser)
        sub_parser.set_defaults(run=sub.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` and run the subcommand; the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SETTINGS
    except CurateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
