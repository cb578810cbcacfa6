"""What a run records of its settings, and how many items it keeps in flight; shared by
`curate` and `judge-check`.

A report keeps two views of the settings: the compared ones (the graph's `Context` without
the timeout, the default model when one is used, the command's own output-deciding flags),
which a resume must match, and all of them. They are made once, at the top of the command,
after the endpoint check has named the default model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from endpoints.embedded import MODEL_ALIAS
from endpoints.redact import redact_url
from endpoints.settings import Settings, default_endpoint
from nodes.context import Context

DEFAULT_CONCURRENCY = 16
EMBEDDED_CONCURRENCY = 1
"""The embedded llama.cpp server computes one request at a time: more items in flight only
queue up there and run into the request timeout."""
EMBEDDED_MODEL = "(embedded model)"
"""How `default_model_description` ends when the default model is the embedded one."""
OPERATIONAL_CONTEXT_FIELDS = frozenset({"request_timeout"})
"""Context fields that change how fast a run goes, not what it writes: a resume may change
them."""


def default_model_description() -> str:
    """Which model a missing model name means, without starting anything.

    From the environment (see `endpoints.settings`); the key itself never appears.
    """
    settings = Settings()
    if settings.base_url or settings.model or os.environ.get("OPENAI_API_KEY"):
        return default_endpoint(settings).describe()
    return f"{MODEL_ALIAS} {EMBEDDED_MODEL}"


def effective_concurrency(concurrency: int | None, *, embedded: bool) -> int:
    """Items in flight: `concurrency` as given, else the default for the endpoint."""
    if concurrency is not None:
        return concurrency
    return EMBEDDED_CONCURRENCY if embedded else DEFAULT_CONCURRENCY


@dataclass(frozen=True)
class RecordedSettings:
    """A run's settings as its report records them (no secrets)."""

    compared: dict[str, Any]
    """The settings that decide what the run writes; a resume must match them."""
    reported: dict[str, Any]
    """Every setting: the compared ones, then the operational ones."""

    @property
    def default_model(self) -> str | None:
        """The default model's description, when some role uses it."""
        return self.compared["default_model"]

    @property
    def uses_embedded_model(self) -> bool:
        """True when the default model is used and is the embedded one (no endpoint or key
        configured)."""
        return self.default_model is not None and self.default_model.endswith(EMBEDDED_MODEL)


def record_settings(
    context: Context,
    *,
    uses_default_model: bool,
    compared: dict[str, Any],
    operational: dict[str, Any],
) -> RecordedSettings:
    """The recorded settings of a run with this `Context`; `compared` and `operational` are
    the command's own settings of each kind, in the order the report shows them."""
    graph = context.model_dump(mode="json", exclude=set(OPERATIONAL_CONTEXT_FIELDS))
    graph["base_url"] = redact_url(graph.get("base_url"))
    both = {
        "context": graph,
        "default_model": default_model_description() if uses_default_model else None,
        **compared,
    }
    return RecordedSettings(
        compared=both,
        reported={**both, "request_timeout": context.request_timeout, **operational},
    )
