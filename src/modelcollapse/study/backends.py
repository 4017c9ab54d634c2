"""Where a study's cells run: a local process pool, or Ray tasks (a local Ray instance or a cluster).

Both run :func:`.cell.run_cell` with the same arguments, so a cell's numbers do not depend on the
backend. Cores are shared in two levels: a cell claims ``workers x threads_per_cell`` cores (its
spec's ``workers`` processes, each limited to ``threads_per_cell`` threads); the local backend
starts cells while the claims of the running ones fit in ``--workers`` cores (a cell that claims
more than all of them runs alone), and Ray is told each task's claim as ``num_cpus``.

The Ray backend checks, before the study directory is written, everything that would otherwise fail late
or hang: Ray installed, the ``--address`` reachable and speaking Ray's protocol, a node with the GPUs a
cell asks for. Ray's warnings stay off the terminal. Stopping (Ctrl-C, SIGTERM) cancels the tasks: a
running cell gets KeyboardInterrupt and its run records "interrupted", as with the local pool.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

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
        self.ctx = multiprocessing.get_context("spawn")
        self.messages = self.ctx.Queue()
        self.executor = self._pool()

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.slots, mp_context=self.ctx, initializer=_start_local_worker,
                                   initargs=(os.getpid(), self.messages))

    def submit(self, kwargs: dict, cores: int) -> Future:
        try:
            return self.executor.submit(_local_cell, kwargs)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): its cell is already recorded as failed; the next cells get
            # a fresh pool (a pool that cannot start at all breaks again, and each cell records why).
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._pool()
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


class BackendError(SpecError):
    """A backend that cannot run the study (no Ray, an unreachable cluster, too few GPUs): raised before
    anything is written, reported as ``error: <message>`` with exit code 2."""

    def __init__(self, message: str) -> None:
        self.problems = [message]
        ValueError.__init__(self, message)


#: How `pip` installs what --backend ray needs.
RAY_INSTALL = "pip install 'ray>=2.9,<3'"


#: An HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, Ray Client) answers with its
#: own SETTINGS frame at once.
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_address(address: str, timeout: float = 5.0) -> None:
    """Fail within seconds, clearly, when a Ray address cannot be reached or is no Ray cluster: ray.init
    would retry for many minutes (20 tries of about 35 s each), printing warnings all the while.

    The port must accept a connection and speak gRPC (HTTP/2): a web server, SSH or the dashboard's port
    (8265) given by mistake is refused. With TLS on (``RAY_USE_TLS``) only the connection is checked."""
    if address in ("auto", "local"):  # auto: a cluster started on this machine (Ray finds it); local: a new one
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not host or not port.isdigit():
        raise BackendError(f"--address {address!r}: expected HOST:PORT (or ray://HOST:PORT, or auto)")
    hint = ("is `ray start --head` running there, and is this its GCS port (6379 unless --port said otherwise; "
            "ray://HOST:10001 for Ray Client)?")
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return
            sock.sendall(_H2_HELLO)
            sock.settimeout(max(0.5, deadline - time.monotonic()))
            answer = sock.recv(9)
    except socket.timeout:
        raise BackendError(f"--address {address!r}: no answer from there within {timeout:g} s; {hint}") from None
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise BackendError(f"--address {address!r}: cannot reach a Ray cluster there ({why}); {hint}") from None
    if len(answer) < 4 or answer[3] != 4:  # not an HTTP/2 SETTINGS frame
        raise BackendError(f"--address {address!r}: something answers there, but not a Ray cluster; {hint}")


@contextlib.contextmanager
def _captured_stderr() -> Iterator[Callable[[], str]]:
    """File descriptor 2 into a temporary file for the block (C++ libraries write there directly); yields a
    function that returns what was written."""
    import tempfile

    text: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedding host): nothing to capture
        yield lambda: ""
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: "".join(text)
        finally:
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text.append(tmp.read()[-20000:].decode(errors="backslashreplace"))


def _last_ray_line(text: str) -> str:
    """The message of the last ``[time level pid tid] file:line: message`` line Ray printed, if any."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("[") and "] " in line:
            return line.split("] ", 1)[1].split(": ", 1)[-1].strip()
    return ""


class _Progress:
    """The Ray actor that collects the cells' progress messages (created with ``num_cpus=0``)."""

    def __init__(self) -> None:
        self.items: list = []

    def put(self, item: Any) -> None:
        self.items.append(item)

    def drain(self) -> list:
        items, self.items = self.items, []
        return items


class _ProgressSender:
    """What a Ray cell reports to: ``put_nowait`` sends without waiting. (Waiting, as ray.util.queue's
    put_nowait does with ray.get, makes Ray lend the blocked task's CPU to another one: more cells would
    run at once than there are cores.)"""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def put_nowait(self, item: Any) -> None:
        self.actor.put.remote(item)


def _ray_cell(kwargs: dict, progress: Any) -> dict:
    """:func:`run_cell` as a Ray task. Ray cancels a running task by calling SIGINT's Python handler, which a
    worker lacks when the study was started from a process that ignores SIGINT (nohup, a background job):
    the default one is put in for the cell. Workers are reused: the handlers are put back afterwards."""
    main = threading.current_thread() is threading.main_thread()
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    if main:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return run_cell(**kwargs, progress=progress)
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


class RayBackend:
    """Ray core tasks: ``ray.init()`` (a local instance with ``workers`` CPUs) or ``address``
    (``RAY_ADDRESS`` when not given, as Ray does).

    Everything that can stop Ray from running the study is checked here, before any cell is submitted:
    Ray installed, the address reachable, a node with enough CPUs and GPUs for one cell (a task asking
    for resources no node has would wait forever). Ray's own log lines are kept off the terminal (the
    workers' output stays in Ray's session logs), and the signal handlers ray.init installs are put back,
    so Ctrl-C and SIGTERM stop the study as they do with the local backend."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None, gpus_per_cell: float = 0.0) -> None:
        try:
            import ray
        except ImportError:
            raise BackendError(f"--backend ray needs Ray, which is not installed: {RAY_INSTALL}") from None
        if gpus_per_cell < 0:
            raise BackendError(f"--gpus-per-cell must be 0 or more (got {gpus_per_cell:g})")
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            check_address(address)
        self.ray = ray
        self.address = address
        self.gpus = float(gpus_per_cell or 0.0)
        self.actor: Any = None
        self._drain: Any = None
        self._closed = False
        self._log = logging.getLogger("ray")  # ray.init reconfigures it; put back by close()
        self._saved_log = ([(h, h.formatter) for h in self._log.handlers], self._log.level, self._log.propagate)
        self.started = not ray.is_initialized()
        try:
            if self.started:
                self._init(address, workers)
            self.slots = self._check_resources()
            # 0 CPUs: the progress actor starts even while the cells hold every core
            self.actor = ray.remote(num_cpus=0, max_restarts=0)(_Progress).remote()
            self.messages = _ProgressSender(self.actor)
            self.task = ray.remote(_ray_cell)
        except BaseException:
            self.close()
            raise

    def _init(self, address: str | None, workers: int) -> None:
        ray = self.ray
        # Ray's warnings (token authentication, /dev/shm, ...) would print over the progress display; errors
        # still show. log_to_driver: the cells' own output stays in Ray's session logs.
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
                                  "logging_level": logging.ERROR}
        main = threading.current_thread() is threading.main_thread()
        saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            with _captured_stderr() as captured:  # Ray's C++ side retries a failing connection loudly, on fd 2
                try:
                    if address:
                        ray.init(address=address, **kwargs)
                    else:
                        ray.init(address="local", num_cpus=workers, **kwargs)
                except Exception as exc:  # noqa: BLE001 - a cluster that refused us, a version mismatch, ...
                    failure: Exception | None = exc
                else:
                    failure = None
        finally:
            for sig, handler in saved.items():  # ray.init's SIGTERM handler exits without stopping the cells
                if handler is not None:
                    signal.signal(sig, handler)
        if failure is not None:
            where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
            said = _last_ray_line(captured())
            message = f"cannot start {where}: {type(failure).__name__}: {failure}" + (f" ({said})" if said else "")
            if "Unauthenticated" in said or "AuthToken" in said:
                message += ("; the cluster uses token authentication: export RAY_AUTH_MODE=token, with its token in "
                            "RAY_AUTH_TOKEN or ~/.ray/auth_token")
            raise BackendError(message)

    def _check_resources(self) -> int:
        """The most CPUs one node has (a cell's claim is capped to it); refuses GPUs no node has."""
        ray = self.ray
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")] or [ray.cluster_resources()]
        cpus = max(float(n.get("CPU", 0)) for n in nodes)
        gpus = max(float(n.get("GPU", 0)) for n in nodes)
        if cpus < 1:
            raise BackendError("the Ray cluster has no node with a CPU to run a cell on")
        if self.gpus > gpus:
            if self.started and not self.address:  # the instance this backend started
                where = "Ray found " + (f"{gpus:g} on this machine" if gpus else "none on this machine")
            else:
                where = "the Ray cluster's nodes have " + (f"{gpus:g} at most" if gpus else "none")
            raise BackendError(f"--gpus-per-cell {self.gpus:g}: no node has that many GPUs ({where}), so the cells "
                               "would wait for them forever; drop --gpus-per-cell, or run where there are GPUs")
        return int(cpus)

    def submit(self, kwargs: dict, cores: int) -> Any:
        options: dict[str, Any] = {"num_cpus": cores, "max_retries": 0}
        if self.gpus:
            options["num_gpus"] = self.gpus
        return self.task.options(**options).remote(kwargs, self.messages)

    def wait(self, handles: list, timeout: float) -> list:
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return done

    def result(self, handle: Any) -> dict:
        try:
            return self.ray.get(handle)
        except Exception as exc:  # noqa: BLE001 - the task's worker died, or the task was cancelled
            return {"status": "failed", "seconds": None, "error": f"Ray task ended: {type(exc).__name__}: {exc}"}

    def progress(self) -> list[tuple[str, int]]:
        """The messages since the last call, without waiting: a drain request is kept in flight."""
        try:
            if self._drain is None:
                self._drain = self.actor.drain.remote()
            ready, _ = self.ray.wait([self._drain], timeout=0)
            if not ready:
                return []
            items = self.ray.get(self._drain)
            self._drain = self.actor.drain.remote()
            return list(items)
        except Exception:  # noqa: BLE001 - progress only
            self._drain = None
            return []

    def stop(self, handles: list | None = None) -> None:
        """Cancel the cells: a running one gets KeyboardInterrupt (its run records "interrupted"), a
        queued one never starts; wait for them (10 s at most), then close."""
        handles = list(handles or [])
        try:
            for h in handles:
                try:
                    self.ray.cancel(h)
                except Exception:  # noqa: BLE001
                    pass
            deadline = time.monotonic() + 10
            while handles and time.monotonic() < deadline:
                _, handles = self.ray.wait(handles, num_returns=len(handles), timeout=0.5)
        finally:
            self.close()

    def close(self) -> None:
        """Idempotent: the progress actor goes, and Ray with it when this backend started Ray."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.actor is not None:
                try:
                    self.ray.kill(self.actor, no_restart=True)
                except Exception:  # noqa: BLE001
                    pass
            if self.started:
                self.ray.shutdown()
        finally:
            handlers, level, propagate = self._saved_log
            self._log.handlers[:] = [h for h, _ in handlers]
            for h, formatter in handlers:
                h.setFormatter(formatter)
            self._log.setLevel(level)
            self._log.propagate = propagate
