"""The one place nodes get their chat models from.

Models come from the run's `Context` (names resolved with `init_chat_model` or as an
OpenAI-compatible endpoint) unless the graph was built with model objects, which win.
Built models are cached per settings, so thousands of items share their HTTP clients.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from langchain.chat_models import init_chat_model
from langchain_core.language_models import BaseChatModel
from langchain_core.rate_limiters import BaseRateLimiter
from langchain_openai import ChatOpenAI
from langchain_openai.chat_models.base import BaseChatOpenAI

from endpoints import ModelTraits, default_endpoint, endpoint_api_key, model_traits
from nodes.context import Context

CLIENT_MAX_RETRIES = 3
"""Retries the HTTP client itself makes on 429/5xx/timeouts, with its own backoff."""


class ModelConfigError(ValueError):
    """A model setting that cannot be turned into a chat model."""


@dataclass(frozen=True)
class NamedModel:
    """A chat model with the name it is recorded under in the state and the traces."""

    name: str
    model: BaseChatModel

    @property
    def is_openai_compatible(self) -> bool:
        """True for ChatOpenAI and its subclasses (json mode and logprobs are available)."""
        return isinstance(self.model, BaseChatOpenAI)

    @property
    def traits(self) -> ModelTraits:
        """What the endpoint serving this model is known to be (small, one request at a time)."""
        return model_traits(self.name)


def model_display_name(model: BaseChatModel) -> str:
    """The model's own name (`model_name`/`model`), else its class name."""
    for attr in ("model_name", "model", "model_id"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


@dataclass
class ModelProvider:
    """Resolves the refiner, alternate refiner and judges for a run.

    `refiner`, `alternate_refiner` and `judges` are optional model objects given when
    building the graph in Python; they override the names in the context. `rate_limiter`
    is shared by every model built from a name (a global requests-per-second budget).
    """

    refiner: BaseChatModel | None = None
    alternate_refiner: BaseChatModel | None = None
    judges: Sequence[BaseChatModel] | None = None
    rate_limiter: BaseRateLimiter | None = None
    _cache: dict[tuple[object, ...], NamedModel] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def get_refiner(self, ctx: Context) -> NamedModel:
        """The primary refiner (also writes feedback and the initial answer)."""
        if self.refiner is not None:
            return NamedModel(model_display_name(self.refiner), self.refiner)
        return self._from_name(ctx.refiner, ctx, temperature=ctx.temperature)

    def get_alternate_refiner(self, ctx: Context) -> NamedModel | None:
        """The alternate refiner, or None when none is configured."""
        if self.alternate_refiner is not None:
            return NamedModel(model_display_name(self.alternate_refiner), self.alternate_refiner)
        if ctx.alternate_refiner is None:
            return None
        return self._from_name(ctx.alternate_refiner, ctx, temperature=ctx.temperature)

    def get_judges(self, ctx: Context) -> list[NamedModel]:
        """The judge models, each at `judge_temperature`; the refiner when none is set."""
        if self.judges:
            return [self._at_judge_temperature(m, ctx) for m in self.judges]
        if ctx.judges:
            return [self._from_name(n, ctx, temperature=ctx.judge_temperature) for n in ctx.judges]
        if self.refiner is not None:
            return [self._at_judge_temperature(self.refiner, ctx)]
        return [self._from_name(ctx.refiner, ctx, temperature=ctx.judge_temperature)]

    def _at_judge_temperature(self, model: BaseChatModel, ctx: Context) -> NamedModel:
        """`model` as a judge: a copy at `judge_temperature` when it has a temperature."""
        name = model_display_name(model)
        if getattr(model, "temperature", None) in (None, ctx.judge_temperature):
            return NamedModel(name, model)
        key = ("judge-copy", id(model), ctx.judge_temperature)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                copy = model.model_copy(update={"temperature": ctx.judge_temperature})
                cached = self._cache[key] = NamedModel(name, copy)
        return cached

    def check(self, ctx: Context) -> None:
        """Refuse settings that cannot work, before any model is called."""
        n_judges = len(self.judges) if self.judges else max(len(ctx.judges), 1)
        if ctx.quorum > n_judges:
            raise ModelConfigError(
                f"quorum={ctx.quorum} is more than the {n_judges} judge(s) configured"
            )

    def _from_name(self, name: str | None, ctx: Context, *, temperature: float) -> NamedModel:
        key = (name, ctx.base_url, temperature, ctx.max_tokens, ctx.request_timeout)
        with self._lock:
            cached = self._cache.get(key)
            if cached is None:
                cached = self._cache[key] = build_chat_model(
                    name,
                    base_url=ctx.base_url,
                    temperature=temperature,
                    max_tokens=ctx.max_tokens,
                    timeout=ctx.request_timeout,
                    rate_limiter=self.rate_limiter,
                )
        return cached


def build_chat_model(
    name: str | None,
    *,
    base_url: str | None = None,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    timeout: float = 120.0,
    rate_limiter: BaseRateLimiter | None = None,
) -> NamedModel:
    """Make a chat model from a name.

    - `provider:model` with a provider `init_chat_model` knows: that provider.
    - a bare name with `base_url`: an OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama).
    - None: the default model from the settings (env vars; the embedded model otherwise).
    """
    if name is None:
        endpoint = default_endpoint()
        name, base_url = endpoint.model, endpoint.base_url
        if base_url is not None:
            key = endpoint.api_key.get_secret_value() if endpoint.api_key else None
            return _openai_compatible(
                name, base_url, key, temperature, max_tokens, timeout, rate_limiter
            )
    if base_url and not _names_a_provider(name):
        return _openai_compatible(
            name, base_url, None, temperature, max_tokens, timeout, rate_limiter
        )
    try:
        model = init_chat_model(
            name,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            max_retries=CLIENT_MAX_RETRIES,
            rate_limiter=rate_limiter,
        )
    except ImportError as exc:
        raise ModelConfigError(f"cannot build model {name!r}: {exc}") from exc
    except ValueError as exc:
        raise ModelConfigError(
            f"cannot tell which provider serves model {name!r}: write it as `provider:model` "
            "(e.g. `openai:gpt-4o-mini`) or give a base_url for an OpenAI-compatible endpoint "
            f"({str(exc).splitlines()[0]})"
        ) from exc
    return NamedModel(name, model)


def _names_a_provider(name: str) -> bool:
    """True for `provider:model` with a provider `init_chat_model` knows; False for a
    plain model name, colons included (`qwen2.5:1.5b`, as Ollama names models)."""
    provider, sep, model = name.partition(":")
    if not sep:
        return False
    try:
        init_chat_model(model, model_provider=provider)
    except ImportError:
        return True  # a known provider whose integration package is not installed
    except ValueError as exc:
        return "unsupported" not in str(exc).lower()
    except Exception:
        return True
    return True


def _openai_compatible(
    name: str,
    base_url: str,
    api_key: str | None,
    temperature: float,
    max_tokens: int | None,
    timeout: float,
    rate_limiter: BaseRateLimiter | None,
) -> NamedModel:
    model = ChatOpenAI(
        model=name,
        base_url=base_url,
        # Local servers ignore the key, but the client insists on one.
        api_key=api_key or endpoint_api_key() or "not-needed",  # type: ignore[arg-type]
        temperature=temperature,
        max_tokens=max_tokens,
        timeout=timeout,
        max_retries=CLIENT_MAX_RETRIES,
        stream_usage=True,
        rate_limiter=rate_limiter,
    )
    return NamedModel(name, model)
