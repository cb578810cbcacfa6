"""The optional LLM response cache (`--cache`): LangChain's SQLiteCache, tuned for many
concurrent lookups, counting its hits and misses for run.json.

With the cache on, every model reply is stored under its exact prompt and model settings,
so work that was already paid for (items in flight when a run was killed, a directory
rebuilt from scratch) is replayed from disk instead of called again.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # langchain-community's sunset notice
    from langchain_community.cache import SQLAlchemyCache, SQLiteCache

from langchain_core.globals import get_llm_cache, set_llm_cache
from langchain_core.load import loads
from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, Generation
from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session

from refine_n_judge.curate.errors import SettingsError

# `loads` with an allowlist is the safe way to revive cached messages; its beta notice
# would otherwise print on every run that uses the cache.
warnings.filterwarnings("ignore", message="The function `loads` is in beta")

SQLITE_BUSY_TIMEOUT_SECONDS = 60
_CACHED_CLASSES = [ChatGeneration, ChatGenerationChunk, Generation, AIMessage, AIMessageChunk]


class CountingSQLiteCache(SQLiteCache):
    """`SQLiteCache` in WAL mode with a long busy timeout, counting hits and misses.

    Lookups and stores run in worker threads (LangChain's async path); WAL lets readers
    proceed while one writer commits, and the busy timeout makes writers queue instead of
    failing with "database is locked".
    """

    def __init__(self, database_path: str | Path) -> None:
        engine = create_engine(
            f"sqlite:///{database_path}",
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _wal(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        SQLAlchemyCache.__init__(self, engine)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def lookup(self, prompt: str, llm_string: str) -> Any:
        """The cached generations, counted as a hit or a miss.

        As `SQLAlchemyCache.lookup`, but revives only generation and AI-message objects
        (the cache file is data, not code to trust with arbitrary classes).
        """
        schema = self.cache_schema
        statement = (
            select(schema.response)
            .where(schema.prompt == prompt)
            .where(schema.llm == llm_string)
            .order_by(schema.idx)
        )
        with Session(self.engine) as session:
            rows = session.execute(statement).fetchall()
        found = [loads(row[0], allowed_objects=_CACHED_CLASSES) for row in rows] or None
        with self._lock:
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
        return found

    def stats(self) -> dict[str, int]:
        """Hits and misses so far."""
        with self._lock:
            return {"hits": self.hits, "misses": self.misses}


SQLITE_HEADER = b"SQLite format 3\x00"


def check_cache_path(path: Path) -> None:
    """Refuse a --cache path that cannot be the cache (nothing is created here).

    Raises:
        SettingsError: the path is a directory, a file that is not SQLite, or its folder
            cannot be made.
    """
    if path.is_dir():
        raise SettingsError(f"invalid --cache {path}: it is a directory; give a file path")
    if path.exists():
        try:
            with open(path, "rb") as handle:
                head = handle.read(len(SQLITE_HEADER))
        except OSError as exc:
            raise SettingsError(f"invalid --cache {path}: cannot read it ({exc})") from exc
        if head and head != SQLITE_HEADER:
            raise SettingsError(
                f"invalid --cache {path}: it is not an SQLite file; give a new path or the "
                "cache file of an earlier run"
            )
        if not os.access(path, os.W_OK):
            raise SettingsError(f"invalid --cache {path}: it cannot be written")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise SettingsError(f"invalid --cache {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK):
        raise SettingsError(f"invalid --cache {path}: {parent} cannot be written")


def install_cache(path: Path) -> CountingSQLiteCache:
    """Make the cache at `path` LangChain's global LLM cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    cache = CountingSQLiteCache(path)
    set_llm_cache(cache)
    return cache


def uninstall_cache() -> None:
    """Remove the global cache (and close its connections)."""
    cache = get_llm_cache()
    set_llm_cache(None)
    if isinstance(cache, SQLAlchemyCache):
        cache.engine.dispose()
