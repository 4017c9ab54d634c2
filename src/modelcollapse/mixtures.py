"""Closed forms for Gaussian mixtures: every continuous family here is one.

A Gaussian is a one-component mixture and a Gaussian KDE is an equal-weight mixture
over its training points, so distances and tail masses computed here apply to all of
them exactly, with no sampling noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Mixture = tuple[np.ndarray, np.ndarray, np.ndarray]  # weights (k,), means (k, d), covariances (k, d, d)


def replicate_mixtures(model: Any) -> list[Mixture | None]:
    """Each replicate's fitted density as a Gaussian mixture (None for a stopped replicate), from a
    model for all replicates: one model per replicate, or a batched one (leading replicate axis)."""
    from .models.base import ReplicatedModel

    if isinstance(model, ReplicatedModel):
        return [m.as_mixture() if m is not None else None for m in model.models]
    w, m, c = model.as_mixture()
    return [(w[r], m[r], c[r]) for r in range(len(w))]


def batched_moments(mix: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Mean (R, d) and covariance (R, d, d) of R mixtures given with a leading replicate axis
    (exactly the component's own mean and covariance for a one-component mixture)."""
    w, m, c = mix
    w = w / w.sum(axis=-1, keepdims=True)
    mean = np.einsum("rk,rkd->rd", w, m)
    centred = m - mean[:, None, :]
    return mean, np.einsum("rk,rkij->rij", w, c) + np.einsum("rk,rki,rkj->rij", w, centred, centred)


def _cross_log_overlap(m1: np.ndarray, c1: np.ndarray, m2: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """log ∫ N(x; m1_i, c1_i) N(x; m2_j, c2_j) dx = log N(m1_i; m2_j, c1_i + c2_j), shape (k1, k2)."""
    from scipy.linalg import solve_triangular  # scipy loads on first use: `show` and `presets` stay instant

    diff = m1[:, None, :] - m2[None, :, :]
    d = m1.shape[1]
    if _shared(c1) and _shared(c2):
        # KDEs and tied mixtures: one covariance for every pair, so one factorisation
        # instead of k1 * k2 (a 500-point KDE took 40 ms per distance the general way).
        chol = np.linalg.cholesky(c1[0] + c2[0])
        sol = solve_triangular(chol, diff.reshape(-1, d).T, lower=True, check_finite=False).T.reshape(diff.shape)
        logdet = 2 * np.sum(np.log(np.diag(chol)))
    else:
        chol = np.linalg.cholesky(c1[:, None] + c2[None, :])
        sol = np.linalg.solve(chol, diff[..., None])[..., 0]
        logdet = 2 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    return -0.5 * (np.sum(sol**2, axis=-1) + logdet + d * np.log(2 * np.pi))


def _shared(cov: np.ndarray) -> bool:
    return bool(np.all(cov == cov[0]))


def logsumexp(a: np.ndarray, axis: int | None = None) -> Any:
    """log(sum(exp(a))) over ``axis`` (every element when None), shifted by the maximum; an all
    -inf slice gives -inf. scipy's general version cost three times more at the sizes of a chain
    (the L2 distance of a 400-point KDE calls it 400 times a generation)."""
    top = np.max(a, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        out = np.log(np.sum(np.exp(a - top), axis=axis)) + np.squeeze(top, axis=axis)
    return float(out) if axis is None else out


def _log_inner(a: Mixture, b: Mixture, chunk: int = 256) -> float:
    """log ∫ f_a f_b, chunked so a 1000-point KDE stays within memory."""
    wa, ma, ca = a
    wb, mb, cb = b
    parts = []
    for s in range(0, len(wa), chunk):
        lo = _cross_log_overlap(ma[s : s + chunk], ca[s : s + chunk], mb, cb)
        parts.append(logsumexp(lo + np.log(wa[s : s + chunk])[:, None] + np.log(wb)[None, :]))
    return logsumexp(np.array(parts))


def l2_distance(a: Mixture, b: Mixture) -> float:
    """sqrt(∫ (f_a - f_b)^2 dx): the paper's distance between fitted and original mixtures."""
    aa, bb, ab = np.exp(_log_inner(a, a)), np.exp(_log_inner(b, b)), np.exp(_log_inner(a, b))
    # Round-off can push a tiny true value below zero.
    return float(np.sqrt(max(aa + bb - 2 * ab, 0.0)))


def moments(mix: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of a mixture."""
    w, m, c = mix
    w = w / w.sum()
    mean = w @ m
    centred = m - mean
    cov = np.einsum("k,kij->ij", w, c) + np.einsum("k,ki,kj->ij", w, centred, centred)
    return mean, cov


def marginal_cdf(mix: Mixture, x: np.ndarray, axis: int) -> np.ndarray:
    """P(X_axis <= x) for each value in ``x``."""
    from scipy.special import ndtr

    w, m, c = mix
    sd = np.sqrt(np.clip(c[:, axis, axis], 0.0, None))
    x = np.asarray(x, dtype=float)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - m[:, axis]) / sd
    # A zero-variance component is a point mass: all of it sits at its mean.
    z = np.where(sd > 0, z, np.where(x >= m[:, axis], np.inf, -np.inf))
    return np.sum(w * ndtr(z), axis=-1) / w.sum()


def marginal_quantile(mix: Mixture, q: float, axis: int) -> float:
    """The q-quantile of one coordinate, by root finding on the exact marginal CDF."""
    from scipy.optimize import brentq

    w, m, c = mix
    sd = np.sqrt(c[:, axis, axis])
    lo, hi = float(np.min(m[:, axis] - 12 * sd)), float(np.max(m[:, axis] + 12 * sd))
    return float(brentq(lambda x: marginal_cdf(mix, x, axis) - q, lo, hi, xtol=1e-12))


def tail_mass(mix: Mixture, lower: np.ndarray, upper: np.ndarray) -> float:
    """Mean over axes of P(X_j < lower_j or X_j > upper_j)."""
    shares = [
        marginal_cdf(mix, lower[j], j) + 1.0 - marginal_cdf(mix, upper[j], j) for j in range(len(lower))
    ]
    return float(np.mean(shares))


# -- the same for many mixtures at once: R mixtures with K components each, leading axis R ----------
def stacked(mixes: list[Mixture | None], max_components: int = 64) -> tuple[np.ndarray, Mixture] | None:
    """(indices of the mixtures given, their stacked arrays) when they all have the same number of
    components, at most ``max_components`` (pairs of components are formed: a KDE stays per mixture)."""
    idx = [i for i, m in enumerate(mixes) if m is not None]
    if not idx or len({mixes[i][0].shape[0] for i in idx}) != 1 or mixes[idx[0]][0].shape[0] > max_components:
        return None
    return np.array(idx), tuple(np.stack([mixes[i][j] for i in idx]) for j in range(3))  # type: ignore[return-value]


def _batched_log_inner(a: Mixture, b: Mixture) -> np.ndarray:
    """log ∫ f_a f_b for R pairs of mixtures (R,); +inf where a sum of covariances is singular (a point
    mass against itself), which :func:`batched_l2_distance` reports as an infinite distance."""
    from .models.batched_em import _cholesky

    wa, ma, ca = a
    wb, mb, cb = b
    d = ma.shape[-1]
    diff = ma[:, :, None, :] - mb[:, None, :, :]  # (R, Ka, Kb, d)
    R, Ka, Kb = diff.shape[:3]
    chol, bad = _cholesky((ca[:, :, None] + cb[:, None, :]).reshape(R * Ka * Kb, d, d))
    bad = bad.reshape(R, Ka * Kb).any(axis=1)
    chol = np.where(bad.repeat(Ka * Kb)[:, None, None], np.eye(d), chol).reshape(R, Ka, Kb, d, d)
    sol = np.linalg.solve(chol, diff[..., None])[..., 0]
    logdet = 2 * np.sum(np.log(np.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    log_overlap = -0.5 * (np.sum(sol**2, axis=-1) + logdet + d * np.log(2 * np.pi))
    terms = (log_overlap + np.log(wa)[:, :, None] + np.log(wb)[:, None, :]).reshape(R, -1)
    return np.where(bad, np.inf, logsumexp(terms, axis=-1))


def batched_l2_distance(a: Mixture, b: Mixture) -> np.ndarray:
    """:func:`l2_distance` between each of R mixtures ``a`` and one mixture ``b`` (R,); inf for a
    mixture with a point mass, as the per-mixture function's callers report it."""
    R = a[0].shape[0]
    bb = np.exp(_log_inner(b, b))
    b_rep = tuple(np.broadcast_to(x, (R,) + x.shape) for x in b)
    with np.errstate(over="ignore", invalid="ignore"):
        aa, ab = np.exp(_batched_log_inner(a, a)), np.exp(_batched_log_inner(a, b_rep))  # type: ignore[arg-type]
        return np.where(np.isfinite(aa), np.sqrt(np.maximum(aa + bb - 2 * ab, 0.0)), np.inf)


def batched_tail_mass(mix: Mixture, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """:func:`tail_mass` of each of R mixtures (R,)."""
    from scipy.special import ndtr

    w, m, c = mix
    shares = []
    for j in range(len(lower)):
        sd = np.sqrt(np.clip(c[..., j, j], 0.0, None))  # (R, K)
        cdf = []
        for x in (lower[j], upper[j]):
            with np.errstate(divide="ignore", invalid="ignore"):
                z = (x - m[..., j]) / sd
            z = np.where(sd > 0, z, np.where(x >= m[..., j], np.inf, -np.inf))
            cdf.append(np.sum(w * ndtr(z), axis=-1) / w.sum(axis=-1))
        shares.append(cdf[0] + 1.0 - cdf[1])
    return np.mean(shares, axis=0)
