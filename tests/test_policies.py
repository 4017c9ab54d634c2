"""Policy semantics and provenance counts."""

import numpy as np
import pytest

from modelcollapse.policies import POLICIES, REAL, Batch, build_policy, provenance_counts

R, N = 3, 10


def _real() -> Batch:
    X = np.arange(R * N, dtype=float).reshape(R, N, 1)  # distinct values: easy to trace
    return Batch(X, np.full((R, N), REAL))


def _synthetic(g: int) -> Batch:
    X = 1000.0 * (g + 1) + np.arange(R * N, dtype=float).reshape(R, N, 1)
    return Batch(X, np.full((R, N), g))


def _fresh_real(n: int) -> Batch:
    return Batch(np.full((R, n, 1), -5.0), np.full((R, n), REAL))


def _policy(kind: str, fraction: float | None = None):
    """A policy from its spec section, as the engine builds it."""
    spec = POLICIES.get(kind).spec
    return build_policy(spec() if fraction is None else spec(real_fraction=fraction))


def _build(kind: str, g: int, fraction: float = 0.0) -> Batch:
    policy = _policy(kind, fraction)
    history = [_synthetic(j) for j in range(g)] if policy.needs_history else [_synthetic(g - 1)]
    rngs = [np.random.default_rng(r) for r in range(R)]
    return policy.build(real=_real(), synthetic=history, train_size=N, rngs=rngs, draw_real=_fresh_real)


def test_registry_lists_the_issue_policies():
    assert {"replace", "mix", "fresh", "accumulate", "accumulate_subsample"} <= set(POLICIES.names())


def test_replace_trains_on_the_previous_generation_only():
    out = _build("replace", 4)
    np.testing.assert_array_equal(out.X, _synthetic(3).X)
    np.testing.assert_array_equal(provenance_counts(out.origin, 4), [[0, 0, 0, 0, N]] * R)


def test_mix_takes_a_fraction_from_the_original_real_set():
    out = _build("mix", 2, 0.3)
    counts = provenance_counts(out.origin, 2)
    np.testing.assert_array_equal(counts, [[3, 0, 7]] * R)
    real_rows = out.X[out.origin == REAL].reshape(R, 3)
    for r in range(R):
        assert set(real_rows[r]) <= set(_real().X[r, :, 0])  # drawn from replicate r's own real set
        assert len(set(real_rows[r])) == 3  # without replacement


def test_fresh_draws_new_real_data():
    out = _build("fresh", 2, 0.3)
    np.testing.assert_array_equal(provenance_counts(out.origin, 2), [[3, 0, 7]] * R)
    assert np.all(out.X[out.origin == REAL] == -5.0)


def test_accumulate_keeps_everything():
    out = _build("accumulate", 3)
    assert len(out) == N * 4
    np.testing.assert_array_equal(provenance_counts(out.origin, 3), [[N, N, N, N]] * R)


def test_accumulate_subsample_draws_a_fixed_size_uniform_subset():
    out = _build("accumulate_subsample", 3)
    assert len(out) == N
    counts = provenance_counts(out.origin, 3)
    assert (counts.sum(axis=1) == N).all()
    for r in range(R):
        assert len(np.unique(out.X[r, :, 0])) == N  # no example twice


def test_accumulate_subsample_is_uniform_over_the_pool():
    """Each of the 4 sources holds a quarter of the pool; over many draws each gets ~N/4."""
    policy = _policy("accumulate_subsample")
    totals = np.zeros(4)
    draws = 2000
    for seed in range(draws // R):
        rngs = [np.random.default_rng([seed, r]) for r in range(R)]
        out = policy.build(real=_real(), synthetic=[_synthetic(j) for j in range(3)], train_size=N, rngs=rngs,
                           draw_real=_fresh_real)
        totals += provenance_counts(out.origin, 3).sum(axis=0)
    share = totals / totals.sum()
    # Hypergeometric counts: the share's s.d. is below sqrt(0.25*0.75 / (draws*N)) ~ 0.003; 6 s.d. ~ 0.02.
    np.testing.assert_allclose(share, 0.25, atol=0.02)


def test_provenance_counts_columns():
    origin = np.array([[REAL, 0, 0, 2], [1, 1, 1, REAL]])
    np.testing.assert_array_equal(provenance_counts(origin, 3), [[1, 2, 0, 1], [1, 0, 3, 0]])


def test_policies_are_frozen_dataclasses():
    policy = _policy("mix", 0.1)
    with pytest.raises(Exception):
        policy.real_fraction = 0.5


def test_take_from_equals_concatenating_then_taking():
    from modelcollapse.batch import take_from

    rng = np.random.default_rng(0)
    sets = [Batch(rng.normal(size=(R, n, 2)), np.full((R, n), j), np.full((R, n), 7) if j == 1 else None,
                  rng.random((R, n)) if j == 2 else None) for j, n in enumerate([4, 6, 3, 5])]
    idx = np.stack([rng.choice(18, size=9, replace=False) for _ in range(R)])
    want, got = Batch.concat(sets).take(idx), take_from(sets, idx)
    for a, b in ((want.X, got.X), (want.origin, got.origin), (want.labels, got.labels), (want.weight, got.weight)):
        np.testing.assert_array_equal(a, b)
