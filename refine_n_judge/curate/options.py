"""The `curate` command's flags and the validated settings they make.

Every field of the graph's `Context` gets a flag of the same name (`--max-iterations`,
`--judge-scoring`, ...), generated from the model so the CLI never drifts from it; `--judge`
is repeatable and `--criteria` takes a comma-separated list. A flag not given leaves the
Context default. API keys are never flags: they come from the environment only.
"""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from nodes.context import Context
from refine_n_judge.curate.errors import SettingsError
from refine_n_judge.curate.exports import DpoPairs
from refine_n_judge.curate.outputs import CACHE
from refine_n_judge.curate.readers import INPUT_FORMATS, InputFormat
from refine_n_judge.curate.rows import FieldMap
from refine_n_judge.curate.run_settings import (
    DEFAULT_CONCURRENCY,
    EMBEDDED_CONCURRENCY,
    RecordedSettings,
    record_settings,
)

DEFAULT_MAX_CHARS = 16_000
LogFormat = Literal["text", "json"]
Engine = Literal["local", "ray"]

# Context fields whose flag is not generated from the field itself.
_SPECIAL_FLAGS = {"judges": "--judge", "criteria": "--criteria"}


class CurateOptions(BaseModel):
    """Everything one `curate` run is told, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    inputs: list[Path] = Field(min_length=1)
    out: Path
    input_format: InputFormat | None = None
    fields: FieldMap = Field(default_factory=FieldMap)
    max_chars: int = Field(default=DEFAULT_MAX_CHARS, ge=0)
    limit: int | None = Field(default=None, ge=1)
    context: Context = Field(default_factory=Context)
    concurrency: int | None = Field(
        default=None, ge=1, le=4096, description="None: 16, or 1 on the embedded model."
    )
    rps: float | None = Field(default=None, gt=0)
    cache: Path | None = None
    retry_failed: bool = False
    force: bool = False
    dpo_pairs: DpoPairs = "adjacent"
    quiet: bool = False
    log_format: LogFormat = "text"
    prices: Path | None = None
    engine: Engine = "local"
    ray_address: str | None = Field(
        default=None, description="None: RAY_ADDRESS, else `local` (see ray_engine)."
    )
    actors: int = Field(default=1, ge=1, le=4096)
    in_flight_per_actor: int | None = Field(default=None, ge=1, le=4096)
    blocks: int | None = Field(default=None, ge=1)

    @property
    def uses_default_model(self) -> bool:
        """True when some role has no model name and so uses the configured default."""
        return self.context.refiner is None

    def recorded_settings(self) -> RecordedSettings:
        """The settings run.json records: the compared ones (a resume must match them) and
        the operational ones."""
        return record_settings(
            self.context,
            uses_default_model=self.uses_default_model,
            compared={
                "fields": self.fields.model_dump(),
                "max_chars": self.max_chars,
                "dpo_pairs": self.dpo_pairs,
            },
            operational={
                "input_format": self.input_format,
                "limit": self.limit,
                "concurrency": self.concurrency,
                "rps": self.rps,
                "cache": None if self.cache is None else str(self.cache),
                "engine": self.engine,
            },
        )


# --------------------------------------------------------------------------- argparse


def flag_of(field_name: str) -> str:
    """The CLI flag of a Context field."""
    return _SPECIAL_FLAGS.get(field_name, "--" + field_name.replace("_", "-"))


def add_curate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `curate` flags to `parser`."""
    parser.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="input files: .jsonl, .json (array), .csv, .tsv, .parquet (.gz for the text ones)",
    )
    parser.add_argument(
        "-o", "--out", type=Path, required=True, help="output directory (created if needed)"
    )

    data = parser.add_argument_group("input")
    data.add_argument(
        "--input-format", choices=INPUT_FORMATS, help="format of every input (default: by name)"
    )
    for name, default in FieldMap().model_dump().items():
        data.add_argument(
            f"--{name}-field",
            default=default,
            metavar="NAME",
            help=f"input field holding the {name} (default: {default}; a.b reaches nested)",
        )
    data.add_argument(
        "--max-chars",
        type=int,
        default=DEFAULT_MAX_CHARS,
        help="longest question/answer/reference in characters; longer rows go to failures "
        f"(default: {DEFAULT_MAX_CHARS}; 0: no limit)",
    )
    data.add_argument("--limit", type=int, help="process at most this many new items")

    add_context_arguments(parser)

    run = parser.add_argument_group("run")
    add_pacing_arguments(run, unit="items", cache_gain="so redoing finished work costs no calls")
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="run the items in failures.jsonl again (with --limit: that many); a failure "
        "leaves failures.jsonl only when its item is redone",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="resume even though the settings differ from the directory's run.json, or the "
        "input from its inputs.json (changed rows are redone)",
    )
    run.add_argument(
        "--dpo-pairs",
        choices=("adjacent", "all"),
        default="adjacent",
        help="adjacent: each accepted refinement over its predecessor (default); all: every "
        "later chain answer over every earlier one. Both add the final answer over the last "
        "rejected refinement",
    )
    run.add_argument(
        "--prices",
        type=Path,
        help='JSON file of USD per million tokens: {"model": {"input": 0.15, "output": 0.6}}',
    )
    add_display_arguments(run)
    _add_ray_arguments(parser)


def add_pacing_arguments(group: argparse._ArgumentGroup, *, unit: str, cache_gain: str) -> None:
    """`--concurrency`, `--rps` and `--cache`, as `curate` and `judge-check` both take them."""
    group.add_argument(
        "--concurrency",
        type=int,
        help=f"{unit} in flight at once (default: {DEFAULT_CONCURRENCY}; "
        f"{EMBEDDED_CONCURRENCY} on the embedded model, which answers one request at a time)",
    )
    group.add_argument("--rps", type=float, help="most model requests per second (all models)")
    group.add_argument(
        "--cache",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help=f"cache model replies in SQLite (default path: OUT/{CACHE}), {cache_gain}",
    )


def cache_path(args: argparse.Namespace) -> Path | None:
    """`--cache` as a path: the one given, or OUT/llm_cache.sqlite when given bare."""
    return None if args.cache is None else Path(args.cache or args.out / CACHE)


def add_display_arguments(group: argparse._ArgumentGroup) -> None:
    """-q/--quiet and --log-format: what a running command shows (`progress`)."""
    group.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
    group.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: progress bar and table; json: one JSON event per line on stderr",
    )


def _add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--engine` flag and the Ray engine's flags (see `refine_n_judge.curate.ray_engine`)."""
    ray = parser.add_argument_group(
        "engine (--engine ray needs: pip install 'refine-n-judge[ray]')"
    )
    ray.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: one process (default); ray: Ray Data actors, locally or on a cluster",
    )
    ray.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="local (a private Ray on 127.0.0.1), auto, or host:port "
        "(default: RAY_ADDRESS, else local)",
    )
    ray.add_argument("--actors", type=int, default=1, help="Ray actors running the graph")
    ray.add_argument(
        "--in-flight-per-actor",
        type=int,
        help="items in flight in each actor (default: --concurrency split across the actors)",
    )
    ray.add_argument("--blocks", type=int, help="blocks the input is split into (default: auto)")


def add_context_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of the graph's `Context` (shared by every command that runs it)."""
    models = parser.add_argument_group(
        "models and loop (the graph's Context; API keys only from the environment)"
    )
    for name, info in Context.model_fields.items():
        _add_context_flag(models, name, info.description or "")


def context_from_args(args: argparse.Namespace) -> Context:
    """The `Context` the flags of `add_context_arguments` give (defaults where not given).

    Raises:
        SettingsError: a flag has a value the Context refuses; the message names the flag.
    """
    values: dict[str, Any] = {}
    for name in Context.model_fields:
        value = getattr(args, f"ctx_{name}", None)
        if value is None:
            continue
        if name == "criteria":
            value = [c for c in (part.strip() for part in value.split(",")) if c]
        values[name] = None if value is _EXPLICIT_NONE else value
    try:
        return Context(**values)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc


def _add_context_flag(group: argparse._ArgumentGroup, name: str, description: str) -> None:
    flag = flag_of(name)
    help_text = description.replace("%", "%%")
    if name == "judges":
        group.add_argument(
            flag, dest="ctx_judges", action="append", metavar="MODEL", help=help_text
        )
        return
    if name == "criteria":
        group.add_argument(
            flag,
            dest="ctx_criteria",
            metavar="A,B,...",
            help=help_text + " Comma-separated.",
        )
        return
    annotation = Context.model_fields[name].annotation
    kwargs: dict[str, Any] = {"dest": f"ctx_{name}", "default": None, "help": help_text}
    base, optional = _unwrap_optional(annotation)
    if get_origin(base) is Literal:
        kwargs["choices"] = get_args(base)
    elif base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif base in (int, float):
        kwargs["type"] = _number_or_none(base) if optional else base
        kwargs["metavar"] = "N" if base is int else "X"
    else:
        kwargs["metavar"] = "URL" if name == "base_url" else "MODEL"
    group.add_argument(flag, **kwargs)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


class _ExplicitNone:
    """What `--max-tokens none` parses to (None itself means: the flag was not given)."""

    def __repr__(self) -> str:
        return "none"


_EXPLICIT_NONE = _ExplicitNone()


def _number_or_none(kind: type) -> Any:
    def parse(text: str) -> Any:
        return _EXPLICIT_NONE if text.strip().lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def options_from_args(args: argparse.Namespace) -> CurateOptions:
    """Validated options from parsed flags.

    Raises:
        SettingsError: a flag has a value the settings refuse; the message names the flag.
    """
    context = context_from_args(args)
    fields = {name: getattr(args, f"{name}_field") for name in FieldMap.model_fields}
    try:
        return CurateOptions(
            inputs=args.inputs,
            out=args.out,
            input_format=args.input_format,
            fields=FieldMap(**fields),
            max_chars=args.max_chars,
            limit=args.limit,
            context=context,
            concurrency=args.concurrency,
            rps=args.rps,
            cache=cache_path(args),
            retry_failed=args.retry_failed,
            force=args.force,
            dpo_pairs=args.dpo_pairs,
            quiet=args.quiet,
            log_format=args.log_format,
            prices=args.prices,
            engine=getattr(args, "engine", "local"),
            ray_address=getattr(args, "ray_address", None),
            actors=getattr(args, "actors", 1),
            in_flight_per_actor=getattr(args, "in_flight_per_actor", None),
            blocks=getattr(args, "blocks", None),
        )
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc


def describe_validation_error(exc: ValidationError) -> str:
    """The first problem of a settings validation error, named by its CLI flag."""
    error = exc.errors()[0]
    location = [str(part) for part in error["loc"] if not str(part).isdigit()]
    field = location[-1] if location else ""
    if field in Context.model_fields:
        where = flag_of(field)
    elif field in FieldMap.model_fields and len(location) > 1:
        where = f"--{field}-field"
    elif field:
        where = "--" + field.replace("_", "-")
    else:
        where = "settings"
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    if field and not isinstance(given, dict | BaseModel) and given is not None:
        return f"invalid {where} {given!r}: {message}"
    return f"invalid {where}: {message}"
