"""Worker processes for families fitted one replicate at a time (``workers`` > 1).

A pool lives as long as the run that started it and no longer, however the run ends: it is
shut down when the run returns or raises (Ctrl-C, SIGTERM, an error), and each worker also
watches its parent and exits within half a second of losing it, so that a ``kill -9`` of the
run leaves no process behind (joblib's reusable workers outlived it by many minutes).
Workers are started with ``spawn``: a fresh interpreter, safe beside PyTorch's threads.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

WATCH_SECONDS = 0.5


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
                    "NUMEXPR_NUM_THREADS")


def _start_worker(parent: int, threads: int) -> None:
    """Runs in each worker first: share the cores, and exit as soon as the parent process is gone.

    Each worker's BLAS and OpenMP pools would otherwise take every core: two workers on two cores
    ran the gmm preset three times slower than one process (joblib's workers limit them too).
    Libraries loaded already are limited now, those loaded later (scipy's BLAS, scikit-learn's
    OpenMP) read the environment when they load.
    """
    limit_threads(threads)
    _orphan_watch(parent)


def limit_threads(threads: int) -> None:
    """This process's BLAS, OpenMP and PyTorch pools to ``threads``: libraries loaded already now, those
    loaded later through the environment they read when they load."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _orphan_watch(parent: int) -> None:
    """Exit as soon as the parent process is gone."""
    if sys.platform.startswith("linux"):  # the kernel's own notice, at once (PR_SET_PDEATHSIG = 1)
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides

    def watch() -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="orphan-watch").start()


class WorkerPool:
    """``workers`` processes, started on first use, mapped over in order."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[Any], Any], items: list) -> list:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker, initargs=(os.getpid(), max(1, (os.cpu_count() or 1) // self.workers)))
        return list(self._executor.map(fn, items))

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
