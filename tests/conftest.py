"""Shared fixtures. Tests never reach the network: LangSmith tracing is off unless a test
turns it on with its own in-process client."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "LANGSMITH_TRACING",
        "LANGCHAIN_TRACING_V2",
        "LANGSMITH_API_KEY",
        "LANGCHAIN_API_KEY",
        "OPENAI_API_KEY",
        "REFINE_N_JUDGE_MODEL",
        "REFINE_N_JUDGE_BASE_URL",
        "REFINE_N_JUDGE_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TEST_TRACKING", "false")
