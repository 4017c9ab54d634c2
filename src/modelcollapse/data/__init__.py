"""The original ("human") distributions a chain starts from.

Each builder turns a validated data spec into a fitted model of the matching family,
so the truth can be sampled, scored and compared with a fitted generation through the
same interface. Real datasets (images, text) will register here as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..models import BaseModel, CategoricalModel, GaussianModel, GMMModel
from ..registry import Registry

DATA: Registry[Callable[[Any], BaseModel]] = Registry("data kind")

#: data kind -> "continuous" | "discrete": which model families can be fitted to it.
DATA_TYPES = {"gaussian": "continuous", "gmm": "continuous", "categorical": "discrete", "zipf": "discrete",
              "digits": "image", "mnist": "image", "imbalanced": "image", "text": "text"}


def zipf_probs(categories: int, exponent: float) -> np.ndarray:
    """p_k proportional to k^-exponent for k = 1..categories (most to least likely)."""
    w = np.arange(1, categories + 1, dtype=float) ** -float(exponent)
    return w / w.sum()


@DATA.register("gaussian")
def gaussian(spec: Any) -> GaussianModel:
    return GaussianModel().load_state_dict({"mean": np.array(spec.mean), "covariance": np.array(spec.cov)})


@DATA.register("gmm")
def gmm(spec: Any) -> GMMModel:
    state = {"weights": np.array(spec.weights), "means": np.array(spec.means), "covariances": np.array(spec.covs)}
    return GMMModel(n_components=len(spec.weights)).load_state_dict(state)


@DATA.register("categorical")
def categorical(spec: Any) -> CategoricalModel:
    probs = np.array(spec.probs, dtype=float)
    return CategoricalModel(n_categories=len(probs)).load_state_dict({"probs": probs / probs.sum()})


@DATA.register("zipf")
def zipf(spec: Any) -> CategoricalModel:
    probs = zipf_probs(spec.categories, spec.exponent)
    return CategoricalModel(n_categories=spec.categories).load_state_dict({"probs": probs})


@DATA.register("digits")
def digits(spec: Any) -> Any:
    from .images import load_digits

    return load_digits(spec)


@DATA.register("mnist")
def mnist(spec: Any) -> Any:
    from .images import load_mnist

    return load_mnist(spec)


@DATA.register("imbalanced")
def imbalanced(spec: Any) -> Any:
    from .images import load_imbalanced

    return load_imbalanced(spec)


@DATA.register("text")
def text(spec: Any) -> Any:
    from .text import load_text

    return load_text(spec)


_DATASETS: dict[str, Any] = {}  # loaded image datasets, by spec: reading MNIST twice is waste


def build_truth(spec: Any) -> Any:
    """The original distribution described by a validated ``data`` spec.

    A fitted model for the synthetic kinds, an :class:`~modelcollapse.data.images.ImageDataset`
    (an empirical distribution with a held-out split) for real images.
    """
    if DATA_TYPES[spec.kind] not in ("image", "text"):
        return DATA.get(spec.kind)(spec)
    key = spec.model_dump_json()
    if key not in _DATASETS:
        _DATASETS[key] = DATA.get(spec.kind)(spec)
    return _DATASETS[key]
