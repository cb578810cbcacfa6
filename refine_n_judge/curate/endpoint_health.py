"""Is the endpoint still serving? Decides when a run stops early instead of failing items.

Three signs stop a run (exit code 3; items written so far are kept, the rest are left for
the next run of the same command, and none of them is written as a failure):

- an authentication or not-found error (a wrong key, model or URL): every item would fail;
- `CONNECTION_FAILURES_TO_STOP` items in a row failing with connection errors or timeouts
  (an endpoint that died); a connection failure followed by a success is an item failure;
- no reply to any model call for `stall_limit` seconds while calls are waiting (a server
  that accepts and never answers). The progress line shows the wait from
  `STALL_NOTICE_SECONDS`.

`EndpointWatch` is a LangChain callback handler on every item's config: it sees each
model call start and end (cache hits included) wherever in the graph it happens.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from langchain_core.callbacks import BaseCallbackHandler

from nodes.state import ChainState

CONNECTION_FAILURES_TO_STOP = 3
STALL_NOTICE_SECONDS = 10.0
MIN_STALL_LIMIT_SECONDS = 5.0

FATAL_ERRORS = {
    "AuthenticationError": "refused the API key",
    "PermissionDeniedError": "refused access",
    "NotFoundError": "does not know the model or the URL",
}
"""Endings of error class names (as `nodes.calls` records them: `Name: message`) that stop
the run: openai's `AuthenticationError`, langchain-openai's `OpenAIAuthenticationError`,
`OpenAIModelNotFoundError` and the like."""
CONNECTION_ERRORS = (
    "ConnectionError",
    "TimeoutError",
    "ConnectError",
    "ConnectTimeout",
    "ReadTimeout",
    "RemoteProtocolError",
)
"""Endings of error class names meaning no answer came back (`APIConnectionError`,
`APITimeoutError`, `OpenAIConnectionError`, httpx's errors)."""

Trouble = Literal["fatal", "connection"]


def error_name(reason: str | None) -> str | None:
    """The error class name a failure reason starts with (`Name: message`), if any."""
    if not reason:
        return None
    name, sep, _ = reason.partition(":")
    return name.strip() if sep and name.strip().isidentifier() else None


def endpoint_trouble(state: ChainState) -> Trouble | None:
    """Whether an item's failure was the endpoint's, not the item's."""
    if not state.failures:
        return None
    name = error_name(state.failures[-1].reason)
    if name is None:
        return None
    if _fatal_kind(name) is not None:
        return "fatal"
    if is_connection_error(name):
        return "connection"
    return None


def _fatal_kind(name: str) -> str | None:
    return next((what for end, what in FATAL_ERRORS.items() if name.endswith(end)), None)


def is_connection_error(name: str) -> bool:
    """True for an error class name that means no answer came back."""
    return name.endswith(CONNECTION_ERRORS)


def stop_message(state: ChainState, endpoint: str) -> str:
    """Why the run stops, for the user (names the endpoint, the model and the error)."""
    last = state.failures[-1]
    what = _fatal_kind(error_name(last.reason) or "") or "is not answering"
    return f"the endpoint {endpoint} {what} for model {last.model!r}: {last.reason}"


def stall_limit(request_timeout: float, rps: float | None) -> float:
    """Seconds without any reply after which a run stops: two request timeouts (a reply
    slower than one fails anyway), and never less than two rate-limiter intervals."""
    limit = max(2 * request_timeout, MIN_STALL_LIMIT_SECONDS)
    if rps:
        limit = max(limit, 2 / rps)
    return limit


class EndpointWatch(BaseCallbackHandler):
    """Counts model calls in flight and when the last one ended (on the run's loop)."""

    run_inline = True  # called on the event loop thread: plain counters, no locks

    def __init__(self) -> None:
        self.in_flight = 0
        self.last_reply = time.monotonic()
        self.consecutive_connection_failures = 0
        self._unanswered = False  # the last call to end got no reply

    def on_chat_model_start(self, *_args: Any, **_kwargs: Any) -> None:
        if self.in_flight == 0 and not self._unanswered:  # idle until now: the wait starts
            self.last_reply = time.monotonic()
        self.in_flight += 1

    def on_llm_start(self, *_args: Any, **_kwargs: Any) -> None:
        self.on_chat_model_start()

    def on_llm_end(self, *_args: Any, **_kwargs: Any) -> None:
        self.in_flight = max(self.in_flight - 1, 0)
        self._replied()

    def on_llm_error(self, error: BaseException, *_args: Any, **_kwargs: Any) -> None:
        self.in_flight = max(self.in_flight - 1, 0)
        if is_connection_error(type(error).__name__):
            self._unanswered = True
        else:  # an HTTP error is an answer
            self._replied()

    def _replied(self) -> None:
        self.last_reply = time.monotonic()
        self._unanswered = False

    def waiting_seconds(self) -> float:
        """How long calls have been waiting with no reply (0 when none is waiting)."""
        return time.monotonic() - self.last_reply if self.in_flight else 0.0

    def item_ended(self, trouble: Trouble | None) -> bool:
        """Count an item's end; True when the connection failures in a row stop the run."""
        if trouble == "connection":
            self.consecutive_connection_failures += 1
        else:
            self.consecutive_connection_failures = 0
        return self.consecutive_connection_failures >= CONNECTION_FAILURES_TO_STOP
