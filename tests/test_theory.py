"""The simulated chains against their closed forms (``modelcollapse.theory``).

Each check compares a replicate average with the theoretical expectation, allowing
6 standard errors (estimated from the replicates themselves). A correct simulation
fails such a check with probability about 2e-9, so these pass for any seed; each
docstring says why the replicate count still catches the mistakes that matter.
"""

import numpy as np
import pytest

from modelcollapse import theory
from modelcollapse.chain import Chain
from modelcollapse.config import load_spec

Z = 6.0


def _simulate(spec) -> dict[str, np.ndarray]:
    """Metric values as arrays of shape (generations + 1, replicates)."""
    chain = Chain(spec)
    gens = [chain.first()] + [chain.step(g) for g in range(1, spec.generations + 1)]
    return {name: np.stack([gen.metrics[name] for gen in gens]) for name in spec.metrics}, chain


def _assert_mean_matches(values: np.ndarray, expected: np.ndarray, label: str) -> None:
    mean = values.mean(axis=1)
    se = values.std(axis=1, ddof=1) / np.sqrt(values.shape[1])
    bad = np.abs(mean - expected) > Z * se
    assert not bad.any(), f"{label}: generations {np.flatnonzero(bad)} off: mean {mean[bad]} vs theory {expected[bad]}"


@pytest.mark.parametrize("estimator, seed", [("mle", 0), ("unbiased", 1)])
def test_gaussian_variance_and_mean_error_follow_theory(estimator, seed):
    """M = 5, 10,000 replicates, 6 generations.

    At generation 5 the MLE expectation is 0.8^6 = 0.26 and the s.e. is ~0.0085, so
    6 s.e. (0.05) would catch an off-by-one generation index (0.8^5 = 0.33) or the
    wrong estimator (1.0); the mean error likewise separates sum 0.8^j from (g+1).
    """
    spec = load_spec("gaussian", [
        "replicates=10000", "generations=5", "train_size=5", f"model.estimator={estimator}",
        "metrics=[variance_ratio, mean_error]", f"seed={seed}",
        "data.mean=[1.0, -2.0]", "data.cov=[[2.0, 0.5], [0.5, 1.0]]",
    ])
    values, _ = _simulate(spec)
    for metric in ("variance_ratio", "mean_error"):
        expected = theory.expected(spec, metric)
        assert expected is not None
        _assert_mean_matches(values[metric], expected, f"{estimator} {metric}")


def test_unbiased_variance_still_collapses_almost_surely():
    """E[variance] stays 1, but the median decays: the paper's collapse with an unbiased fit."""
    spec = load_spec("gaussian", ["replicates=4000", "generations=200", "train_size=10",
                                  "model.estimator=unbiased", "metrics=[variance_ratio]"])
    values, _ = _simulate(spec)
    # log variance is a random walk with drift E[log(chi2_9 / 9)] = -0.117 a generation:
    # after 200 generations the median sits near exp(-23), far below any sampling noise.
    assert np.median(values["variance_ratio"][-1]) < 1e-6


def test_categorical_gini_simpson_and_tail_mass_follow_theory():
    """Wright-Fisher chain: Gini-Simpson decays as (1 - 1/M)^(g+1); tail mass is a martingale.

    M = 20, 20,000 replicates, 8 generations: at g = 8 the expected Gini-Simpson is
    ~0.55 with s.e. ~0.001, so using (1 - 1/M)^g instead (0.58) fails by 30 s.e.
    """
    spec = load_spec("discrete", ["replicates=20000", "generations=8", "train_size=20",
                                  "data.categories=10", "metrics=[gini_simpson, tail_mass]"])
    values, _ = _simulate(spec)
    for metric in ("gini_simpson", "tail_mass"):
        _assert_mean_matches(values[metric], theory.expected(spec, metric), metric)


def test_categorical_probabilities_are_martingales_and_absorb():
    """Every chain ends in a single category, category k with probability q_k.

    4 categories, M = 8, 150 generations (absorption takes ~20 on average; the chance
    that a chain is still mixed after 150 is below 1e-8), 5,000 replicates: the binomial
    s.e. of each winning share is at most 0.007, while q ranges over 0.12..0.48.
    """
    spec = load_spec("discrete", ["replicates=5000", "generations=150", "train_size=8",
                                  "data.categories=4", "data.exponent=1.0", "metrics=[support_size]"])
    values, chain = _simulate(spec)
    assert (values["support_size"][-1] == 1).all()  # absorbed: a delta distribution
    q = chain.truth.probs_
    won = np.bincount(chain.model.probs_.argmax(axis=1), minlength=4) / spec.replicates
    se = np.sqrt(q * (1 - q) / spec.replicates)
    assert np.all(np.abs(won - q) < Z * se), (won, q)


def _z(values: np.ndarray, expected: np.ndarray) -> np.ndarray:
    return (values.mean(axis=1) - expected) / (values.std(axis=1, ddof=1) / np.sqrt(values.shape[1]))


GAUSS2 = ["data.mean=[1.0, -2.0]", "data.cov=[[2.0, 0.5], [0.5, 1.0]]"]


@pytest.mark.parametrize("policy, estimator, train_size, seed", [
    ("accumulate", "mle", "5", 0),
    ("accumulate", "unbiased", "{kind: linear, a: 2, b: 4}", 1),
    ("mix", "mle", "10", 2),
    ("mix", "unbiased", "{kind: linear, a: 3, b: 10}", 3),
    ("fresh", "unbiased", "[4, 8, 3, 12, 6, 20, 5]", 4),
    ("replace", "unbiased", "{kind: power, M0: 3, p: 1.5}", 5),
    ("accumulate_subsample", "mle", "5", 6),
    ("accumulate_subsample", "mle", "[10, 3, 7, 20, 4, 9, 6]", 7),
])
def test_expectations_under_every_policy_and_schedule_follow_theory(policy, estimator, train_size, seed):
    """E[variance_ratio] and E[mean_error] of the Gaussian chain against the engine, 6 generations, 10,000
    replicates in 2-D, within 6 standard errors (a correct formula fails with probability ~1e-9 per point).

    The s.e. is about 0.6% of the variance ratio and 1.5-3% of the mean error. The fresh recursion used for
    mix (ignoring that the kept real data correlates with generation 0's fit) is off by 5-10% in the variance
    and 20-50% in the mean error from generation 1 on, 8-42 s.e. (measured); the accumulate recursion used
    for accumulate_subsample is off by 13-59 s.e. from generation 1 on.
    """
    f = ["policy.real_fraction=0.3"] if policy in ("mix", "fresh") else []
    spec = load_spec("gaussian", [f"policy.kind={policy}", *f, f"model.estimator={estimator}", "replicates=10000",
                                  "generations=6", f"train_size={train_size}", f"seed={seed}",
                                  "metrics=[variance_ratio, mean_error]", *GAUSS2])
    values, _ = _simulate(spec)
    found = theory.curves(spec)
    if policy == "accumulate" and train_size == "5":  # the pi^2/6 bound (constant size) is above the mean
        assert np.all(found["mean_error"]["upper"] >= found["mean_error"]["mean"])
    for metric in ("variance_ratio", "mean_error"):
        assert found[metric]["label"] == "exact"
        z = _z(values[metric], found[metric]["mean"])
        assert np.all(np.abs(z) < Z), (metric, z)


def _coverage(values: np.ndarray, curve: dict, gens) -> None:
    """The share of replicates below each theoretical quantile is the quantile's level, within 6 binomial s.e."""
    R = values.shape[1]
    for key, level in (("q05", 0.05), ("median", 0.5), ("q95", 0.95)):
        below = (values[gens] <= curve[key][gens][:, None]).mean(axis=1)
        se = np.sqrt(level * (1 - level) / R)
        assert np.all(np.abs(below - level) < Z * se), (key, gens, below)


@pytest.mark.parametrize("M, estimator, generations", [(2, "mle", 12), (10, "unbiased", 30), (10000, "mle", 2)])
def test_the_band_and_median_of_the_variance_ratio_cover_the_simulation(M, estimator, generations):
    """1-D: the exact law's 5%, 50% and 95% quantiles against 4,000 replicates of the engine.

    Binomial s.e. of each share: 0.0034 (5%, 95%) and 0.0079 (median); 6 s.e. is 0.02 and 0.05. At M = 2 a
    normal approximation of the log-chi-square sum puts 40-47% of the replicates below its median and
    97-99.9% below its 95% point (12 s.e. or more off), and the previous generation's median has 60-69% below
    it. At M = 10 and 10,000 the law is close to normal and one generation moves it by a few s.e. at most:
    those cases check the law at the sizes users run rather than catch those mistakes."""
    spec = load_spec("gaussian", ["replicates=4000", f"generations={generations}", f"train_size={M}",
                                  f"model.estimator={estimator}", "metrics=[variance_ratio, log_det_ratio]",
                                  "metric_samples=2", "heldout_size=2"])
    values, _ = _simulate(spec)
    found = theory.curves(spec)
    gens = np.unique(np.linspace(0, generations, 5).astype(int))
    _coverage(values["variance_ratio"], found["variance_ratio"], gens)
    _coverage(values["log_det_ratio"], found["log_det_ratio"], gens)
    # The mean, against the exact spread: the sample's own s.e. understates a heavy tail (12 seeds at M = 2:
    # |z| <= 3.0 over every generation).
    vr = found["variance_ratio"]
    z = (values["variance_ratio"].mean(axis=1) - vr["mean"]) / (vr["sd"] / np.sqrt(spec.replicates))
    assert np.all(np.abs(z) < Z)


def test_in_3d_the_log_det_law_the_kl_and_the_w2_bound_hold():
    """d = 3, M = 6 (so the fitted covariance is invertible), 4,000 replicates, 8 generations.

    The log det law's quantiles cover the simulation (6 binomial s.e.), E[kl] matches (6 s.e.; giving every
    factor of the Bartlett decomposition M - 1 degrees of freedom instead of M - 1, M - 2, M - 3 shifts
    E[log det] by 0.95 at g = 0 and E[kl] by 0.47, dozens of s.e.), and the simulated root mean square of
    w2 is below the bound."""
    cov = "[[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]]"
    spec = load_spec("gaussian", ["replicates=4000", "generations=8", "train_size=6", "data.mean=[0.0, 1.0, 2.0]",
                                  f"data.cov={cov}", "metrics=[log_det_ratio, kl, w2]"])
    values, _ = _simulate(spec)
    found = theory.curves(spec)
    _coverage(values["log_det_ratio"], found["log_det_ratio"], np.arange(0, 9, 2))
    assert np.all(np.abs(_z(values["kl"], found["kl"]["mean"])) < Z)
    assert found["w2"]["label"] == "bound" and "median" not in found["variance_ratio"]
    assert np.all(np.sqrt((values["w2"] ** 2).mean(axis=1)) <= found["w2"]["rms"])


@pytest.mark.parametrize("M, estimator, generations", [(3, "unbiased", 4), (50, "mle", 10)])
def test_w2_root_mean_square_and_kl_in_1d_follow_theory(M, estimator, generations):
    """E[w2^2] (a product of chi means) and E[kl], 10,000 replicates, 6 s.e.: using E[sigma_g] =
    sqrt(E[sigma_g^2]) instead of the chi means is off by 14-42 s.e. at M = 3. At M = 3 both carry the variance's
    heavy right tail (a few replicates hold the mean), so the sample's own s.e. is too small after a few
    generations: over 30 seeds, 4 generations gave |z| <= 3.1; at 10 generations one seed in 8 reached 7."""
    spec = load_spec("gaussian", ["replicates=10000", f"generations={generations}", f"train_size={M}",
                                  f"model.estimator={estimator}", "metrics=[w2, kl]", "data.cov=[[3.0]]"])
    values, _ = _simulate(spec)
    found = theory.curves(spec)
    assert np.all(np.abs(_z(values["w2"] ** 2, found["w2"]["rms"] ** 2)) < Z)
    assert np.all(np.abs(_z(values["kl"], found["kl"]["mean"])) < Z)


@pytest.mark.parametrize("overrides", [
    ["train_size=5", "generations=40"],
    ["train_size=30", "generations=60", "model.estimator=unbiased"],
    ["train_size={kind: linear, a: 2, b: 5}", "generations=40", "model.estimator=unbiased"],
])
def test_probability_of_collapse_by_generation_matches_the_share_of_collapsed_replicates(overrides):
    """P(the variance ratio has been below 0.1 by generation g) against 4,000 replicates of the engine:
    binomial s.e. at most 0.008, 6 s.e. At M = 30 (unbiased) the first passage is up to 0.13 above the
    probability of being below at g (the walk comes back up), up to 16 s.e.: the marginal would fail."""
    spec = load_spec("gaussian", ["replicates=4000", "metrics=[variance_ratio]", *overrides])
    values, _ = _simulate(spec)
    p = theory.curves(spec)["p_collapsed"]
    share = (np.minimum.accumulate(values[p["metric"]], axis=0) < p["below"]).mean(axis=1)
    se = np.sqrt(np.maximum(p["mean"] * (1 - p["mean"]), 1 / 4000) / 4000)
    assert np.all(np.abs(share - p["mean"]) < Z * se), (share, p["mean"])
    assert p["mean"][-1] > 0.3


def test_categorical_support_tail_loss_and_collapse_follow_the_transition_matrices():
    """K = 5 Zipf categories (q = 0.44 .. 0.09; the rarest is the tail), M = 6: E[support size], E[tail mass],
    E[Gini-Simpson], the share of tail categories lost and P(one category left, from the full chain of 210
    states) against 10,000 replicates of the engine over 25 generations, 6 s.e. Starting the two-category
    chains at frequency q instead of from a first draw of M examples moves generation 0's support size by
    about 0.5, 50 s.e."""
    spec = load_spec("discrete", ["replicates=10000", "generations=25", "train_size=6", "data.categories=5",
                                  "data.exponent=1.0", "metrics=[support_size, tail_mass, gini_simpson]"])
    values, chain = _simulate(spec)
    found = theory.curves(spec)
    for metric in ("support_size", "gini_simpson", "tail_mass"):
        assert np.all(np.abs(_z(values[metric], found[metric]["mean"])) < Z), metric
    R = spec.replicates
    for name, share in (("p_collapsed", (values["support_size"] < 1.5).mean(axis=1)),
                        ("p_lost_tail", (values["tail_mass"] == 0).mean(axis=1))):  # one tail category here
        p = found[name]["mean"]
        se = np.sqrt(np.maximum(p * (1 - p), 1 / R) / R)
        assert np.all(np.abs(share - p) < Z * se), (name, share, p)


def test_expected_absorption_generation_matches_the_simulation_and_the_approximation_is_labelled():
    """K = 3, M = 10, 6,000 replicates run until every chain has one category left (250 generations: the chance
    that a chain is still mixed then is below 1e-9): the mean absorption generation within 6 s.e. of the exact
    value 12.76 (s.e. ~0.13 generations; the diffusion approximation, 14.08, is 10 s.e. higher)."""
    spec = load_spec("discrete", ["replicates=6000", "generations=250", "train_size=10", "data.categories=3",
                                  "data.exponent=1.0", "metrics=[support_size]"])
    values, _ = _simulate(spec)
    assert (values["support_size"][-1] == 1).all()
    first = np.argmax(values["support_size"] == 1, axis=0)  # the generation each replicate was absorbed at
    found = theory.curves(spec)["absorption_time"]
    se = first.std(ddof=1) / np.sqrt(len(first))
    assert found["label"] == "exact" and abs(first.mean() - found["mean"][0]) < Z * se, (first.mean(), found)
    assert found["approximation"] > found["mean"][0]  # the diffusion time overestimates (see wright_fisher)
    big = theory.curves(load_spec("discrete", ["train_size=1000", "generations=10"]))["absorption_time"]
    assert big["label"] == "approximation"


@pytest.mark.parametrize("policy", ["mix", "accumulate", "accumulate_subsample", "fresh"])
def test_tail_mass_is_a_martingale_under_every_policy(policy):
    """E[tail mass] of the categorical MLE chain stays at the original's under every policy: 5,000 replicates,
    M = 20, 12 generations, 6 s.e. (each fitted probability's expectation is the previous one's, and the
    real part's is the original's)."""
    f = ["policy.real_fraction=0.2"] if policy in ("mix", "fresh") else []
    spec = load_spec("discrete", ["replicates=5000", "generations=12", "train_size=20", f"policy.kind={policy}", *f,
                                  "data.categories=20", "metrics=[tail_mass]"])
    values, _ = _simulate(spec)
    found = theory.curves(spec)
    assert np.all(np.abs(_z(values["tail_mass"], found["tail_mass"]["mean"])) < Z)
    assert "gini_simpson" not in found  # the Wright-Fisher results assume replace


def test_curves_have_the_documented_shape():
    spec = load_spec("gaussian", ["generations=20", "train_size={kind: power, M0: 10, p: 2}",
                                  "model.estimator=unbiased"])
    found = theory.curves(spec)
    for name, curve in found.items():
        assert curve["label"] in ("exact", "bound", "approximation") and curve["about"], name
        for key in ("mean", "median", "q05", "q95", "rms"):
            if key in curve:
                assert curve[key].shape == (21,), (name, key)
    assert found["sum_inv_size"]["converges"] is True
    assert theory.curves(load_spec("gaussian"))["sum_inv_size"]["converges"] is False
    assert np.all(np.diff(found["variance_ratio"]["q05"]) < 0)  # the band drifts down


def test_no_theory_where_none_applies_and_applies_says_why():
    assert theory.curves(load_spec("gmm")) == {}
    assert "No closed form" in theory.applies(load_spec("gmm"))
    assert "smoothing" in theory.applies(load_spec("discrete", ["model.smoothing=0.5"]))
    assert "only the expectations" in theory.applies(load_spec("gaussian", ["policy.kind=accumulate_subsample"]))
    assert "No closed form" in theory.applies(load_spec("kde"))
    assert theory.expected(load_spec("gaussian"), "w2") is None  # w2 has the root mean square, not the mean
    text = theory.applies(load_spec("gaussian", ["data.mean=[0.0, 0.0]", "data.cov=[[1.0, 0.0], [0.0, 1.0]]",
                                                 "train_size=2"]))
    assert "singular" in text


@pytest.mark.parametrize("sizes, d, estimator", [
    (np.full(31, 6), 3, "mle"),
    (np.round(10 * (np.arange(41) + 1) ** 1.5).astype(int), 1, "unbiased"),
    (np.full(13, 2), 1, "mle"),
])
def test_collapse_probability_is_the_first_passage_of_the_log_det_walk(sizes, d, estimator):
    """Against 100,000 walks of independent log chi-square steps drawn with numpy (the Bartlett
    decomposition, not the engine), 6 binomial s.e. (at most 0.0016); and a grid 4 times finer moves no
    value by more than 1e-4 (measured: 3e-5 at most here; the curve's stated numerical error)."""
    from modelcollapse.theory.gaussian import collapse_probability, divisors

    rng = np.random.default_rng(5)
    R, level = 100_000, d * np.log(0.1)
    D = divisors(sizes, estimator)[:, None]
    walk = np.cumsum(sum(np.log(rng.chisquare(sizes[:, None] - i, size=(len(sizes), R)) / D)
                         for i in range(1, d + 1)), axis=0)
    share = (np.minimum.accumulate(walk, axis=0) < level).mean(axis=1)
    p = collapse_probability(sizes, d, estimator, 0.1)
    se = np.sqrt(np.maximum(p * (1 - p), 1 / R) / R)
    assert np.all(np.abs(share - p) < Z * se), (share, p)
    fine = collapse_probability(sizes, d, estimator, 0.1, per_sd=128, max_cells=80_000)
    assert np.max(np.abs(fine - p)) < 1e-4
