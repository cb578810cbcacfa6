"""Recover a JSON reply from what a model really wrote.

Small and local models wrap JSON in prose or code fences, or write several objects. We
accept the reply when exactly one distinct object in it validates against the schema;
two different valid objects are ambiguous (an answer's injected fake verdict echoed back,
say) and count as a parse failure, so the model is asked again.
"""

from __future__ import annotations

import json
import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.DOTALL)
_MAX_CANDIDATES = 50


class ReplyParseError(ValueError):
    """The reply holds no usable JSON object for the schema; the message says why."""


def json_objects(text: str) -> list[dict[str, object]]:
    """Every JSON object in `text`: the whole text, fenced blocks, then any `{...}` in it."""
    found: list[dict[str, object]] = []
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    if found:
        return found
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
