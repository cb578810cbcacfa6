"""Refine-n-Judge as a LangGraph graph: `from graph import graph` gives the compiled graph.

`graph/` wires the steps of `nodes/` into the loop; the state and the run's `Context` live
in `nodes/` and are re-exported here for convenience.
"""

from graph.builder import build_graph, graph, make_builder
from nodes.context import Context
from nodes.state import ChainState, InputState

__all__ = ["ChainState", "Context", "InputState", "build_graph", "graph", "make_builder"]
