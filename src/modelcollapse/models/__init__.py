"""Model families. ``MODELS`` maps a spec's ``model.kind`` to its class."""

from __future__ import annotations

from ..registry import Registry
from .base import BaseModel, FitError, NotFittedError, ReplicatedModel
from .categorical import CategoricalModel
from .gaussian import GaussianModel
from .gmm import GMMModel
from .kde import KDEModel
from .ngram import NGramModel

MODELS: Registry[type[BaseModel]] = Registry("model kind")
MODELS.register("categorical")(CategoricalModel)
MODELS.register("gaussian")(GaussianModel)
MODELS.register("gmm")(GMMModel)
MODELS.register("kde")(KDEModel)
MODELS.register("ngram")(NGramModel)
MODELS.register_lazy("vae", "modelcollapse.models.vae:VAEModel", "PyTorch: pip install 'modelcollapse[torch]'")
MODELS.register_lazy("transformer", "modelcollapse.models.transformer:TransformerModel",
                     "PyTorch and transformers: pip install 'modelcollapse[lm]'")

#: model kind -> the data type it fits, known without importing optional extras.
MODEL_DATA_TYPES = {"categorical": "discrete", "gaussian": "continuous", "gmm": "continuous", "kde": "continuous",
                    "vae": "image", "ngram": "text", "transformer": "text"}

__all__ = [
    "MODELS",
    "MODEL_DATA_TYPES",
    "BaseModel",
    "CategoricalModel",
    "FitError",
    "GMMModel",
    "GaussianModel",
    "KDEModel",
    "NGramModel",
    "NotFittedError",
    "ReplicatedModel",
]
