"""Closed forms for the Gaussian chain: a Gaussian refitted each generation on M_g examples.

Notation: the original is N(mu0, Sigma0) in d dimensions; ``sizes[g]`` = M_g (generation 0 is fitted
on M_0 real examples); the covariance divisor D is the set size N (``mle``) or N - 1 (``unbiased``).
Every function returns an array over generations 0..G.

Every expectation of the chain here is a multiple of Sigma0 (every random term is a Gaussian or
Wishart draw whose scale is an earlier fit), so each result is a scalar recursion:
E[Sigma_g] = s_g Sigma0 and E[(mu_g - mu0)(mu_g - mu0)^T] = m_g Sigma0, giving
E[variance_ratio_g] = s_g and E[mean_error_g] = m_g tr(Sigma0).

``replace`` (Shumailov et al. 2024, Nature, the single-Gaussian result of its supplementary information):
given the previous fit, D_g Sigma_g is Wishart(M_g - 1, Sigma_{g-1}) and mu_g ~ N(mu_{g-1}, Sigma_{g-1}/M_g),
so with c_j = (M_j - 1) / D_j: s_g = prod_{j<=g} c_j and m_g = sum_{j<=g} (prod_{i<j} c_i) / M_j.
For ``mle`` the sum telescopes to 1 - prod c_j (bounded); for ``unbiased`` it is sum 1/M_j, which
grows without bound unless the sizes grow fast enough that sum 1/M_g converges (the paper's condition).

``accumulate`` (Gerstgrasser et al. 2024, "Is model collapse inevitable?"; Dey and Donoho 2024, "Universality
of the pi^2/6 pathway in avoiding model collapse"): generation g is fitted on the real set and every synthetic
set so far. Each set's mean is the previous fit's mean plus an independent error, so the fitted mean is a
fixed linear combination of those errors and s_g, m_g follow exactly by a recursion that is O(g) per
generation. With a constant size the mean error stays below pi^2/6 times the generation-0 error (times the
largest variance ratio so far; :func:`accumulate_mean_error_bound`).

``accumulate_subsample``: generation g is fitted on M_g examples drawn without replacement from the pool;
the subsample has the pool's mean plus a finite-population error and the pool's variance in expectation,
an exact O(G^2) recursion (:func:`subsample_moments`).

``mix`` and ``fresh`` with real fraction f: round(f M_g) real examples (a fresh subset of generation 0's real
set for ``mix``, new draws for ``fresh``) and the rest from generation g-1: a linear recursion in (s, m, c),
c_g the correlation of the mean error with generation 0's real mean (zero for fresh).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve
from scipy.special import digamma, polygamma
from scipy.stats import chi2




def divisors(sizes: np.ndarray, estimator: str) -> np.ndarray:
    sizes = np.asarray(sizes, dtype=float)
    if estimator == "mle":
        return sizes
    if estimator == "unbiased":
        return sizes - 1.0
    raise ValueError(f"estimator: {estimator!r} is not 'mle' or 'unbiased'")


# -- replace --------------------------------------------------------------------------------
def replace_variance_ratio(sizes: np.ndarray, estimator: str) -> np.ndarray:
    """E[tr Sigma_g / tr Sigma0] = prod_{j<=g} (M_j - 1) / D_j under ``replace``: exact in any dimension."""
    sizes = np.asarray(sizes, dtype=float)
    return np.cumprod((sizes - 1.0) / divisors(sizes, estimator))


def replace_variance_ratio_sd(sizes: np.ndarray, estimator: str) -> np.ndarray:
    """The standard deviation of sigma_g^2 / sigma0^2 over replicates in 1-D under ``replace``, exact:
    E[r_g^2] / E[r_g]^2 = prod_j E[chi2_n^2] / n^2 = prod_j (1 + 2 / n_j), n_j = M_j - 1. It grows
    geometrically while the mean shrinks: a few replicates hold the mean, so a replicate average of
    the ratio says little after many generations, and its sample standard error says even less."""
    n = np.asarray(sizes, dtype=float) - 1.0
    return replace_variance_ratio(sizes, estimator) * np.sqrt(np.expm1(np.cumsum(np.log1p(2.0 / n))))


def replace_mean_scale(sizes: np.ndarray, estimator: str) -> np.ndarray:
    """m_g with E[(mu_g - mu0)(mu_g - mu0)^T] = m_g Sigma0 under ``replace``: sum_j s_{j-1} / M_j, s_{-1} = 1."""
    sizes = np.asarray(sizes, dtype=float)
    before = np.r_[1.0, replace_variance_ratio(sizes, estimator)[:-1]]  # s_{g-1}: the scale each set is drawn at
    return np.cumsum(before / sizes)


def sd_ratio_mean(sizes: np.ndarray, estimator: str) -> np.ndarray:
    """E[sigma_g / sigma_0] in 1-D under ``replace``: prod_j E[sqrt(chi2_{M_j-1} / D_j)], each a chi mean
    sqrt(2 / D) Gamma(M/2) / Gamma((M-1)/2) (:func:`.log_chi2.sqrt_chi_mean`, exact to 1e-15 up to M = 10^9)."""
    from .log_chi2 import sqrt_chi_mean

    sizes = np.asarray(sizes, dtype=float)
    return np.exp(np.cumsum(np.log(sqrt_chi_mean(sizes - 1.0, divisors(sizes, estimator)))))


def replace_w2_squared(sizes: np.ndarray, estimator: str, var0: float) -> np.ndarray:
    """E[w2_g^2] in 1-D under ``replace``, exact: W2^2 between two normals is (mu - mu0)^2 + (sigma - sigma0)^2,
    and E[(sigma_g - sigma0)^2] = var0 (s_g - 2 E[sigma_g/sigma0] + 1)."""
    s = replace_variance_ratio(sizes, estimator)
    m = replace_mean_scale(sizes, estimator)
    return var0 * (m + s - 2.0 * sd_ratio_mean(sizes, estimator) + 1.0)


def replace_w2_squared_bound(sizes: np.ndarray, estimator: str, tr0: float) -> np.ndarray:
    """An upper bound on E[w2_g^2] in d > 1: W2^2 = |mu - mu0|^2 + tr S + tr S0 - 2 tr (S0^1/2 S S0^1/2)^1/2
    and the last trace is non-negative, so E[w2^2] <= tr(Sigma0) (m_g + s_g + 1)."""
    return tr0 * (replace_mean_scale(sizes, estimator) + replace_variance_ratio(sizes, estimator) + 1.0)


def replace_kl(sizes: np.ndarray, estimator: str, d: int) -> np.ndarray:
    """E[KL(N(mu_g, Sigma_g) || N(mu0, Sigma0))] under ``replace``, exact in any dimension:
    (1/2) (d s_g + d m_g - d - E[log det Sigma_g / det Sigma0]), the last from the Bartlett decomposition."""
    from .log_chi2 import LogDetLaw

    law = LogDetLaw(np.asarray(sizes), d, estimator)
    s = replace_variance_ratio(sizes, estimator)
    m = replace_mean_scale(sizes, estimator)
    return 0.5 * (d * s + d * m - d - law.mean)


def collapse_probability(sizes: np.ndarray, d: int, estimator: str, threshold: float, *, per_sd: int = 32,
                         max_cells: int = 20_000) -> np.ndarray:
    """P(the chain has collapsed by generation g) under ``replace``: the probability that
    (det Sigma_h / det Sigma0)^(1/d) (in 1-D the variance ratio) fell below ``threshold`` at some generation
    h <= g, a first passage of the random walk L_g = log det ratio, whose steps are independent sums of
    log chi-square terms (:mod:`.log_chi2`).

    Computed by carrying the density of the walks still above the level on a grid of cells (of a 32nd of
    the narrowest step's standard deviation, at most ``max_cells`` of them) and killing what crosses:
    generation 0 is placed exactly from its law; each later step moves mass by whole cells with the exact
    cell probabilities of the step, split between two cells so that its mean is exact. Measured error: a grid
    4 times finer moves no value by more than 3e-5 (M = 2, 6 with d = 3, a power schedule; 1.4e-6 at M = 100),
    and the curve is within Monte Carlo error of 100,000-200,000 simulated walks (M = 2, 5, 100, d = 1 and 3,
    linear and power schedules). About a second for 1000 generations.
    """
    from .log_chi2 import LogDetLaw

    sizes = np.asarray(sizes, dtype=np.int64)
    level = d * np.log(threshold)
    D = divisors(sizes, estimator)
    sds = np.array([np.sqrt(polygamma(1, (M - np.arange(1, d + 1)) / 2).sum()) for M in sizes])
    first = LogDetLaw(sizes[:1], d, estimator)
    top = max(0.0, float(first.mean[0])) + 14 * (float(np.sqrt(np.sum(sds**2))) + sds[0])  # walks never get here
    if top <= level:
        return np.ones(len(sizes))
    h = max(sds.min() / per_sd, (top - level) / max_cells)
    n = int(np.ceil((top - level) / h))
    mass = np.diff(first.cdf(level + h * np.arange(n + 1))[0])  # cell i: [level + i h, level + (i + 1) h)
    out = np.empty(len(sizes))
    out[0] = 1.0 - mass.sum()
    kernels: dict[tuple[int, float], tuple[int, np.ndarray]] = {}
    for g in range(1, len(sizes)):
        key = (int(sizes[g]), float(D[g]))
        if key not in kernels:
            kernels[key] = _step_kernel(key[0], d, key[1], h, reach=n + 1)
        lo, kernel = kernels[key]
        moved = fftconvolve(mass, kernel)  # moved[j] lands in cell j + lo
        mass = np.zeros(n)
        a, b = max(-lo, 0), min(n - lo, len(moved))
        if b > a:
            mass[a + lo : b + lo] = np.clip(moved[a:b], 0.0, None)  # FFT round-off can dip below 0
        out[g] = 1.0 - mass.sum()  # what left the grid crossed the level (nothing reaches the top)
    return np.maximum.accumulate(np.clip(out, 0.0, 1.0))


def _step_kernel(M: int, d: int, D: float, h: float, reach: int) -> tuple[int, np.ndarray]:
    """(first offset, cell probabilities) of one generation's step of the log det ratio, in whole cells of h:
    each of its d log chi-square terms from its exact distribution function, convolved."""
    lo_all, kernel, mean = 0, np.ones(1), 0.0
    for n in M - np.arange(1, d + 1):
        m1, s1 = digamma(n / 2) + np.log(2.0 / D), np.sqrt(polygamma(1, n / 2))
        mean += m1
        lo = max(int(np.floor((m1 - 40 * s1) / h)), -reach)  # further left is below the level anyway
        k = np.arange(lo, int(np.ceil((m1 + 14 * s1) / h)) + 2)
        with np.errstate(over="ignore"):
            c = chi2.cdf(D * np.exp((k - 0.5) * h), n)
        c[0] = 0.0  # the far left tail joins the first cell
        kernel, lo_all = np.convolve(kernel, np.diff(c)), lo_all + lo
    # Whole cells lose up to half a cell of drift a step (all of it for a step narrower than a cell): split the
    # mass between two neighbouring cells so that the step's mean is exact.
    shift = (mean - h * float((lo_all + np.arange(len(kernel))) @ kernel) / kernel.sum()) / h
    whole = int(np.floor(shift))
    return lo_all + whole, np.convolve(kernel, [1.0 - (shift - whole), shift - whole])


def bounded_w2(sizes: np.ndarray) -> float:
    """sum_g 1 / M_g over the run: E[w2^2] of the unbiased chain stays bounded as g grows exactly when this
    series converges (the paper's condition), e.g. M_g growing like g^p with p > 1; it diverges (slowly,
    like log g) for a linear schedule and linearly for a constant one."""
    return float(np.sum(1.0 / np.asarray(sizes, dtype=float)))


# -- accumulate -----------------------------------------------------------------------------
def accumulate_moments(sizes: np.ndarray, estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """(s_g, m_g) under ``accumulate``, exact: generation g is fitted on all N_g = sum_{j<=g} M_j examples.

    Set 0 is the real set (mean mu0 + xi_0, E xi_0^2 = 1 / M_0 in units of Sigma0); set j >= 1 is drawn from
    fit j-1 (mean mu_{j-1} + xi_j, E xi_j^2 = s_{j-1} / M_j). The xi are martingale differences, so:
    the pooled mean moves by mu_g = mu_{g-1} + (M_g / N_g) xi_g, giving m_g = m_{g-1} + (M_g / N_g)^2 v_g;
    set g's mean error has E = a_g = m_{g-1} + v_g; and the pooled scatter is the within-set scatter
    (E = (M_j - 1) s_{j-1} each) plus sum_j M_j |xbar_j - mu0|^2 - N_g |mu_g - mu0|^2, so
    s_g = (sum_j (M_j - 1) s_{j-1} + sum_j M_j a_j - N_g m_g) / D_g. O(G) in all.
    """
    M = np.asarray(sizes, dtype=float)
    s, m = np.empty(len(M)), np.empty(len(M))
    prev_s, prev_m, within, between, N = 1.0, 0.0, 0.0, 0.0, 0.0
    for g, n in enumerate(M):
        v = prev_s / n  # E xi_g^2: set g is drawn at the previous fit's scale
        N += n
        between += n * (prev_m + v)  # M_g a_g
        within += (n - 1.0) * prev_s
        prev_m = m[g] = prev_m + (n / N) ** 2 * v
        D = N if estimator == "mle" else N - 1.0
        prev_s = s[g] = (within + between - N * prev_m) / D
    return s, m


def accumulate_mean_error_bound(sizes: np.ndarray, estimator: str) -> np.ndarray | None:
    """The pi^2/6 bound of Dey and Donoho (2024) on m_g under ``accumulate`` with a constant size M: the fitted
    mean moves by xi_j / (j + 1) at generation j, so m_g = sum_{j<=g} s_{j-1} / (M (j + 1)^2)
    <= (pi^2 / 6) (max_{j<g} s_j) / M: the mean error never exceeds pi^2/6 times the generation-0 error 1 / M,
    scaled by the largest variance ratio so far. None for a varying size (the bound is stated for a constant one)."""
    M = np.asarray(sizes, dtype=float)
    if not np.all(M == M[0]):
        return None
    s, _ = accumulate_moments(M, estimator)
    smax = np.maximum.accumulate(np.maximum(1.0, np.r_[1.0, s[:-1]]))
    return np.pi**2 / 6 * smax / M[0]


def subsample_moments(sizes: np.ndarray, estimator: str) -> tuple[np.ndarray, np.ndarray]:
    """(s_g, m_g) under ``accumulate_subsample``, exact: generation g is fitted on M_g examples drawn without
    replacement from the pool of all N_g = sum_{j<=g} M_j examples so far (generation 0: the whole real set).

    Given the pool, the subsample's mean is the pool's mean P_g plus an error delta_g of variance
    (1/M_g - 1/N_g) S_g^2 (S_g^2 the pool's variance, divisor N_g - 1; finite-population sampling), and its
    covariance (divisor M_g - 1) has expectation S_g^2. The pool's mean is a weighted sum of the set means
    xbar_j, whose covariances C[j, k] = E[(xbar_j - mu0)(xbar_k - mu0)] / Sigma0 follow from
    xbar_k = mu_{k-1} + xi_k = P_{k-1} + delta_{k-1} + xi_k: C[j, k] = sum_{i<k} M_i C[j, i] / N_{k-1} for j < k
    and C[k, k] = m_{k-1} + s_{k-1} / M_k. Running sums make it O(G^2) time and O(G) memory per row.
    """
    M = np.asarray(sizes, dtype=float)
    G = len(M)
    s, m = np.empty(G), np.empty(G)
    R = np.zeros(G)  # R[j] = sum_{i<=current} M_i C[j, i]
    diag = np.empty(G)  # C[j, j]
    N = Q = within = scatter_means = 0.0  # Q = sum_{j,k} M_j M_k C[j, k]
    for g in range(G):
        n = M[g]
        if g == 0:
            col = np.zeros(0)
            diag[0] = 1.0 / n  # the real set's mean error
            within = n - 1.0
        else:
            col = R[:g] / N  # C[j, g] for j < g: set g is centred on the previous fit's mean
            diag[g] = m[g - 1] + s[g - 1] / n
            within += (n - 1.0) * s[g - 1]
        Q += 2.0 * n * float(M[:g] @ col) + n * n * diag[g]
        R[:g] += n * col
        R[g] = float(M[:g] @ col) + n * diag[g]
        N += n
        scatter_means += n * diag[g]
        pool_var = (within + scatter_means - Q / N) / (N - 1.0) if N > 1 else 0.0  # E[S_g^2] / Sigma0
        D = n if estimator == "mle" else n - 1.0
        s[g] = (n - 1.0) / D * pool_var
        m[g] = Q / N**2 + (1.0 / n - 1.0 / N) * pool_var
    return s, m


# -- mix and fresh ----------------------------------------------------------------------------
def mixed_moments(sizes: np.ndarray, estimator: str, real_fraction: float, *,
                  fresh: bool) -> tuple[np.ndarray, np.ndarray]:
    """(s_g, m_g) when round(f M_g) of generation g's examples are real and the rest come from generation g-1.

    ``fresh``: the real part is newly drawn each generation (independent of the past).
    ``mix``: it is a fresh random subset of generation 0's real set of M_0, so its mean correlates with
    generation 0's error xi_0: it is xi_0 plus a subset error of variance (1/n - 1/M_0) (finite population).
    Exact in expectation (a linear recursion in s, m and c = E[e_g xi_0] / Sigma0).
    """
    M = np.asarray(sizes, dtype=float)
    G = len(M)
    s, m = np.empty(G), np.empty(G)
    D0 = divisors(M[:1], estimator)[0]
    s[0], m[0] = (M[0] - 1.0) / D0, 1.0 / M[0]
    c = 0.0 if fresh else 1.0 / M[0]  # E[e_0 xi_0] = E[xi_0^2]
    for g in range(1, G):
        n = M[g]
        nr = float(np.round(real_fraction * n))
        ns = n - nr
        if fresh:
            real_var, real_cross = (1.0 / nr if nr else 0.0), 0.0  # E[eta^2], E[eta e_{g-1}]
        else:
            real_var = (1.0 / M[0] + (1.0 / nr - 1.0 / M[0])) if nr else 0.0  # xi_0 + subset error
            real_cross = c  # E[(xi_0 + delta) e_{g-1}] = c_{g-1}
        syn_var = m[g - 1] + (s[g - 1] / ns if ns else 0.0)  # E[(e_{g-1} + xi_g)^2]
        mean_var = (nr**2 * real_var + ns**2 * syn_var + 2 * nr * ns * real_cross) / n**2
        within = max(nr - 1.0, 0.0) + max(ns - 1.0, 0.0) * s[g - 1]
        between = (nr * ns / n) * (real_var + syn_var - 2 * real_cross) if nr and ns else 0.0
        D = n if estimator == "mle" else n - 1.0
        s[g], m[g] = (within + between) / D, mean_var
        if not fresh:
            c = (nr * (1.0 / M[0]) + ns * c) / n
    return s, m


def stationary(s: np.ndarray, m: np.ndarray) -> tuple[float, float] | None:
    """The limit (s, m) of a constant-size mix/fresh chain when the run has come close to it (the last two
    generations agree to 1e-9), else None."""
    if len(s) > 2 and abs(s[-1] - s[-2]) < 1e-9 * abs(s[-1]) and abs(m[-1] - m[-2]) < 1e-9 * abs(m[-1]):
        return float(s[-1]), float(m[-1])
    return None
