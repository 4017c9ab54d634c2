"""The KDE family's replicates sampled and scored at once (``BatchedKDE``): the same numbers as the loop over
replicates (``ReplicatedModel`` of ``KDEModel``), bit for bit where the brief promises it, whatever the
scoring blocks, ragged replicates, stopped ones and resumed runs."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.neighbors import KernelDensity

from modelcollapse import load_spec, run
from modelcollapse.chain import Chain
from modelcollapse.models import kde
from modelcollapse.models.base import ReplicatedModel
from modelcollapse.models.kde import BatchedKDE, KDEModel

R = 5


def _pair(bandwidth="scott") -> tuple[ReplicatedModel, BatchedKDE]:
    factory = partial(KDEModel, bandwidth=bandwidth)
    return ReplicatedModel(factory, R), BatchedKDE(factory, R)


def _rngs(seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, r]) for r in range(R)]


def _ragged_weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """0/1 weights keeping a different number of examples per replicate (a filter's), one replicate none."""
    w = (rng.random((R, n)) < np.linspace(0.3, 0.9, R)[:, None]).astype(float)
    w[2] = 0.0
    return w


def _fitted(rng: np.random.Generator, d: int = 1, ragged: bool = False, n: int = 60):
    X = rng.normal(size=(R, n, d)) * np.arange(1, R + 1)[:, None, None]
    loop, batched = _pair()
    kw = {"sample_weight": _ragged_weights(rng, n), "min_size": 1} if ragged else {}
    return loop.fit(X, rng=_rngs(), **kw), batched.fit(X, rng=_rngs(), **kw)


def test_the_kde_family_runs_all_replicates_batched():
    assert isinstance(Chain(load_spec("kde", ["replicates=2"])).model, BatchedKDE)


@pytest.mark.parametrize("d, ragged", [(1, False), (3, False), (2, True)])
def test_samples_are_the_per_replicate_draws_bit_for_bit(rng, d, ragged):
    loop, batched = _fitted(rng, d, ragged)
    assert loop.stopped == batched.stopped and (2 in batched.stopped) == ragged
    a_rngs, b_rngs = _rngs(7), _rngs(7)
    a, b = loop.sample(300, rng=a_rngs), batched.sample(300, rng=b_rngs)
    np.testing.assert_array_equal(a, b)  # NaN rows for a stopped replicate, as the loop gives
    # The same generator calls: every stream is left where the loop left it (a stopped one untouched).
    assert [g.bit_generator.state for g in a_rngs] == [g.bit_generator.state for g in b_rngs]


@pytest.mark.parametrize("d, ragged", [(1, False), (3, False), (2, True)])
def test_log_prob_is_the_per_replicate_score_and_scikit_learns(rng, d, ragged):
    loop, batched = _fitted(rng, d, ragged)
    X = rng.normal(size=(R, 80, d)) * 2
    got = batched.log_prob(X)
    np.testing.assert_allclose(got, loop.log_prob(X), rtol=1e-12, atol=0)
    shared = batched.log_prob(X[0])  # one set of points under every replicate
    for r, m in enumerate(batched.models):
        if m is None:
            assert np.isnan(got[r]).all() and np.isnan(shared[r]).all()
            continue
        ref = KernelDensity(bandwidth=m.bandwidth_).fit(m.data_)
        np.testing.assert_allclose(got[r], ref.score_samples(X[r]), rtol=1e-10)
        np.testing.assert_allclose(shared[r], m.log_prob(X[0]), rtol=1e-12, atol=0)


def test_kde_log_prob_is_the_plain_formula(rng):
    """The blocked, in-place kernel computes log mean_i N(x; x_i, h^2 I), nothing else."""
    data, X, h = rng.normal(size=(300, 2)), rng.normal(size=(50, 2)) * 3, 0.4
    sq = np.sum((X[:, None, :] - data[None]) ** 2, axis=-1)
    plain = logsumexp(-0.5 * sq / h**2, axis=1) - np.log(300) - np.log(2 * np.pi * h**2)
    np.testing.assert_allclose(KDEModel(bandwidth=h).fit(data).log_prob(X), plain, rtol=1e-12)


@pytest.mark.parametrize("budget", [1, 8 * 60 * 2 * 7, 8 * 60 * 2 * 80 * 2, 2**30])
def test_scoring_blocks_change_no_number(rng, monkeypatch, budget):
    """Below one point's row, a few rows, two whole KDEs a block (the last block holds one), everything."""
    loop, batched = _fitted(rng, d=2)
    X = rng.normal(size=(R, 80, 2))
    want = batched.log_prob(X)  # the default block
    monkeypatch.setattr(kde, "SCORE_BLOCK_BYTES", budget)
    np.testing.assert_array_equal(batched.log_prob(X), want)
    np.testing.assert_array_equal(batched.models[0].log_prob(X[0]), want[0])


def test_ragged_fits_keep_the_loops_semantics(rng):
    """sample_weight leaves examples out; a replicate left with fewer than min_size keeps its model; one
    with none at its first fit is stopped; the state pads and trims exactly as the loop's."""
    loop, batched = _fitted(rng, d=1, ragged=True)
    assert [None if m is None else len(m.data_) for m in loop.models] == \
        [None if m is None else len(m.data_) for m in batched.models]
    X = rng.normal(size=(R, 60, 1))
    w = np.ones((R, 60))
    w[1, 5:] = 0.0  # 5 left, under min_size: replicate 1 keeps its previous fit
    before = batched.models[1]
    for model in (loop, batched):
        model.fit(X, rng=_rngs(1), sample_weight=w, min_size=10)
    assert batched.models[1] is before and batched.stopped == loop.stopped == {2: batched.stopped[2]}
    state, loop_state = batched.state_dict(), loop.state_dict()
    assert state.keys() == loop_state.keys() and "data#rows" in state
    for k in state:  # NaN rows for the stopped replicate in both
        np.testing.assert_array_equal(state[k], loop_state[k])
    again = BatchedKDE(partial(KDEModel), R).load_state_dict(state, stopped=batched.stopped)
    Y = rng.normal(size=(R, 40, 1))
    np.testing.assert_array_equal(again.log_prob(Y), batched.log_prob(Y))
    np.testing.assert_array_equal(again.sample(20, rng=_rngs(3)), loop.sample(20, rng=_rngs(3)))


def test_fit_draws_the_loops_seeds_and_snapshots_stay_frozen(rng):
    loop, batched = _pair()
    X = rng.normal(size=(R, 30, 1))
    a, b = _rngs(), _rngs()
    loop.fit(X, rng=a)
    batched.fit(X, rng=b)
    assert [g.bit_generator.state for g in a] == [g.bit_generator.state for g in b]
    frozen = batched.snapshot()
    batched.fit(X + 1.0, rng=b)
    np.testing.assert_array_equal(frozen.models[0].data_, X[0])
    np.testing.assert_array_equal(batched.models[0].data_, X[0] + 1.0)


@pytest.mark.parametrize("sets", [
    [],
    ["policy={kind: filter, detector: {kind: oracle, false_negative_rate: 0.5}}"],  # ragged replicates
])
def test_a_resumed_kde_run_gives_the_same_numbers(sets, tmp_path):
    common = ["replicates=3", "train_size=60", "heldout_size=80", "metric_samples=100", "checkpoint_every=1",
              "metrics=[nll, w1, w2, tail_mass, variance_ratio]", *sets]
    whole = run(load_spec("kde", [*common, "generations=4"]), tmp_path / "a", progress=False)
    run(load_spec("kde", [*common, "generations=2"]), tmp_path / "b", progress=False)
    resumed = run(load_spec("kde", [*common, "generations=4"]), tmp_path / "b", resume=True, progress=False)
    assert whole.read_jsonl("metrics.jsonl") == resumed.read_jsonl("metrics.jsonl")
    assert whole.read_jsonl("provenance.jsonl") == resumed.read_jsonl("provenance.jsonl")
