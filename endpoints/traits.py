"""What the method needs to know about the model behind a name, beyond the name itself."""

from __future__ import annotations

from pydantic import BaseModel

from endpoints.embedded import MODEL_ALIAS


class ModelTraits(BaseModel, frozen=True):
    """Properties of the endpoint serving a model, as the judge uses them."""

    small_local_judge: bool = False
    """A small local model: it rates one answer at a time more reliably than it compares two,
    so `judge_scoring="auto"` scores it pointwise."""
    one_request_at_a_time: bool = False
    """The server computes one request at a time (llama.cpp's single slot): concurrent calls
    only queue, and the second of a pair may time out waiting."""


def model_traits(model_name: str) -> ModelTraits:
    """The traits of the model served under `model_name` (the embedded model's are known)."""
    if model_name == MODEL_ALIAS:
        return ModelTraits(small_local_judge=True, one_request_at_a_time=True)
    return ModelTraits()
