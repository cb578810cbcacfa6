"""The LangGraph server's entry (`langgraph.json`): the compiled Refine-n-Judge graph.

Models come from each run's `context` (see `nodes.context.Context`); a run that names none
uses the default endpoint (`REFINE_N_JUDGE_*`, `OPENAI_API_KEY`, else the embedded model).
"""

from graph import graph

__all__ = ["graph"]
