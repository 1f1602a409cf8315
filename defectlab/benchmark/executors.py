"""Where a benchmark's units of work run: in this process, in worker processes on this machine, or on a Ray cluster.

Every executor calls the same pure function on each unit and returns what each unit returned, or its error. A unit
writes only complete files (atomically), so a worker killed mid-unit leaves nothing that a later read could take
for a result: the unit is simply run again (`RETRIES` times at most). An exception inside a unit is that unit's
failure: the other units finish, and the caller reports the failed ones.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Callable, Sequence

from ..errors import DefectlabError

EXECUTORS = ("local", "ray")
RETRIES = 3  # a unit whose worker died is run again at most this many times
ADDRESS_TIMEOUT_S = 10  # an unreachable --address is refused after this long


@dataclass
class Outcome:
    unit: object
    value: object = None
    error: str | None = None  # the unit's exception, in one line


def _call(fn: Callable, unit, args: tuple) -> Outcome:
    """`fn(unit, *args)` with its exception caught and recorded (in the worker, which may be another machine)."""
    try:
        return Outcome(unit, fn(unit, *args))
    except Exception as exc:  # one unit's failure must not stop the others
        return Outcome(unit, error=f"{type(exc).__name__}: {exc}")


def run_units(fn: Callable, units: Sequence, args: tuple = (), *, executor: str = "local", workers: int = 1,
              address: str | None = None, cpus_per_unit: int = 1, on_done: Callable[[Outcome], None] | None = None
              ) -> list[Outcome]:
    """`fn(unit, *args)` for every unit, in the order they finish; `on_done(outcome)` as each one does (the caller
    writes its files, moves its progress bar). `fn` and `args` must be picklable for `workers > 1` and Ray."""
    on_done = on_done or (lambda outcome: None)
    start_executor(executor, address)
    if executor == "ray":
        return _ray(fn, units, args, cpus_per_unit, on_done)
    if workers <= 1:
        outcomes = []
        for unit in units:
            outcomes.append(_call(fn, unit, args))
            on_done(outcomes[-1])
        return outcomes
    return _processes(fn, units, args, workers, on_done)


def _affinity(unit) -> tuple:
    """Units with the same key share a process's caches (a seed's prepared split, its images' features)."""
    return (getattr(unit, "category", None), getattr(unit, "seed", None))


def _next_unit(todo: list, last, busy: set):
    """The unit a free worker takes: one of the seed it ran last (its caches are warm), else one of a seed no other
    worker is on, else the first."""
    for wanted in ((lambda u: _affinity(u) == last), (lambda u: _affinity(u) not in busy), (lambda u: True)):
        for i, unit in enumerate(todo):
            if wanted(unit):
                return todo.pop(i)
    return None


def _processes(fn, units, args, workers: int, on_done) -> list[Outcome]:
    """`workers` fresh ("spawn") processes, each fed one unit at a time, preferring units of the seed it ran last
    (`_next_unit`). A worker that dies is replaced, and its unit is run again (`RETRIES` times at most)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    todo, outcomes, tries = list(units), [], {}
    pools = [ProcessPoolExecutor(max_workers=1, mp_context=context) for _ in range(min(workers, len(todo)))]
    last: dict[int, tuple] = {}
    running: dict = {}  # future -> (worker index, unit)
    try:
        while todo or running:
            for w, pool in enumerate(pools):
                if todo and w not in {i for i, _ in running.values()}:
                    unit = _next_unit(todo, last.get(w), {_affinity(u) for _, u in running.values()})
                    last[w] = _affinity(unit)
                    running[pool.submit(_call, fn, unit, args)] = (w, unit)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                w, unit = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    pools[w].shutdown(wait=False)
                    pools[w] = ProcessPoolExecutor(max_workers=1, mp_context=context)
                    last.pop(w, None)
                    tries[unit] = tries.get(unit, 0) + 1
                    if tries[unit] <= RETRIES:
                        todo.insert(0, unit)
                        continue
                    outcome = Outcome(unit, error=f"its worker process died {tries[unit]} times")
                outcomes.append(outcome)
                on_done(outcome)
    finally:
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=True)
    return outcomes


def start_executor(executor: str, address: str | None = None) -> None:
    """Check the executor before anything is written: its name; for Ray, that it is installed and that the cluster
    at `address` answers (joined here, once per process)."""
    if executor not in EXECUTORS:
        raise DefectlabError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address and executor != "ray":
        raise DefectlabError("--address: only with --executor ray")
    if executor == "ray":
        ray = _import_ray()
        if not ray.is_initialized():
            connect_ray(ray, address)


def _ray(fn, units, args, cpus_per_unit: int, on_done) -> list[Outcome]:
    """Each unit a Ray task declaring `cpus_per_unit` CPUs (Ray packs tasks onto the cluster's cores by it), on the
    cluster `start_executor` joined. A task whose worker dies is retried by Ray (`max_retries`); an exception inside
    it is not (it would fail again)."""
    ray = _import_ray()
    task = ray.remote(_call).options(num_cpus=cpus_per_unit, max_retries=RETRIES, retry_exceptions=False,
                                     name="defectlab_unit")
    refs = {task.remote(fn, u, args): u for u in units}
    outcomes = []
    while refs:
        done, _ = ray.wait(list(refs), num_returns=1)
        unit = refs.pop(done[0])
        try:
            outcome = ray.get(done[0])
        except Exception as exc:  # its worker died more than RETRIES times, or Ray itself failed
            outcome = Outcome(unit, error=f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        outcomes.append(outcome)
        on_done(outcome)
    return outcomes


def _import_ray():
    try:
        import ray
    except ImportError:
        raise DefectlabError("--executor ray: Ray is not installed; pip install defectlab[distributed]") from None
    return ray


def connect_ray(ray, address: str | None) -> None:
    """Join the cluster at `address` ("auto": the one started on this machine with `ray start --head`; HOST:PORT:
    its head node), or start a local one (None). An address that does not answer is refused within
    `ADDRESS_TIMEOUT_S` seconds, not after Ray's own minutes of retrying."""
    if address and address != "auto":
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host or address, int(port or 6379)), timeout=ADDRESS_TIMEOUT_S).close()
        except (OSError, ValueError) as exc:
            raise DefectlabError(f"--address {address}: no Ray head node answers there ({exc}); start one with "
                                 "`ray start --head` and give its address") from None
    try:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR", configure_logging=True)
    except (ConnectionError, RuntimeError) as exc:
        raise DefectlabError(f"--address {address}: cannot join a Ray cluster ({str(exc).splitlines()[0]})") from None
