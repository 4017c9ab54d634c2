"""Several processes for one run: ``accelerate launch`` (or ``torchrun``) on a multi-GPU machine.

Every process runs the whole engine on the same seed, so data, random streams and metrics
are identical everywhere; what is expensive is split. The transformer family trains with
gradients averaged across processes (PyTorch DDP, set up by Hugging Face ``accelerate``), and
generates and scores in chunks of prompts that are dealt out round robin and gathered back.
Only the main process writes the run directory, prints and draws the progress bar.

Without a launcher (``WORLD_SIZE`` unset or 1) nothing here starts a process group and the
functions are trivial, so the single-process path never imports ``accelerate``.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def world_size() -> int:
    """Processes in this run, as the launcher announces them (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launched() -> bool:
    return world_size() > 1


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0) if launched() else 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0") or 0) if launched() else 0


def is_main() -> bool:
    """True in the process that writes files and talks to the user."""
    return rank() == 0


@functools.lru_cache(maxsize=None)
def accelerator() -> Any:
    """The process's ``accelerate.Accelerator``, created once; it joins the launcher's process group.

    Without CUDA the group runs on the CPU (gloo): accelerate would otherwise fall back to a
    single process that does not talk to the others.
    """
    import torch
    from accelerate import Accelerator

    acc = Accelerator(cpu=not torch.cuda.is_available())
    if acc.num_processes != world_size():
        raise RuntimeError(f"accelerate sees {acc.num_processes} processes, the launcher started {world_size()}")
    return acc


def map_chunks(fn: Callable[[int], T], n_chunks: int) -> list[T]:
    """``[fn(0), ..., fn(n_chunks - 1)]``, each chunk computed by one process, every process getting all.

    Chunk ``c`` runs on process ``c % world_size()``. A chunk's result must depend on ``c``
    alone (its own seed, its own rows), never on which process ran it: results are then the
    same for any number of processes.
    """
    if not launched():
        return [fn(c) for c in range(n_chunks)]
    from accelerate.utils import gather_object

    accelerator()
    mine = {c: fn(c) for c in range(rank(), n_chunks, world_size())}
    merged: dict[int, T] = {}
    for part in gather_object([mine]):
        merged.update(part)
    return [merged[c] for c in range(n_chunks)]


def broadcast(value: T) -> T:
    """The main process's ``value``, in every process (e.g. a run directory named after the clock)."""
    if not launched():
        return value
    from accelerate.utils import broadcast_object_list

    accelerator()
    return broadcast_object_list([value], from_process=0)[0]
