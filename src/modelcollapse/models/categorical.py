"""Categorical distribution fitted from counts (vectorised over replicates)."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from ..params import FROM_DATA
from .base import RNG, BaseModel, draw
from .family import register_model


def batched_counts(X: np.ndarray, n_categories: int) -> np.ndarray:
    """Counts per category along the last axis, for any leading batch shape."""
    X = np.asarray(X)
    batch = X.shape[:-1]
    rows = int(np.prod(batch)) if batch else 1
    flat = X.reshape(rows, -1) + n_categories * np.arange(rows)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * n_categories)
    return counts.reshape(batch + (n_categories,))


def weighted_counts(X: np.ndarray, weight: np.ndarray, n_categories: int) -> np.ndarray:
    """Sum of the weights of each category, over the last axis of (..., n) labels."""
    if np.shape(weight) != np.shape(X):
        raise ValueError(f"sample_weight has shape {np.shape(weight)}, X has {np.shape(X)}")
    flat = X.reshape(-1, X.shape[-1])
    keys = flat + n_categories * np.arange(len(flat))[:, None]
    out = np.bincount(keys.ravel(), weights=weight.reshape(-1), minlength=len(flat) * n_categories)
    return out.reshape(X.shape[:-1] + (n_categories,))


def batched_inverse_cdf(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index for uniforms ``u`` (..., n) under ``probs`` (..., K), row by row.

    One ``searchsorted`` over all rows: row r's CDF is shifted by 2r so the rows stay
    sorted when concatenated (CDF values lie in [0, 1], so a shift of 2 separates them).
    """
    cdf = np.cumsum(probs, axis=-1)
    cdf[..., -1] = 1.0  # guard against round-off leaving the last value below u
    if cdf.ndim == 1:
        return np.searchsorted(cdf, u, side="right")
    batch, k = cdf.shape[:-1], cdf.shape[-1]
    rows = int(np.prod(batch))
    shift = 2.0 * np.arange(rows)
    flat_cdf = (cdf.reshape(rows, k) + shift[:, None]).ravel()
    flat_u = u.reshape(rows, -1) + shift[:, None]
    idx = np.searchsorted(flat_cdf, flat_u, side="right") - k * np.arange(rows)[:, None]
    return np.minimum(idx, k - 1).reshape(u.shape)


class CategoricalModel(BaseModel):
    """Categorical distribution over ``n_categories`` labels, fitted from counts.

    Parameters
    ----------
    n_categories : int
        Size of the label set (labels are 0 .. n_categories-1); set from the data by the engine.
    smoothing : float
        Additive (Laplace/Lidstone) pseudo-count per category; 0 is the MLE, whose
        chain is absorbed in a single category with probability 1.

    Examples
    --------
    >>> import numpy as np
    >>> m = CategoricalModel(n_categories=3).fit(np.array([0, 0, 1, 2]))
    >>> m.probs_
    array([0.5 , 0.25, 0.25])
    """

    batched = True
    data_type = "discrete"
    default_metrics = ("tv", "kl", "entropy", "support_size", "tail_mass", "gini_simpson")

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        return 8 * params.get("n_categories", 2)  # the probabilities

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        return 16 * params.get("n_categories", 2)

    def __init__(self, *, n_categories: Annotated[int, FROM_DATA] = 2,
                 smoothing: Annotated[float, Field(ge=0)] = 0.0) -> None:
        self.n_categories = n_categories
        self.smoothing = smoothing

    def fit(self, X: np.ndarray, *, rng: RNG | None = None,
            sample_weight: np.ndarray | None = None) -> "CategoricalModel":
        """Frequencies of the labels (plus ``smoothing``); with ``sample_weight`` (the shape of ``X``),
        each label counts its weight."""
        X = np.asarray(X)
        if X.ndim < 1 or X.shape[-1] == 0:
            raise ValueError(f"X must have shape (n,) or (R, n) with n > 0, got {X.shape}")
        if not np.issubdtype(X.dtype, np.integer):
            if not np.all(np.isfinite(X)) or np.any(X != np.round(X)):
                raise ValueError("categorical data must be integer labels")
            X = X.astype(np.int64)
        if X.min() < 0 or X.max() >= self.n_categories:
            raise ValueError(f"labels must lie in [0, {self.n_categories}), got range [{X.min()}, {X.max()}]")
        if sample_weight is None:
            counts = batched_counts(X, self.n_categories).astype(float) + self.smoothing
        else:
            counts = weighted_counts(X, np.asarray(sample_weight, dtype=float), self.n_categories) + self.smoothing
        with np.errstate(invalid="ignore"):
            self.probs_ = counts / counts.sum(axis=-1, keepdims=True)
        return self

    # -- additive sufficient statistics (an accumulating chain adds each set's, keeping no pool) -----
    def statistics(self, X: np.ndarray, shift: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Counts per category (exact integers: a fit from summed counts equals a refit exactly)."""
        return {"counts": batched_counts(np.asarray(X, dtype=np.int64), self.n_categories)}

    @staticmethod
    def add_statistics(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"counts": a["counts"] + b["counts"]}

    def fit_statistics(self, stats: dict[str, np.ndarray]) -> "CategoricalModel":
        counts = stats["counts"].astype(float) + self.smoothing
        self.probs_ = counts / counts.sum(axis=-1, keepdims=True)
        return self

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        self._check_fitted()
        u = draw(rng, lambda g: g.random(n), self.probs_.shape[:-1])
        return batched_inverse_cdf(self.probs_, u)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=np.int64)
        with np.errstate(divide="ignore"):
            logp = np.log(self.probs_)
        if logp.ndim == 1:
            return logp[X]
        return np.take_along_axis(logp, X, axis=-1)

    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"probs": self.probs_}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "CategoricalModel":
        self.probs_ = np.asarray(state["probs"], dtype=float)
        return self


register_model("categorical", CategoricalModel)
