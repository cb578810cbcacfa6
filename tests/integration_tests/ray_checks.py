"""Checks shared by the Ray engine's integration tests: the fake server's script, the
input they curate, exactly-once over the output directory, and loopback-only sockets."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.fake_openai import ChatRequest, Reply
from tests.support.processes import wait_for as wait_until
from tests.support.scripts import versioned_responder

DEADLINE_SECONDS = 90.0
OUTPUT_FILES = [
    ".curate.lock",
    "chains.jsonl",
    "dpo.jsonl",
    "failures.jsonl",
    "inputs.json",
    "run.json",
    "sft.jsonl",
]


def responder() -> Callable[[ChatRequest], Reply]:
    """Chains grow to v1 and v2 loses (8 calls per item); a question with FAIL gets an HTTP
    400 (not retried), so that item ends as a model failure row."""
    script = versioned_responder(stop_at=1)

    def respond(request: ChatRequest) -> Reply:
        if "FAIL" in request.texts("user")[0]:
            return Reply(status=400, error_message="scripted: this item always fails")
        return script(request)

    return respond


def write_input(path: Path, n: int, *, failing: int = 0) -> set[str]:
    """n items (the first `failing` of them fail), one bad row and one repeated id; the
    record keys the run must end with."""
    rows: list[dict[str, Any]] = [
        {"id": f"item-{i}", "question": f"{'FAIL ' if i < failing else ''}What is {i}?"}
        | ({"answer": "v0"} if i % 3 else {})
        for i in range(n)
    ]
    rows.insert(2, {"id": "broken", "question": 42})
    rows.append({"id": "item-1", "question": "again"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {f"item-{i}" for i in range(n)} | {f"{path.name}:3", f"{path.name}:{len(rows)}"}


def curate_args(data: Path, out: Path, url: str, *flags: str) -> list[str]:
    return ["curate", str(data), "--out", str(out), "--refiner", "fake", "--base-url", url,
            "--quiet", *flags]  # fmt: skip


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def check_exactly_once(out: Path, expected: set[str]) -> None:
    """Every key once across chains+failures, whole lines, exports match the chains."""
    keys = [r["id"] for name in ("chains.jsonl", "failures.jsonl") for r in rows(out / name)]
    assert [k for k, n in Counter(keys).items() if n > 1] == []
    assert set(keys) == expected
    chain_ids = {r["id"] for r in rows(out / "chains.jsonl")}
    assert sorted(r["id"] for r in rows(out / "sft.jsonl")) == sorted(chain_ids)
    assert Counter(r["id"] for r in rows(out / "dpo.jsonl")) == dict.fromkeys(chain_ids, 2)
    report = json.loads((out / "run.json").read_text())
    assert report["counts"]["items"] == len(expected)
    assert report["counts"]["succeeded"] == len(chain_ids)
    assert sorted(p.name for p in out.iterdir()) == OUTPUT_FILES  # no shards left behind


def wait_for(condition: Callable[[], bool], what: str, process: subprocess.Popen) -> None:
    """`tests.support.processes.wait_for` with Ray's longer deadline (actors start slowly)."""
    wait_until(condition, what, process, deadline=DEADLINE_SECONDS)


def listening_addresses(root_pid: int) -> set[str]:
    """The local IPv4/IPv6 addresses (hex, as /proc/net shows them) that `root_pid` and its
    descendants listen on."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    pids, stack = set(), [root_pid]
    while stack:
        pid = stack.pop()
        pids.add(pid)
        stack.extend(children.get(pid, []))
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                found.add(parts[1].rsplit(":", 1)[0])
    return found


LOOPBACK_HEX = {
    "0100007F",  # 127.0.0.1
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}
