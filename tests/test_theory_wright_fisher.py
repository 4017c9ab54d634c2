"""Exact Wright-Fisher results (``modelcollapse.theory.wright_fisher``) against an independent simulation.

The simulation below is written only with ``numpy.random.Generator.multinomial``: generation 0
draws M_0 samples from p, generation g draws M_g samples from the previous counts / M_{g-1}.

Tolerances. A simulated frequency of an event (lost, fixed, absorbed) over R replicates is
Binomial(R, a) / R when the exact probability is a, so each one is checked against the exact
two-sided binomial acceptance interval of level ALPHA = 1e-9 (no normal approximation, so it is
valid for rare events too). A correct implementation fails one such check with probability
< 1e-9 and a whole test, a few hundred checks, with probability < 1e-6: they pass for any seed.
Means (support size, absorption steps) use the bounds stated in their tests. Each test also
names the plausible mistake it catches; ``test_checks_catch_plausible_mistakes`` shows that
the same checks reject an off-by-one generation and a wrong frequency denominator.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from modelcollapse.theory import wright_fisher as wf

ALPHA = 1e-9
Z = 6.0  # for sample means: a correct implementation is off by 6 standard errors with probability ~2e-9


# ----------------------------------------------------------------------------- helpers


def _simulate(p: np.ndarray, sizes: np.ndarray, replicates: int, seed: int) -> np.ndarray:
    """Counts of the multinomial chain, shape (G + 1, replicates, K)."""
    rng = np.random.default_rng(seed)
    p = np.asarray(p, dtype=float)
    counts = rng.multinomial(sizes[0], p, size=replicates)
    out = [counts]
    for g in range(1, len(sizes)):
        counts = rng.multinomial(sizes[g], counts / sizes[g - 1])
        out.append(counts)
    return np.stack(out)


def _acceptance(replicates: int, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided binomial acceptance interval [lo, hi] (as counts) at level ALPHA."""
    exact = np.clip(exact, 0.0, 1.0)
    return binom.ppf(ALPHA / 2, replicates, exact), binom.isf(ALPHA / 2, replicates, exact)


def _bad_cells(hits: np.ndarray, replicates: int, exact: np.ndarray) -> np.ndarray:
    lo, hi = _acceptance(replicates, exact)
    return (hits < lo) | (hits > hi)


def _assert_rates(hits: np.ndarray, replicates: int, exact: np.ndarray, label: str) -> None:
    bad = _bad_cells(hits, replicates, exact)
    assert not bad.any(), (
        f"{label}: cells {np.argwhere(bad).tolist()[:5]} off: simulated {hits[bad][:5] / replicates} "
        f"vs exact {exact[bad][:5]}"
    )


def _assert_support_mean(support: np.ndarray, lost: np.ndarray, replicates: int, label: str) -> None:
    """Mean support size vs sum_k (1 - p_lost) within the sum of the per-category acceptance half-widths.

    mean(S) - E[S] = sum_k (rate_k - a_k), so if every category's loss rate lies in its ALPHA
    acceptance interval (failure probability < K * ALPHA by the union bound) the mean lies within
    the sum of the half-widths: no normal approximation and no variance estimate needed.
    """
    exact = (1.0 - lost).sum(axis=1)
    lo, hi = _acceptance(replicates, lost)
    half = np.maximum(lost - lo / replicates, hi / replicates - lost).sum(axis=1)
    err = np.abs(support.mean(axis=1) - exact)
    assert np.all(err <= half), f"{label}: support mean off at generations {np.flatnonzero(err > half).tolist()}"


CASES = {
    # name: (p, sizes, replicates); each p is checked at every generation of its schedule.
    "K2_M2": (np.array([0.3, 0.7]), wf.constant_sizes(2, 8), 20_000),
    "K5_M5": (np.array([0.05, 0.1, 0.15, 0.3, 0.4]), wf.constant_sizes(5, 10), 20_000),
    "K10_M20_zipf": ((1 / np.arange(1, 11)) / (1 / np.arange(1, 11)).sum(), wf.constant_sizes(20, 15), 20_000),
    "K3_M200": (np.array([0.01, 0.04, 0.95]), wf.constant_sizes(200, 30), 20_000),
    "K4_linear": (np.array([0.1, 0.2, 0.3, 0.4]), np.arange(5, 27, 2), 20_000),
    "K3_explicit": (np.array([0.2, 0.3, 0.5]), np.array([3, 10, 2, 8, 1, 6]), 20_000),
    "K6_with_zero": (np.array([0.0, 0.1, 0.2, 0.2, 0.2, 0.3]), np.array([4, 4, 9, 9, 9, 3, 3]), 20_000),
}


# ----------------------------------------------------------------------------- exact by hand


def test_small_case_by_hand():
    """K = 2, M = 2, p = (1/2, 1/2): counts at gen 0 are (1/4, 1/2, 1/4) on 0, 1, 2; from count 1
    a step is lost w.p. 1/4 and stays at 1 w.p. 1/2, so P(lost) = 1/4, 3/8, 7/16 at gens 0, 1, 2.

    Catches an off-by-one generation (gen 0 taken as the point mass at p, or one extra step).
    """
    lost, fixed = wf.absorption_marginals([0.5, 0.5], [2, 2, 2])
    np.testing.assert_allclose(lost[:, 0], [0.25, 0.375, 0.4375], rtol=1e-14)
    np.testing.assert_allclose(fixed, lost[:, ::-1], rtol=1e-14)
    assert wf.expected_absorption_time_exact(0.5, 2) == pytest.approx(2.0, rel=1e-14)  # geometric(1/2) steps
    assert wf.expected_absorption_time_exact(0.3, 1) == 1.0  # M = 1: the first step absorbs
    assert wf.expected_absorption_time_exact(0.0, 50) == 0.0


def test_transition_rows_sum_to_one_and_absorb():
    """Every row is a distribution; rows 0 and m_prev are point masses (absorbing)."""
    for m_prev, m_cur in [(1, 1), (1, 3), (3, 1), (5, 7), (7, 5), (200, 200), (1000, 1000), (2000, 2000)]:
        T = wf.transition_matrix(m_prev, m_cur)
        assert T.shape == (m_prev + 1, m_cur + 1)
        np.testing.assert_allclose(T.sum(axis=1), 1.0, atol=1e-13)
        assert T[0, 0] == 1.0 and T[-1, -1] == 1.0


def test_count_distributions_are_martingales():
    """E[count_g / M_g] = p at every generation, for constant and varying sizes.

    Catches the wrong denominator (i / M_g instead of i / M_{g-1}) on varying schedules, and any
    leak of probability mass (distributions also sum to 1).
    """
    p = np.array([0.05, 0.15, 0.3, 0.5])
    for sizes in (wf.constant_sizes(30, 20), np.arange(5, 40, 3), np.array([3, 10, 2, 8, 1, 6])):
        for g, dist in enumerate(wf.count_distributions(p, sizes)):
            assert dist.shape == (4, sizes[g] + 1)
            np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-13)
            np.testing.assert_allclose(dist @ np.arange(sizes[g] + 1) / sizes[g], p, atol=1e-13)


def test_p_fixed_tends_to_p():
    """Fixation probability = p (martingale): p_fixed after many generations equals p, p_lost 1 - p.

    At M = 5 the non-absorbed mass decays as (1 - 1/5)^g (second eigenvalue), 1e-39 by g = 400.
    """
    p = np.array([0.05, 0.15, 0.3, 0.5])
    for sizes in (wf.constant_sizes(5, 400), np.concatenate([np.arange(5, 30, 2), np.full(600, 10)])):
        lost, fixed = wf.absorption_marginals(p, sizes)
        np.testing.assert_allclose(fixed[-1], wf.fixation_probabilities(p), atol=1e-12)
        np.testing.assert_allclose(lost[-1], 1 - p, atol=1e-12)
        assert np.all(np.diff(lost, axis=0) >= -1e-15) and np.all(np.diff(fixed, axis=0) >= -1e-15)
    assert not np.allclose(wf.p_fixed(p, wf.constant_sizes(5, 3))[-1], p, atol=1e-3)


def test_identical_probabilities_share_rows():
    """Deduplicated propagation gives the same answer as distinct rows would."""
    p = np.array([0.25, 0.25, 0.5])
    lost = wf.p_lost(p, wf.constant_sizes(7, 6))
    np.testing.assert_array_equal(lost[:, 0], lost[:, 1])
    np.testing.assert_allclose(lost[:, 2], wf.p_lost([0.5, 0.5], wf.constant_sizes(7, 6))[:, 0], rtol=1e-14)


# ----------------------------------------------------------------------------- against simulation


@pytest.mark.parametrize("name", list(CASES))
def test_marginals_match_simulation(name):
    """p_lost, p_fixed, expected support size and absorption_cdf vs the simulated chain.

    Per-cell ALPHA binomial checks (module docstring). R = 20000 puts the acceptance half-width
    near 6 / sqrt(R) * sqrt(a(1 - a)) <= 0.02, well under the change between consecutive
    generations at these sizes (see test_checks_catch_plausible_mistakes).
    """
    p, sizes, R = CASES[name]
    counts = _simulate(p, sizes, R, seed=sum(map(ord, name)))
    lost, fixed = wf.absorption_marginals(p, sizes)
    np.testing.assert_allclose(lost, wf.p_lost(p, sizes), rtol=0, atol=0)
    _assert_rates((counts == 0).sum(axis=1), R, lost, f"{name} p_lost")
    _assert_rates((counts == sizes[:, None, None]).sum(axis=1), R, fixed, f"{name} p_fixed")
    support = (counts > 0).sum(axis=2)
    _assert_support_mean(support, lost, R, name)
    np.testing.assert_allclose(wf.expected_support_size(p, sizes), (1 - lost).sum(axis=1), rtol=1e-14)
    _assert_rates((support == 1).sum(axis=1), R, wf.absorption_cdf(p, sizes), f"{name} absorption_cdf")


def test_checks_catch_plausible_mistakes():
    """The checks above reject (a) an off-by-one generation and (b) i / M_g in place of i / M_{g-1}."""
    p, sizes, R = CASES["K4_linear"]
    counts = _simulate(p, sizes, R, seed=7)
    hits = (counts == 0).sum(axis=1)
    lost = wf.p_lost(p, sizes)
    assert not _bad_cells(hits, R, lost).any()
    assert _bad_cells(hits[1:], R, lost[:-1]).any(), "an off-by-one generation would go unnoticed"
    # (b) propagate with the wrong denominator, written out here
    dist = binom.pmf(np.arange(sizes[0] + 1)[None, :], sizes[0], p[:, None])
    wrong = [dist[:, 0]]
    for g in range(1, len(sizes)):
        freq = np.minimum(np.arange(sizes[g - 1] + 1) / sizes[g], 1.0)
        dist = dist @ binom.pmf(np.arange(sizes[g] + 1)[None, :], sizes[g], freq[:, None])
        wrong.append(dist[:, 0])
    assert _bad_cells(hits, R, np.array(wrong)).any(), "the wrong denominator would go unnoticed"


def test_absorption_cdf_two_categories_is_sum_of_losses():
    """For K = 2 the chain is absorbed exactly when one of the two categories is lost."""
    for p, sizes in (([0.3, 0.7], wf.constant_sizes(20, 100)), ([0.1, 0.9], np.arange(3, 60, 4))):
        lost = wf.p_lost(p, sizes)
        np.testing.assert_allclose(wf.absorption_cdf(p, sizes), lost[:, 0] + lost[:, 1], atol=1e-14)


@pytest.mark.parametrize(
    "p, sizes",
    [
        (np.array([0.2, 0.3, 0.5]), wf.constant_sizes(12, 25)),
        (np.array([0.1, 0.2, 0.3, 0.4]), np.array([6, 9, 4, 10, 7, 7, 7, 3])),
        (np.array([0.0, 0.25, 0.75]), wf.constant_sizes(8, 10)),
    ],
)
def test_full_chain_support_distribution(p, sizes):
    """The full multinomial chain agrees with the marginal results and with simulation.

    Its column 1 must equal absorption_cdf = sum_k p_fixed (the identity that makes the full
    chain unnecessary for absorption), its mean the expected support size; every column is a
    probability checked per cell at level ALPHA.
    """
    dist = wf.support_size_distribution(p, sizes)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(dist[:, 1], wf.absorption_cdf(p, sizes), atol=1e-12)
    np.testing.assert_allclose(dist @ np.arange(len(p) + 1), wf.expected_support_size(p, sizes), atol=1e-12)
    R = 20_000
    support = (_simulate(p, sizes, R, seed=11) > 0).sum(axis=2)
    hits = np.stack([(support == s).sum(axis=1) for s in range(len(p) + 1)], axis=1)
    _assert_rates(hits, R, dist, "support size distribution")


def test_full_chain_refuses_too_many_states():
    with pytest.raises(ValueError, match=r"full chain has 10015005 states .* above the limit"):
        wf.support_size_distribution(np.full(10, 0.1), wf.constant_sizes(20, 3))


# ----------------------------------------------------------------------------- absorption times


def _simulated_steps(p: float, M: int, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sampling steps until absorption and whether it was a loss, for the two-category chain."""
    rng = np.random.default_rng(seed)
    count = rng.binomial(M, p, size=replicates)
    steps = np.ones(replicates, dtype=np.int64)
    live = (count > 0) & (count < M)
    while live.any():
        count[live] = rng.binomial(M, count[live] / M)
        steps[live] += 1
        live = (count > 0) & (count < M)
    return steps, count == 0


@pytest.mark.parametrize("p, M", [(0.3, 20), (0.5, 7), (0.05, 40)])
def test_absorption_time_matches_simulation(p, M):
    """Exact mean steps (and mean steps given loss) within Z = 6 standard errors of 40000 replicates.

    Steps have a geometric tail (rate ~ 1/M), so the sample mean is close to normal at this R.
    The standard error is at most ~0.15 steps here, so counting generations (steps - 1) instead of
    steps, an error of 1, is rejected by > 6 standard errors.
    """
    R = 40_000
    steps, lost = _simulated_steps(p, M, R, seed=M)
    exact = wf.expected_absorption_time_exact(p, M)
    se = steps.std(ddof=1) / np.sqrt(R)
    assert abs(steps.mean() - exact) <= Z * se, (steps.mean(), exact, se)
    assert 1.0 / se > Z, "the off-by-one check has no power at this replicate count"
    loss_steps = steps[lost]
    se_loss = loss_steps.std(ddof=1) / np.sqrt(len(loss_steps))
    assert abs(loss_steps.mean() - wf.expected_loss_time_exact(p, M)) <= Z * se_loss


def test_absorption_time_is_sum_of_survival():
    """E[steps] = 1 + sum_g (1 - absorption_cdf[g]): generation g is after g + 1 steps.

    The horizon of 3000 generations leaves a tail of order (1 - 1/20)^3000 ~ 1e-67.
    """
    for p, M in ((0.3, 20), (0.5, 20), (0.1, 5)):
        cdf = wf.absorption_cdf([p, 1 - p], wf.constant_sizes(M, 3000))
        assert wf.expected_absorption_time_exact(p, M) == pytest.approx(1 + np.sum(1 - cdf), rel=1e-10)


def test_diffusion_approximation_error():
    """Measured: the diffusion time overestimates by 0.20 % at M = 1000, p = 0.5 (10 % at M = 10).

    Bounds 0.5 % and 1 % leave room for float differences while rejecting a factor-of-2 mistake
    (M vs 2M, haploid vs diploid) and a time measured in generations instead of steps
    (off by 1 in 1383, 0.07 %, is not detectable this way, see the sum-of-survival test).
    """
    exact = wf.expected_absorption_time_exact(0.5, 1000)
    assert abs(wf.diffusion_absorption_time(0.5, 1000) / exact - 1) < 0.005
    for p in (0.1, 0.3):
        assert abs(wf.diffusion_absorption_time(p, 1000) / wf.expected_absorption_time_exact(p, 1000) - 1) < 0.005
        assert abs(wf.diffusion_loss_time(p, 1000) / wf.expected_loss_time_exact(p, 1000) - 1) < 0.01
    errors = [
        abs(wf.diffusion_absorption_time(0.3, M) / wf.expected_absorption_time_exact(0.3, M) - 1) for M in (10, 100, 1000)
    ]
    assert errors[0] > errors[1] > errors[2]
    np.testing.assert_allclose(wf.diffusion_absorption_time(np.array([0.0, 1.0]), 50), 0.0)
    assert wf.diffusion_loss_time(0.5, 50) == pytest.approx(wf.diffusion_absorption_time(0.5, 50))
    assert wf.diffusion_loss_time(1.0, 50) == 100.0


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "p, sizes, message",
    [
        ([0.5, 0.5], [3, 0, 3], r"sizes must be >= 1"),
        ([0.5, 0.5], [3, -2], r"sizes must be >= 1"),
        ([0.5, 0.5], [3, 2.5], r"integer"),
        ([0.5, 0.5], [], r"non-empty"),
        ([0.5, 0.6], [3, 3], r"p must sum to 1"),
        ([1.5, -0.5], [3, 3], r"p must lie in \[0, 1\]"),
        ([0.5, np.nan], [3, 3], r"p must be finite"),
        ([0.5, 0.5], [3, 5000], r"max_size"),
    ],
)
def test_bad_input_raises(p, sizes, message):
    for fn in (wf.p_lost, wf.p_fixed, wf.expected_support_size, wf.absorption_cdf):
        with pytest.raises(ValueError, match=message):
            fn(np.asarray(p, dtype=float), np.asarray(sizes))


def test_bad_scalar_input_raises():
    with pytest.raises(ValueError, match=r"frequency in \[0, 1\]"):
        wf.expected_absorption_time_exact(1.2, 10)
    with pytest.raises(ValueError, match=r"sizes must be >= 1"):
        wf.expected_absorption_time_exact(0.5, 0)
    with pytest.raises(ValueError, match=r"0 < p < 1"):
        wf.expected_loss_time_exact(1.0, 10)
    with pytest.raises(ValueError, match=r"p must sum to 1"):
        wf.fixation_probabilities([0.2, 0.2])
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\]"):
        wf.diffusion_absorption_time(-0.1, 10)


def test_any_k_absorption_time_and_littler_agree_with_the_two_category_results():
    """For K = 2 the exact any-K absorption time (sum of P(T > t) over the transition matrices) equals the
    first-step solution, and Littler's approximation equals Kimura and Ohta's; for K = 3 Littler's
    overestimates the exact time, as the two-category one does."""
    for p, M in ((0.3, 10), (0.5, 40)):
        assert wf.expected_absorption_steps([p, 1 - p], M) == pytest.approx(
            wf.expected_absorption_time_exact(p, M), rel=1e-8)
        assert wf.littler_absorption_time(np.array([p, 1 - p]), M) == pytest.approx(
            wf.diffusion_absorption_time(p, M), rel=1e-14)
    q = np.array([0.5, 0.3, 0.2])
    assert wf.littler_absorption_time(q, 30) > wf.expected_absorption_steps(q, 30)
