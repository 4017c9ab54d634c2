"""The exact law of the log generalized variance of a refitted Gaussian chain (``theory.log_chi2``).

Two kinds of check:

* Monte Carlo: the chain itself simulated here with numpy (draw M_g points from the current fit,
  refit mean and covariance with the divisor, repeat), independently of the module. Each
  statistical comparison allows 6 standard errors: a correct law fails one with probability
  ~2e-9 (the two-sided normal tail; exact binomial tails are at most 6e-8, for the 5% level with
  the fewest replicates, 500), so with ~500 comparisons the suite passes for any seed but one in
  ~10^5 or more. ``test_the_checks_catch_plausible_mistakes``
  shows the same checks on the same draws reject an off-by-one generation, the other divisor and
  the wrong degrees of freedom for d > 1.
* Exactness, no sampling: scipy's chi-square CDF at g = 0, quadrature convolutions for two terms,
  and Gil-Pelaez inversion by adaptive quadrature (a different numerical method on a CF written
  here from scipy's loggamma) over many generations.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.integrate import quad
from scipy.special import digamma, gammainc, gammaln, loggamma, polygamma

from modelcollapse.theory.log_chi2 import LogDetLaw, sqrt_chi_mean

Z = 6.0
MU0 = np.array([1.0, -2.0, 0.5])
SIGMA0 = np.array([[2.0, 0.5, 0.1], [0.5, 1.0, -0.3], [0.1, -0.3, 0.7]])


# -- the chain, simulated --------------------------------------------------------------------------

def _simulate(sizes, d: int, estimator: str, replicates: int, seed: int) -> np.ndarray:
    """log det(Sigma_g) / det(Sigma_0) of independent chains started at N(MU0, SIGMA0), shape (G + 1, R).

    Replicates run in chunks of at most ~2e6 drawn numbers, to bound memory at M = 10,000."""
    rng = np.random.default_rng(seed)
    mu0, sigma0 = MU0[:d], SIGMA0[:d, :d]
    logdet0 = np.linalg.slogdet(sigma0)[1]
    chunk = max(1, min(replicates, 2_000_000 // (max(sizes) * d)))
    out = []
    for start in range(0, replicates, chunk):
        r = min(chunk, replicates - start)
        mean, root = np.tile(mu0, (r, 1)), np.tile(np.linalg.cholesky(sigma0), (r, 1, 1))
        rows = []
        for M in sizes:
            x = mean[:, None, :] + rng.standard_normal((r, M, d)) @ root.transpose(0, 2, 1)
            mean = x.mean(axis=1)
            centred = x - mean[:, None, :]
            cov = centred.transpose(0, 2, 1) @ centred / (M if estimator == "mle" else M - 1)
            rows.append(np.linalg.slogdet(cov)[1] - logdet0)
            root = np.linalg.cholesky(cov)
        out.append(np.array(rows))
    return np.concatenate(out, axis=1)


def _failures(values: np.ndarray, mean: np.ndarray, variance: np.ndarray, cdf_at, quantile_at) -> list[str]:
    """Every 6-s.e. check of simulated values (G + 1, R) against a law; [] when all pass.

    cdf_at(x) -> (G + 1, len(x)), quantile_at(q) -> (len(q), G + 1) describe the law."""
    R = values.shape[1]
    problems = []
    sample_mean = values.mean(axis=1)
    se_mean = values.std(axis=1, ddof=1) / np.sqrt(R)
    for g in np.flatnonzero(np.abs(sample_mean - mean) > Z * se_mean):
        problems.append(f"g={g}: mean {sample_mean[g]:.5f} vs {mean[g]:.5f} (s.e. {se_mean[g]:.2g})")
    # The sample variance's s.e. from the sample's fourth central moment: sqrt((m4 - s^4) / R).
    centred = values - sample_mean[:, None]
    s2 = (centred**2).sum(axis=1) / (R - 1)
    se_var = np.sqrt(np.maximum((centred**4).mean(axis=1) - s2**2, 0) / R)
    for g in np.flatnonzero(np.abs(s2 - variance) > Z * se_var):
        problems.append(f"g={g}: variance {s2[g]:.5f} vs {variance[g]:.5f} (s.e. {se_var[g]:.2g})")
    # Empirical CDF at mean + k sd (binomial s.e. under the law's own probability).
    sd = np.sqrt(variance)
    for k in (-1.5, -0.5, 0.5, 1.5):
        x = mean + k * sd
        p = np.array([cdf_at(np.array([x[g]]))[g, 0] for g in range(len(x))])
        hit = (values <= x[:, None]).mean(axis=1)
        for g in np.flatnonzero(np.abs(hit - p) > Z * np.sqrt(p * (1 - p) / R)):
            problems.append(f"g={g}: P(L <= mean {k:+} sd) = {hit[g]:.4f} simulated vs {p[g]:.4f}")
    # Coverage: the fraction below the q-quantile is binomial(R, q).
    levels = np.array([0.05, 0.5, 0.95])
    quantiles = quantile_at(levels)
    for q, x in zip(levels, quantiles):
        below = (values < x[:, None]).mean(axis=1)
        for g in np.flatnonzero(np.abs(below - q) > Z * np.sqrt(q * (1 - q) / R)):
            problems.append(f"g={g}: {below[g]:.4f} below the {q} quantile")
    return problems


def _law_failures(values: np.ndarray, law: LogDetLaw, gens=slice(None)) -> list[str]:
    return _failures(values, law.mean[gens], law.variance[gens],
                     lambda x: law.cdf(x)[gens], lambda q: law.quantile(q)[:, gens])


MONTE_CARLO = [
    # sizes, d, estimator, replicates. At M = 1,000 and 10,000 one generation moves the mean by
    # ~1/M (s.e. ~sqrt(2 g d / M / R)), so few replicates check shape and spread while the
    # small-M cases carry the power. d = 3 starts at M = 5: at M = 4 the chi2_1 factors drive
    # 1e-3 of the chains' covariances to a condition number above 1e15 by the fifth generation
    # (measured), where float64 Cholesky fails: the simulation, not the law, breaks.
    ([2] * 5, 1, "mle", 20_000),
    ([3] * 5, 1, "unbiased", 20_000),
    ([10] * 5, 1, "mle", 20_000),
    ([1000] * 3, 1, "unbiased", 3_000),
    ([10_000] * 2, 1, "mle", 500),
    ([5] * 5, 3, "mle", 20_000),
    ([10] * 4, 3, "unbiased", 20_000),
    ([1000] * 3, 3, "mle", 1_000),
    ([5, 8, 11, 14, 17], 3, "unbiased", 20_000),
    ([round(10 * (g + 1) ** 1.5) for g in range(5)], 1, "mle", 20_000),  # 10, 28, 52, 80, 112
    ([50, 5, 20, 6], 3, "mle", 20_000),  # shrinking and growing: the stride refinement on real draws
]


@pytest.mark.parametrize("sizes, d, estimator, replicates", MONTE_CARLO,
                         ids=[f"{c[0][:3]}-d{c[1]}-{c[2]}" for c in MONTE_CARLO])
def test_law_matches_the_simulated_chain(sizes, d, estimator, replicates):
    """Mean, variance, CDF at four points and the 5/50/95% quantiles' coverage, every generation."""
    values = _simulate(sizes, d, estimator, replicates, seed=sum(sizes) + d)
    law = LogDetLaw(np.array(sizes), d, estimator)
    assert not _law_failures(values, law)


def test_the_checks_catch_plausible_mistakes():
    """The same 6-s.e. checks, on the same kind of draws, reject laws with a plausible mistake.

    M = 5, d = 3, 20,000 replicates, 5 generations (mean s.e. ~0.03 at the last): one generation
    more shifts the mean by 2.9; the other divisor by 3 log(5/4) = 0.67 a generation; chi2_{M-1}
    for all d terms instead of chi2_{M-1}, chi2_{M-2}, chi2_{M-3} by 1.4 a generation.
    """
    sizes = np.array([5] * 5)
    values = _simulate(sizes, 3, "mle", 20_000, seed=99)
    assert not _law_failures(values, LogDetLaw(sizes, 3, "mle"))
    # Off by one generation: generation g compared with the law's generation g + 1.
    longer = LogDetLaw(np.concatenate([sizes, sizes[:1]]), 3, "mle")
    assert _law_failures(values, longer, slice(1, None))
    # The other divisor.
    assert _law_failures(values, LogDetLaw(sizes, 3, "unbiased"))
    # Every term with M - 1 degrees of freedom: three 1-D terms log(chi2_{M-1} / M) a generation,
    # i.e. a 1-D law over the schedule with each size repeated d times, read every third generation.
    wrong_dof = LogDetLaw(np.repeat(sizes, 3), 1, "mle")
    assert _law_failures(values, wrong_dof, slice(2, None, 3))


# -- exact checks ------------------------------------------------------------------------------------

@pytest.mark.parametrize("M", [2, 3, 10, 1000, 10**6])
@pytest.mark.parametrize("estimator", ["mle", "unbiased"])
def test_first_generation_is_a_log_chi_square(M, estimator):
    """d = 1, g = 0: L_0 = log(chi2_{M-1} / D). CDF to 1e-9 (measured 3e-11 at worst, M = 2) over
    quantiles 1e-6..1-1e-6; the 5/50/95% quantiles to 1e-8 (measured 2e-10 at worst, M = 2)."""
    D = M if estimator == "mle" else M - 1
    law = LogDetLaw(np.array([M, M]), 1, estimator)
    x = np.log(stats.chi2.ppf(np.linspace(1e-6, 1 - 1e-6, 501), M - 1) / D)
    np.testing.assert_allclose(law.cdf(x)[0], stats.chi2.cdf(D * np.exp(x), M - 1), rtol=0, atol=1e-9)
    levels = np.array([0.05, 0.5, 0.95])
    np.testing.assert_allclose(law.quantile(levels)[:, 0], np.log(stats.chi2.ppf(levels, M - 1) / D),
                               rtol=0, atol=1e-8)
    # A scalar q gives one value per generation.
    assert law.quantile(0.5).shape == (2,) and law.cdf(0.0).shape == (2,)


def _log_chi2_pdf(y: float, n: int, D: float) -> float:
    """Density of log(chi2_n / D) at y: u p_chi2(u) at u = D e^y."""
    half_u = D * np.exp(y) / 2
    return float(np.exp((n / 2) * np.log(half_u) - half_u - gammaln(n / 2)))


def _two_term_cdf(x: float, n1: int, D1: float, n2: int, D2: float) -> float:
    """P(log(chi2_n1 / D1) + log(chi2_n2 / D2) <= x) by adaptive quadrature of the convolution
    (chi2_n CDF at u = gammainc(n / 2, u / 2))."""
    mode = np.log(n1 / D1)
    integrand = lambda y: _log_chi2_pdf(y, n1, D1) * gammainc(n2 / 2, D2 * np.exp(x - y) / 2)  # noqa: E731
    # log chi2_1's left tail has rate 1/2: below -90 lies < 1e-19 of it; above 6, < 1e-60.
    return quad(integrand, -90.0, 6.0, points=[mode, x + np.log(D2 / n2)], epsabs=1e-14, epsrel=1e-12,
                limit=400)[0]


@pytest.mark.parametrize("sizes, d, estimator, gen, terms", [
    ([2, 5], 1, "mle", 1, [(1, 2), (4, 5)]),            # chi2_1 / 2 (the heaviest tail) then chi2_4 / 5
    ([3], 2, "unbiased", 0, [(2, 2), (1, 2)]),          # d = 2: chi2_2 and chi2_1, both over M - 1 = 2
    ([7, 4], 2, "mle", 0, [(6, 7), (5, 7)]),
])
def test_two_terms_against_quadrature(sizes, d, estimator, gen, terms):
    """Two log chi-squares against their convolution by quadrature, to 1e-9, over the bulk and tails."""
    law = LogDetLaw(np.array(sizes), d, estimator)
    (n1, D1), (n2, D2) = terms
    sd = np.sqrt(law.variance[gen])
    for x in law.mean[gen] + sd * np.array([-4.0, -1.3, 0.0, 0.7, 2.5]):
        assert law.cdf(x)[gen] == pytest.approx(_two_term_cdf(x, n1, D1, n2, D2), abs=1e-9)


def _gil_pelaez(sizes, d: int, estimator: str, gen: int, x: float) -> float:
    """P(L_gen <= x) = 1/2 - (1/pi) int_0^inf Im[e^{-itx} CF(t)] / t dt, with CF from scipy's loggamma."""
    half = np.concatenate([(M - np.arange(1, d + 1)) / 2.0 for M in sizes[:gen + 1]])
    D = np.repeat([M if estimator == "mle" else M - 1 for M in sizes[:gen + 1]], d)
    shift = (digamma(half) + np.log(2) - np.log(D)).sum()  # centre: E L_gen, so CF(t) stays smooth
    base = loggamma(half)

    def integrand(t: float) -> float:
        log_cf = (loggamma(half + 1j * t) - base - 1j * t * digamma(half)).sum()
        return float(np.imag(np.exp(log_cf - 1j * t * (x - shift)))) / t

    sd = np.sqrt(polygamma(1, half).sum())  # |CF| ~ exp(-sd^2 t^2 / 2) near 0: split the range on its scale
    edges = np.array([0, 0.5, 1, 2, 4, 8, 16, 32, 64, 128]) / sd
    total = sum(quad(integrand, a, b, epsabs=1e-14, epsrel=1e-12, limit=400)[0] for a, b in zip(edges, edges[1:]))
    return 0.5 - total / np.pi


@pytest.mark.parametrize("sizes, d, estimator", [
    ([3] * 31, 1, "mle"),
    ([5 + 3 * g for g in range(12)], 3, "unbiased"),
    ([int(m) for m in np.round(np.geomspace(10_000, 2, 40))], 1, "mle"),  # the stride refines many times
])
def test_many_generations_against_gil_pelaez_quadrature(sizes, d, estimator):
    """To 1e-9 at a few generations and points (measured ~1e-12): no Monte Carlo noise, many terms."""
    law = LogDetLaw(np.array(sizes), d, estimator)
    G = len(sizes) - 1
    for gen in (1, G // 2, G):
        sd = np.sqrt(law.variance[gen])
        for x in law.mean[gen] + sd * np.array([-3.0, -0.4, 1.1, 3.0]):
            assert law.cdf(x)[gen] == pytest.approx(_gil_pelaez(sizes, d, estimator, gen, x), abs=1e-9)


@pytest.mark.parametrize("M, d", [(2, 1), (10, 5), (10_000, 1)])
def test_long_chains_are_consistent(M, d):
    """G = 1000 (the performance case): cdf(quantile(q)) = q, quantiles increase in q, and the moments
    are exactly (g + 1) times one generation's for a constant schedule."""
    law = LogDetLaw(np.full(1001, M), d, "mle")
    levels = np.array([0.001, 0.05, 0.5, 0.95, 0.999])
    quantiles = law.quantile(levels)
    assert quantiles.shape == (5, 1001) and np.all(np.diff(quantiles, axis=0) > 0)
    for g in (0, 1, 17, 500, 999, 1000):
        np.testing.assert_allclose(law.cdf(quantiles[:, g])[g], levels, rtol=0, atol=1e-10)
    g = np.arange(1001)
    np.testing.assert_allclose(law.mean, (g + 1) * law.mean[0], rtol=1e-12)
    np.testing.assert_allclose(law.variance, (g + 1) * law.variance[0], rtol=1e-12)


def test_moments_are_the_closed_forms():
    """E log chi2_n = digamma(n/2) + log 2 and Var = trigamma(n/2), summed over i = 1..d and generations."""
    law = LogDetLaw(np.array([6, 9]), 2, "unbiased")
    terms0 = [digamma(n / 2) + np.log(2) - np.log(5) for n in (5, 4)]
    terms1 = [digamma(n / 2) + np.log(2) - np.log(8) for n in (8, 7)]
    np.testing.assert_allclose(law.mean, [sum(terms0), sum(terms0) + sum(terms1)], rtol=1e-14)
    var0 = polygamma(1, 2.5) + polygamma(1, 2.0)
    np.testing.assert_allclose(law.variance, [var0, var0 + polygamma(1, 4.0) + polygamma(1, 3.5)], rtol=1e-14)
    # The 1-D mean against a direct integral of log(u / D) under chi2_{M-1}.
    direct = quad(lambda u: np.log(u / 3) * stats.chi2.pdf(u, 2), 0, np.inf)[0]
    assert LogDetLaw(np.array([3]), 1, "mle").mean[0] == pytest.approx(direct, abs=1e-10)


def test_sqrt_chi_mean():
    """E sqrt(chi2_n / D): scipy's chi mean for small n, mpmath to 1e-13 relatively up to n = 1e9."""
    for n in (1, 2, 5, 30):
        assert sqrt_chi_mean(n, 4.0) == pytest.approx(stats.chi(n).mean() / 2.0, rel=1e-13)
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for n in (23, 24, 25, 10**4, 10**6, 10**7 - 1, 10**7, 10**9):
        half = mpmath.mpf(n) / 2
        exact = mpmath.sqrt(mpmath.mpf(2) / 7) * mpmath.exp(mpmath.loggamma(half + 0.5) - mpmath.loggamma(half))
        assert float(sqrt_chi_mean(n, 7)) == pytest.approx(float(exact), rel=1e-14)


def test_characteristic_function_for_large_dof_against_mpmath():
    """The Stirling branch (x = n/2 >= 50) of the centred log CF to 1e-14 absolutely, where scipy's
    loggamma(x + it) - gammaln(x) loses up to 3e-9 to cancellation (x = 5e6)."""
    mpmath = pytest.importorskip("mpmath")
    from modelcollapse.theory.log_chi2 import _centred_log_cf

    mpmath.mp.dps = 40
    for x in (50.0, 73.5, 5e3, 5e6):
        for t in (1e-3, 1.0, 8 * np.sqrt(x), 40.0, 1e4):
            exact = mpmath.loggamma(mpmath.mpc(x, t)) - mpmath.loggamma(x) - 1j * t * mpmath.digamma(x)
            assert abs(complex(_centred_log_cf(x, t)) - complex(exact)) < 1e-14 * max(1.0, abs(complex(exact)))


# -- bad input ---------------------------------------------------------------------------------------

def test_singular_generation_is_named():
    with pytest.raises(ValueError, match="generation 2"):
        LogDetLaw(np.array([5, 4, 3, 6]), 3, "mle")
    with pytest.raises(ValueError, match="generation 0"):
        LogDetLaw(np.array([1]), 1, "unbiased")


@pytest.mark.parametrize("kwargs, match", [
    ({"sizes": np.array([5]), "d": 1, "estimator": "ols"}, "unknown estimator"),
    ({"sizes": np.array([5.5]), "d": 1, "estimator": "mle"}, "integers"),
    ({"sizes": np.array([], dtype=int), "d": 1, "estimator": "mle"}, "non-empty"),
    ({"sizes": np.array([5]), "d": 0, "estimator": "mle"}, "positive integer"),
])
def test_bad_input_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LogDetLaw(**kwargs)


def test_quantile_levels_must_be_probabilities():
    law = LogDetLaw(np.array([5]), 1, "mle")
    for q in (0.0, 1.0, [0.5, 1.2], float("nan")):
        with pytest.raises(ValueError, match="quantile"):
            law.quantile(q)
