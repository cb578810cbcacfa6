"""Run settings of the Refine-n-Judge graph, passed as LangGraph runtime context.

In Python: `graph.invoke(input, context={"max_iterations": 3})`; on the LangGraph server:
the `context` of a run or an assistant. Every field has a description, which the server shows.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_CRITERIA: tuple[str, ...] = (
    "accuracy",
    "completeness",
    "clarity",
    "conciseness",
    "relevance",
)

JudgeScoring = Literal["auto", "pairwise", "pointwise"]
PointwiseAspect = Literal["overall", "per_criterion"]
VoteTrigger = Literal["always", "low_confidence"]
JudgeCallOrder = Literal["auto", "concurrent", "sequential"]
StructuredOutputMethod = Literal["auto", "prompt", "json_mode", "function_calling", "json_schema"]
AlternateTrigger = Literal["rejection", "rejection_or_low_confidence"]


class Context(BaseModel):
    """Models and loop settings for one run. Unknown keys are refused, so a typo fails fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    refiner: str | None = Field(
        default=None,
        description=(
            "Model that writes the initial answer (when the input has none), the feedback and "
            "the refinements. An `init_chat_model` name such as `openai:gpt-4o-mini`, or a bare "
            "model name served at `base_url`. Empty: the configured default (see README), "
            "which is the embedded local model when no API key or base URL is set."
        ),
    )
    judges: list[str] = Field(
        default_factory=list,
        description=(
            "Judge models. Empty: the refiner judges (as in the paper). Several: each judges "
            "with its own position-swapped pair and the refinement needs a strict majority."
        ),
    )
    alternate_refiner: str | None = Field(
        default=None,
        description=(
            "Model that gets one more try when the refiner's candidate is rejected, before the "
            "loop ends (paper section 6.1). Empty: no alternate."
        ),
    )
    alternate_trigger: AlternateTrigger = Field(
        default="rejection",
        description=(
            "When the alternate refiner switches in: `rejection` (one more try after the "
            "refiner's candidate lost), or `rejection_or_low_confidence` (also: it writes the "
            "next refinement when the last one was accepted with a confidence below "
            "`confidence_threshold`, the sign that the chain is near its end)."
        ),
    )
    confidence_threshold: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Decision confidence below which a win counts as unsure (alternate_trigger).",
    )
    base_url: str | None = Field(
        default=None,
        description=(
            "OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama) for model names that "
            "have no `provider:` prefix, e.g. `http://127.0.0.1:8000/v1`."
        ),
    )
    criteria: list[str] = Field(
        default_factory=lambda: list(DEFAULT_CRITERIA),
        min_length=1,
        description="Criteria the feedback and the judge use (paper: accuracy, completeness, ...).",
    )
    max_iterations: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Most refinements the judge can accept for one item (paper: 10).",
    )
    temperature: float = Field(
        default=0.7, ge=0.0, le=2.0, description="Sampling temperature of the refiner models."
    )
    judge_temperature: float = Field(
        default=0.0, ge=0.0, le=2.0, description="Sampling temperature of the judge models."
    )
    judge_scoring: JudgeScoring = Field(
        default="auto",
        description=(
            "`pairwise`: the paper's judge, both answers in one prompt, positions swapped. "
            "`pointwise`: each answer rated 1-9 on its own; its score is the expected digit "
            "under the token logprobs (the written digit when the endpoint gives none). "
            "`auto`: pointwise for the embedded 1.5B model (its pairwise verdicts are near "
            "chance), pairwise for every other model."
        ),
    )
    pointwise_margin: float | None = Field(
        default=None,
        ge=0.0,
        le=8.0,
        description=(
            "Pointwise: how much higher (1-9 scale) the refinement must score to win. Empty: "
            "the margin calibrated for the judge's model with `judge-check` (the embedded "
            "model: 0.034), else 0.1."
        ),
    )
    pointwise_aspect: PointwiseAspect = Field(
        default="overall",
        description="Pointwise: one overall rating, or one rating per criterion (averaged).",
    )
    judge_logprobs: bool = Field(
        default=True,
        description=(
            "Ask OpenAI-compatible judges for token logprobs, giving pairwise verdicts a "
            "probability and pointwise scores an expectation."
        ),
    )
    judge_call_order: JudgeCallOrder = Field(
        default="auto",
        description=(
            "How a pairwise judge's two position-swapped calls go out: `concurrent` (one "
            "round-trip) or `sequential` (for an endpoint that answers one request at a time, "
            "where the second call would wait in its queue and count against "
            "`request_timeout`). `auto`: sequential on the embedded model, concurrent elsewhere."
        ),
    )
    vote_trigger: VoteTrigger = Field(
        default="always",
        description=(
            "With several judges: `always` asks all; `low_confidence` asks the first judge and "
            "the others only when its verdict is not a confident win or loss "
            "(confidence below `confidence_threshold`)."
        ),
    )
    quorum: int = Field(
        default=1,
        ge=1,
        description="How many judges must return a usable verdict for a decision to count.",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        description=(
            "Tries per model call when the reply cannot be parsed or the call fails; the parse "
            "error is shown to the model on the next try. HTTP 429/5xx are also retried by the "
            "client itself."
        ),
    )
    structured_output: StructuredOutputMethod = Field(
        default="auto",
        description=(
            "How JSON replies are requested: `prompt` (instructions + parsing; works everywhere), "
            "`json_mode`, `function_calling`, `json_schema` (strict; not on llama.cpp). `auto`: "
            "json_mode for OpenAI-compatible models, prompt for others."
        ),
    )
    max_tokens: int | None = Field(
        default=1024, ge=16, description="Most tokens one model reply may have."
    )
    request_timeout: float = Field(
        default=120.0, gt=0, description="Seconds before one model request times out."
    )

    @field_validator("criteria")
    @classmethod
    def _criteria_are_names(cls, value: list[str]) -> list[str]:
        cleaned = [c.strip().lower() for c in value]
        if any(not c for c in cleaned):
            raise ValueError("criteria must be non-empty names")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError(f"criteria contain duplicates: {value}")
        return cleaned

    @model_validator(mode="after")
    def _quorum_fits_judges(self) -> Context:
        if self.judges and self.quorum > len(self.judges):
            raise ValueError(
                f"quorum={self.quorum} is more than the {len(self.judges)} judge(s) configured"
            )
        return self
