"""Gaussian mixture fitted by EM (scikit-learn's ``GaussianMixture``)."""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from .base import RNG, BaseModel, FitError, draw
from .family import register_model
from .gaussian import psd_sqrt


def full_covariances(gm: Any) -> np.ndarray:
    """Covariances of a fitted mixture as (k, d, d), whatever its ``covariance_type``."""
    k, d = gm.means_.shape
    cov = gm.covariances_
    if gm.covariance_type == "full":
        return np.array(cov)
    if gm.covariance_type == "tied":
        return np.broadcast_to(cov, (k, d, d)).copy()
    if gm.covariance_type == "diag":
        return np.stack([np.diag(c) for c in cov])
    return np.stack([np.eye(d) * c for c in cov])  # spherical


def sklearn_mixture(weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> Any:
    """A fitted-looking ``GaussianMixture`` with the given parameters (full covariances)."""
    from scipy.linalg import solve_triangular
    from sklearn.mixture import GaussianMixture  # scikit-learn loads on first use (CLI start-up)

    gm = GaussianMixture(n_components=len(weights), covariance_type="full")
    gm.weights_ = np.asarray(weights, dtype=float)
    gm.means_ = np.asarray(means, dtype=float)
    gm.covariances_ = np.asarray(covariances, dtype=float)
    # sklearn's parametrisation: precisions_cholesky_[k] = inv(cholesky(cov[k])).T
    chol = np.linalg.cholesky(gm.covariances_)
    eye = np.eye(gm.means_.shape[1])
    gm.precisions_cholesky_ = np.stack([solve_triangular(c, eye, lower=True).T for c in chol])
    gm.precisions_ = gm.precisions_cholesky_ @ np.swapaxes(gm.precisions_cholesky_, -1, -2)
    gm.converged_, gm.n_iter_, gm.lower_bound_ = True, 0, -np.inf
    gm.n_features_in_ = gm.means_.shape[1]
    return gm


class GMMModel(BaseModel):
    """Gaussian mixture fitted by expectation-maximisation.

    Hyperparameters are passed through to :class:`sklearn.mixture.GaussianMixture`;
    its ``random_state`` is set from the ``rng`` given to :meth:`fit`, and
    :meth:`sample` draws through the generator it is given (scikit-learn's own
    ``sample`` reuses the stored seed, which would freeze a chain's randomness).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (200, 1)), rng.normal(3, 1, (200, 1))])
    >>> m = GMMModel(n_components=2).fit(X, rng=rng)
    >>> sorted(np.round(m.weights_, 1))
    [0.5, 0.5]
    """

    default_metrics = ("l2_distance", "nll", "tail_mass", "variance_ratio", "component_weights")

    def __init__(
        self,
        *,
        n_components: Annotated[int, Field(ge=1)] = 2,
        covariance_type: Literal["full", "tied", "diag", "spherical"] = "full",
        tol: Annotated[float, Field(gt=0)] = 1e-3,
        reg_covar: Annotated[float, Field(ge=0)] = 1e-6,
        max_iter: Annotated[int, Field(ge=1)] = 100,
        n_init: Annotated[int, Field(ge=1)] = 1,
        init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params

    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "GMMModel":
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise FitError("training data contains non-finite values")
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        seed = None if rng is None else int(rng.integers(2**31 - 1))
        gm = GaussianMixture(random_state=seed, **self.get_params())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            gm.fit(X)
        self._set(gm.weights_, gm.means_, full_covariances(gm))
        self.converged_ = bool(gm.converged_) and not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        self.n_iter_ = int(gm.n_iter_)
        return self

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        d, k = example_nbytes // 8, params["n_components"]
        return 8 * k * (1 + d + d * d)

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        return 8 * 3 * train_size * params["n_components"]  # EM's responsibilities and log densities

    @classmethod
    def check_spec(cls, spec: Any) -> None:
        if spec.model.n_components > spec.train_size:
            raise ValueError(f"model.n_components: {spec.model.n_components} exceeds train_size={spec.train_size}")

    def _set(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> None:
        self.weights_ = np.asarray(weights, dtype=float)
        self.means_ = np.asarray(means, dtype=float)
        self.covariances_ = np.asarray(covariances, dtype=float)
        self._mixture = None

    @property
    def mixture_(self) -> Any:
        """scikit-learn's mixture with these parameters, built on first use: loading a collapsed
        (singular) fit to read its parameters must not need the Cholesky factors scoring needs."""
        self._check_fitted()
        if self._mixture is None:
            self._mixture = sklearn_mixture(self.weights_, self.means_, self.covariances_)
        return self._mixture

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        self._check_fitted()
        roots = psd_sqrt(self.covariances_)

        def one(g: np.random.Generator) -> np.ndarray:
            comp = g.choice(len(self.weights_), size=n, p=self.weights_ / self.weights_.sum())
            z = g.standard_normal((n, self.means_.shape[1]))
            return self.means_[comp] + np.einsum("nd,nde->ne", z, roots[comp])

        return draw(rng, one)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        if X.ndim == 3:
            return np.stack([self.mixture_.score_samples(x) for x in X])
        return self.mixture_.score_samples(X)

    def as_mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_fitted()
        return self.weights_, self.means_, self.covariances_

    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"weights": self.weights_, "means": self.means_, "covariances": self.covariances_}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "GMMModel":
        self._set(state["weights"], state["means"], state["covariances"])
        return self


register_model("gmm", GMMModel)
