"""What the method needs to know about the model behind a name, beyond the name itself."""

from __future__ import annotations

from pydantic import BaseModel

from endpoints.embedded import MODEL_ALIAS

EMBEDDED_POINTWISE_MARGIN = 0.034
"""The embedded model's pointwise margin: the smallest that reached precision 0.85 on 200
human-labelled PandaLM pairs (`refine-n-judge judge-check ... --target-precision 0.85`; the
report is evals/results/judge_check/pointwise/). At 0.1 it accepted the better answer in 71.5%
of pairs and the worse in 11.0%; at 0.034, 80.0% and 13.5%."""


class ModelTraits(BaseModel, frozen=True):
    """Properties of the endpoint serving a model, as the judge uses them."""

    small_local_judge: bool = False
    """A small local model: it rates one answer at a time more reliably than it compares two,
    so `judge_scoring="auto"` scores it pointwise."""
    one_request_at_a_time: bool = False
    """The server computes one request at a time (llama.cpp's single slot): concurrent calls
    only queue, and the second of a pair may time out waiting."""
    pointwise_margin: float | None = None
    """The pointwise margin calibrated for this model with `judge-check`, if one was."""


def model_traits(model_name: str) -> ModelTraits:
    """The traits of the model served under `model_name` (the embedded model's are known)."""
    if model_name == MODEL_ALIAS:
        return ModelTraits(
            small_local_judge=True,
            one_request_at_a_time=True,
            pointwise_margin=EMBEDDED_POINTWISE_MARGIN,
        )
    return ModelTraits()
