"""Test helpers: a local fake OpenAI-compatible server (see ``fake_openai``)."""

from refine_n_judge.testing.fake_openai import (
    ChatRequest,
    FakeOpenAIServer,
    FaultPlan,
    Reply,
    Responder,
    route_by_marker,
    sequence,
    with_faults,
)

__all__ = [
    "ChatRequest",
    "FakeOpenAIServer",
    "FaultPlan",
    "Reply",
    "Responder",
    "route_by_marker",
    "sequence",
    "with_faults",
]
