"""Ray, the only module that imports it: joining a cluster or starting a local instance for the
run, and the pool of worker actors (one GPU each on GPU nodes, else ``threads`` CPUs), which are
restarted when they die.

Ray is an optional extra; nothing else in the package imports it, and a run without --workers
never reaches this module.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from ..config import ScaleConfig
from ..errors import UsageError

INSTALL = "pip install -e '.[ray]'"
ADDRESS_VARIABLE = "RAY_ADDRESS"
HELLO_TIMEOUT_S = 600  # a worker's first answer: its process starts and imports torch


def import_ray():
    """Ray, or one line naming the command that installs it."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--workers needs Ray, which is not installed: {INSTALL}") from None
    return ray


def remote_cause(error: BaseException) -> BaseException:
    """The worker's own exception inside Ray's wrapper (a user error keeps its one line)."""
    cause = getattr(error, "cause", None)
    return cause if isinstance(cause, BaseException) else error


@dataclass(frozen=True)
class Cluster:
    """What the run is on: whether it started Ray itself, the seconds that took, and the
    resources the workers are placed in."""

    started_here: bool
    start_seconds: float
    cpus: float
    gpus: float
    nodes: int


_held: list[Cluster] = []  # the connections this process holds, innermost last


@contextmanager
def connected(scale: ScaleConfig, workers: int, threads: Optional[int], *,
              quiet: bool = False) -> Iterator[Cluster]:
    """Ray for the run: the instance this process already has (left as it is), the cluster named
    by --ray or $RAY_ADDRESS (disconnected after), or a local instance started here with at least
    a CPU per worker thread (shut down after), however the run ends."""
    ray = import_ray()
    if ray.is_initialized() and _held:  # a run inside a job that connected (a folder's videos)
        yield _held[-1]
        return
    started = time.perf_counter()
    started_here = initialized_here = False
    logging_level = logging.ERROR if quiet else logging.WARNING  # not Ray's INFO lines
    if not ray.is_initialized():
        address = scale.ray or os.environ.get(ADDRESS_VARIABLE)
        try:
            if address:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging_level)
                initialized_here = True
            else:
                cpus = max(os.cpu_count() or 1, workers * (threads or 1))
                # the workers import this very package, wherever the driver found it
                root = str(Path(__file__).resolve().parents[2])
                path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
                # Ray lowers its workers' priority by default (nice 15), which starves them
                # beside any other load; here they are the job
                ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
                         logging_level=logging_level, runtime_env={"env_vars": {"PYTHONPATH": path}},
                         _system_config={"worker_niceness": 0})
                started_here = initialized_here = True
        except ConnectionError as error:
            raise UsageError(f"cannot reach the Ray cluster at {address}: {error}") from None
    held = len(_held)
    try:
        resources = ray.cluster_resources()
        alive = [node for node in ray.nodes() if node.get("Alive")]
        _held.append(Cluster(started_here, time.perf_counter() - started,
                             resources.get("CPU", 0.0), resources.get("GPU", 0.0), len(alive)))
        yield _held[-1]
    finally:
        del _held[held:]
        if initialized_here:  # stops the local instance; from a cluster, only disconnects
            ray.shutdown()


def default_threads(cluster: Cluster, workers: int) -> int:
    """Torch threads per worker: a node's CPUs divided by the workers it holds."""
    per_node = cluster.cpus / max(1, cluster.nodes)
    workers_per_node = -(-workers // max(1, cluster.nodes))
    return max(1, int(per_node // workers_per_node))


def actor_options(cluster: Cluster, device: str, threads: int, max_restarts: int) -> dict[str, Any]:
    """One GPU per worker where there are GPUs and the device allows them, else its threads'
    CPUs. One call at a time per actor (CUDA actors must not run two)."""
    gpu = cluster.gpus >= 1 and device != "cpu" and not device.startswith("mps")
    return {"num_gpus": 1 if gpu else 0, "num_cpus": 1 if gpu else threads,
            "max_restarts": max_restarts, "max_task_retries": 0, "max_concurrency": 1}


class WorkerPool:
    """The actors, each a ``body`` (``worker.SegmentWorker`` for a video's segments,
    ``stills.StillWorker`` for a folder's images, a sweep's runs or a layer's texture) built with
    ``arguments`` and its torch threads. A call that fails because its actor died is answered by
    the driver re-sending the work (from the saved state), to the same actor once Ray has
    restarted it (``max_restarts``) or to a new one when Ray gave up on it."""

    def __init__(self, body: type, arguments: tuple, device: str, cluster: Cluster, workers: int,
                 threads: int, max_restarts: int):
        self.ray = import_ray()
        needed = workers * threads
        self.options = actor_options(cluster, device, threads, max_restarts)
        if self.options["num_gpus"] and workers > cluster.gpus:
            raise UsageError(f"--workers {workers}: the Ray cluster has {cluster.gpus:g} GPU(s)")
        if not self.options["num_gpus"] and needed > cluster.cpus:
            raise UsageError(f"--workers {workers} x --threads {threads} need {needed} CPUs; the "
                             f"Ray cluster has {cluster.cpus:g}")
        self.arguments, self.threads = arguments, threads
        self.remote_class = self.ray.remote(body)
        self.actors = [self._new() for _ in range(workers)]
        self.restarts = [0] * workers
        self.max_restarts = max_restarts
        self.info: list[dict] = [{} for _ in range(workers)]

    def _new(self):
        return self.remote_class.options(**self.options).remote(*self.arguments, self.threads)

    def greet(self) -> list[dict]:
        """Every worker's node, pid and device; refuses the run, naming the node, when one of them
        cannot read an input."""
        try:
            answers = self.ray.get([actor.hello.remote() for actor in self.actors],
                                   timeout=HELLO_TIMEOUT_S)
        except self.ray.exceptions.GetTimeoutError:
            raise UsageError(self._not_placed()) from None
        for answer in answers:
            if answer["unreadable"]:
                raise UsageError(f"worker on node {answer['node']} cannot read "
                                 f"{', '.join(answer['unreadable'])}: every input must be "
                                 "readable on every node of the cluster")
        self.info = answers
        return answers

    def _not_placed(self) -> str:
        """Why the workers did not start: what each needs against what the cluster has free (its
        other jobs hold the rest; Ray queues the actors until they are released)."""
        free = self.ray.available_resources()
        if self.options["num_gpus"]:
            need, have = f"{len(self.actors)} GPU(s)", f"{free.get('GPU', 0.0):g} GPU(s)"
        else:
            need = f"{len(self.actors) * self.threads} CPU(s)"
            have = f"{free.get('CPU', 0.0):g} CPU(s)"
        return (f"the workers did not start within {HELLO_TIMEOUT_S} s: they need {need} and the "
                f"Ray cluster has {have} free (other jobs hold the rest); run again when they "
                "are done, or ask for fewer --workers or --threads")

    def prepare(self, *arguments) -> list[dict]:
        """Every worker builds its network (and a video's style targets) in parallel; a worker's
        error (bad weights) is raised here as the worker raised it."""
        try:
            return self.ray.get([actor.prepare.remote(*arguments) for actor in self.actors])
        except self.ray.exceptions.RayTaskError as error:
            raise remote_cause(error) from None

    def is_death(self, error: BaseException) -> bool:
        return isinstance(error, self.ray.exceptions.RayActorError)

    def revive(self, worker: int) -> dict:
        """After worker ``worker`` died: wait for Ray's restart of it (a new actor once Ray gives
        up), counting against --max-restarts; returns its new hello."""
        self.restarts[worker] += 1
        if self.restarts[worker] > self.max_restarts:
            raise RuntimeError(f"worker {worker} died {self.restarts[worker]} times "
                               f"(--max-restarts {self.max_restarts}); the finished frames are saved")
        deadline = time.monotonic() + HELLO_TIMEOUT_S
        while True:
            try:
                self.info[worker] = self.ray.get(self.actors[worker].hello.remote(), timeout=60)
                return self.info[worker]
            except self.ray.exceptions.ActorDiedError:
                self.actors[worker] = self._new()  # Ray's restarts are used up: a fresh actor
            except (self.ray.exceptions.ActorUnavailableError, self.ray.exceptions.GetTimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
