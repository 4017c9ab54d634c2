"""Model families. ``MODELS`` maps a spec's ``model.kind`` to its class."""

from __future__ import annotations

from ..registry import Registry
from .base import BaseModel, FitError, NotFittedError, ReplicatedModel
from .categorical import CategoricalModel
from .gaussian import GaussianModel
from .gmm import GMMModel
from .kde import KDEModel

MODELS: Registry[type[BaseModel]] = Registry("model kind")
MODELS.register("categorical")(CategoricalModel)
MODELS.register("gaussian")(GaussianModel)
MODELS.register("gmm")(GMMModel)
MODELS.register("kde")(KDEModel)

__all__ = [
    "MODELS",
    "BaseModel",
    "CategoricalModel",
    "FitError",
    "GMMModel",
    "GaussianModel",
    "KDEModel",
    "NotFittedError",
    "ReplicatedModel",
]
