"""Where a study's cells run: a local process pool, or Ray tasks (a local Ray instance or a cluster).

Both run :func:`.cell.run_cell` with the same arguments, so a cell's numbers do not depend on the
backend. Cores are shared in two levels: a cell claims ``workers x threads_per_cell`` cores (its
spec's ``workers`` processes, each limited to ``threads_per_cell`` threads); the local backend
starts cells while the claims of the running ones fit in ``--workers`` cores (a cell that claims
more than all of them runs alone), and Ray is told each task's claim as ``num_cpus``.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from ..errors import SpecError
from .cell import run_cell

_PROGRESS: Any = None  # in a local worker: the queue its cells report generations to


def _start_local_worker(parent: int, messages: Any) -> None:
    from ..pool import _orphan_watch

    global _PROGRESS
    _PROGRESS = messages
    _orphan_watch(parent)  # exits with the study; ignores Ctrl-C (the study stops its cells itself)


def _local_cell(kwargs: dict) -> dict:
    return run_cell(**kwargs, progress=_PROGRESS)


class LocalBackend:
    """``workers`` processes (``spawn``), reused for every cell of the study."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.slots = workers
        ctx = multiprocessing.get_context("spawn")
        self.messages = ctx.Queue()
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_start_local_worker,
                                            initargs=(os.getpid(), self.messages))

    def submit(self, kwargs: dict, cores: int) -> Future:
        return self.executor.submit(_local_cell, kwargs)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        return list(done)

    @staticmethod
    def result(handle: Future) -> dict:
        try:
            return handle.result()
        except Exception as exc:  # noqa: BLE001 - a worker that died (killed, out of memory)
            return {"status": "failed", "seconds": None, "error": f"worker process ended: {type(exc).__name__}: {exc}"}

    def progress(self) -> list[tuple[str, int]]:
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except (queue.Empty, OSError, ValueError):
                return out

    def stop(self) -> None:
        """Stop the running cells as SIGTERM does a run (each records "interrupted"), then the pool."""
        for process in list(getattr(self.executor, "_processes", {}).values()):
            try:
                process.terminate()
            except (OSError, AttributeError):
                pass
        self.close()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds, clearly, when a Ray address cannot be reached (ray.init would retry for long)."""
    if address == "auto":  # Ray finds a cluster started on this machine
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise SpecError([f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT, or auto)"])
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise SpecError([f"--address {address!r}: cannot reach a Ray cluster there "
                         f"({exc.strerror or type(exc).__name__}); is `ray start --head` running on it?"]) from None


class RayBackend:
    """Ray core tasks: ``ray.init()`` (a local instance with ``workers`` CPUs) or ``address``."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None, gpus_per_cell: float = 0.0) -> None:
        try:
            import ray
        except ImportError:
            raise SpecError(["--backend ray needs Ray: pip install -e \".[ray]\" (or pip install 'ray>=2.9,<3')"]) from None
        if address:
            check_address(address)
        self.ray = ray
        self.gpus = gpus_per_cell
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "configure_logging": False}
            if address:
                ray.init(address=address, **kwargs)
            else:
                ray.init(num_cpus=workers, **kwargs)
        self.slots = int(ray.cluster_resources().get("CPU", workers))
        from ray.util.queue import Queue

        self.messages = Queue()
        self.task = ray.remote(run_cell)
        self._names: dict[Any, str] = {}

    def submit(self, kwargs: dict, cores: int) -> Any:
        options: dict[str, Any] = {"num_cpus": cores, "max_retries": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        return self.task.options(**options).remote(**kwargs, progress=self.messages)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def result(self, handle: Any) -> dict:
        try:
            return self.ray.get(handle)
        except Exception as exc:  # noqa: BLE001 - the task's worker died
            return {"status": "failed", "seconds": None, "error": f"Ray task ended: {type(exc).__name__}: {exc}"}

    def progress(self) -> list[tuple[str, int]]:
        out = []
        try:
            while not self.messages.empty():
                out.append(self.messages.get_nowait())
        except Exception:  # noqa: BLE001 - progress only
            pass
        return out

    def stop(self, handles: list | None = None) -> None:
        for h in handles or []:
            try:
                self.ray.cancel(h)  # KeyboardInterrupt in the task: the cell records "interrupted"
            except Exception:  # noqa: BLE001
                pass
        deadline = time.monotonic() + 10
        while handles and time.monotonic() < deadline:
            done, handles = self.ray.wait(handles, num_returns=len(handles), timeout=0.5)
        self.close()

    def close(self) -> None:
        try:
            self.messages.shutdown()
        except Exception:  # noqa: BLE001
            pass
        if self.started:
            self.ray.shutdown()
