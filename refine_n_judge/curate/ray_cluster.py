"""Which Ray `curate --engine ray` runs on, and watching the run on it.

`connect` starts a private local Ray or joins an existing cluster (`--ray-address`,
`RAY_ADDRESS`, `auto`) and says which in a `RaySession`: recorded in run.json and told on
the progress output. Only a Ray this process started is stopped at the end; a joined
cluster is only disconnected from.

`RunMonitor` is a small named actor the curate actors report to (started, item done), so
the driver can warn, instead of waiting silently, when the cluster cannot place the actors
or nothing finishes. (Which node ran each item is counted exactly from the output rows.)

Imported by the Ray engine only (the `ray` extra).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

import ray
from pydantic import BaseModel, Field
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from refine_n_judge.curate.errors import SettingsError

ACTOR_CPUS = 0.25
"""Logical CPUs per actor: it waits on model servers, it does not compute."""
PIPELINE_CPUS = 1.0
"""Logical CPUs Ray Data needs besides the actors: its read and write tasks ask for 1 each.
Measured on a one-node cluster, 2 actors: 2 CPUs ran; 1 CPU hung for good (the actors held
0.5, the read task waited for a whole CPU), which is what a silent stall on a small head is."""
LOCAL_MIN_CPUS = 4
"""Logical CPUs of a local Ray: with 2 the pipeline hung here; 4 worked."""
STALL_SECONDS = 60.0
"""Without a started actor or a finished item for this long, the driver says why it waits."""
MONITOR_NAMESPACE = "refine_n_judge"


class RaySession(BaseModel):
    """The Ray a run used; run.json's `invocations[].ray`."""

    mode: Literal["started", "joined"] = Field(
        description="started: a private local Ray, stopped at the end; joined: an existing "
        "cluster, left running"
    )
    address: str
    nodes: int
    cpus: float
    items_by_node: dict[str, int] = Field(
        default_factory=dict, description="items written, by the node (IP/node id) that ran them"
    )

    def describe(self) -> str:
        """The line the progress output shows."""
        where = f"{self.nodes} node(s), {self.cpus:g} CPUs"
        if self.mode == "started":
            return f"Ray: started a private local Ray ({where}, 127.0.0.1); stopped at the end"
        return f"Ray: joined the cluster at {self.address} ({where}); it is left running"


def cpus_needed(actors: int) -> float:
    """Logical CPUs the pipeline needs in the whole cluster."""
    return actors * ACTOR_CPUS + PIPELINE_CPUS


def connect(address: str, actors: int, quiet: bool) -> tuple[RaySession, bool]:
    """Start or join Ray; the session and whether to disconnect at the end.

    A Ray already initialised in this process (a caller's, a test's) is used as it is and
    left alone.

    Raises:
        SettingsError: the cluster cannot be reached, or has too few CPUs for the actors.
    """
    disconnect = not ray.is_initialized()
    if not disconnect:
        mode = "joined"
    elif address == "local":
        ray.init(
            address="local",
            num_cpus=max(LOCAL_MIN_CPUS, math.ceil(cpus_needed(actors))),
            include_dashboard=False,
            log_to_driver=not quiet,
        )
        mode = "started"
    else:
        check_reachable(address)
        try:
            ray.init(address=address, log_to_driver=not quiet)
        except Exception as exc:  # unreachable, refused (auth), not a Ray: all say the same
            raise SettingsError(
                f"--ray-address {address}: could not join the Ray cluster ({exc}). Start one "
                "with `ray start --head`, pass its GCS address (HOST:PORT, or `auto` on a node "
                "of it); with token authentication set RAY_AUTH_MODE=token and the cluster's "
                "token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            ) from exc
        mode = "joined"
    session = RaySession(
        mode=mode,
        address=ray.get_runtime_context().gcs_address,
        nodes=sum(1 for node in ray.nodes() if node["Alive"]),
        cpus=ray.cluster_resources().get("CPU", 0.0),
    )
    if session.cpus < cpus_needed(actors):
        if disconnect:
            ray.shutdown()
        raise SettingsError(
            f"the Ray cluster at {session.address} has {session.cpus:g} logical CPUs; "
            f"--actors {actors} needs {cpus_needed(actors):g} ({ACTOR_CPUS:g} per actor and "
            f"{PIPELINE_CPUS:g} for Ray Data's read and write tasks): start the nodes with a "
            "larger --num-cpus (logical CPUs; the actors mostly wait on the model server) or "
            "use fewer --actors"
        )
    return session, disconnect


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT nothing listens on (Ray itself retries for minutes).

    Raises:
        SettingsError: not HOST:PORT, or nothing accepts a connection there.
    """
    if address == "auto" or "://" in address:
        return  # Ray finds (or refuses) these itself, quickly
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SettingsError(
            f"--ray-address {address!r}: expected HOST:PORT (the GCS address `ray start "
            "--head` prints), auto, or local"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SettingsError(
            f"--ray-address {address}: nothing answers there ({exc}); is the cluster's head "
            "up (`ray start --head --port PORT`), and is this its GCS address?"
        ) from exc


# --------------------------------------------------------------------------- monitoring


class RunMonitor:
    """What the actors report: which started where, how many items each node finished.

    Run as a named Ray actor (`start_monitor`); plain Python so it can be tested alone.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.actors: set[tuple[str, int]] = set()
        self.items: Counter[str] = Counter()
        self.last_item = clock()

    def actor_started(self, node: str, pid: int) -> None:
        self.actors.add((node, pid))

    def item_done(self, node: str) -> None:
        self.items[node] += 1
        self.last_item = self.clock()

    def snapshot(self) -> dict[str, Any]:
        """Actors started, items by node, and seconds since the last finished item."""
        return {
            "actors": sorted(self.actors),
            "items_by_node": dict(self.items),
            "idle_seconds": self.clock() - self.last_item,
        }


def node_label() -> str:
    """This node as the run report shows it: IP and the start of the node id."""
    context = ray.get_runtime_context()
    return f"{ray.util.get_node_ip_address()}/{context.get_node_id()[:8]}"


def start_monitor(name: str) -> Any:
    """The run's `RunMonitor` actor, on the driver's node, gone with the driver."""
    return (
        ray.remote(RunMonitor)
        .options(
            name=name,
            namespace=MONITOR_NAMESPACE,
            num_cpus=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id=ray.get_runtime_context().get_node_id(), soft=True
            ),
        )
        .remote()
    )


class StallWatch:
    """A driver thread that says what is wrong when the run makes no progress."""

    def __init__(
        self,
        monitor: Any,
        actors: int,
        say: Callable[[str], None],
        stall_seconds: float = STALL_SECONDS,
    ) -> None:
        self.monitor = monitor
        self.actors = actors
        self.say = say
        self.stall_seconds = stall_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ray-stall-watch", daemon=True)

    def __enter__(self) -> StallWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def poll(self) -> dict[str, Any] | None:
        try:
            return ray.get(self.monitor.snapshot.remote(), timeout=10)
        except Exception:  # the monitor is best effort: a lost reply never stops the run
            return None

    def _watch(self) -> None:
        started = time.monotonic()
        warned_at = started
        while not self._stop.wait(min(5.0, self.stall_seconds / 4)):
            snapshot = self.poll()
            if snapshot is None:
                continue
            now = time.monotonic()
            if now - warned_at < self.stall_seconds:
                continue
            message = self.diagnose(snapshot, now - started)
            if message:
                self.say(message)
                warned_at = now

    def diagnose(self, snapshot: dict[str, Any], elapsed: float) -> str | None:
        """A warning for a run that is not moving, or None."""
        running = len(snapshot["actors"])
        if running < self.actors:
            return (
                f"waiting: {running} of {self.actors} actors started after {elapsed:.0f}s "
                f"({_cpus()}; each actor needs {ACTOR_CPUS:g}, Ray Data's read and write "
                "tasks 1 each): give the nodes more --num-cpus, or use fewer --actors"
            )
        if snapshot["idle_seconds"] >= self.stall_seconds:
            return (
                f"no item finished in the last {snapshot['idle_seconds']:.0f}s ({running} "
                f"actors up, {_cpus()}): is the model server answering, or do Ray Data's "
                "read and write tasks (1 CPU each) wait for a CPU? (give the nodes more "
                "--num-cpus)"
            )
        return None


def _cpus() -> str:
    free = ray.available_resources().get("CPU", 0.0)
    total = ray.cluster_resources().get("CPU", 0.0)
    return f"{free:g} of {total:g} logical CPUs free"
