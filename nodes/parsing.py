"""Recover a JSON reply from what a model really wrote.

Small and local models wrap JSON in prose or code fences, or write several objects. We
accept the reply when exactly one distinct object in it validates against the schema;
two different valid objects are ambiguous (an answer's injected fake verdict echoed back,
say) and count as a parse failure, so the model is asked again.
"""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_MAX_CANDIDATES = 50


class ReplyParseError(ValueError):
    """The reply holds no usable JSON object for the schema; the message says why."""


def json_objects(text: str) -> list[dict[str, object]]:
    """Every top-level JSON object in `text`, fenced or not, in order.

    Each `{` not inside an object already decoded starts a candidate; so a verdict echoed
    from an answer in a code fence and the judge's own unfenced verdict are both found (and
    `parse_reply` then refuses the reply as ambiguous instead of believing the first).
    """
    found: list[dict[str, object]] = []
    decoder = json.JSONDecoder()
    index = text.find("{")
    while index != -1 and len(found) < _MAX_CANDIDATES:
        try:
            value, end = decoder.raw_decode(text, index)
        except ValueError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        index = text.find("{", end)
    return found


def parse_reply(text: str, schema: type[T]) -> T:
    """The one object in `text` that validates as `schema`, or `ReplyParseError`."""
    objects = json_objects(text)
    if not objects:
        raise ReplyParseError("the reply contains no JSON object")
    valid: list[T] = []
    errors: list[str] = []
    for obj in objects:
        try:
            valid.append(schema.model_validate(obj))
        except ValidationError as exc:
            errors.append(_short_validation_error(exc))
    distinct = {v.model_dump_json(): v for v in valid}
    if len(distinct) == 1:
        return next(iter(distinct.values()))
    if len(distinct) > 1:
        raise ReplyParseError(
            f"the reply contains {len(distinct)} different JSON objects; reply with exactly one"
        )
    raise ReplyParseError(f"the JSON does not match the expected fields: {errors[0]}")


def _short_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:4]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
