"""Where a scan runs: engines that check suspects against a panel and stream outcomes back.

Every engine answers one verb, :meth:`Engine.run`: given the suspects, the panel's payload
(the registered fingerprints' file bytes, hashes and calibrations) and how to open the
suspects, it yields one :class:`~tafa.registry.SuspectOutcome` per suspect, in any order, as
each finishes. Each suspect is opened in one worker and scored there against every fitting
fingerprint with one batch of queries (:meth:`~tafa.scanning.panel.Panel.check`). Engines
never write the registry; the scan's driver does.

- ``local``: a process pool on this machine (``workers`` processes, default one per core;
  ``workers=0`` runs in the calling process). A worker that dies (a suspect that crashes
  its runtime) breaks the pool: the pool is rebuilt, the suspects that were in flight are
  retried one at a time, and the one that kills its worker alone is recorded as failed.
- ``ray``: Ray tasks on an existing cluster (``address``) or a local Ray instance. Each
  worker process builds the panel once and keeps it; a crashed task is retried once by
  Ray, then recorded as failed.

Engines are looked up by name (:func:`get_engine`); :func:`register_engine` adds one.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Iterator, Sequence

from ..components import Components
from ..errors import TafaError, check_param, one_line
from ..registry import SuspectOutcome
from ..threads import pin_torch_threads
from .panel import OpenOptions, Panel, PanelPayload, Suspect, failed_outcome, payload_key

#: Recorded for a suspect whose worker process died while checking it (alone).
WORKER_DIED = "the worker process died while checking this suspect (crash or kill in the model's runtime)"


class EngineUnavailable(TafaError):
    """An engine cannot run here (e.g. Ray is not installed or the cluster is unreachable)."""


class Engine(ABC):
    """Runs the checks of a scan somewhere (see module doc)."""

    name: str = ""

    @abstractmethod
    def run(self, suspects: Sequence[Suspect], payload: PanelPayload,
            options: OpenOptions) -> Iterator[SuspectOutcome]:
        """Yield one outcome per suspect as each finishes (order not guaranteed)."""

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name}


ENGINES: Components[Engine] = Components("engine")

#: Class decorator: make an engine available by name.
register_engine = ENGINES.register


def get_engine(name: str, **params: Any) -> Engine:
    """The registered engine ``name``, built with ``params``."""
    check_param("engine", name, f"one of {sorted(ENGINES)}", name in ENGINES, caller="get_engine")
    return ENGINES.create(name, **params)


# ---------------------------------------------------------------------------------------- workers

#: Panels built in this process, by payload key (a worker keeps its panel between suspects).
_PANELS: dict[str, Panel] = {}


def _prepare_worker() -> None:
    """One thread per worker process (the parallelism is across processes); Ctrl-C is the
    driver's to handle."""
    pin_torch_threads(1)
    if multiprocessing.current_process().name != "MainProcess":
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _panel(key: str, payload: PanelPayload) -> Panel:
    if key not in _PANELS:
        _PANELS.clear()
        _PANELS[key] = Panel.from_payload(payload)
    return _PANELS[key]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed and not yet reaped, does not)."""
    if os.path.isdir("/proc/self"):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
        except OSError:
            return False
    try:  # no /proc (macOS): ask the kernel; a zombie still counts as alive there
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _watch(driver: int, interval: float = 0.5) -> None:
    """End this worker when the driver is gone (killed with SIGKILL, it cannot tell its pool)."""
    while _alive(driver):
        time.sleep(interval)
    os._exit(0)


def _init_local(key: str, payload: PanelPayload, driver: int) -> None:
    _prepare_worker()
    threading.Thread(target=_watch, args=(driver,), daemon=True, name="tafa-driver-watch").start()
    _panel(key, payload)


def _check_local(key: str, suspect: Suspect, options: OpenOptions) -> SuspectOutcome:
    return _PANELS[key].check(suspect, options)


def _check_ray(key: str, boxed: list[Any], suspect: Suspect, options: OpenOptions) -> SuspectOutcome:
    panel = _PANELS.get(key)
    if panel is None:
        import ray

        _prepare_worker()
        panel = _panel(key, ray.get(boxed[0]))
    return panel.check(suspect, options)


# ---------------------------------------------------------------------------------------- local

def _process_context() -> Any:
    """``forkserver`` where there is one (children fork from a server that imported tafa and
    torch once), else ``spawn``; never a plain fork of a process that runs torch threads."""
    if sys.platform != "win32" and "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["tafa.scanning.panel"])
        return context
    return multiprocessing.get_context("spawn")


@register_engine("local")
class LocalEngine(Engine):
    """A process pool on this machine (see module doc)."""

    def __init__(self, workers: int | None = None, **_: Any) -> None:
        workers = (os.cpu_count() or 1) if workers is None else workers
        check_param("workers", workers, "an integer >= 0 (0: in this process)",
                    isinstance(workers, int) and workers >= 0, caller="LocalEngine")
        self.workers = workers

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers}

    def run(self, suspects: Sequence[Suspect], payload: PanelPayload,
            options: OpenOptions) -> Iterator[SuspectOutcome]:
        if self.workers == 0:
            panel = Panel.from_payload(payload)
            for suspect in suspects:
                yield panel.check(suspect, options)
            return
        key = payload_key(payload)
        todo: deque[Suspect] = deque(suspects)
        quarantine: deque[Suspect] = deque()
        running: dict[Future[SuspectOutcome], tuple[Suspect, bool]] = {}
        pool: ProcessPoolExecutor | None = None
        finished = False
        try:
            while todo or quarantine or running:
                if pool is None:
                    pool = ProcessPoolExecutor(self.workers, mp_context=_process_context(),
                                               initializer=_init_local, initargs=(key, payload, os.getpid()))
                broken = False
                if quarantine:  # suspects in flight when a worker died: one at a time, alone
                    batch = [] if running else [(quarantine.popleft(), True)]
                else:
                    room = 2 * self.workers - len(running)
                    batch = [(todo.popleft(), False) for _ in range(min(len(todo), room))]
                for position, (suspect, alone) in enumerate(batch):
                    try:
                        running[pool.submit(_check_local, key, suspect, options)] = (suspect, alone)
                    except BrokenProcessPool:
                        for back, was_alone in reversed(batch[position:]):
                            (quarantine if was_alone else todo).appendleft(back)
                        broken = True
                        break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                if broken or any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                    done, _ = wait(running)  # a broken pool fails every future still running
                    broken = True
                for future in done:
                    suspect, alone = running.pop(future)
                    error = future.exception()
                    if error is None:
                        yield future.result()
                    elif isinstance(error, BrokenProcessPool):
                        if alone:
                            yield failed_outcome(suspect, WORKER_DIED)
                        else:
                            quarantine.append(suspect)
                    else:  # check() returns failures as outcomes; anything else is ours to report
                        yield failed_outcome(suspect, f"{type(error).__name__}: {one_line(error)}")
                if broken:
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = None
            finished = True
        finally:
            if pool is not None:
                if not finished:  # interrupted: stop the workers now, not after their suspects
                    for process in list(getattr(pool, "_processes", {}).values()):
                        process.terminate()
                pool.shutdown(wait=finished, cancel_futures=True)


# ---------------------------------------------------------------------------------------- ray

def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise EngineUnavailable("The 'ray' engine needs Ray: pip install 'ray>=2.9' (or use --engine local).") \
            from None
    return ray


@register_engine("ray")
class RayEngine(Engine):
    """Ray tasks, one per suspect (see module doc).

    ``address`` names a running cluster (``ray://HOST:10001`` or ``HOST:6379``); without one,
    a Ray instance already initialised in this process is used, else ``ray.init`` finds a
    cluster from ``RAY_ADDRESS`` or starts a local instance with ``workers`` CPUs (stopped
    again at the end). ``in_flight`` bounds the tasks submitted and not yet collected
    (default: four per cluster CPU).
    """

    def __init__(self, workers: int | None = None, address: str | None = None, in_flight: int | None = None,
                 **_: Any) -> None:
        check_param("workers", workers, "None or an integer >= 1",
                    workers is None or (isinstance(workers, int) and workers >= 1), caller="RayEngine")
        self.workers = workers
        self.address = address
        self.in_flight = in_flight

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "workers": self.workers, "address": self.address}

    def run(self, suspects: Sequence[Suspect], payload: PanelPayload,
            options: OpenOptions) -> Iterator[SuspectOutcome]:
        ray = _import_ray()
        started_here = False
        if not ray.is_initialized():
            settings: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                        "log_to_driver": False}
            try:
                if self.address:
                    ray.init(address=self.address, **settings)
                else:
                    ray.init(num_cpus=self.workers, **settings)
            except Exception as error:  # noqa: BLE001 - connection errors come in many types
                raise EngineUnavailable(f"Cannot start or reach Ray at {self.address or 'this machine'} "
                                        f"({type(error).__name__}: {one_line(error)}).") from None
            started_here = True
        pending: dict[Any, Suspect] = {}
        try:
            check = ray.remote(num_cpus=1, max_retries=1)(_check_ray)
            boxed = [ray.put(payload)]  # boxed in a list: workers fetch it only when not cached
            key = payload_key(payload)
            cpus = int(ray.cluster_resources().get("CPU", 1))
            limit = self.in_flight or max(2, 4 * cpus)
            todo: deque[Suspect] = deque(suspects)
            while todo or pending:
                while todo and len(pending) < limit:
                    suspect = todo.popleft()
                    pending[check.remote(key, boxed, suspect, options)] = suspect
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    suspect = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as error:
                        outcome = failed_outcome(suspect, f"ray: {type(error).__name__}: "
                                                          f"{one_line(error)}")
                    yield outcome
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            if started_here:
                ray.shutdown()
