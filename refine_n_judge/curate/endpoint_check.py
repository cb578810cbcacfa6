"""The endpoint check before the first item: one real request, a short timeout.

`GET {base_url}/models` with the run's key tells apart the usual mistakes: nothing
listening, a server that accepts and never answers, a wrong key (401/403) and a wrong URL
(404). A model name the listing does not show gets a one-token completion, so a name the
server refuses fails now (llama.cpp and Ollama answer to any name; vLLM does not). With
`--base-url` and no `--refiner`, the default model is the one the endpoint serves.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from endpoints.redact import redact_url
from endpoints.settings import Settings, endpoint_api_key
from nodes.context import Context
from nodes.models import build_chat_model
from refine_n_judge.curate.checks import check_base_url
from refine_n_judge.curate.errors import SettingsError

PREFLIGHT_TIMEOUT_SECONDS = 5.0
DEFAULT_MODEL_NAME = "default"
"""What a default model at a base URL is called when the endpoint lists none."""


@dataclass(frozen=True)
class Endpoint:
    """The OpenAI-compatible endpoint a run calls, and how to say where it is."""

    base_url: str
    api_key: str | None
    flag: str

    @property
    def shown(self) -> str:
        return redact_url(self.base_url) or ""


def endpoint_of(context: Context, *, uses_default_model: bool) -> Endpoint | None:
    """The base URL the run will call, when it is one (a provider's API is not probed):
    `--base-url`, else the environment's when the default model is used."""
    if context.base_url:
        return Endpoint(context.base_url, endpoint_api_key(), "--base-url")
    if uses_default_model:
        settings = Settings()
        if settings.base_url:
            return Endpoint(settings.base_url, endpoint_api_key(), "REFINE_N_JUDGE_BASE_URL")
    return None


def check_endpoint(context: Context, *, uses_default_model: bool) -> Context:
    """Probe the endpoint `curate` calls; the context with the default model named (as the
    refiner) when `--base-url` is given alone.

    Raises:
        SettingsError: the endpoint is unreachable, stalled, refuses the key, is not an
            OpenAI-compatible API, or does not serve a named model.
    """
    endpoint = endpoint_of(context, uses_default_model=uses_default_model)
    if endpoint is None:
        return context
    check_base_url(endpoint.base_url, endpoint.flag)
    with httpx.Client(timeout=PREFLIGHT_TIMEOUT_SECONDS, headers=_headers(endpoint)) as client:
        listed = _list_models(client, endpoint)
        if context.base_url and uses_default_model:
            name = _default_model_name(endpoint, listed)
            context = context.model_copy(update={"refiner": name})
        for flag, name in _served_names(context, endpoint):
            if listed is None or name not in listed:
                _probe_model(client, endpoint, flag, name, listed)
    return context


def probe_endpoint(endpoint: Endpoint) -> list[str] | None:
    """The same first request for a command with no model names to probe (judge-check):
    the endpoint answers `GET /models` with the run's key; the ids it lists, if any.

    Raises:
        SettingsError: as `check_endpoint`.
    """
    check_base_url(endpoint.base_url, endpoint.flag)
    with httpx.Client(timeout=PREFLIGHT_TIMEOUT_SECONDS, headers=_headers(endpoint)) as client:
        return _list_models(client, endpoint)


def _headers(endpoint: Endpoint) -> dict[str, str]:
    return {"Authorization": f"Bearer {endpoint.api_key or 'not-needed'}"}


def _url(endpoint: Endpoint, path: str) -> httpx.URL:
    """`path` under the base URL (its query, if any, kept)."""
    base = httpx.URL(endpoint.base_url)
    return base.copy_with(path=base.path.rstrip("/") + path)


def _request(
    client: httpx.Client, endpoint: Endpoint, method: str, path: str, **kwargs: object
) -> httpx.Response:
    what = f"{method} {path}"
    try:
        return client.request(method, _url(endpoint, path), **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException as exc:
        raise SettingsError(
            f"{endpoint.shown} accepted the connection but gave no reply to {what} within "
            f"{PREFLIGHT_TIMEOUT_SECONDS:g} s ({type(exc).__name__}): the server is stalled or "
            f"overloaded, or {endpoint.flag} is not its OpenAI-compatible URL"
        ) from exc
    except httpx.HTTPError as exc:
        raise SettingsError(
            f"cannot connect to {endpoint.shown} ({type(exc).__name__}: {exc}); start the "
            f"model server or fix {endpoint.flag}"
        ) from exc


def _list_models(client: httpx.Client, endpoint: Endpoint) -> list[str] | None:
    """The model ids the endpoint lists; None when it does not say."""
    response = _request(client, endpoint, "GET", "/models")
    _refuse_auth(response, endpoint, "GET /models")
    if response.status_code == 404:
        raise SettingsError(
            f"{endpoint.shown} is not an OpenAI-compatible API (GET /models: HTTP 404); fix "
            f"{endpoint.flag} (it usually ends in /v1)"
        )
    if response.status_code >= 400:
        return None  # some servers have no model list; the names are probed instead
    try:
        data = response.json().get("data")
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError, TypeError):
        return None


def _refuse_auth(response: httpx.Response, endpoint: Endpoint, what: str) -> None:
    if response.status_code in (401, 403):
        raise SettingsError(
            f"{endpoint.shown} refused the API key ({what}: HTTP {response.status_code}"
            f"{_error_text(response)}); set REFINE_N_JUDGE_API_KEY to the endpoint's key"
        )


def _error_text(response: httpx.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200].strip()
    return f": {message}" if message else ""


def _default_model_name(endpoint: Endpoint, listed: list[str] | None) -> str:
    """The model `--base-url` alone means: REFINE_N_JUDGE_MODEL (a bare name), else the
    one model the endpoint serves."""
    configured = Settings().model
    if configured and ":" not in configured:
        return configured
    if listed and len(listed) > 1:
        raise SettingsError(
            f"{endpoint.shown} serves {len(listed)} models ({', '.join(listed[:10])}); name "
            "the one to use with --refiner"
        )
    return listed[0] if listed else DEFAULT_MODEL_NAME


def _served_names(ctx: Context, endpoint: Endpoint) -> list[tuple[str, str]]:
    """(flag, name) of every model the run calls at this endpoint."""
    if not ctx.base_url:  # the environment's endpoint serves the default model only
        return [("REFINE_N_JUDGE_MODEL", Settings().model or DEFAULT_MODEL_NAME)]
    names = [("--refiner", ctx.refiner), *(("--judge", n) for n in ctx.judges)]
    names.append(("--alternate-refiner", ctx.alternate_refiner))
    return [(flag, name) for flag, name in names if name is not None and _served_at(name, ctx)]


def _served_at(name: str, ctx: Context) -> bool:
    """True when calls for `name` go to `ctx.base_url` (not to a `provider:` API)."""
    model = build_chat_model(name, base_url=ctx.base_url, timeout=ctx.request_timeout).model
    return getattr(model, "openai_api_base", None) == ctx.base_url


def _probe_model(
    client: httpx.Client, endpoint: Endpoint, flag: str, name: str, listed: list[str] | None
) -> None:
    """A one-token completion: refuse a model name the endpoint does not serve."""
    body = {"model": name, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 1}
    response = _request(client, endpoint, "POST", "/chat/completions", json=body)
    _refuse_auth(response, endpoint, f"POST /chat/completions for {name!r}")
    error = _error_text(response)
    if response.status_code == 404 or (response.status_code == 400 and "model" in error.lower()):
        shown = f" (it lists: {', '.join(listed[:10])})" if listed else ""
        raise SettingsError(
            f"invalid {flag} {name!r}: {endpoint.shown} does not serve it{shown} "
            f"(HTTP {response.status_code}{error})"
        )
