"""Model families. ``MODELS`` maps a spec's ``model.kind`` to its :class:`Family`.

Each built-in family is one module that registers itself on import, exactly as a plug-in
does (see :func:`register_model` and :mod:`modelcollapse.plugins`). The PyTorch families
import torch only when they first train, so every family's spec is known without it.
"""

from __future__ import annotations

from .base import BaseModel, FitError, NotFittedError, ReplicatedModel
from .family import MODELS, Family, ModelSpec, register_model
from .categorical import CategoricalModel  # noqa: I001  (import order is registration order)
from .gaussian import GaussianModel
from .gmm import GMMModel
from .kde import KDEModel
from .ngram import NGramModel
from .vae import VAEModel
from .transformer import TransformerModel
from .sklearn_adapter import SklearnDensity

__all__ = [
    "MODELS",
    "BaseModel",
    "CategoricalModel",
    "Family",
    "FitError",
    "GMMModel",
    "GaussianModel",
    "KDEModel",
    "ModelSpec",
    "NGramModel",
    "NotFittedError",
    "ReplicatedModel",
    "SklearnDensity",
    "TransformerModel",
    "VAEModel",
    "register_model",
]
