"""Gaussian mixture fitted by EM: every replicate at once (:mod:`.batched_em`, the default), or
scikit-learn's ``GaussianMixture`` one replicate at a time (the reference)."""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from . import batched_em
from .base import RNG, BaseModel, FitError, ReplicatedModel, _stack_with_nan, draw
from .family import register_model
from ..mixtures import logsumexp
from .gaussian import psd_sqrt

#: Working memory of one batched EM call (responsibilities, differences, log densities); more
#: replicates than fit in it are fitted in chunks, which gives the same numbers.
EM_MEMORY_BUDGET = 4 * 2**20


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

    The hyperparameters are :class:`sklearn.mixture.GaussianMixture`'s. ``backend="batched"``
    (the default) fits with :mod:`.batched_em`, scikit-learn's algorithm for every replicate at once,
    drawing its initialisation from the ``rng`` given to :meth:`fit`, on ``device``: "numpy" (the
    CPU, compiled by numba: :mod:`.em_kernels`) or a torch device ("cpu", "cuda", "auto": the same
    steps on tensors); ``backend="sklearn"`` fits with scikit-learn itself, its ``random_state``
    set from that ``rng``. :meth:`sample` draws through the generator it is given
    (scikit-learn's own ``sample`` reuses the stored seed, which would freeze a chain's randomness).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-3, 1, (200, 1)), rng.normal(3, 1, (200, 1))])
    >>> m = GMMModel(n_components=2).fit(X, rng=rng)
    >>> sorted(np.round(m.weights_, 1).tolist())
    [0.5, 0.5]
    """

    default_metrics = ("l2_distance", "nll", "tail_mass", "variance_ratio", "component_weights")
    #: Run directories written before the batched backend existed were fitted by scikit-learn.
    stored_defaults = {"backend": "sklearn"}

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
        backend: Literal["batched", "sklearn"] = "batched",
        device: Literal["numpy", "auto", "cpu", "cuda"] = "numpy",
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.backend = backend
        self.device = device

    def em_params(self) -> dict[str, Any]:
        """The hyperparameters scikit-learn's ``GaussianMixture`` takes (all but ``backend`` and ``device``)."""
        return {k: v for k, v in self.get_params().items() if k not in ("backend", "device")}

    @classmethod
    def check_params(cls, p: dict[str, Any]) -> None:
        if p.get("device", "numpy") != "numpy" and p.get("backend") == "sklearn":
            raise ValueError(f"device: {p['device']!r} needs backend 'batched' (scikit-learn fits with numpy)")

    @classmethod
    def check_source(cls, params: dict[str, Any], source: Any) -> None:
        """A torch device asked for must exist, before anything is written."""
        device = params.get("device", "numpy")
        if device == "numpy" or params.get("backend") == "sklearn":
            return
        from ..errors import DataError

        try:
            import array_api_compat  # noqa: F401
            import torch
        except ImportError:
            raise DataError(f"model.device={device!r} needs PyTorch and array-api-compat: "
                            "pip install 'modelcollapse[torch]' (or device: numpy)") from None
        if device == "cuda" and not torch.cuda.is_available():
            raise DataError("model.device='cuda' but PyTorch sees no CUDA device (device: auto falls back to the CPU)")

    @classmethod
    def replicated(cls, factory: Any, replicates: int, params: dict[str, Any]) -> ReplicatedModel:
        """All replicates of a run: one batched EM (backend ``batched``) or one scikit-learn fit each."""
        if params.get("backend", "batched") == "batched":
            return BatchedGMM(factory, replicates)
        return ReplicatedModel(factory, replicates)

    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "GMMModel":
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must have shape (n, d), got {X.shape}")
        if not np.all(np.isfinite(X)):
            raise FitError("training data contains non-finite values")
        if self.backend == "batched":
            mix = batched_em.fit(X[None], [rng if rng is not None else np.random.default_rng()], **self.em_params(),
                                 device=_torch_device(self.device))
            if mix.failed:
                raise ValueError(mix.failed[0])
            self._set_fit(mix, 0)
            return self
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.mixture import GaussianMixture

        seed = None if rng is None else int(rng.integers(2**31 - 1))
        gm = GaussianMixture(random_state=seed, **self.em_params())
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
        d, k = example_nbytes // 8, params["n_components"]
        if params.get("backend", "batched") == "batched":  # one chunk of replicates at a time
            return max(EM_MEMORY_BUDGET, 8 * train_size * k * (d + 4))
        return 8 * 3 * train_size * k  # EM's responsibilities and log densities

    @classmethod
    def check_spec(cls, spec: Any) -> None:
        # EM needs one example per component in every generation (a constant size: one check, no array)
        m = spec.sizes() if not isinstance(spec.train_size, int) else np.array([spec.train_size])
        if (m < spec.model.n_components).any():
            g = int(np.flatnonzero(m < spec.model.n_components)[0])
            raise ValueError(f"model.n_components: {spec.model.n_components} exceeds train_size {m[g]} "
                             f"at generation {g}")

    def _set_fit(self, mix: batched_em.Mixtures, r: int) -> None:
        """Replicate ``r`` of a batched fit."""
        cov = batched_em.full_covariances(mix.covariances[r : r + 1], self.covariance_type, self.n_components,
                                          mix.means.shape[-1])[0]
        self._set(mix.weights[r], mix.means[r], cov)
        self.converged_ = bool(mix.converged[r])
        self.n_iter_ = int(mix.n_iter[r])

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

        from .em_kernels import mixture_draws  # numba loads on first use (CLI start-up)

        def one(g: np.random.Generator) -> np.ndarray:
            u = g.random(n)  # the uniforms Generator.choice(K, size=n, p=weights) would draw
            z = g.standard_normal((n, self.means_.shape[1]))
            return mixture_draws(u[None], z[None], self.weights_[None], self.means_[None], roots[None])[0]

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


class BatchedGMM(ReplicatedModel):
    """Every replicate's mixture fitted by one batched EM (:func:`.batched_em.fit`), and sampled and
    scored in one set of array operations.

    Replicate r draws its initialisation from the same child generator a per-replicate fit would
    (``GMMModel(...).fit(X[r], rng=default_rng(seed_r))`` gives the same numbers), and no operation
    mixes replicates, so a result depends neither on the batch nor on ``workers``.
    """

    def fit(self, X: np.ndarray, *, rng: RNG | None = None, workers: int = 1, pool: Any = None,
            sample_weight: np.ndarray | None = None, min_size: int = 1, **fit_kwargs: Any) -> "BatchedGMM":
        """``sample_weight`` (0 or 1, from a filter) leaves examples out: replicates left with the same
        number of examples share a batch (no operation mixes replicates, so the grouping changes no
        number); a replicate left with fewer than ``min_size`` keeps its current model."""
        R = len(self.models)
        seeds = [None] * R if rng is None else [int(g.integers(2**63)) for g in rng]
        todo = [r for r in range(R) if r not in self.stopped]
        X = np.asarray(X, dtype=float)
        if sample_weight is None:
            groups = [(todo, X)]
        else:
            subsets = [x[w > 0] for x, w in zip(X, np.asarray(sample_weight))]
            by_size: dict[int, list[int]] = {}
            for r in todo:
                if len(subsets[r]) >= min_size or self.models[r] is None:
                    by_size.setdefault(len(subsets[r]), []).append(r)
            groups = [(rs, np.stack([subsets[r] for r in rs]) if rs else X[:0]) for _, rs in sorted(by_size.items())]
        if not any(rs for rs, _ in groups):
            return self
        proto = self.factory()
        chunks, jobs = [], []
        for rs, Xg in groups:
            if not rs:
                continue
            where = {r: i for i, r in enumerate(rs)}
            for c in _chunks(rs, _chunk_size(Xg.shape[1], Xg.shape[2], proto.n_components, proto.device), workers):
                chunks.append(c)
                jobs.append((proto.em_params(), Xg[[where[r] for r in c]] if sample_weight is not None else Xg[c],
                             [seeds[r] for r in c], proto.device))
        if workers > 1 and len(jobs) > 1 and pool is not None:  # chunks side by side, same numbers
            results = pool.map(_fit_chunk, jobs)
        else:
            results = [_fit_chunk(job) for job in jobs]
        for c, mix in zip(chunks, results):
            for i, r in enumerate(c):
                if i in mix.failed:
                    self.models[r] = None
                    self.stopped[r] = f"ValueError: {mix.failed[i]}"
                    continue
                model = self.factory()
                model._set_fit(mix, i)
                self.models[r] = model
        return self

    def _stacked(self) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
        running = [r for r, m in enumerate(self.models) if m is not None]
        ms = [self.models[r] for r in running]
        return running, np.stack([m.weights_ for m in ms]), np.stack([m.means_ for m in ms]), \
            np.stack([m.covariances_ for m in ms])

    def sample(self, n: int, *, rng: Any, prompts: np.ndarray | None = None) -> np.ndarray:
        """The draws of each replicate's ``GMMModel.sample`` (same generator calls), transformed in one batch."""
        running, w, mu, cov = self._stacked()
        if not running:
            raise FitError("every replicate has stopped")
        from .em_kernels import mixture_draws

        roots = psd_sqrt(cov)  # (R', K, d, d)
        u = np.empty((len(running), n))
        z = np.empty((len(running), n, mu.shape[-1]))
        for i, r in enumerate(running):
            rng[r].random(out=u[i])
            rng[r].standard_normal(out=z[i])
        draws = mixture_draws(u, z, w, mu, roots)
        out: list[np.ndarray | None] = [None] * len(self.models)
        for i, r in enumerate(running):
            out[r] = draws[i]
        return _stack_with_nan(out)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        running, w, mu, cov = self._stacked()
        if not running:
            raise FitError("every replicate has stopped")
        X = np.asarray(X, dtype=float)
        Xr = X[running] if X.ndim == 3 else np.broadcast_to(X, (len(running),) + X.shape)
        prec, bad = batched_em.precisions_cholesky(cov, "full")
        if bad.any():  # a singular fitted covariance: scikit-learn's per-replicate path says why
            return super().log_prob(X)
        with np.errstate(divide="ignore"):
            weighted = batched_em.log_gaussian_prob(Xr, mu, prec, "full") + np.log(w)[:, None, :]
        scores = logsumexp(weighted, axis=-1)
        out: list[np.ndarray | None] = [None] * len(self.models)
        for i, r in enumerate(running):
            out[r] = scores[i]
        return _stack_with_nan(out)


def _chunk_size(n: int, d: int, k: int, device: str = "numpy") -> int:
    """Replicates per EM call within :data:`EM_MEMORY_BUDGET`: the array version's full-covariance
    step holds about (d + 4) arrays of N x K floats per replicate. The compiled version works on one
    replicate at a time (its working memory is a few arrays of N): one call for all."""
    if device == "numpy":
        return 2**62
    return max(1, EM_MEMORY_BUDGET // (8 * n * k * (d + 4)))


def _chunks(todo: list[int], size: int, workers: int) -> list[list[int]]:
    """At most ``size`` replicates a chunk, in a multiple of ``workers`` chunks (so that the workers
    finish together)."""
    count = max(-(-len(todo) // size), 1)
    if workers > 1:
        count = -(-count // workers) * workers
    count = min(count, len(todo))
    return [list(c) for c in np.array_split(np.array(todo), count) if len(c)]


def _fit_chunk(job: tuple) -> batched_em.Mixtures:
    params, X, seeds, device = job
    from threadpoolctl import threadpool_limits

    rngs = [np.random.default_rng(s) for s in seeds]
    if device == "numpy":  # compiled: no BLAS call to limit (and threadpoolctl's scan cost 10% of a generation)
        return batched_em.fit(X, rngs, **params)
    # One BLAS thread: EM's many small products gain nothing from more (as for a per-replicate fit).
    with threadpool_limits(limits=1):
        return batched_em.fit(X, rngs, **params, device=_torch_device(device))


def _torch_device(name: str) -> Any:
    """None for numpy, else the torch device ("auto": CUDA when present)."""
    if name == "numpy":
        return None
    from .torch_common import resolve_device

    return resolve_device(name)


register_model("gmm", GMMModel)
