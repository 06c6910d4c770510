"""Executors: where and how the runs of a grid execute.  The runner (grid.py) decides *what* to
run (done runs skipped, interrupted ones resumed, fine-tuning runs after their source, failures
retried and recorded); an executor only runs each job it is given, `runjob.execute(job, env)`,
and hands back a concurrent.futures.Future of its result record.

    local   a thread pool on this machine (the default, no dependency): `jobs` runs at a time,
            or with GPU slots (`--gpus 0,1 --per-gpu K`) K runs per listed GPU, each run's
            subprocesses seeing only its GPU (CUDA_VISIBLE_DEVICES).
    ray     each run is a Ray task with its resources (num_cpus; num_gpus = 1/K with
            --per-gpu K, or 1 for a run whose spec says device = "cuda"), on a local Ray
            instance started here or on a cluster (--address).  Ray sets CUDA_VISIBLE_DEVICES
            for each task: to its GPUs, or to none for a task that reserved none.

The flags are checked before anything is made (check_placement): --gpus against the GPUs torch
sees, --address for its form and, with a short TCP probe, for something answering there.

Adding one (say, SLURM job arrays) means a class with `submit`, `close` and a `describe` line.
"""

from __future__ import annotations

import os
import queue
import re
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import torch

from experiments.errors import UserError, optional_module
from experiments.sweep.runjob import Job

EXECUTORS = ("local", "ray")
# --address HOST:PORT (or Ray Client's ray://HOST:PORT); a host is a name, an IPv4 address or a
# bracketed IPv6 one.  Anything else is refused before Ray starts, which would retry it for minutes.
_ADDRESS = re.compile(r"(?:ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?):([0-9]{1,5})")
REACH_TIMEOUT_S = 5.0  # how long the TCP probe of --address HOST:PORT waits for an answer
NO_RAY_CHILD_KILL = "RAY_kill_child_processes_on_worker_exit"
Execute = Callable[[Job, dict[str, str], bool], dict]  # runjob.execute(job, env, own_group)


class Unplaceable(Exception):
    """A run no node of the cluster can hold: the runner records it failed, with this message."""


class Executor(Protocol):
    def submit(self, execute: Execute, job: Job) -> Future: ...

    def threads(self, job_cpus: int | None, running: int) -> int:
        """OMP threads for a run asking `job_cpus` CPUs (None: no ask) when `running` run at once."""
        ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Placement:
    """How `workbench run` was told to place its runs (the flags, checked)."""

    executor: str = "local"
    jobs: int | None = None  # local without GPUs: runs at a time
    gpus: tuple[int, ...] = ()  # local: the GPU indices to share out
    per_gpu: int | None = None  # runs per GPU (local slots; Ray: num_gpus = 1 / per_gpu)
    address: str | None = None  # ray: auto, HOST:PORT, or None for a new local instance


def parse_gpus(text: str) -> tuple[int, ...]:
    """'0,1,3' -> (0, 1, 3); one line for anything else."""
    try:
        gpus = tuple(int(x) for x in text.split(","))
    except ValueError:
        gpus = ()
    if not gpus or any(g < 0 for g in gpus) or len(set(gpus)) != len(gpus):
        raise UserError(f"--gpus {text!r}: expected distinct GPU indices separated by commas, e.g. 0,1")
    return gpus


def parse_address(address: str) -> tuple[str, int] | None:
    """--address: None for auto (Ray finds the cluster this machine belongs to), else (HOST, PORT)
    from HOST:PORT or ray://HOST:PORT; one line for anything else or a port outside 1-65535."""
    if address == "auto":
        return None
    m = _ADDRESS.fullmatch(address)
    if m is None:
        raise UserError(f"--address {address!r}: expected auto or HOST:PORT (e.g. 10.0.0.5:6379)")
    port = int(m.group(2))
    if not 1 <= port <= 65535:
        raise UserError(f"--address {address!r}: the port must be between 1 and 65535, got {port}")
    return m.group(1).strip("[]"), port


def check_reachable(address: str) -> None:
    """Refuse a HOST:PORT where nothing answers, in seconds: ray.init would log warnings and
    retry it for minutes.  A TCP connection is all it tries (Ray's port is plain TCP)."""
    where = parse_address(address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=REACH_TIMEOUT_S).close()
    except OSError as e:  # refused, timed out, unknown host, no route
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise UserError(f"--address {address}: no Ray cluster answers there ({why}); start one with "
                        f"`ray start --head`, or check the host and port") from None


def cuda_gpus() -> int:
    """How many CUDA GPUs torch sees here (CUDA_VISIBLE_DEVICES applied)."""
    return torch.cuda.device_count()


def _check_gpus(gpus: tuple[int, ...]) -> None:
    """--gpus must name GPUs this machine has: a missing one would train on the CPU in silence."""
    seen = cuda_gpus()
    missing = [g for g in gpus if g >= seen]
    if missing:
        have = f"indices 0 to {seen - 1}" if seen else "so no index is valid"
        raise UserError(f"--gpus {','.join(map(str, gpus))}: torch sees {seen} CUDA GPU{'' if seen == 1 else 's'} "
                        f"on this machine ({have}); GPU {missing[0]} is not one of them")


def check_placement(p: Placement) -> Placement:
    if p.executor not in EXECUTORS:
        raise UserError(f"--executor {p.executor!r}: choose from {', '.join(EXECUTORS)}")
    if p.per_gpu is not None and not 1 <= p.per_gpu <= 1024:
        raise UserError(f"--per-gpu must be between 1 and 1,024, got {p.per_gpu}")
    if p.executor == "local":
        if p.address is not None:
            raise UserError("--address is for --executor ray")
        if p.per_gpu is not None and not p.gpus:
            raise UserError("--per-gpu needs --gpus (the GPU indices to share out), e.g. --gpus 0 --per-gpu 4")
        if p.gpus and p.jobs is not None:
            raise UserError("--jobs and --gpus: with GPU slots, --gpus and --per-gpu set how many run at a time")
        if p.gpus:
            _check_gpus(p.gpus)
    else:
        optional_module("ray", "ray", "--executor ray")  # before anything is made
        if p.gpus:
            raise UserError("--gpus is for --executor local; Ray places runs on GPUs itself "
                            "(--per-gpu K gives each run 1/K of one)")
        if p.jobs is not None:
            raise UserError("--jobs is for --executor local; Ray runs as many as the cluster's CPUs allow "
                            "(set resources.num_cpus in the spec to give each run more)")
        if p.address is not None:
            check_reachable(p.address)  # before anything is made; ray.init would retry for minutes
    return p


class LocalExecutor:
    """A thread pool; each thread waits on one run's subprocesses.  With GPUs, a run takes a
    slot (a GPU index) from a queue holding each GPU `per_gpu` times, and gives it back after."""

    def __init__(self, jobs: int, gpus: Sequence[int] = (), per_gpu: int = 1):
        self.gpus, self.per_gpu = tuple(gpus), per_gpu
        self.slots = len(self.gpus) * per_gpu if self.gpus else jobs
        self.pool = ThreadPoolExecutor(max_workers=self.slots, thread_name_prefix="run")
        self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for _ in range(per_gpu):
            for g in self.gpus:  # round robin: the first runs spread over the GPUs
                self.free.put(g)

    def submit(self, execute: Execute, job: Job) -> Future:
        return self.pool.submit(self._run, execute, job)

    def _run(self, execute: Execute, job: Job) -> dict:
        if not self.gpus:
            return execute(job, {}, False)
        gpu = self.free.get()
        try:
            return execute(job, {"CUDA_VISIBLE_DEVICES": str(gpu)}, False)
        finally:
            self.free.put(gpu)

    def threads(self, job_cpus: int | None, running: int) -> int:
        if job_cpus is not None:
            return job_cpus
        return max(1, (os.cpu_count() or 1) // max(1, min(self.slots, running)))  # a lone run gets every core

    def describe(self) -> str:
        if self.gpus:
            return f"{self.slots} at a time ({self.per_gpu} per GPU on GPUs {','.join(map(str, self.gpus))})"
        return f"{self.slots} at a time"

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor:
    """Each run is a Ray task.  Started without an address, Ray runs on this machine only and
    stops with this process; with `--address auto` or HOST:PORT it joins a running cluster,
    whose nodes must all see the output directory at the same path (a shared filesystem)."""

    def __init__(self, address: str | None, per_gpu: int | None, num_cpus: int | None = None):
        self.ray = optional_module("ray", "ray", "--executor ray")
        self.per_gpu = per_gpu
        if not address:
            # Ray would SIGKILL a dead driver's trainers; left alone, they get SIGTERM from their
            # lifeline (lifeline.py) and checkpoint the step they are on.  Read by the Ray
            # processes ray.init starts here; a cluster's own `ray start` decides for itself.
            os.environ.setdefault(NO_RAY_CHILD_KILL, "0")
        kwargs = {} if address else {"num_cpus": num_cpus}  # num_cpus: a local instance's size (tests)
        try:
            self.ray.init(address=address, include_dashboard=False, log_to_driver=False,
                          configure_logging=False, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"--executor ray: could not start or reach Ray"
                            f"{f' at {address}' if address else ''}: {str(e).splitlines()[0]}") from None
        self.remote = None

    def gpus_for(self, job: Job) -> float:
        """The GPUs a run reserves.  Ray hides every GPU from a task that reserves none, so a run
        whose spec says device = "cuda" reserves a whole one unless told otherwise."""
        run = job.key.variant.run
        if run.resources.num_gpus is not None:
            return run.resources.num_gpus
        if self.per_gpu:
            return 1 / self.per_gpu
        return 1.0 if run.device == "cuda" else 0.0

    def submit(self, execute: Execute, job: Job) -> Future:
        gpus = self.gpus_for(job)
        unfit = self._unfit(job.threads, gpus)
        if unfit:  # Ray would keep it pending for ever: recorded failed instead, with why
            failed: Future = Future()
            failed.set_exception(Unplaceable(unfit))
            return failed
        if self.remote is None:
            self.remote = self.ray.remote(execute)
        ref = self.remote.options(num_cpus=job.threads, num_gpus=gpus, max_retries=0,
                                  name=f"workbench {job.name}").remote(job, {}, True)
        return ref.future()

    def _unfit(self, cpus: int, gpus: float) -> str:
        """Why no node of the cluster, as it is now, can hold a run asking for this ("" if one can)."""
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
            return ""
        biggest = ", ".join(sorted({f"{n.get('CPU', 0):g} CPUs/{n.get('GPU', 0):g} GPUs" for n in nodes})) or "none"
        return (f"no Ray node can hold a run asking for {cpus} CPUs and {gpus:g} GPUs (nodes: {biggest}); "
                f"lower resources.num_cpus / num_gpus, or drop device = \"cuda\" or --per-gpu where there is no GPU")

    def threads(self, job_cpus: int | None, running: int) -> int:
        return job_cpus or 1  # what Ray reserves for it, so runs sharing a node don't oversubscribe it

    def describe(self) -> str:
        have = self.ray.cluster_resources()
        cpus, gpus = have.get("CPU", 0), have.get("GPU", 0)
        where = f"{cpus:g} CPUs" + (f", {gpus:g} GPUs" if gpus else "")
        return f"as Ray tasks on a cluster of {where}"

    def close(self) -> None:
        self.ray.shutdown()


def make_executor(p: Placement, default_jobs: int, ray_cpus: int | None = None) -> Executor:
    if p.executor == "ray":
        return RayExecutor(p.address, p.per_gpu, ray_cpus)
    return LocalExecutor(p.jobs or default_jobs, p.gpus, p.per_gpu or 1)
