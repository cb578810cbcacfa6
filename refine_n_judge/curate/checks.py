"""The checks `curate` makes before anything runs: inputs, models, settings (the
endpoint: `endpoint_check`; the input against the directory: `input_record`).

Each refuses with a `SettingsError` whose message names the flag or file at fault and
says what to do; none calls a model or changes the output directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openai import OpenAIError

from endpoints.embedded import EmbeddedModelError
from endpoints.redact import redact_url
from endpoints.settings import embedded_server, stop_embedded_server
from nodes.context import Context
from nodes.models import ModelConfigError, build_chat_model
from refine_n_judge.curate.errors import SettingsError, SettingsMismatchError
from refine_n_judge.curate.outputs import OutputDir
from refine_n_judge.curate.readers import InputFormat, detect_format


@dataclass(frozen=True)
class InputFile:
    """One input file, its format and the name its rows are reported under."""

    path: Path
    format: InputFormat
    display: str


def resolve_inputs(paths: list[Path], input_format: InputFormat | None) -> list[InputFile]:
    """Check the inputs exist and have a known format (`input_format`: every file's, else
    by name); name them for error messages."""
    resolved: list[InputFile] = []
    names = [path.name for path in paths]
    for path in paths:
        if not path.exists():
            raise SettingsError(f"input file {path} does not exist")
        fmt = detect_format(path, input_format)
        if fmt == "parquet":
            try:
                import pyarrow.parquet  # noqa: F401 - the `data` extra
            except ImportError as exc:
                raise SettingsError(
                    f"reading {path} needs pyarrow: pip install 'refine-n-judge[data]'"
                ) from exc
        display = path.name if names.count(path.name) == 1 else str(path)
        resolved.append(InputFile(path=path, format=fmt, display=display))
    return resolved


def check_base_url(url: str, flag: str) -> None:
    """Refuse a base URL that is not `http(s)://host[:port]/...` (said without secrets).

    Raises:
        SettingsError: the URL cannot be used.
    """
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise SettingsError(f"invalid {flag} {redact_url(url)!r}: expected http(s)://host[:port]")


def check_models(context: Context) -> None:
    """Build every named model once (no call is made) so a bad name fails now."""
    if context.base_url:
        check_base_url(context.base_url, "--base-url")

    n_judges = max(len(context.judges), 1)
    if context.quorum > n_judges:
        raise SettingsError(
            f"invalid --quorum {context.quorum}: only {n_judges} judge(s) are configured "
            "(add --judge flags or lower --quorum)"
        )
    names = [
        ("--refiner", context.refiner),
        *(("--judge", name) for name in context.judges),
        ("--alternate-refiner", context.alternate_refiner),
    ]
    for flag, name in names:
        if name is None:
            continue
        try:
            build_chat_model(name, base_url=context.base_url, timeout=context.request_timeout)
        except (ModelConfigError, ValueError, ImportError, OpenAIError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SettingsError(f"invalid {flag} {name!r}: {first_line}") from exc


def start_embedded_model() -> None:
    """Start the embedded server now, so a missing install fails before the run."""
    try:
        embedded_server()
    except EmbeddedModelError as exc:
        raise SettingsError(str(exc)) from exc


@contextmanager
def embedded_model_running(needed: bool) -> Iterator[None]:
    """The embedded server started now (when `needed`) and stopped at the end."""
    if not needed:
        yield
        return
    start_embedded_model()
    try:
        yield
    finally:
        stop_embedded_server()


def settings_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """`key: old -> new` for every setting that differs."""
    if isinstance(old, dict) and isinstance(new, dict):
        diffs: list[str] = []
        for key in sorted(set(old) | set(new)):
            diffs += settings_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return diffs
    if old != new:
        return [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]
    return []


def has_items(outputs: OutputDir) -> bool:
    """True when the directory already holds committed rows."""
    return any(p.exists() and p.stat().st_size > 0 for p in (outputs.chains, outputs.failures))


def refuse_changed_settings(
    old: Any, new: dict[str, Any], *, force: bool, path: Path, holds: str
) -> list[str]:
    """How the compared settings changed since the directory's last run (`holds`: what the
    directory holds, for the message); refused unless --force.

    Raises:
        SettingsMismatchError: they changed and `force` is not given.
    """
    diffs = settings_differences(old, new)
    if diffs and not force:
        shown = "; ".join(diffs[:5]) + (f"; and {len(diffs) - 5} more" if len(diffs) > 5 else "")
        raise SettingsMismatchError(
            f"{path} holds {holds} made with other settings ({shown}); rerun with the same "
            "settings to resume, use another --out, or pass --force to continue anyway"
        )
    return diffs


def check_resume_settings(
    outputs: OutputDir, compared: dict[str, Any], *, force: bool
) -> tuple[dict[str, Any] | None, list[str]]:
    """The previous report and how the compared settings changed; refuses a change unless
    `force`."""
    previous = outputs.read_report()
    if previous is None or not has_items(outputs):
        return previous, []
    old = previous.get("compared_settings")
    return previous, refuse_changed_settings(
        old, compared, force=force, path=outputs.path, holds="a run"
    )
