"""Modules imported on first use, so that optional extras cost nothing until a run needs them.

The PyTorch families must be importable without PyTorch: their module declares the family
(hyperparameters, data type, metrics), which ``modelcollapse show`` and spec validation read
in a fraction of a second on machines where torch is absent or slow to import. Their code
refers to ``torch`` as usual through a :class:`LazyModule`; the first attribute access imports
the real module, and after that the proxy carries the real module's attributes directly.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

from .registry import MissingDependencyError


class LazyModule(types.ModuleType):
    """Stands in for module ``name`` until one of its attributes is read."""

    def __init__(self, name: str, hint: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_hint"] = hint

    def __getattr__(self, attr: str) -> Any:  # only called for names not yet copied over
        if attr.startswith("__") and attr.endswith("__"):
            raise AttributeError(attr)  # e.g. copy or pickle probing: do not import for that
        try:
            module = importlib.import_module(self.__name__)
        except ImportError as exc:
            raise MissingDependencyError(f"{self.__name__} is not installed: {self._lazy_hint} ({exc})") from None
        self.__dict__.update({k: v for k, v in module.__dict__.items() if k != "__name__"})
        return getattr(module, attr)


TORCH_HINT = "pip install 'modelcollapse[torch]' (on a CPU-only machine: pip install torch==2.13.0 first)"
torch = LazyModule("torch", TORCH_HINT)
F = LazyModule("torch.nn.functional", TORCH_HINT)
