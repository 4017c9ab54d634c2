"""Compiled EM and k-means for many Gaussian mixtures: :mod:`.batched_em`'s steps, one replicate at
a time inside one compiled call (numba), on the CPU.

Why a second implementation: the array version (:func:`.batched_em.em`) makes about sixty numpy
passes over (R, K, N) arrays per EM iteration, each allocating its result, and keeps every
replicate in the batch until the slowest converges; it stops at about 10x scikit-learn's loop.
Here an iteration is a few tight loops along a replicate's points (the log densities, one exp a
point for two components, the weighted sums of the M-step, the centred covariance sums), in
scratch arrays allocated once per call, and each replicate stops at its own convergence. The arithmetic is scikit-learn's (the same estimates, ``10 * eps``
padding, ``reg_covar``, precisions through the Cholesky factor, the lower bound and its ``tol``
rule), so results agree with scikit-learn and with the array version to rounding; the tests
check 1e-6 against scikit-learn for every covariance type and the array version to 1e-9.

Every covariance type runs through the full (K, d, d) form inside (a tied covariance is copied to
each component, a diagonal or spherical one is a diagonal matrix); :func:`em` converts back.
Randomness stays outside: k-means takes each replicate's draws, made by the caller from that
replicate's generator in scikit-learn's order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .batched_em import COVARIANCE_TYPES, EPS, ILL_DEFINED, Mixtures

LOG_2PI = math.log(2 * math.pi)


def compiled(fn):
    """numba's compiled ``fn``, its machine code cached on disk: compiling every kernel took about
    30 s here, once; loading them from the cache takes under a second."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # no writable cache location (a read-only install without a home): compile per process
        return njit(nogil=True)(fn)
_TYPE_CODE = {name: i for i, name in enumerate(COVARIANCE_TYPES)}  # full 0, tied 1, diag 2, spherical 3


# -- small dense linear algebra on (d, d) blocks ----------------------------------------------------
@compiled
def _precision_cholesky(cov: np.ndarray, out: np.ndarray) -> bool:
    """``out`` = inv(cholesky(cov)).T (scikit-learn's ``precisions_cholesky_``); False when ``cov`` is
    not positive definite (LAPACK's test: a pivot that is not > 0)."""
    d = cov.shape[0]
    L = np.zeros((d, d))
    for j in range(d):
        s = cov[j, j]
        for m in range(j):
            s -= L[j, m] * L[j, m]
        if not s > 0.0:
            return False
        L[j, j] = math.sqrt(s)
        for i in range(j + 1, d):
            t = cov[i, j]
            for m in range(j):
                t -= L[i, m] * L[j, m]
            L[i, j] = t / L[j, j]
    # inv(L) by forward substitution, column by column; stored transposed (upper triangular).
    for c in range(d):
        for i in range(d):
            if i < c:
                out[c, i] = 0.0
                continue
            t = 1.0 if i == c else 0.0
            for m in range(c, i):
                t -= L[i, m] * out[c, m]
            out[c, i] = t / L[i, i]
    return True


# -- one replicate's EM ---------------------------------------------------------------------------------
@compiled
def _dot(a, b):
    """sum(a * b) over two contiguous rows, in four running sums: the add chain, not the arithmetic,
    bounds a plain loop (the order is fixed, so the result is the same on every machine)."""
    n = a.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    m = n - n % 4
    for i in range(0, m, 4):
        s0 += a[i] * b[i]
        s1 += a[i + 1] * b[i + 1]
        s2 += a[i + 2] * b[i + 2]
        s3 += a[i + 3] * b[i + 3]
    for i in range(m, n):
        s0 += a[i] * b[i]
    return (s0 + s1) + (s2 + s3)


@compiled
def _dot3(a, b, c):
    """sum(a * b * c), in four running sums like :func:`_dot`."""
    n = a.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    m = n - n % 4
    for i in range(0, m, 4):
        s0 += a[i] * b[i] * c[i]
        s1 += a[i + 1] * b[i + 1] * c[i + 1]
        s2 += a[i + 2] * b[i + 2] * c[i + 2]
        s3 += a[i + 3] * b[i + 3] * c[i + 3]
    for i in range(m, n):
        s0 += a[i] * b[i] * c[i]
    return (s0 + s1) + (s2 + s3)


@compiled
def _normalise(resp, top, tmp):
    """resp (K, N) <- exp(resp - top) with ``top`` each point's largest (0 where that is not finite),
    ``tmp`` <- their sums over components."""
    K, N = resp.shape
    for n in range(N):
        top[n] = resp[0, n]
    for k in range(1, K):
        row = resp[k]
        for n in range(N):
            if row[n] > top[n]:
                top[n] = row[n]
    for n in range(N):
        if not math.isfinite(top[n]):
            top[n] = 0.0
    for k in range(K):
        row = resp[k]
        for n in range(N):  # exp(0) is 1: the top component costs no call
            v = row[n] - top[n]
            row[n] = 1.0 if v == 0.0 else math.exp(v)
    for n in range(N):
        tmp[n] = resp[0, n]
    for k in range(1, K):
        row = resp[k]
        for n in range(N):
            tmp[n] += row[n]


@compiled
def _normalise_two(a, b, top, tmp):
    """:func:`_normalise` for two components, bit for bit: one exp a point (the other term is
    exp(0) = 1) and no unpredictable branch, which made the E-step a third faster."""
    for n in range(a.shape[0]):
        x, y = a[n], b[n]
        t = x if x >= y else y
        if math.isfinite(t):
            e = math.exp((y if x >= y else x) - t)
            ex = 1.0 if x >= y else e
            ey = e if x >= y else 1.0
        else:  # every log density -inf (rare): as _normalise, against 0
            t = 0.0
            ex, ey = math.exp(x), math.exp(y)
        top[n], a[n], b[n] = t, ex, ey
        tmp[n] = ex + ey


@compiled
def _e_step(Xt, weights, means, prec, resp, top, tmp):
    """Responsibilities ``resp`` (K, N) for transposed data Xt (d, N), and the mean log-likelihood.
    Loops run along N (contiguous) so that the compiler vectorises them; ``top`` and ``tmp`` (N,)
    are scratch."""
    d, N = Xt.shape
    K = weights.shape[0]
    for k in range(K):
        logdet = 0.0
        for i in range(d):
            logdet += math.log(prec[k, i, i])
        const = logdet - 0.5 * d * LOG_2PI + (math.log(weights[k]) if weights[k] > 0 else -math.inf)
        row = resp[k]
        row[:] = 0.0
        for i in range(d):  # y_i = sum_j x_j P_ji - sum_j mu_j P_ji (P upper triangular), as the array version
            c = 0.0
            for j in range(i + 1):
                c += means[k, j] * prec[k, j, i]
            for n in range(N):
                tmp[n] = 0.0
            for j in range(i + 1):
                p = prec[k, j, i]
                xj = Xt[j]
                for n in range(N):
                    tmp[n] += xj[n] * p
            for n in range(N):
                y = tmp[n] - c
                row[n] += y * y
        for n in range(N):
            row[n] = const - 0.5 * row[n]
    if K == 2:
        _normalise_two(resp[0], resp[1], top, tmp)
    else:
        _normalise(resp, top, tmp)
    # sum(log(tmp)) as the logs of products of blocks of tmp: each tmp lies in [1, K] (the top
    # component adds exp(0)), so a block of B < 1000 / log2(K) values cannot overflow, and one log
    # per block replaces one per point.
    block = max(1, min(N, int(1000.0 / math.log2(K)))) if K > 1 else N
    total = 0.0
    for n in range(N):
        total += top[n]
    for s in range(0, N, block):
        prod = 1.0
        for n in range(s, min(s + block, N)):
            prod *= tmp[n]
        total += math.log(prod)
    for n in range(N):
        tmp[n] = 1.0 / tmp[n]
    for k in range(K):
        row = resp[k]
        for n in range(N):
            row[n] *= tmp[n]
    return total / N


@compiled
def _m_step(Xt, resp, xx, ctype, reg_covar, weights, means, cov, prec, diff, ones, initial=False):
    """New weights, means, covariances and precision factors from responsibilities (K, N), in place;
    False when a covariance is not positive definite (the caller then keeps the old parameters).
    ``diff`` (d, N) is scratch, ``ones`` (N,) ones. ``initial``: weights nk / N, not renormalised,
    as scikit-learn's ``_initialize`` sets them."""
    d, N = Xt.shape
    K = resp.shape[0]
    total = 0.0
    nk = np.empty(K)
    for k in range(K):
        nk[k] = _dot(resp[k], ones) + EPS
        total += nk[k]
        for j in range(d):
            means[k, j] = _dot(resp[k], Xt[j]) / nk[k]
    for k in range(K):
        weights[k] = nk[k] / (N if initial else total)
    cov[:] = 0.0
    if ctype == 0:  # full: sums of r (x - mu)(x - mu)^T (the one-pass formula loses a narrow component)
        for k in range(K):
            for i in range(d):
                m = means[k, i]
                x = Xt[i]
                di = diff[i]
                for n in range(N):
                    di[n] = x[n] - m
            for i in range(d):
                for j in range(i + 1):
                    cov[k, i, j] = _dot3(resp[k], diff[i], diff[j]) / nk[k]
                    cov[k, j, i] = cov[k, i, j]
                cov[k, i, i] += reg_covar
    elif ctype == 1:  # tied: (X^T X - sum_k nk mu mu^T) / sum nk, as scikit-learn
        for i in range(d):
            for j in range(d):
                m2 = 0.0
                for k in range(K):
                    m2 += nk[k] * means[k, i] * means[k, j]
                cov[0, i, j] = (xx[i, j] - m2) / total
            cov[0, i, i] += reg_covar
        for k in range(1, K):
            cov[k] = cov[0]
    else:  # diag, spherical: r * x**2 sums over nk, less the squared means
        for k in range(K):
            c = 0.0
            for j in range(d):
                x = Xt[j]
                di = diff[j]
                for n in range(N):
                    di[n] = x[n] * x[n]
                v = _dot(resp[k], di) / nk[k] - means[k, j] ** 2 + reg_covar
                if ctype == 2:
                    cov[k, j, j] = v
                c += v
            if ctype == 3:
                for j in range(d):
                    cov[k, j, j] = c / d
    for k in range(K):
        if not _precision_cholesky(cov[k], prec[k]):
            return False
    return True


@compiled
def _em_batch(Xt, weights, means, cov, prec, skip, ctype, tol, max_iter, reg_covar,
              lower_bound, n_iter, converged, failed):
    """EM for each replicate of the transposed data Xt (R, d, N) from the parameters in ``weights``,
    ``means``, ``cov`` and ``prec`` (full forms), which it overwrites with the fits."""
    R, d, N = Xt.shape
    K = weights.shape[1]
    resp = np.empty((K, N))
    top, tmp, ones = np.empty(N), np.empty(N), np.ones(N)
    diff = np.empty((d, N))
    xx = np.zeros((d, d))
    new_w, new_mu = np.empty(K), np.empty((K, d))
    new_cov, new_prec = np.empty((K, d, d)), np.empty((K, d, d))
    for r in range(R):
        lower_bound[r] = -math.inf
        n_iter[r] = 0
        converged[r] = False
        failed[r] = False
        if skip[r]:
            continue
        x = Xt[r]
        if ctype == 1:  # X^T X does not change between iterations
            for i in range(d):
                for j in range(d):
                    xx[i, j] = _dot(x[i], x[j])
        for it in range(1, max_iter + 1):
            lower = _e_step(x, weights[r], means[r], prec[r], resp, top, tmp)
            ok = _m_step(x, resp, xx, ctype, reg_covar, new_w, new_mu, new_cov, new_prec, diff, ones)
            if ok:
                weights[r], means[r], cov[r], prec[r] = new_w, new_mu, new_cov, new_prec
            change = lower - lower_bound[r]
            lower_bound[r] = lower
            n_iter[r] = it
            if abs(change) < tol:
                converged[r] = True
            if not ok:
                failed[r] = True
            if converged[r] or failed[r]:
                break


@compiled
def _initial_batch(Xt, resp, ctype, reg_covar, weights, means, cov, prec, failed):
    """Each replicate's parameters from its initial responsibilities ``resp`` (R, K, N)."""
    R, d, N = Xt.shape
    ones, diff, xx = np.ones(N), np.empty((d, N)), np.zeros((d, d))
    for r in range(R):
        x = Xt[r]
        if ctype == 1:
            for i in range(d):
                for j in range(d):
                    xx[i, j] = _dot(x[i], x[j])
        failed[r] = not _m_step(x, resp[r], xx, ctype, reg_covar, weights[r], means[r], cov[r], prec[r], diff, ones,
                                True)


def initial_parameters(X: np.ndarray, resp: np.ndarray, reg_covar: float, covariance_type: str) -> Mixtures:
    """:func:`.batched_em.initial_parameters` compiled."""
    X = np.asarray(X, dtype=float)
    R, N, d = X.shape
    K = resp.shape[1]
    weights, means = np.empty((R, K)), np.empty((R, K, d))
    cov, prec = np.empty((R, K, d, d)), np.empty((R, K, d, d))
    failed = np.empty(R, dtype=bool)
    _initial_batch(np.ascontiguousarray(np.swapaxes(X, 1, 2)), np.ascontiguousarray(resp, dtype=float),
                   _TYPE_CODE[covariance_type], float(reg_covar), weights, means, cov, prec, failed)
    mix = Mixtures(weights, means, _from_full(cov, covariance_type), _from_full(prec, covariance_type))
    mix.failed = {int(r): ILL_DEFINED for r in np.flatnonzero(failed)}
    return mix


def _as_full(a: np.ndarray, covariance_type: str, K: int, d: int) -> np.ndarray:
    """A covariance type's (R, ...) covariance or precision-factor arrays as (R, K, d, d) matrices."""
    a = np.asarray(a, dtype=float)
    R = a.shape[0]
    if covariance_type == "full":
        return np.array(a, order="C")  # a copy (EM writes into it), C-ordered (one compiled signature)
    if covariance_type == "tied":
        return np.repeat(a[:, None], K, axis=1)
    diag = a if covariance_type == "diag" else np.repeat(a[..., None], d, axis=-1)
    out = np.zeros((R, K, d, d))
    out[..., np.arange(d), np.arange(d)] = diag
    return out


def _from_full(a: np.ndarray, covariance_type: str) -> np.ndarray:
    """Back to the covariance type's own shapes (the inverse of :func:`_as_full`)."""
    if covariance_type == "full":
        return a
    if covariance_type == "tied":
        return np.ascontiguousarray(a[:, 0])
    diag = np.ascontiguousarray(np.diagonal(a, axis1=-2, axis2=-1))
    return diag if covariance_type == "diag" else np.ascontiguousarray(diag[..., 0])


def em(X: np.ndarray, init: Mixtures, *, covariance_type: str = "full", tol: float = 1e-3, max_iter: int = 100,
       reg_covar: float = 1e-6, skip: np.ndarray | None = None) -> Mixtures:
    """:func:`.batched_em.em` compiled: the same arguments, the same results to rounding (numpy only).

    >>> import numpy as np
    >>> from modelcollapse.models.batched_em import initial_parameters
    >>> X = np.random.default_rng(0).normal(size=(3, 200, 2))
    >>> resp = np.eye(2)[np.arange(200) % 2].T[None].repeat(3, 0)  # (R, K, N)
    >>> fit = em(X, initial_parameters(X, resp, 1e-6, "full"), covariance_type="full")
    >>> fit.weights.shape, bool(fit.converged.all())
    ((3, 2), True)
    """
    X = np.ascontiguousarray(X, dtype=float)
    R, _, d = X.shape
    K = init.weights.shape[1]
    weights = np.array(init.weights, dtype=float, order="C")
    means = np.array(init.means, dtype=float, order="C")
    prec = _as_full(init.precisions_cholesky, covariance_type, K, d)
    cov = (np.full((R, K, d, d), np.nan) if init.covariances is None
           else _as_full(init.covariances, covariance_type, K, d))
    skip = np.zeros(R, dtype=bool) if skip is None else np.asarray(skip, dtype=bool)
    lower, n_iter = np.empty(R), np.empty(R, dtype=np.int64)
    converged, failed = np.empty(R, dtype=bool), np.empty(R, dtype=bool)
    Xt = np.ascontiguousarray(np.swapaxes(X, 1, 2))  # (R, d, N): every loop runs along N
    _em_batch(Xt, weights, means, cov, prec, skip, _TYPE_CODE[covariance_type], float(tol), int(max_iter),
              float(reg_covar), lower, n_iter, converged, failed)
    mix = Mixtures(weights, means, _from_full(cov, covariance_type), _from_full(prec, covariance_type))
    mix.lower_bound, mix.n_iter, mix.converged = lower, n_iter, converged
    mix.failed = {int(r): ILL_DEFINED for r in np.flatnonzero(failed)}
    return mix


# -- k-means (Lloyd's iterations from k-means++ seeds) -----------------------------------------------
@compiled
def _sq_dist(c, xt, x2, out):
    """``out`` (N,) = max(|c|^2 - 2 c.x + |x|^2, 0) for the points of xt (d, N): the expanded form
    k-means++ and Lloyd use (scikit-learn's, and the array version's)."""
    d, N = xt.shape
    c2 = 0.0
    for j in range(d):
        c2 += c[j] * c[j]
    for n in range(N):
        out[n] = 0.0
    for j in range(d):
        cj = c[j]
        x = xt[j]
        for n in range(N):
            out[n] += cj * x[n]
    for n in range(N):
        v = c2 - 2.0 * out[n] + x2[n]
        out[n] = v if v > 0.0 else 0.0


@compiled
def _seeds(xt, x2, first, u, K, out):
    """k-means++ seeds of one replicate into ``out`` (K,): greedy, with ``u.shape[1]`` local trials
    per centre (``u``, uniform draws, (K - 1, trials)), as scikit-learn's ``_kmeans_plusplus``."""
    N = xt.shape[1]
    trials = u.shape[1]
    closest, cumulative = np.empty(N), np.empty(N)
    cand_dist, best_dist = np.empty(N), np.empty(N)
    out[0] = first
    _sq_dist(xt[:, first], xt, x2, closest)
    potential = 0.0
    for n in range(N):
        potential += closest[n]
    for c in range(1, K):
        acc = 0.0
        for n in range(N):
            acc += closest[n]
            cumulative[n] = acc
        best_pot, best_idx = math.inf, -1
        for t in range(trials):
            cand = min(np.searchsorted(cumulative, u[c - 1, t] * potential), N - 1)
            _sq_dist(xt[:, cand], xt, x2, cand_dist)
            pot = 0.0
            for n in range(N):
                if closest[n] < cand_dist[n]:
                    cand_dist[n] = closest[n]
                pot += cand_dist[n]
            if pot < best_pot:
                best_pot, best_idx = pot, cand
                best_dist[:] = cand_dist
        out[c] = best_idx
        potential = best_pot
        closest[:] = best_dist


@compiled
def _assign(xt, x2, centers, dist, best, labels):
    """Each point's nearest centre (the first on a tie) into ``labels``, its distance into ``best``;
    whether any label changed. ``dist`` (K, N) is scratch."""
    K = centers.shape[0]
    N = xt.shape[1]
    for k in range(K):
        _sq_dist(centers[k], xt, x2, dist[k])
    changed = False
    for n in range(N):
        b, lab = dist[0, n], 0
        for k in range(1, K):
            if dist[k, n] < b:
                b, lab = dist[k, n], k
        if lab != labels[n]:
            changed = True
        labels[n], best[n] = lab, b
    return changed


@compiled
def _lloyd(xt, x2, centers, labels, max_iter, limit):
    """Lloyd's iterations for one replicate from ``centers`` (K, d), in place, until the labels stop
    changing or the centres move by at most ``limit`` (squared); an emptied cluster takes the point
    farthest from its own centre."""
    d, N = xt.shape
    K = centers.shape[0]
    dist, best = np.empty((K, N)), np.empty(N)
    mask = np.empty(N)
    new = np.empty((K, d))
    labels[:] = -1
    _assign(xt, x2, centers, dist, best, labels)
    for _ in range(max_iter):
        far = -1
        for k in range(K):
            count = 0.0
            for n in range(N):
                mask[n] = 1.0 if labels[n] == k else 0.0
                count += mask[n]
            if count == 0:
                if far < 0:
                    far = int(np.argmax(best))
                new[k] = xt[:, far]
                continue
            for j in range(d):
                new[k, j] = _dot(mask, xt[j]) / count
        shift = 0.0
        for k in range(K):
            for j in range(d):
                shift += (new[k, j] - centers[k, j]) ** 2
        centers[:] = new
        changed = _assign(xt, x2, centers, dist, best, labels)
        if not changed or shift <= limit:
            break


@compiled
def _kmeans_batch(Xt, first, u, K, lloyd, max_iter, tol, seeds, labels):
    R, d, N = Xt.shape
    x2 = np.empty(N)
    centers = np.empty((K, d))
    for r in range(R):
        xt = Xt[r]
        x2[:] = 0.0
        for j in range(d):
            for n in range(N):
                x2[n] += xt[j, n] * xt[j, n]
        _seeds(xt, x2, first[r], u[r], K, seeds[r])
        if not lloyd:
            continue
        for k in range(K):
            centers[k] = xt[:, seeds[r, k]]
        var = 0.0  # the data's mean variance over features, for the stopping rule
        for j in range(d):
            m = 0.0
            for n in range(N):
                m += xt[j, n]
            m /= N
            v = 0.0
            for n in range(N):
                v += (xt[j, n] - m) ** 2
            var += v / N
        _lloyd(xt, x2, centers, labels[r], max_iter, var / d * tol)


def _draws(rngs: list[np.random.Generator], N: int, K: int) -> tuple[np.ndarray, np.ndarray]:
    """Each replicate's k-means++ draws, in the order :func:`.batched_em.kmeans_plusplus` makes them:
    the first centre's index, then ``2 + log(K)`` uniforms per further centre."""
    trials = 2 + int(np.log(K))
    first = np.array([g.integers(N) for g in rngs], dtype=np.int64)
    u = np.stack([g.uniform(size=(K - 1) * trials).reshape(K - 1, trials) for g in rngs])
    return first, u


def kmeans_plusplus(X: np.ndarray, n_clusters: int, rngs: list[np.random.Generator]) -> np.ndarray:
    """:func:`.batched_em.kmeans_plusplus` compiled: seed indices (R, K)."""
    return _kmeans(X, n_clusters, rngs, lloyd=False)[0]


def kmeans(X: np.ndarray, n_clusters: int, rngs: list[np.random.Generator], max_iter: int = 300,
           tol: float = 1e-4) -> np.ndarray:
    """:func:`.batched_em.kmeans` compiled: labels (R, N)."""
    return _kmeans(X, n_clusters, rngs, lloyd=True, max_iter=max_iter, tol=tol)[1]


def _kmeans(X: np.ndarray, K: int, rngs: list[np.random.Generator], *, lloyd: bool, max_iter: int = 300,
            tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    R, N, _ = X.shape
    first, u = _draws(rngs, N, K)
    seeds = np.zeros((R, K), dtype=np.int64)
    labels = np.zeros((R, N), dtype=np.int64)
    _kmeans_batch(np.ascontiguousarray(np.swapaxes(X, 1, 2)), first, u, K, lloyd, max_iter, tol, seeds, labels)
    return seeds, labels


# -- sampling -------------------------------------------------------------------------------------
@compiled
def _mixture_draws(u, z, cdf, means, roots, out):
    R, n, d = z.shape
    K = cdf.shape[1]
    for r in range(R):
        for i in range(n):
            c = 0  # numpy's searchsorted(cdf, u, side="right"): the number of cdf entries <= u
            while c < K - 1 and cdf[r, c] <= u[r, i]:
                c += 1
            for e in range(d):
                v = 0.0
                for j in range(d):
                    v += z[r, i, j] * roots[r, c, j, e]
                out[r, i, e] = means[r, c, e] + v


def mixture_draws(u: np.ndarray, z: np.ndarray, weights: np.ndarray, means: np.ndarray,
                  roots: np.ndarray) -> np.ndarray:
    """Draws of R mixtures from uniforms ``u`` (R, n) and standard normals ``z`` (R, n, d): the
    component is the one ``Generator.choice(K, p=weights)`` picks from the same uniforms (the
    normalised cumulative weights searched on the right), the point ``means[c] + z @ roots[c]``."""
    p = np.asarray(weights, dtype=float)
    cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
    cdf /= cdf[..., -1:]
    out = np.empty(z.shape)
    _mixture_draws(np.ascontiguousarray(u, dtype=float), np.ascontiguousarray(z, dtype=float), cdf,
                   np.ascontiguousarray(means, dtype=float), np.ascontiguousarray(roots, dtype=float), out)
    return out
