"""The viewer's web app: three read-only pages over one output folder.

- `/`: the run (run.json's numbers, and counts over what the files hold now, with plots);
- `/items`: the paged, filterable item list (served from `RunIndex`, never the whole file);
- `/item?id=...`: one item, its row read at its byte offset.

No route takes a path: the files read are the fixed names of the folder given at start.
Every page is rendered by Jinja2 with autoescaping, and is sent with a Content-Security-Policy
that allows no script at all, so a model's `<script>` stays text even if escaping slipped.
Requests must name the loopback host (a guard against DNS rebinding).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from refine_n_judge.curate.outputs import REPORT
from refine_n_judge.view import item as item_view
from refine_n_judge.view.index import ItemFilter, LiveTally, RunIndex, Status
from refine_n_judge.view.plots import Bar, bar_chart, column_chart

PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_QUERY_CHARS = 200
RAW_LINE_CHARS = 4000
FAILED_COLOR = "#c0392b"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders:
    """Adds `SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


class BadQueryError(ValueError):
    """A query parameter the page cannot use."""


@dataclass(frozen=True)
class ListQuery:
    """The item list's query string, validated."""

    where: ItemFilter
    page: int
    per_page: int

    @classmethod
    def parse(cls, params: Any) -> ListQuery:
        status = params.get("status") or "all"
        if status not in ("all", "ok", "failed"):
            raise BadQueryError(f"status must be all, ok or failed, not {status!r}")
        text = (params.get("q") or "").strip()
        if len(text) > MAX_QUERY_CHARS:
            raise BadQueryError(f"q (the search text) is longer than {MAX_QUERY_CHARS} characters")
        where = ItemFilter(
            stop_reason=params.get("stop") or None,
            chain_length=_int(params, "length", minimum=0),
            status=status,
            alternate=params.get("alt") in ("1", "on", "true"),
            text=text,
        )
        page = _int(params, "page", minimum=1) or 1
        per_page = _int(params, "per", minimum=1) or PER_PAGE
        if per_page > MAX_PER_PAGE:
            raise BadQueryError(f"per (items per page) must be at most {MAX_PER_PAGE}")
        return cls(where, page, per_page)

    def link(self, **changes: Any) -> str:
        """The list URL with these filters and `changes` applied (defaults left out)."""
        values: dict[str, Any] = {
            "stop": self.where.stop_reason,
            "length": self.where.chain_length,
            "status": None if self.where.status == "all" else self.where.status,
            "alt": "1" if self.where.alternate else None,
            "q": self.where.text or None,
            "per": None if self.per_page == PER_PAGE else self.per_page,
            "page": self.page,
        } | changes
        if values["page"] == 1:
            values["page"] = None
        query = urlencode({k: v for k, v in values.items() if v is not None and v is not False})
        return f"/items?{query}" if query else "/items"


def _int(params: Any, name: str, *, minimum: int) -> int | None:
    raw = params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadQueryError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise BadQueryError(f"{name} must be at least {minimum}, not {value}")
    return value


def read_report(out: Path) -> tuple[dict[str, Any] | None, str | None]:
    """run.json, or None and why it could not be read."""
    path = out / REPORT
    if not path.exists():
        return None, f"{REPORT} is not written yet (curate writes it at the start of a run)"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{REPORT} cannot be read: {exc}"
    if not isinstance(report, dict):
        return None, f"{REPORT} does not hold a JSON object"
    return report, None


def _plots(tally: LiveTally, report: dict[str, Any] | None) -> dict[str, Any]:
    plots: dict[str, Any] = {
        "stop_reasons": bar_chart(
            [
                Bar(reason, count, href=ListQuery(ItemFilter(stop_reason=reason), 1, PER_PAGE)
                    .link())
                for reason, count in tally.stop_reasons.most_common()
            ],
            title="Stop reasons",
        ),
        "chain_lengths": column_chart(
            [
                Bar(str(length), count,
                    href=ListQuery(ItemFilter(chain_length=length, status="ok"), 1, PER_PAGE)
                    .link())
                for length, count in sorted(tally.chain_lengths.items())
            ],
            title="Accepted refinements per finished item",
            x_label="accepted refinements",
        ),
        "failure_kinds": bar_chart(
            [
                Bar(kind, count, href="/items?status=failed", color=FAILED_COLOR)
                for kind, count in tally.failure_kinds.most_common()
            ],
            title="Failures by kind",
        ),
    }  # fmt: skip
    health = (report or {}).get("judge_health")
    by_iteration = (health if isinstance(health, dict) else {}).get("consistency_by_iteration")
    if isinstance(by_iteration, dict) and by_iteration:
        plots["consistency"] = column_chart(
            [
                Bar(str(i), float(share), note=f"{float(share):.0%}")
                for i, share in by_iteration.items()
                if isinstance(share, int | float)
            ],
            title="Judge swap consistency by iteration",
            x_label="iteration",
            top=1.0,
        )
    usage = (report or {}).get("usage") or {}
    if isinstance(usage, dict) and usage:
        plots["tokens"] = bar_chart(
            [
                Bar(model, (u.get("input_tokens") or 0) + (u.get("output_tokens") or 0))
                for model, u in usage.items()
                if isinstance(u, dict)
            ],
            title="Tokens per model (input + output)",
        )
    return plots


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("refine_n_judge.view", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _format_number
    env.filters["pct"] = lambda v: "–" if v is None else f"{float(v):.1%}"
    env.filters["scores"] = lambda d: (
        " · ".join(f"{k} {_format_number(v)}" for k, v in d.items()) if d else ""
    )
    env.globals["pretty"] = item_view.pretty
    env.globals["call_extras"] = item_view.call_extras
    env.globals["is_conversation"] = item_view.is_conversation
    return env


def _format_number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"
    return str(value)


def create_app(out: Path) -> Starlette:
    """The viewer over the curate output folder `out`.

    Each request indexes what the files gained since the last one (a bounded step); while
    the app runs (its lifespan), a background thread reads the rest of a large folder.
    """
    index = RunIndex(out)
    templates = Jinja2Templates(env=_environment())

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        context = {"out": str(out), "progress": index.progress(), **context}
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def run_page(request: Request) -> Response:
        report, report_error = read_report(out)
        tally = index.tally()
        return page(
            request,
            "run.html",
            report=report,
            report_error=report_error,
            tally=tally,
            plots=_plots(tally, report),
        )

    def items_page(request: Request) -> Response:
        try:
            query = ListQuery.parse(request.query_params)
        except BadQueryError as exc:
            return page(request, "error.html", 400, message=str(exc))
        result = index.page(query.where, query.page, query.per_page)
        tally = index.tally()
        return page(
            request,
            "items.html",
            query=query,
            result=result,
            stop_reasons=sorted(tally.stop_reasons),
            chain_lengths=sorted(tally.chain_lengths),
            statuses=get_args(Status),
        )

    def item_page(request: Request) -> Response:
        item_id = request.query_params.get("id")
        if not item_id:
            return page(request, "error.html", 400, message="id is missing: /item?id=ITEM_ID")
        try:
            found = index.load(item_id)
        except ValueError as exc:
            return page(request, "error.html", 500, message=str(exc))
        if found is None:
            return page(request, "error.html", 404, message=f"no item has the id {item_id!r}")
        entry, row = found
        if row is None:
            return page(
                request, "unreadable.html", entry=entry,
                raw=index.read_raw(entry, RAW_LINE_CHARS),
            )  # fmt: skip
        state = row if entry.source == "chains" else row.get("state")
        sft, dpo = index.exports(entry.id)
        return page(
            request,
            "item.html",
            entry=entry,
            row=row,
            chain=item_view.arrange(state) if isinstance(state, dict) else None,
            failure_extras=item_view.failure_extras(row) if entry.failed else {},
            sft=sft,
            dpo=dpo,
        )

    @contextlib.asynccontextmanager
    async def follow_the_files(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        follower = threading.Thread(target=index.follow, args=(stop,), daemon=True)
        follower.start()
        try:
            yield
        finally:
            stop.set()
            follower.join(timeout=10)

    app = Starlette(
        lifespan=follow_the_files,
        routes=[
            Route("/", run_page),
            Route("/items", items_page),
            Route("/item", item_page),
        ],
        middleware=[
            Middleware(SecurityHeaders),
            Middleware(TrustedHostMiddleware, allowed_hosts=ALLOWED_HOSTS),
        ],
    )
    app.state.index = index
    return app
