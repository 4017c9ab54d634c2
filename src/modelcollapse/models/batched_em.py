"""Expectation-maximisation for many Gaussian mixtures at once: scikit-learn's ``GaussianMixture``,
batched over a leading replicate axis.

Every step is scikit-learn's (``sklearn/mixture/_gaussian_mixture.py``): the same M-step
estimates (``nk`` padded with ``10 * eps``, ``reg_covar`` on the diagonal), precisions through
the Cholesky factor, the E-step's log-sum-exp, the lower bound (the mean log-likelihood) and
its stopping rule (``|change| < tol``), and a fit that fails, as scikit-learn's raises, when a
covariance is not positive definite. Given the same data and the same initial parameters
(:func:`em`) the result is scikit-learn's to rounding; the test suite checks 1e-6 for every
covariance type. Replicates that have converged drop out of the batch (their parameters stop
changing), and no operation mixes replicates, so a replicate's fit does not depend on which
others share its batch.

Arrays: X is (R, N, d); weights (R, K); means (R, K, d); covariances and Cholesky factors of
the precisions (R, K, d, d) "full", (R, d, d) "tied", (R, K, d) "diag", (R, K) "spherical".
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
EPS = 10 * np.finfo(np.float64).eps
ILL_DEFINED = ("Fitting the mixture model failed because some components have ill-defined empirical covariance "
               "(for instance caused by singleton or collapsed samples)")


@dataclass
class Mixtures:
    """R Gaussian mixtures with their fit's diagnostics; ``failed`` maps a replicate to its reason."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray | None
    precisions_cholesky: np.ndarray
    lower_bound: np.ndarray = field(default_factory=lambda: np.empty(0))
    n_iter: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    converged: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    failed: dict[int, str] = field(default_factory=dict)

    def take(self, idx: np.ndarray) -> "Mixtures":
        return Mixtures(self.weights[idx], self.means[idx], None if self.covariances is None else self.covariances[idx],
                        self.precisions_cholesky[idx])


# -- arrays: numpy, or torch tensors (CPU or CUDA) through the array API ------------------------
def namespace(x: Any) -> Any:
    """numpy (whose main namespace is the array API since 2.0), or array-api-compat's torch."""
    if isinstance(x, np.ndarray):
        return np
    from array_api_compat import array_namespace

    return array_namespace(x)


def _is_numpy(xp: Any) -> bool:
    return xp is np


def _contiguous(xp: Any, x: Any) -> Any:
    return np.ascontiguousarray(x) if _is_numpy(xp) else x.contiguous()


def _exp_(xp: Any, x: Any) -> Any:
    """exp in place (numpy allocates a new array otherwise: a page-faulting pass over (R, K, N))."""
    return np.exp(x, out=x) if _is_numpy(xp) else x.exp_()


def _transpose(xp: Any, x: Any) -> Any:
    """Swap the last two axes."""
    return xp.matrix_transpose(x)


def _eye(xp: Any, d: int, like: Any) -> Any:
    return xp.eye(d, dtype=like.dtype, device=_device(like))


def _device(x: Any) -> Any:
    return "cpu" if isinstance(x, np.ndarray) else x.device


# -- the M-step -----------------------------------------------------------------------------
# Inside EM the data is kept twice, as X (R, N, d) and as its transpose Xt (R, d, N), and the
# responsibilities as (R, K, N): every long axis is then the last, contiguous one, which made an
# iteration four times faster than scikit-learn's (N, K) layout batched over R.
def estimate_parameters(X: Any, Xt: Any, resp: Any, reg_covar: float, covariance_type: str) -> tuple[Any, Any, Any]:
    """(nk, means, covariances) from responsibilities ``resp`` (R, K, N), as scikit-learn estimates them."""
    xp = namespace(X)
    nk = xp.sum(resp, axis=-1) + EPS
    means = xp.matmul(resp, X) / nk[..., None]
    d = X.shape[-1]
    if covariance_type == "full":
        diff = Xt[:, None, :, :] - means[..., None]  # (R, K, d, N)
        weighted = diff * resp[:, :, None, :]
        cov = xp.matmul(weighted, _transpose(xp, diff))
        cov /= nk[..., None, None]
        cov += reg_covar * _eye(xp, d, cov)  # + 0 off the diagonal: exactly scikit-learn's
    elif covariance_type == "tied":
        avg_X2 = xp.matmul(Xt, X)
        avg_means2 = xp.matmul(_transpose(xp, means * nk[..., None]), means)
        cov = (avg_X2 - avg_means2) / xp.sum(nk, axis=1)[:, None, None]
        cov += reg_covar * _eye(xp, d, cov)
    else:
        avg_X2 = xp.matmul(resp, X * X) / nk[..., None]
        cov = avg_X2 - means**2 + reg_covar
        if covariance_type == "spherical":
            cov = xp.mean(cov, axis=-1)
    return nk, means, cov


def precisions_cholesky(covariances: Any, covariance_type: str) -> tuple[Any, Any]:
    """Cholesky factors of the precisions, and which replicates have a covariance that is not
    positive definite (scikit-learn raises for those; here they are flagged, the others go on)."""
    xp = namespace(covariances)
    R = covariances.shape[0]
    if covariance_type in ("diag", "spherical"):
        bad = xp.any(xp.reshape(covariances <= 0, (R, -1)), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / xp.sqrt(covariances), bad
    chol, bad = _cholesky(covariances)
    eye = xp.broadcast_to(_eye(xp, chol.shape[-1], chol), chol.shape)
    with np.errstate(all="ignore"):
        inverse = xp.linalg.solve(xp.where(xp.reshape(bad, (R,) + (1,) * (chol.ndim - 1)), eye, chol), eye)
    return _transpose(xp, inverse), bad


def _cholesky(a: Any) -> tuple[Any, Any]:
    """Lower Cholesky factors of a batch; replicates with a matrix that has none are flagged (their
    factor is the identity)."""
    R = a.shape[0]
    if not isinstance(a, np.ndarray):  # torch reports failures per matrix, without raising
        import torch

        chol, info = torch.linalg.cholesky_ex(a)
        bad = (info.reshape(R, -1) != 0).any(dim=1)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
        return torch.where(bad.reshape((R,) + (1,) * (a.ndim - 1)), eye, chol), bad
    try:
        return np.linalg.cholesky(a), np.zeros(R, dtype=bool)
    except np.linalg.LinAlgError:  # rare (a collapsing chain): find which, one replicate at a time
        out, bad = np.broadcast_to(np.eye(a.shape[-1]), a.shape).copy(), np.zeros(R, dtype=bool)
        for r in range(R):
            try:
                out[r] = np.linalg.cholesky(a[r])
            except np.linalg.LinAlgError:
                bad[r] = True
        return out, bad


# -- the E-step -----------------------------------------------------------------------------
def log_gaussian_prob(X: Any, means: Any, prec_chol: Any, covariance_type: str) -> Any:
    """log N(x_n; mu_k, Sigma_k) for data X (R, N, d), as (R, N, K)."""
    xp = namespace(X)
    lp = _log_gaussian_prob(xp.permute_dims(X, (0, 2, 1)), means, prec_chol, covariance_type)
    return xp.permute_dims(lp, (0, 2, 1))


def _log_gaussian_prob(Xt: Any, means: Any, prec_chol: Any, covariance_type: str) -> Any:
    """log N(x_n; mu_k, Sigma_k) for transposed data Xt (R, d, N), as (R, K, N)."""
    xp = namespace(Xt)
    d = Xt.shape[1]
    if covariance_type == "full":
        # y = (x - mu) @ P, one (d, N) block per component: P^T x - P^T mu.
        pt = _transpose(xp, prec_chol)
        y = xp.matmul(pt, Xt[:, None])  # (R, K, d, N)
        y -= xp.matmul(pt, means[..., None])
        y *= y
        log_prob = xp.sum(y, axis=-2)
        log_det = xp.sum(xp.log(xp.linalg.diagonal(prec_chol)), axis=-1)
    elif covariance_type == "tied":
        pt = _transpose(xp, prec_chol)
        y = xp.matmul(pt, Xt)[:, None] - xp.matmul(means, prec_chol)[..., None]
        log_prob = xp.sum(y * y, axis=-2)
        log_det = xp.sum(xp.log(xp.linalg.diagonal(prec_chol)), axis=-1)[:, None]
    elif covariance_type == "diag":
        precisions = prec_chol**2
        log_prob = (xp.sum(means**2 * precisions, axis=-1)[..., None]
                    - 2.0 * xp.matmul(means * precisions, Xt)
                    + xp.matmul(precisions, Xt**2))
        log_det = xp.sum(xp.log(prec_chol), axis=-1)
    else:
        precisions = prec_chol**2
        log_prob = (xp.sum(means**2, axis=-1)[..., None] * precisions[..., None]
                    - 2.0 * xp.matmul(means, Xt) * precisions[..., None]
                    + xp.sum(Xt**2, axis=1)[:, None, :] * precisions[..., None])
        log_det = d * xp.log(prec_chol)
    log_prob *= -0.5
    log_prob += (log_det - 0.5 * d * math.log(2 * math.pi))[..., None]
    return log_prob


def e_step(Xt: Any, mix: Mixtures, covariance_type: str) -> tuple[Any, Any]:
    """(the mean log-likelihood of each replicate's data (R,), responsibilities (R, K, N)).

    scikit-learn's log-sum-exp, with the responsibilities formed as exp(w - top) / sum rather than
    exp(w - log-sum-exp): the same to rounding, one pass over (R, K, N) fewer."""
    xp = namespace(Xt)
    with np.errstate(divide="ignore"):
        weighted = _log_gaussian_prob(Xt, mix.means, mix.precisions_cholesky, covariance_type)
        weighted += xp.log(mix.weights)[..., None]
    top = xp.max(weighted, axis=1)
    top = xp.where(xp.isfinite(top), top, 0.0)
    weighted -= top[:, None, :]
    resp = _exp_(xp, weighted)
    total = xp.sum(resp, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        resp /= total[:, None, :]
        norm = xp.log(total)
    norm += top
    return xp.mean(norm, axis=-1), resp


def m_step(X: Any, Xt: Any, resp: Any, reg_covar: float, covariance_type: str) -> tuple[Mixtures, Any]:
    nk, means, cov = estimate_parameters(X, Xt, resp, reg_covar, covariance_type)
    weights = nk / namespace(nk).sum(nk, axis=-1, keepdims=True)
    prec, bad = precisions_cholesky(cov, covariance_type)
    return Mixtures(weights, means, cov, prec), bad


def em(X: Any, init: Mixtures, *, covariance_type: str = "full", tol: float = 1e-3, max_iter: int = 100,
       reg_covar: float = 1e-6, skip: Any = None) -> Mixtures:
    """EM from initial parameters ``init`` (weights, means, Cholesky factors of the precisions), one
    mixture per replicate; a replicate stops changing once its lower bound moves by less than ``tol``.
    ``skip`` (R,) marks replicates not to fit (their parameters stay ``init``'s). X and ``init`` are
    numpy arrays, or torch tensors on any device (the fit then runs there).

    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(3, 200, 2))
    >>> resp = np.eye(2)[np.arange(200) % 2].T[None].repeat(3, 0)  # (R, K, N)
    >>> fit = em(X, initial_parameters(X, resp, 1e-6, "full"), covariance_type="full")
    >>> fit.weights.shape, bool(fit.converged.all())
    ((3, 2), True)
    """
    xp = namespace(X)
    R = X.shape[0]
    copy = lambda a: xp.asarray(a, copy=True)  # noqa: E731
    mix = Mixtures(copy(init.weights), copy(init.means), None if init.covariances is None else copy(init.covariances),
                   copy(init.precisions_cholesky))
    dev = _device(X)
    mix.lower_bound = xp.full(R, -math.inf, dtype=X.dtype, device=dev)
    mix.n_iter = xp.zeros(R, dtype=xp.int64, device=dev)
    mix.converged = xp.zeros(R, dtype=xp.bool, device=dev)
    active = xp.ones(R, dtype=xp.bool, device=dev)
    if skip is not None:
        active = ~xp.asarray(skip, dtype=xp.bool, device=dev)
    if mix.covariances is None:  # started from precisions: covariances follow from the first M-step
        mix.covariances = xp.full(init.precisions_cholesky.shape, math.nan, dtype=X.dtype, device=dev)
    Xt = _contiguous(xp, xp.permute_dims(X, (0, 2, 1)))
    everyone = bool(xp.all(active))
    for it in range(1, max_iter + 1):
        idx = xp.nonzero(active)[0]
        if not idx.shape[0]:
            break
        if everyone and idx.shape[0] == R:  # no copy while the whole batch is still running
            Xa, Xta, current = X, Xt, mix
        else:
            Xa, Xta, current = X[idx], Xt[idx], mix.take(idx)
        lower, resp = e_step(Xta, current, covariance_type)
        new, bad = m_step(Xa, Xta, resp, reg_covar, covariance_type)
        if bool(xp.any(bad)):
            for r in idx[bad]:
                mix.failed[int(r)] = ILL_DEFINED
        ok = ~bad
        keep = idx[ok]
        mix.weights[keep], mix.means[keep] = new.weights[ok], new.means[ok]
        mix.covariances[keep], mix.precisions_cholesky[keep] = new.covariances[ok], new.precisions_cholesky[ok]
        change = lower - mix.lower_bound[idx]
        mix.lower_bound[idx] = lower
        mix.n_iter[idx] = it
        done = xp.abs(change) < tol
        mix.converged[idx[done]] = True
        active[idx[done | bad]] = False
    return mix


def initial_parameters(X: np.ndarray, resp: np.ndarray, reg_covar: float, covariance_type: str) -> Mixtures:
    """Parameters from initial responsibilities ``resp`` (R, K, N), as ``GaussianMixture._initialize``
    makes them (weights are the responsibilities' sums over N, not renormalised)."""
    nk, means, cov = estimate_parameters(X, np.ascontiguousarray(np.swapaxes(X, 1, 2)), resp, reg_covar,
                                         covariance_type)
    prec, bad = precisions_cholesky(cov, covariance_type)
    mix = Mixtures(nk / X.shape[1], means, cov, prec)
    mix.failed = {int(r): ILL_DEFINED for r in np.flatnonzero(bad)}
    return mix


def from_precisions(weights: np.ndarray, means: np.ndarray, precisions: np.ndarray, covariance_type: str) -> Mixtures:
    """Initial parameters given as precisions, as ``GaussianMixture(precisions_init=...)`` takes them:
    the upper Cholesky factor, through the flip of scikit-learn's ``_compute_precision_cholesky_from_precisions``."""
    if covariance_type in ("full", "tied"):
        flipped = np.flip(precisions, axis=(-2, -1))
        prec_chol = np.flip(np.linalg.cholesky(flipped), axis=(-2, -1))
    else:
        prec_chol = np.sqrt(precisions)
    return Mixtures(np.asarray(weights, float), np.asarray(means, float), None, prec_chol)


def full_covariances(cov: np.ndarray, covariance_type: str, n_components: int, d: int) -> np.ndarray:
    """(R, K, d, d) covariances from any covariance type's arrays."""
    if covariance_type == "full":
        return cov
    if covariance_type == "tied":
        return np.broadcast_to(cov[:, None], (cov.shape[0], n_components, d, d)).copy()
    if covariance_type == "diag":
        return cov[..., :, None] * np.eye(d)
    return cov[..., None, None] * np.eye(d)


# -- initialisation -------------------------------------------------------------------------------
def initial_responsibilities(X: np.ndarray, n_components: int, method: str, rngs: list[np.random.Generator],
                             compiled: bool = False) -> np.ndarray:
    """(R, K, N) starting responsibilities by scikit-learn's ``init_params`` rules, replicate r drawing
    from ``rngs[r]`` only: "kmeans" (k-means++ seeding, then Lloyd's iterations), "k-means++" (the
    seeds alone), "random" (uniform responsibilities) or "random_from_data" (K distinct points).
    ``compiled``: k-means from :mod:`.em_kernels` (the same draws; the same labels but on exact ties)."""
    R, N, _ = X.shape
    K = n_components
    if compiled and method in ("kmeans", "k-means++"):
        from . import em_kernels as impl
    else:
        impl = sys.modules[__name__]
    if method == "random":
        resp = np.stack([g.uniform(size=(N, K)).T for g in rngs])
        return resp / resp.sum(axis=1, keepdims=True)
    if method == "kmeans":
        labels = impl.kmeans(X, K, rngs)
        return (labels[:, None, :] == np.arange(K)[None, :, None]).astype(float)
    if method == "random_from_data":
        idx = np.stack([g.choice(N, size=K, replace=False) for g in rngs])
    elif method == "k-means++":
        idx = impl.kmeans_plusplus(X, K, rngs)
    else:
        raise ValueError(f"init_params must be one of kmeans, k-means++, random, random_from_data, got {method!r}")
    resp = np.zeros((R, K, N))
    resp[np.arange(R)[:, None], np.arange(K)[None, :], idx] = 1
    return resp


def _sq_dist(centers: np.ndarray, Xt: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Squared distances (R, m, N), never negative, between centres (R, m, d) and the points of
    Xt (R, d, N) whose squared norms are x2 (R, N)."""
    d = np.sum(centers**2, axis=-1)[..., None] - 2 * np.matmul(centers, Xt) + x2[:, None, :]
    return np.maximum(d, 0.0)


def _argmin_k(dist: np.ndarray) -> np.ndarray:
    """``np.argmin(dist, axis=1)`` for (R, K, N) distances (the first on a tie), a contiguous pass per
    component: numpy's argmin over a middle axis copies the array first, and took a third of k-means."""
    labels = np.zeros(dist.shape[::2], dtype=np.int64)
    best = dist[:, 0].copy()
    for k in range(1, dist.shape[1]):
        closer = dist[:, k] < best
        labels[closer] = k
        np.minimum(best, dist[:, k], out=best)
    return labels


def kmeans_plusplus(X: np.ndarray, n_clusters: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """Indices (R, K) of k-means++ seeds, greedy with 2 + log(K) local trials as scikit-learn does."""
    R, N, _ = X.shape
    Xt = np.ascontiguousarray(np.swapaxes(X, 1, 2))
    x2 = np.sum(X**2, axis=-1)
    trials = 2 + int(np.log(n_clusters))
    rows = np.arange(R)
    idx = np.zeros((R, n_clusters), dtype=np.int64)
    idx[:, 0] = [g.integers(N) for g in rngs]
    closest = _sq_dist(X[rows, idx[:, 0]][:, None, :], Xt, x2)[:, 0, :]  # (R, N)
    potential = closest.sum(axis=-1)
    for c in range(1, n_clusters):
        draws = np.stack([g.uniform(size=trials) for g in rngs]) * potential[:, None]
        cumulative = np.cumsum(closest, axis=-1)
        candidates = np.stack([np.searchsorted(cumulative[r], draws[r]) for r in range(R)])
        candidates = np.minimum(candidates, N - 1)
        dist = np.minimum(closest[:, None, :], _sq_dist(X[rows[:, None], candidates], Xt, x2))  # (R, trials, N)
        pots = dist.sum(axis=-1)
        best = np.argmin(pots, axis=-1)
        potential, closest = pots[rows, best], dist[rows, best]
        idx[:, c] = candidates[rows, best]
    return idx


def kmeans(X: np.ndarray, n_clusters: int, rngs: list[np.random.Generator], max_iter: int = 300,
           tol: float = 1e-4) -> np.ndarray:
    """Labels (R, N) of Lloyd's k-means from k-means++ seeds, each replicate until its labels stop
    changing or its centres move less than ``tol`` times the data's mean variance (scikit-learn's rule);
    an emptied cluster takes the point farthest from its centre."""
    R, N, _ = X.shape
    K = n_clusters
    rows = np.arange(R)
    Xt = np.ascontiguousarray(np.swapaxes(X, 1, 2))
    x2 = np.sum(X**2, axis=-1)
    centers = X[rows[:, None], kmeans_plusplus(X, K, rngs)]  # (R, K, d)
    limit = np.var(X, axis=1).mean(axis=-1) * tol
    dist = _sq_dist(centers, Xt, x2)  # (R, K, N)
    labels = _argmin_k(dist)
    active = np.ones(R, dtype=bool)
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if not len(idx):
            break
        Xa, lab = X[idx], labels[idx]
        one_hot = (lab[:, None, :] == np.arange(K)[None, :, None]).astype(float)  # (r, K, N)
        counts = one_hot.sum(axis=-1)
        new = np.matmul(one_hot, Xa) / np.maximum(counts, 1)[..., None]
        for j, k in zip(*np.nonzero(counts == 0)):  # relocate an empty cluster to the farthest point
            far = int(np.argmax(dist[idx[j], lab[j], np.arange(N)]))
            new[j, k] = Xa[j, far]
        shift = np.sum((new - centers[idx]) ** 2, axis=(1, 2))
        centers[idx] = new
        dist[idx] = _sq_dist(new, Xt[idx], x2[idx])
        new_labels = _argmin_k(dist[idx])
        same = (new_labels == lab).all(axis=-1)
        labels[idx] = new_labels
        active[idx[same | (shift <= limit[idx])]] = False
    return labels


def fit(X: np.ndarray, rngs: list[np.random.Generator], *, n_components: int, covariance_type: str = "full",
        tol: float = 1e-3, reg_covar: float = 1e-6, max_iter: int = 100, n_init: int = 1,
        init_params: str = "kmeans", device: Any = None, compiled: bool | None = None) -> Mixtures:
    """Initialise and run EM for every replicate, ``n_init`` times each, keeping each replicate's best
    lower bound (the first on a tie, as scikit-learn does). A replicate fails (``failed``) when any of
    its starts does, or when it has fewer points than components. The initialisations are drawn
    with numpy; EM runs on ``device`` (a torch device) when given, else on the CPU: compiled
    (:mod:`.em_kernels`, the default there) or in numpy arrays (``compiled=False``, this module)."""
    compiled = device is None if compiled is None else compiled
    if compiled and device is not None:
        raise ValueError("compiled EM runs on the CPU with numpy arrays: device must be None")
    R, N, _ = X.shape
    failed: dict[int, str] = {}
    if N < n_components:
        return _all_failed(X, n_components, f"Expected n_samples >= n_components but got n_components = "
                                            f"{n_components}, n_samples = {N}")
    finite = np.isfinite(X).reshape(R, -1).all(axis=1)
    failed.update({int(r): "training data contains non-finite values" for r in np.flatnonzero(~finite)})
    Xs = np.where(finite[:, None, None], X, 0.0)
    best: Mixtures | None = None
    for _ in range(n_init):  # starts one after another: each replicate's generator is used in order
        resp = initial_responsibilities(Xs, n_components, init_params, rngs, compiled=compiled)
        if compiled:
            from .em_kernels import initial_parameters as compiled_initial

            init = compiled_initial(Xs, resp, reg_covar, covariance_type)
        else:
            init = initial_parameters(Xs, resp, reg_covar, covariance_type)
        failed.update(init.failed)
        skip = np.isin(np.arange(R), list(failed))
        if compiled:
            from .em_kernels import em as compiled_em

            run = compiled_em(Xs, init, covariance_type=covariance_type, tol=tol, max_iter=max_iter,
                              reg_covar=reg_covar, skip=skip)
        elif device is None:
            run = em(Xs, init, covariance_type=covariance_type, tol=tol, max_iter=max_iter, reg_covar=reg_covar,
                     skip=skip)
        else:
            run = _em_on(device, Xs, init, covariance_type=covariance_type, tol=tol, max_iter=max_iter,
                         reg_covar=reg_covar, skip=skip)
        failed.update(run.failed)
        if best is None:
            best = run
            continue
        better = run.lower_bound > best.lower_bound
        for name in ("weights", "means", "covariances", "precisions_cholesky", "lower_bound", "n_iter", "converged"):
            a, b = getattr(best, name), getattr(run, name)
            setattr(best, name, np.where(better.reshape((R,) + (1,) * (a.ndim - 1)), b, a))
    best.failed = dict(sorted(failed.items()))
    return best


def _em_on(device: Any, X: np.ndarray, init: Mixtures, **kwargs: Any) -> Mixtures:
    """:func:`em` on a torch device, numpy in and out."""
    import torch

    def to(a: Any) -> Any:
        return None if a is None else torch.as_tensor(np.ascontiguousarray(a), device=device)

    run = em(to(X), Mixtures(to(init.weights), to(init.means), to(init.covariances), to(init.precisions_cholesky)),
             **kwargs)
    out = Mixtures(*(a.cpu().numpy() for a in (run.weights, run.means, run.covariances, run.precisions_cholesky)))
    out.lower_bound, out.n_iter, out.converged = (a.cpu().numpy() for a in (run.lower_bound, run.n_iter, run.converged))
    out.failed = run.failed
    return out


def _all_failed(X: np.ndarray, K: int, why: str) -> Mixtures:
    R, _, d = X.shape
    nan = np.full((R, K), np.nan)
    out = Mixtures(nan, np.full((R, K, d), np.nan), np.full((R, K, d, d), np.nan), np.full((R, K, d, d), np.nan))
    out.lower_bound, out.n_iter, out.converged = np.full(R, -np.inf), np.zeros(R, np.int64), np.zeros(R, bool)
    out.failed = {r: why for r in range(R)}
    return out
