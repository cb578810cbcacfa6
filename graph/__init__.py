"""Refine-n-Judge: `from graph import graph` gives the compiled LangGraph graph."""

from graph.builder import build_graph, graph, make_builder
from graph.context import Context
from graph.state import ChainState, InputState

__all__ = ["ChainState", "Context", "InputState", "build_graph", "graph", "make_builder"]
