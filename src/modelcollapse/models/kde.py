"""Gaussian kernel density estimate (scikit-learn's ``KernelDensity`` is the reference the tests use): one
model per replicate, sampled and scored for all replicates at once by :class:`BatchedKDE`."""

from __future__ import annotations

from typing import Annotated, Any, Union

import numpy as np
from pydantic import BeforeValidator

from .base import RNG, BaseModel, FitError, ReplicatedModel, draw, weighted_subsets
from .family import register_model

#: Bytes of the (points, kernels, d) differences one scoring block holds, the largest temporary of
#: :func:`log_density` (every later step works in place). Several passes run over a block, so it should
#: stay in cache: 500 points against a 400-point KDE (the kde preset) scored 1.3x slower in 16 MiB blocks
#: than in blocks of 1 to 4 MiB on a 2-core EPYC (512 KiB of L2 a core, 32 MiB of L3); below 512 KiB the
#: per-block overhead shows. Any size gives the same numbers.
SCORE_BLOCK_BYTES = 2 * 2**20


def _bandwidth(v: Any) -> Any:
    if isinstance(v, str) and v in ("scott", "silverman"):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
        return float(v)
    raise ValueError(f"must be a positive number, 'scott' or 'silverman', got {v!r}")


Bandwidth = Annotated[Union[float, str], BeforeValidator(_bandwidth)]


def bandwidth(rule: float | str, n: int, d: int) -> float:
    """The kernel width: a number, or scikit-learn's ``KernelDensity`` rule of thumb for n points in d
    dimensions (its formulas, without building its tree; the tests compare with it)."""
    if rule == "scott":
        return float(n ** (-1.0 / (d + 4)))
    if rule == "silverman":
        return float((n * (d + 2) / 4.0) ** (-1.0 / (d + 4)))
    return float(rule)


class KDEModel(BaseModel):
    """Gaussian KDE: an equal-weight mixture of ``N(x_i, bandwidth_**2 I)`` over the training points.

    Parameters
    ----------
    bandwidth : float or {"scott", "silverman"}
        Kernel width, or a rule of thumb computed by scikit-learn at each fit. Note that
        scikit-learn's rules do not rescale by the data's spread (``scott`` is
        ``n ** (-1 / (d + 4))``), so on unit-scale data they are a sensible default.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> m = KDEModel(bandwidth=0.3).fit(rng.normal(size=(100, 1)))
    >>> m.sample(5, rng=rng).shape
    (5, 1)
    """

    default_metrics = ("nll", "tail_mass", "w1", "w2", "variance_ratio")

    @classmethod
    def replicated(cls, factory: Any, replicates: int, params: dict[str, Any]) -> "BatchedKDE":
        """All replicates of a run, sampled and scored in one set of array operations."""
        return BatchedKDE(factory, replicates)

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        return train_size * example_nbytes  # the training points, kept

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        return train_size * example_nbytes  # a copy of them during the fit (no tree is built)

    def __init__(self, *, bandwidth: Bandwidth = "scott") -> None:
        self.bandwidth = bandwidth

    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "KDEModel":
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or len(X) == 0:
            raise ValueError(f"X must have shape (n, d) with n > 0, got {X.shape}")
        self.data_ = X
        self.bandwidth_ = bandwidth(self.bandwidth, *X.shape)
        return self

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        self._check_fitted()

        def one(g: np.random.Generator) -> np.ndarray:
            idx = g.integers(len(self.data_), size=n)
            return self.data_[idx] + self.bandwidth_ * g.standard_normal((n, self.data_.shape[1]))

        return draw(rng, one)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Exact log density by a blocked log-sum-exp over all kernels (:func:`log_density`).

        Same values as ``KernelDensity.score_samples`` (the reference in the tests) but
        much faster at the sizes of a chain (1,000 points against a 500-point KDE),
        where scikit-learn's tree walk with zero tolerance gains nothing.
        """
        self._check_fitted()
        X = np.asarray(X, dtype=float)
        batch = X if X.ndim == 3 else X[None]
        data = np.broadcast_to(self.data_, (len(batch), *self.data_.shape))
        out = log_density(batch, data, np.full(len(batch), self.bandwidth_))
        return out if X.ndim == 3 else out[0]

    def as_mixture(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self._check_fitted()
        n, d = self.data_.shape
        cov = np.broadcast_to(np.eye(d) * self.bandwidth_**2, (n, d, d))
        return np.full(n, 1.0 / n), self.data_, cov

    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"data": self.data_, "bandwidth": np.array(self.bandwidth_)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "KDEModel":
        self.data_, self.bandwidth_ = np.asarray(state["data"], dtype=float), float(state["bandwidth"])
        return self


class BatchedKDE(ReplicatedModel):
    """One :class:`KDEModel` per replicate (so state, snapshots and stopped replicates are exactly
    :class:`ReplicatedModel`'s), sampled and scored for all replicates at once.

    :meth:`sample` makes the generator calls of each replicate's ``KDEModel.sample`` and
    :meth:`log_prob` the arithmetic of its ``KDEModel.log_prob``: the numbers are the same bits.
    """

    def fit(self, X: np.ndarray, *, rng: RNG | None = None, workers: int = 1, pool: Any = None,
            sample_weight: np.ndarray | None = None, min_size: int = 1, **fit_kwargs: Any) -> "BatchedKDE":
        """:meth:`ReplicatedModel.fit`'s semantics (``sample_weight``, ``min_size``, stopped replicates),
        in this process whatever ``workers`` says: a fit only stores its data, which would cost more to
        send to a worker than to keep (and a thread-pool guard around it cost more than the fits)."""
        R = len(self.models)
        if rng is not None:  # the per-replicate path draws a seed per replicate: the fit streams advance alike
            for g in rng:
                g.integers(2**63)
        todo = [r for r in range(R) if r not in self.stopped]
        data = [(X[r], {}) for r in range(R)] if sample_weight is None else weighted_subsets(X, sample_weight)
        if sample_weight is not None:  # too little left: the replicate keeps what it had
            todo = [r for r in todo if len(data[r][0]) >= min_size or self.models[r] is None]
        for r in todo:
            try:  # a KDE's fit draws nothing: no generator is made from the seed
                self.models[r] = self.factory().fit(data[r][0], **{**fit_kwargs, **data[r][1]})
            except (FitError, ValueError, np.linalg.LinAlgError) as exc:
                self.models[r] = None
                self.stopped[r] = f"{type(exc).__name__}: {exc}"
        return self

    def _running(self) -> list[int]:
        running = [r for r, m in enumerate(self.models) if m is not None]
        if not running:
            raise FitError("every replicate has stopped")
        return running

    def sample(self, n: int, *, rng: Any, prompts: np.ndarray | None = None) -> np.ndarray:
        """Each running replicate's ``KDEModel.sample`` draws (the same generator calls in the same
        order), turned into points by one gather and one multiply-add for all replicates."""
        running = self._running()
        models = [self.models[r] for r in running]
        d = models[0].data_.shape[1]
        idx = np.empty((len(running), n), dtype=np.int64)
        z = np.empty((len(running), n, d))
        for i, (r, m) in enumerate(zip(running, models)):
            idx[i] = rng[r].integers(len(m.data_), size=n)
            rng[r].standard_normal(out=z[i])  # the variates of standard_normal((n, d)), written in place
        data = _padded([m.data_ for m in models])  # a padded row is never drawn: idx < each length
        z *= np.array([m.bandwidth_ for m in models])[:, None, None]
        z += data[np.arange(len(running))[:, None], idx]  # x_idx + h z, as one replicate adds them
        return _scatter(z, running, len(self.models))

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Log densities (R, n) of ``X`` (R, n, d), row r under replicate r, or of the same ``X`` (n, d)
        under every replicate; NaN rows for stopped replicates."""
        running = self._running()
        X = np.asarray(X, dtype=float)
        Xr = X[running] if X.ndim == 3 else np.broadcast_to(X, (len(running), *X.shape))
        scores = np.empty(Xr.shape[:2])
        # Replicates of the same size share blocks; a filter's ragged sizes are scored apart, so that
        # every sum runs over exactly a replicate's own kernels (padding would reorder it).
        for rows in _by_size([self.models[r] for r in running]):
            models = [self.models[running[i]] for i in rows]
            scores[rows] = log_density(Xr[rows], np.stack([m.data_ for m in models]),
                                       np.array([m.bandwidth_ for m in models]))
        return _scatter(scores, running, len(self.models))


def log_density(X: np.ndarray, data: np.ndarray, bandwidths: np.ndarray) -> np.ndarray:
    """Log density (B, m) of B Gaussian KDEs at their own points: ``X`` (B, m, d), kernels ``data``
    (B, n, d) of widths ``bandwidths`` (B,). Blocks of points (and, for small ones, of KDEs) hold at
    most :data:`SCORE_BLOCK_BYTES` of differences; the block sizes change no number."""
    B, m, d = X.shape
    n = data.shape[1]
    h2 = np.asarray(bandwidths, dtype=float) ** 2
    # Per KDE, in scalars: the arithmetic of a single KDE's score, whatever the batch.
    norm = np.array([np.log(n) + 0.5 * d * np.log(2 * np.pi * float(v)) for v in h2])
    rows = max(1, SCORE_BLOCK_BYTES // (8 * n * d))
    kdes = max(1, rows // max(m, 1)) if rows >= m else 1
    out = np.empty((B, m))
    for b in range(0, B, kdes):
        for s in range(0, m, rows):
            out[b : b + kdes, s : s + rows] = _score_block(X[b : b + kdes, s : s + rows], data[b : b + kdes],
                                                           h2[b : b + kdes], norm[b : b + kdes])
    return out


def _score_block(X: np.ndarray, data: np.ndarray, h2: np.ndarray, norm: np.ndarray) -> np.ndarray:
    """One block of :func:`log_density`: the squared distances, then ``mixtures.logsumexp``'s operations
    in the same order, in place (the temporaries of the plain expressions cost more than the arithmetic)."""
    a = X[:, :, None, :] - data[:, None, :, :]  # (b, rows, n, d)
    np.square(a, out=a)
    # One coordinate: the sum over it is the value itself (summing a length-1 axis is slow, not different).
    a = a[..., 0] if a.shape[-1] == 1 else np.sum(a, axis=-1)
    np.multiply(a, -0.5, out=a)
    np.divide(a, h2[:, None, None], out=a)
    top = np.max(a, axis=-1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        np.subtract(a, top, out=a)
        np.exp(a, out=a)
        return np.log(np.sum(a, axis=-1)) + top[..., 0] - norm[:, None]


def _by_size(models: list[KDEModel]) -> list[list[int]]:
    """Positions of the models grouped by their number of kernels."""
    groups: dict[int, list[int]] = {}
    for i, m in enumerate(models):
        groups.setdefault(len(m.data_), []).append(i)
    return list(groups.values())


def _padded(arrays: list[np.ndarray]) -> np.ndarray:
    """The arrays stacked, shorter ones padded with zero rows (never read)."""
    n = max(len(a) for a in arrays)
    if all(len(a) == n for a in arrays):
        return np.stack(arrays)
    out = np.zeros((len(arrays), n, *arrays[0].shape[1:]))
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def _scatter(values: np.ndarray, running: list[int], replicates: int) -> np.ndarray:
    """Rows of the running replicates at their places, NaN rows for the stopped ones (as
    ``ReplicatedModel`` stacks them)."""
    if len(running) == replicates:
        return values
    out = np.full((replicates, *values.shape[1:]), np.nan)
    out[running] = values
    return out


register_model("kde", KDEModel)
