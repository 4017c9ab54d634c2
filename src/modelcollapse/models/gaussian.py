"""Multivariate Gaussian fitted by its sample mean and covariance (vectorised over replicates)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from .base import RNG, BaseModel, draw
from .family import register_model


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of (batches of) PSD matrices; exact zeros are fine.

    Eigen-decomposition rather than Cholesky because a collapsed chain reaches
    singular covariances, where Cholesky fails but sampling is still well defined.
    """
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))[..., None, :]) @ np.swapaxes(v, -1, -2)


class GaussianModel(BaseModel):
    """Gaussian ``N(mean_, covariance_)`` fitted by maximum likelihood or unbiasedly.

    Parameters
    ----------
    estimator : {"mle", "unbiased"}
        Covariance divisor ``n`` (maximum likelihood) or ``n - 1`` (unbiased). The
        paper's single-Gaussian theorem uses the unbiased one.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> m = GaussianModel(estimator="mle").fit(rng.normal(size=(500, 1)))
    >>> m.sample(3, rng=rng).shape
    (3, 1)
    """

    batched = True
    default_metrics = ("mean_error", "variance_ratio", "w2", "kl", "tail_mass")

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        d = example_nbytes // 8
        return 8 * (d + d * d)

    @classmethod
    def min_train_size(cls, params):
        return 2  # one example has no spread (and the unbiased divisor M - 1 would be 0)

    def __init__(self, *, estimator: Literal["mle", "unbiased"] = "mle") -> None:
        self.estimator = estimator

    def fit(self, X: np.ndarray, *, rng: RNG | None = None,
            sample_weight: np.ndarray | None = None) -> "GaussianModel":
        """Mean and covariance of ``X``; with ``sample_weight`` (the shape of ``X`` without its last axis),
        the weighted ones. The unbiased divisor is then ``V1 - V2 / V1`` (V1, V2: the sums of the weights
        and of their squares), which is ``n - 1`` for 0/1 weights: dropping an example is the same as a
        fit without it."""
        X = np.asarray(X, dtype=float)
        if X.ndim < 2:
            raise ValueError(f"X must have shape (n, d) or (R, n, d), got {X.shape}")
        n = X.shape[-2]
        ddof = {"mle": 0, "unbiased": 1}.get(self.estimator)
        if ddof is None:
            raise ValueError(f"estimator must be 'mle' or 'unbiased', got {self.estimator!r}")
        if sample_weight is not None:
            return self._fit_weighted(X, np.asarray(sample_weight, dtype=float), ddof)
        if n <= ddof:
            raise ValueError(f"need at least {ddof + 1} examples to fit, got {n}")
        self.mean_ = X.mean(axis=-2)
        centred = X - self.mean_[..., None, :]
        self.covariance_ = np.swapaxes(centred, -1, -2) @ centred / (n - ddof)
        self.n_features_in_ = X.shape[-1]
        return self

    def _fit_weighted(self, X: np.ndarray, w: np.ndarray, ddof: int) -> "GaussianModel":
        if w.shape != X.shape[:-1] or (w < 0).any():
            raise ValueError(f"sample_weight must be non-negative with shape {X.shape[:-1]}, got shape {w.shape}")
        v1 = w.sum(axis=-1)
        divisor = v1 - ddof * (w**2).sum(axis=-1) / np.where(v1 > 0, v1, 1)
        if (divisor <= 0).any():
            raise ValueError(f"the weights leave too little data to fit (divisor {divisor.min():g})")
        self.mean_ = (w[..., None] * X).sum(axis=-2) / v1[..., None]
        centred = X - self.mean_[..., None, :]
        self.covariance_ = np.swapaxes(centred * w[..., None], -1, -2) @ centred / divisor[..., None, None]
        self.n_features_in_ = X.shape[-1]
        return self

    # -- additive sufficient statistics (an accumulating chain adds each set's, keeping no pool) -----
    def statistics(self, X: np.ndarray, shift: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Count, sum and sum of outer products of ``X - shift`` over the example axis. ``shift`` (a
        point near the data, the real set's mean) keeps the sums small, so the covariance formed from
        them loses no more than rounding to cancellation."""
        X = np.asarray(X, dtype=float)
        if shift is None:
            shift = X.mean(axis=-2)
        centred = X - shift[..., None, :]
        return {"n": np.array(X.shape[-2], dtype=float), "shift": shift, "sum": centred.sum(axis=-2),
                "outer": np.swapaxes(centred, -1, -2) @ centred}

    @staticmethod
    def add_statistics(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"n": a["n"] + b["n"], "shift": a["shift"], "sum": a["sum"] + b["sum"], "outer": a["outer"] + b["outer"]}

    def fit_statistics(self, stats: dict[str, np.ndarray]) -> "GaussianModel":
        """The fit on all the data the statistics summarise: the same numbers as :meth:`fit` on it, to rounding."""
        n, s = float(stats["n"]), stats["sum"]
        ddof = {"mle": 0, "unbiased": 1}[self.estimator]
        if n <= ddof:
            raise ValueError(f"need at least {ddof + 1} examples to fit, got {n:.0f}")
        self.mean_ = stats["shift"] + s / n
        self.covariance_ = (stats["outer"] - s[..., :, None] * s[..., None, :] / n) / (n - ddof)
        self.n_features_in_ = s.shape[-1]
        return self

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        self._check_fitted()
        d = self.mean_.shape[-1]
        z = draw(rng, lambda g: g.standard_normal((n, d)), self.mean_.shape[:-1])
        root = psd_sqrt(self.covariance_)
        # root is symmetric, so z @ root == (root @ z.T).T; in place where it can be (the draws are
        # most of a chain's time at large M: one pass fewer over them is a fifth of the total).
        if d == 1:
            z *= root[..., None, :, 0]
        else:
            z = z @ root
        z += self.mean_[..., None, :]
        return z

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        d = self.mean_.shape[-1]
        w, v = np.linalg.eigh(self.covariance_)
        with np.errstate(divide="ignore", invalid="ignore"):
            proj = (X - self.mean_[..., None, :]) @ v  # (..., m, d)
            maha = np.sum(proj**2 / w[..., None, :], axis=-1)
            logdet = np.sum(np.log(w), axis=-1)[..., None]
        return -0.5 * (maha + logdet + d * np.log(2 * np.pi))

    def as_mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weights (..., 1), means (..., 1, d), covariances (..., 1, d, d))."""
        self._check_fitted()
        return (
            np.ones(self.mean_.shape[:-1] + (1,)),
            self.mean_[..., None, :],
            self.covariance_[..., None, :, :],
        )

    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"mean": self.mean_, "covariance": self.covariance_}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "GaussianModel":
        self.mean_ = np.asarray(state["mean"], dtype=float)
        self.covariance_ = np.asarray(state["covariance"], dtype=float)
        self.n_features_in_ = self.mean_.shape[-1]
        return self


register_model("gaussian", GaussianModel)
