"""Refine-n-Judge: `from graph import graph` gives the compiled LangGraph graph.

The graph and its builders load on first use, so `from graph import Context` (or a module
of `nodes`) stays cheap and import order between `graph` and `nodes` does not matter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from graph.context import Context
from graph.state import ChainState, InputState

if TYPE_CHECKING:
    from graph.builder import build_graph, graph, make_builder

__all__ = ["ChainState", "Context", "InputState", "build_graph", "graph", "make_builder"]
_LAZY = {"build_graph", "graph", "make_builder"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from graph import builder

        return getattr(builder, name)
    raise AttributeError(f"module 'graph' has no attribute {name!r}")
