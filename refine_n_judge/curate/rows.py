"""Turning one raw input row (a JSON object, a CSV record, a Parquet row) into an item.

A row is either flat (question / answer / reference fields, names set by `FieldMap`) or a
chat conversation (a `messages` list): then, as in TULU, the last user turn is the question,
the assistant turn right after it, if any, is the answer, and every turn before the
question (the system prompt, earlier user and assistant turns) is kept as its history: the
prompts show it as context, and the exports write the whole conversation. A missing answer means the
refiner writes the initial answer. A row without an id gets one from its content, so reruns
of the same file give the same ids.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodes.state import ChatMessage
from refine_n_judge.curate.errors import InputRowError
from refine_n_judge.curate.records import InputItem

CHAT_ROLES = ("system", "user", "assistant")

_MISSING = object()
RAW_PREVIEW_CHARS = 500


class FieldMap(BaseModel):
    """Which input fields hold the id, question, answer, reference and chat messages.

    A name with dots (`meta.id`) reaches into nested objects when no field has that
    literal name.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(default="id", min_length=1)
    question: str = Field(default="question", min_length=1)
    answer: str = Field(default="answer", min_length=1)
    reference: str = Field(default="reference", min_length=1)
    messages: str = Field(default="messages", min_length=1)


def lookup(row: Mapping[str, Any], name: str) -> Any:
    """The value of field `name` (literal key first, then a dotted path), or `_MISSING`."""
    if name in row:
        return row[name]
    if "." not in name:
        return _MISSING
    value: Any = row
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def stable_id(
    question: str,
    answer: str | None,
    reference: str | None,
    history: tuple[ChatMessage, ...] | None = None,
) -> str:
    """An id from the item's content: the same row always gets the same id."""
    content: list[Any] = [question, answer, reference]
    if history:  # plain rows keep the ids they had before conversations were kept
        content.append([[m.role, m.content] for m in history])
    payload = json.dumps(content, ensure_ascii=False)
    return "auto-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def preview(value: Any) -> str:
    """A short text of a raw value for failure rows."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    if len(text) > RAW_PREVIEW_CHARS:
        return text[:RAW_PREVIEW_CHARS] + f"... ({len(text)} characters)"
    return text


class RowConverter:
    """Validates raw rows of one input file into `InputItem`s (or raises `InputRowError`)."""

    def __init__(self, fields: FieldMap, *, source: str, max_chars: int) -> None:
        self.fields = fields
        self.source = source
        self.max_chars = max_chars

    def error(
        self,
        message: str,
        *,
        line: int,
        field: str | None = None,
        kind: str,
        row: Any = None,
        item_id: str | None = None,
    ) -> InputRowError:
        """An `InputRowError` located in this file."""
        return InputRowError(
            message,
            source=self.source,
            line=line,
            field=field,
            kind=kind,
            item_id=item_id,
            raw=None if row is None else preview(row),
        )

    def convert(self, row: Any, line: int) -> InputItem:
        """The item of `row`, which was read at `line`."""
        if not isinstance(row, Mapping):
            raise self.error(
                f"the row is a JSON {_json_type(row)}, not an object",
                line=line,
                kind="wrong_type",
                row=row,
            )
        item_id = self._id(row, line)
        history: tuple[ChatMessage, ...] | None = None
        question_value = lookup(row, self.fields.question)
        if question_value is not _MISSING and question_value is not None:
            question = self._text(row, self.fields.question, line, item_id, required=True)
            answer = self._text(row, self.fields.answer, line, item_id, required=False)
        elif lookup(row, self.fields.messages) not in (_MISSING, None):
            question, answer, history = self._from_messages(row, line, item_id)
        else:
            keys = ", ".join(sorted(map(str, row))) or "none"
            raise self.error(
                f"is missing, and there is no {self.fields.messages!r} conversation either "
                f"(the row has: {keys}; map fields with --question-field / --messages-field)",
                line=line,
                field=self.fields.question,
                kind="missing_field",
                row=row,
                item_id=item_id,
            )
        assert question is not None
        reference = self._text(row, self.fields.reference, line, item_id, required=False)
        return InputItem(
            id=item_id or stable_id(question, answer, reference, history),
            question=question,
            answer=answer,
            reference=reference,
            history=history,
            source=self.source,
            line=line,
        )

    def _id(self, row: Mapping[str, Any], line: int) -> str | None:
        value = lookup(row, self.fields.id)
        if value is _MISSING or value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise self.error(
                f"must be a string or an integer, got a JSON {_json_type(value)}",
                line=line,
                field=self.fields.id,
                kind="wrong_type",
                row=row,
            )
        if not value.strip():
            raise self.error(
                "is empty (omit it to get an id made from the content)",
                line=line,
                field=self.fields.id,
                kind="empty_field",
                row=row,
            )
        return value.strip()

    def _text(
        self,
        row: Mapping[str, Any],
        name: str,
        line: int,
        item_id: str | None,
        *,
        required: bool,
    ) -> str | None:
        value = lookup(row, name)
        if value is _MISSING or value is None:
            if required:  # pragma: no cover - the caller checked presence
                raise self.error("is missing", line=line, field=name, kind="missing_field")
            return None
        return self._checked_text(value, name, line, item_id, row, optional=not required)

    def _checked_text(
        self,
        value: Any,
        name: str,
        line: int,
        item_id: str | None,
        row: Any,
        *,
        optional: bool,
    ) -> str:
        if not isinstance(value, str):
            raise self.error(
                f"must be a string, got a JSON {_json_type(value)}",
                line=line,
                field=name,
                kind="wrong_type",
                row=row,
                item_id=item_id,
            )
        if not value.strip():
            hint = " (omit it or set it to null to have the refiner write one)" if optional else ""
            raise self.error(
                f"is empty{hint}",
                line=line,
                field=name,
                kind="empty_field",
                row=row,
                item_id=item_id,
            )
        if self.max_chars and len(value) > self.max_chars:
            raise self.error(
                f"has {len(value):,} characters, more than --max-chars {self.max_chars:,}",
                line=line,
                field=name,
                kind="too_long",
                row=row,
                item_id=item_id,
            )
        return value

    def _from_messages(
        self, row: Mapping[str, Any], line: int, item_id: str | None
    ) -> tuple[str, str | None, tuple[ChatMessage, ...]]:
        """The last user turn, the assistant turn right after it, and the turns before."""
        name = self.fields.messages
        messages = lookup(row, name)
        if not isinstance(messages, list):
            raise self.error(
                f"must be a list of chat messages, got a JSON {_json_type(messages)}",
                line=line,
                field=name,
                kind="wrong_type",
                row=row,
                item_id=item_id,
            )
        turns: list[tuple[str, Any]] = []
        for index, message in enumerate(messages):
            where = f"{name}[{index}]"
            if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
                raise self.error(
                    "must be an object with a string 'role' and a 'content'",
                    line=line,
                    field=where,
                    kind="wrong_type",
                    row=row,
                    item_id=item_id,
                )
            if message["role"] not in CHAT_ROLES:
                raise self.error(
                    f"has role {message['role']!r}; a conversation to refine may hold only "
                    f"{', '.join(CHAT_ROLES)} turns",
                    line=line,
                    field=f"{where}.role",
                    kind="wrong_type",
                    row=row,
                    item_id=item_id,
                )
            turns.append((message["role"], message.get("content")))
        users = [i for i, (role, _) in enumerate(turns) if role == "user"]
        if not users:
            raise self.error(
                "has no user turn to take the question from",
                line=line,
                field=name,
                kind="missing_field",
                row=row,
                item_id=item_id,
            )
        last = users[-1]
        question = self._checked_text(
            _content_text(turns[last][1]),
            f"{name}[{last}].content",
            line,
            item_id,
            row,
            optional=False,
        )
        answer: str | None = None
        after = last + 1
        if after < len(turns) and turns[after][0] == "assistant":
            answer = self._checked_text(
                _content_text(turns[after][1]),
                f"{name}[{after}].content",
                line,
                item_id,
                row,
                optional=True,
            )
            after += 1
        if after < len(turns):
            raise self.error(
                f"has a {turns[after][0]} turn after the answer to the last user turn; the "
                "conversation must end with the question or its answer",
                line=line,
                field=f"{name}[{after}]",
                kind="wrong_type",
                row=row,
                item_id=item_id,
            )
        history = tuple(
            ChatMessage(
                role=role,
                content=self._history_text(content, f"{name}[{index}].content", line, item_id, row),
            )
            for index, (role, content) in enumerate(turns[:last])
        )
        return question, answer, history

    def _history_text(
        self, content: Any, where: str, line: int, item_id: str | None, row: Any
    ) -> str:
        text = _content_text(content)
        if text is None or text == "":
            return ""  # an empty earlier turn (a blank system prompt) is harmless context
        return self._checked_text(text, where, line, item_id, row, optional=False)


def _content_text(content: Any) -> Any:
    """A message's text: a string as is, OpenAI content parts joined; anything else as is
    (so the type check reports it)."""
    if isinstance(content, list) and all(
        isinstance(part, Mapping) and isinstance(part.get("text"), str) for part in content
    ):
        return "".join(part["text"] for part in content)
    return content


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__
