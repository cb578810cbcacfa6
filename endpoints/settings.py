"""Which model endpoint a run uses when the context names none.

One settings object, read from environment variables (prefix `REFINE_N_JUDGE_`) and
overridable by CLI flags, decides in this order:

1. `REFINE_N_JUDGE_BASE_URL` (+ `REFINE_N_JUDGE_MODEL`, `REFINE_N_JUDGE_API_KEY`): any
   OpenAI-compatible endpoint: vLLM, llama.cpp server, Ollama.
2. `REFINE_N_JUDGE_MODEL` alone: an `init_chat_model` name such as `openai:gpt-4o-mini`.
3. `OPENAI_API_KEY`: OpenAI's `gpt-4o-mini`.
4. Otherwise the embedded local model, started on loopback by this process on first use
   and stopped when the process exits.

API keys are `SecretStr`: they never print, log or serialise in clear.
"""

from __future__ import annotations

import os
import threading

from pydantic import BaseModel, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from endpoints.embedded import EmbeddedServer
from endpoints.redact import redact_url

DEFAULT_OPENAI_MODEL = "openai:gpt-4o-mini"


class Settings(BaseSettings):
    """Endpoint settings from the environment (`REFINE_N_JUDGE_*`)."""

    model_config = SettingsConfigDict(env_prefix="REFINE_N_JUDGE_", extra="ignore")

    model: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None


class Endpoint(BaseModel):
    """A resolved default model: a name, and the endpoint serving it if not a provider's."""

    model: str
    base_url: str | None = None
    api_key: SecretStr | None = None
    source: str

    def describe(self) -> str:
        """One line for logs and run reports (never the key)."""
        where = f" at {redact_url(self.base_url)}" if self.base_url else ""
        return f"{self.model}{where} ({self.source})"


_embedded: EmbeddedServer | None = None
_embedded_lock = threading.Lock()


def endpoint_api_key() -> str | None:
    """The key for OpenAI-compatible endpoints named by base URL, if one is set."""
    key = Settings().api_key
    return key.get_secret_value() if key else None


def default_endpoint(settings: Settings | None = None) -> Endpoint:
    """The endpoint a model name of `None` means (see the module docstring)."""
    settings = settings or Settings()
    if settings.base_url:
        return Endpoint(
            model=settings.model or "default",
            base_url=settings.base_url,
            api_key=settings.api_key,
            source="REFINE_N_JUDGE_BASE_URL",
        )
    if settings.model:
        return Endpoint(model=settings.model, source="REFINE_N_JUDGE_MODEL")
    if os.environ.get("OPENAI_API_KEY"):
        return Endpoint(model=DEFAULT_OPENAI_MODEL, source="OPENAI_API_KEY")
    server = embedded_server()
    return Endpoint(model=server.model_alias, base_url=server.base_url, source="embedded model")


def embedded_server() -> EmbeddedServer:
    """The process's embedded model server, started (once) on first use."""
    global _embedded
    with _embedded_lock:
        if _embedded is None or not _embedded.is_running:
            server = EmbeddedServer()
            server.start()
            _embedded = server
        return _embedded


def stop_embedded_server() -> None:
    """Stop the embedded server if this process started one."""
    global _embedded
    with _embedded_lock:
        if _embedded is not None:
            _embedded.stop()
            _embedded = None
