"""One writer per output directory: an OS lock on `OUT/.curate.lock`.

`fcntl.flock` is held by the open file, so the kernel releases it when the process ends
however it ends (kill -9 included): a stale lock file never blocks a resume. The file
itself stays; it holds the pid of the last holder, for the refusal message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import IO

from refine_n_judge.curate.errors import SettingsError

LOCK_FILE = ".curate.lock"


class FolderInUseError(SettingsError):
    """Another `curate` process is writing to the output directory."""


class FolderLock:
    """An exclusive, non-blocking lock on one output directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_FILE
        self._handle: IO[bytes] | None = None

    def acquire(self) -> None:
        """Take the lock now or refuse.

        Raises:
            FolderInUseError: another process holds it (the message names its pid).
            SettingsError: the lock file cannot be opened.
        """
        try:
            handle = open(self.path, "a+b")  # noqa: SIM115 - held until release()
        except OSError as exc:
            raise SettingsError(f"cannot lock the output directory ({self.path}: {exc})") from exc
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.seek(0)
            holder = handle.read(32).decode("ascii", errors="replace").strip()
            handle.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise FolderInUseError(
                f"{self.path.parent} is in use by another curate run{who}: one run writes "
                "to a directory at a time; wait for it to end (or stop it) and rerun, or "
                "use another --out"
            ) from exc
        except OSError as exc:  # e.g. ENOLCK: a network filesystem without locks
            handle.close()
            raise SettingsError(
                f"cannot lock the output directory ({self.path}: {exc}); its filesystem may "
                "not support file locks: use an --out on another disk"
            ) from exc
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()).encode("ascii"))
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(OSError):
                handle.close()

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()
