"""What the PyTorch families share: device choice, a fixed CPU thread count, safetensors files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Optional, Union, get_args

import numpy as np

from .. import distributed
from ..lazy import torch

#: What a torch family's ``device`` parameter accepts ("auto": CUDA when present).
Device = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(Device)


def resolve_device(name: str) -> torch.device:
    """"auto" means CUDA when present, else the CPU; under a multi-process launch, this process's GPU."""
    if distributed.launched():
        device = distributed.accelerator().device
        if name != "auto" and device.type != name:
            raise ValueError(f"device={name!r}, but this multi-process launch runs on {device.type}: "
                             "use device: auto, or launch a single process")  # fmt: skip
        return device
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@contextlib.contextmanager
def fixed_threads(threads: Optional[int], device: torch.device) -> Iterator[None]:
    """Run with ``threads`` CPU threads and restore the previous count after.

    Torch's CPU kernels round differently with different thread counts, and each joblib
    worker gets its own count: fixing it keeps results identical whatever ``workers`` is.
    """
    if threads is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def save_weights(path: Union[str, Path], state: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Arrays as a safetensors file with string metadata (no pickle)."""
    from safetensors.numpy import save_file

    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(path), metadata=metadata)


def load_weights(path: Union[str, Path], cls_name: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The arrays and metadata of a file written by :func:`save_weights` for class ``cls_name``."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("class") != cls_name:
            raise ValueError(f"{path} does not hold a {cls_name} (metadata class={meta.get('class')!r})")
        return {k: f.get_tensor(k) for k in f.keys()}, meta
