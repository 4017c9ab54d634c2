"""A Laplace model family for modelcollapse: the worked example of a plug-in.

Each coordinate is fitted by maximum likelihood: the location is the sample median and the
scale the mean absolute deviation from it. Refitted on its own samples, generation after
generation, the scale shrinks and the location wanders, as the paper's Gaussian does.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from modelcollapse import BaseModel
from modelcollapse.models.base import RNG, draw

__all__ = ["LaplaceModel"]


class LaplaceModel(BaseModel):
    """Independent Laplace distributions per coordinate, ``loc_ + scale_ * Laplace(0, 1)``.

    Parameters
    ----------
    location : {"median", "mean"}
        The location estimate: the median (maximum likelihood) or the mean.
    min_scale : float
        A floor on the fitted scale (0: none; a chain can then collapse to a point).
    """

    batched = True  # fit, sample and log_prob take a leading replicate axis: all replicates at once
    data_type = "continuous"
    default_metrics = ("nll", "w1", "w2", "variance_ratio")

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        return 2 * example_nbytes  # a location and a scale per coordinate

    def __init__(self, *, location: Literal["median", "mean"] = "median",
                 min_scale: Annotated[float, Field(ge=0)] = 0.0) -> None:
        self.location = location
        self.min_scale = min_scale

    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "LaplaceModel":
        X = np.asarray(X, dtype=float)
        if X.ndim < 2 or X.shape[-2] == 0:
            raise ValueError(f"X must have shape (n, d) or (R, n, d) with n > 0, got {X.shape}")
        loc = np.median(X, axis=-2) if self.location == "median" else X.mean(axis=-2)
        self.loc_ = loc
        self.scale_ = np.maximum(np.abs(X - loc[..., None, :]).mean(axis=-2), self.min_scale)
        return self

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        self._check_fitted()
        d = self.loc_.shape[-1]
        z = draw(rng, lambda g: g.laplace(size=(n, d)), self.loc_.shape[:-1])
        return self.loc_[..., None, :] + self.scale_[..., None, :] * z

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        loc, scale = self.loc_[..., None, :], self.scale_[..., None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = -np.log(2 * scale) - np.abs(X - loc) / scale
        return np.sum(np.where(scale > 0, terms, np.where(X == loc, np.inf, -np.inf)), axis=-1)

    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"loc": self.loc_, "scale": self.scale_}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "LaplaceModel":
        self.loc_ = np.asarray(state["loc"], dtype=float)
        self.scale_ = np.asarray(state["scale"], dtype=float)
        return self
