"""LangSmith tracing of Refine-n-Judge runs: off by default, on by the usual variables.

Tracing is LangChain's own: set ``LANGSMITH_TRACING=true`` and ``LANGSMITH_API_KEY``
(optionally ``LANGSMITH_PROJECT``, ``LANGSMITH_ENDPOINT``) and every run of the graph is
one trace::

    refine_n_judge                      chain  (tags item:<id>; metadata item_id)
    ├─ initial_answer                   chain  (metadata langgraph_node, langgraph_step)
    ├─ feedback                         chain
    │  └─ feedback                      llm    (role:refiner, model:<m>, iteration:1)
    ├─ refine                           chain
    │  └─ refine                        llm    (role:refiner, model:<m>, iteration:1)
    ├─ judge                            chain
    │  ├─ judge[refined_first]          chain  (role:judge, model:<m>, position:refined_first)
    │  │  └─ judge[refined_first]       llm
    │  └─ judge[refined_second]         chain  (role:judge, model:<m>, position:refined_second)
    │     └─ judge[refined_second]      llm
    ├─ feedback ... refine ... judge    (one group per iteration)
    └─ finish                           chain

`item_config` labels one item's run so its id reaches every run of the trace; the
`curate` command passes it for each item. `tracing_disabled` switches tracing off in a
block whatever the environment says (offline evaluations).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import merge_configs
from langsmith import run_helpers
from langsmith import utils as ls_utils

TRACING_ENV_VARS: tuple[str, ...] = (
    "LANGSMITH_TRACING",
    "LANGSMITH_TRACING_V2",
    "LANGCHAIN_TRACING_V2",
    "LANGCHAIN_TRACING",
)
"""Any of these set to ``true`` turns tracing on (LangSmith reads them; we only report)."""


def tracing_enabled() -> bool:
    """True when runs started here would be traced (environment or `tracing_context`)."""
    return ls_utils.tracing_is_enabled() is True


def tracing_project() -> str | None:
    """The LangSmith project traces go to when tracing is on (``LANGSMITH_PROJECT``,
    else LangSmith's ``default``); None when tracing is off."""
    if not tracing_enabled():
        return None
    context_project = run_helpers.get_tracing_context().get("project_name")
    return context_project or ls_utils.get_tracer_project()


def describe_tracing() -> str:
    """One line for logs and run reports: whether runs are traced, and where."""
    project = tracing_project()
    if project is None:
        return "LangSmith tracing off (set LANGSMITH_TRACING=true and LANGSMITH_API_KEY)"
    return f"LangSmith tracing on (project {project!r})"


def item_config(
    item_id: str | None,
    *,
    tags: Sequence[str] = (),
    metadata: Mapping[str, Any] | None = None,
    base: RunnableConfig | None = None,
) -> RunnableConfig:
    """The config for one item's run: tag ``item:<id>`` and metadata ``item_id``.

    LangChain passes the root run's tags and metadata down to every child run, so the id
    reaches each node, judge call and model call of the trace (and a trace can be found
    in LangSmith by ``metadata.item_id``). ``base`` is merged in (its callbacks, limits,
    tags and metadata are kept); ``item_id=None`` adds nothing but ``tags``/``metadata``.
    """
    own_tags = list(tags)
    own_metadata: dict[str, Any] = dict(metadata or {})
    if item_id is not None:
        own_tags.append(f"item:{item_id}")
        own_metadata["item_id"] = item_id
    return merge_configs(base, RunnableConfig(tags=own_tags, metadata=own_metadata))


@contextmanager
def tracing_disabled() -> Iterator[None]:
    """No LangSmith tracing inside the block, whatever ``LANGSMITH_TRACING`` says."""
    with run_helpers.tracing_context(enabled=False):
        yield
