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


def test_no_theory_where_none_applies():
    assert theory.expected(load_spec("gaussian-accumulate"), "variance_ratio") is None
    assert theory.expected(load_spec("gmm"), "l2_distance") is None
    assert theory.expected(load_spec("gaussian"), "w2") is None
