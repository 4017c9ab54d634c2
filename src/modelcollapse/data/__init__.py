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
DATA_TYPES = {"gaussian": "continuous", "gmm": "continuous", "categorical": "discrete", "zipf": "discrete"}


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


def build_truth(spec: Any) -> BaseModel:
    """The original distribution described by a validated ``data`` spec."""
    return DATA.get(spec.kind)(spec)
