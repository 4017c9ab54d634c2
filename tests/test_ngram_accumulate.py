"""An accumulating n-gram chain keeps n-gram counts, not the pool: the numbers of a refit on the real set
plus every synthetic set, exactly (counts are integers), the text extras of every generation, and a
resume that continues to the numbers of a straight run."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest

from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.loop import run
from modelcollapse.models import NGramModel, ReplicatedModel
from modelcollapse.resources import estimate
from modelcollapse.store import STATS, RunStore

# Small enough for seconds (the wiki text loads once per process, about 6 s of it); self_bleu, most of a
# generation's time, is left out: the metrics kept read the model, its samples and the held-out text.
SPEC = ["replicates=3", "generations=6", "train_size=60", "metric_samples=20", "heldout_size=50",
        "checkpoint_every=2", "policy.kind=accumulate",
        "metrics=[perplexity, sample_perplexity, vocab_size, rare_token_mass, distinct_2]"]
TEXT_EXTRAS = {"preview_tokens", "token_counts", "sequence_perplexity"}


def _spec(*extra: str):
    return load_spec("lm-ngram", [*SPEC, *extra])


def _lines(store: RunStore, name: str = "metrics.jsonl") -> list[str]:
    return (store.path / name).read_text().splitlines()


def _pooled(monkeypatch) -> None:
    """The family without statistics: the chain keeps the pool and refits it, as before."""
    monkeypatch.setattr(NGramModel, "fit_statistics", None)


def _crash_at(g_crash: int, monkeypatch) -> None:
    original = Chain.step

    def step(self, g):
        if g == g_crash:
            raise KeyboardInterrupt
        return original(self, g)

    monkeypatch.setattr(Chain, "step", step)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> RunStore:
    """The chain straight through, keeping statistics."""
    return run(_spec(), tmp_path_factory.mktemp("ngram") / "straight", progress=False)


# -- (a) the statistics ---------------------------------------------------------------------------
@pytest.mark.parametrize("order, discount", [(1, 0.0), (2, 0.5), (3, 0.75), (4, 0.0)])
def test_a_fit_from_summed_counts_is_the_refit_on_the_pool(order, discount):
    """Per replicate, real blocks plus three synthetic sets of other sizes (so the replicates' count tables
    differ in length and stack ragged): the same tables, probabilities and samples as a refit."""
    rng = np.random.default_rng(0)
    V, R, L = 40, 4, 12
    sets = [rng.integers(0, V, (R, n, L)) for n in (30, 20, 25, 10)]
    sets[2] = sets[2] % 7  # a collapsing set: few distinct tokens
    make = partial(NGramModel, vocab_size=V, order=order, discount=discount, gen_tokens=L)
    kept = ReplicatedModel(make, R)
    stats = kept.statistics(sets[0])
    for X in sets[1:]:
        stats = kept.add_statistics(stats, kept.statistics(X))
    assert all(v.dtype == np.int64 for v in stats.values())  # exact integers
    kept.fit_statistics(stats)
    refit = ReplicatedModel(make, R).fit(np.concatenate(sets, axis=1))
    for a, b in zip(kept.models, refit.models):
        for ta, tb in zip(a.tables_, b.tables_):
            for key in tb:
                assert ta[key].dtype == tb[key].dtype and np.array_equal(ta[key], tb[key]), key
    test = rng.integers(0, V, (R, 15, L))
    np.testing.assert_array_equal(kept.log_prob(test), refit.log_prob(test))
    draws = [kept.sample(9, rng=list(np.random.default_rng(1).spawn(R))),
             refit.sample(9, rng=list(np.random.default_rng(1).spawn(R)))]
    np.testing.assert_array_equal(*draws)
    # The state of a model fitted from counts is the counts, in small types; loading it gives the same model.
    state = kept.state_dict()
    assert {"ngram_keys", "ngram_counts"} <= set(state) and "data" not in state
    loaded = ReplicatedModel(make, R).load_state_dict(state)
    np.testing.assert_array_equal(loaded.log_prob(test), refit.log_prob(test))


def test_statistics_of_a_single_model_add_like_a_concatenation():
    rng = np.random.default_rng(3)
    m = NGramModel(vocab_size=20, order=3, discount=0.3)
    a, b = rng.integers(0, 20, (8, 10)), rng.integers(0, 5, (6, 10))
    both = m.add_statistics(m.statistics(a), m.statistics(b))
    whole = m.statistics(np.concatenate([a, b]))
    for key in whole:
        assert both[key].dtype == whole[key].dtype == np.int64 and np.array_equal(both[key], whole[key])
    with pytest.raises(ValueError, match="token ids must lie"):
        m.statistics(np.full((2, 3), 20))


def test_a_stopped_replicate_keeps_no_statistics_and_is_never_fitted_again():
    """Its samples are NaN: its rows of the stacked statistics are zeros, never read, and the others'
    counts stay exact integers."""
    rng = np.random.default_rng(5)
    make = partial(NGramModel, vocab_size=10, order=2)
    model = ReplicatedModel(make, 3)
    stats = model.statistics(rng.integers(0, 10, (3, 8, 6)))
    model.fit_statistics(stats)
    model.models[1], model.stopped[1] = None, "ValueError: stopped for the test"
    X = model.sample(5, rng=[np.random.default_rng(r) for r in range(3)])
    assert np.isnan(X[1]).all()
    stats = model.add_statistics(stats, model.statistics(X))
    assert stats["keys_2"].dtype == np.int64 and not stats["counts_2"][1].any()
    model.fit_statistics(stats)
    assert model.models[1] is None and model.stopped == {1: "ValueError: stopped for the test"}


# -- (b) the chain --------------------------------------------------------------------------------
def _chain_generations(spec) -> tuple[Chain, list]:
    chain = Chain(spec)
    out = [chain.first()]
    out += [chain.step(g) for g in range(1, spec.generations + 1)]
    chain.close()
    return chain, out


def test_an_accumulating_ngram_chain_keeps_counts_and_gives_the_numbers_of_the_pooled_refit(monkeypatch):
    """Tolerance 0: the tables are built from the same integer counts, so every metric, extra and
    provenance count is exactly the pooled chain's."""
    spec = _spec()
    chain, fast = _chain_generations(spec)
    assert chain.incremental and chain.history == []  # no pool kept
    assert chain.stats["keys_3"].dtype == np.int64 and "keys_3#rows" in chain.stats  # replicates' tables differ
    _pooled(monkeypatch)
    chain, pooled = _chain_generations(spec)
    assert not chain.incremental and len(chain.history) == spec.generations
    for a, b in zip(fast, pooled):
        assert a.metrics.keys() == b.metrics.keys() and a.extras.keys() == b.extras.keys()
        for name in a.metrics:
            np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
        for name in a.extras:
            np.testing.assert_array_equal(a.extras[name], b.extras[name], err_msg=name)
        np.testing.assert_array_equal(a.provenance, b.provenance)


def test_the_run_directory_holds_the_pooled_numbers_and_the_text_extras_of_every_generation(
        straight, tmp_path, monkeypatch):
    _pooled(monkeypatch)
    pooled = run(_spec(), tmp_path / "pooled", progress=False)
    assert _lines(straight) == _lines(pooled)  # every metric value, to the last digit
    assert _lines(straight, "provenance.jsonl") == _lines(pooled, "provenance.jsonl")
    for g in range(_spec().generations + 1):
        kept, refit = straight.generation(g), pooled.generation(g)
        assert TEXT_EXTRAS <= set(kept)  # (d) written in the incremental path too
        for name in TEXT_EXTRAS:
            np.testing.assert_array_equal(kept[name], refit[name], err_msg=f"generation {g}: {name}")
        if g:
            assert not any(k.startswith("synthetic_") for k in kept) and "synthetic_X" in refit
            assert "model/ngram_keys" in kept and "model/data" in refit  # counts, not the pool's blocks


def test_image_extras_read_only_the_real_set():
    """Images say so too (extras_need_pool False): their extras from the real set alone are those of an
    accumulated training set, should a family with statistics ever fit images."""
    from types import SimpleNamespace

    from modelcollapse.batch import Batch
    from modelcollapse.data import load_source

    source = load_source(load_spec("vae-digits").data)
    assert not source.extras_need_pool
    rngs = [np.random.default_rng(r) for r in range(2)]
    real = source.draw(40, rngs)
    synthetic = [Batch(np.zeros((2, 25, 8, 8)), np.full((2, 25), g)) for g in range(3)]
    ctx = SimpleNamespace(replicates=2, memo={"samples": np.ones((2, 40, 8, 8))})
    alone, pooled = source.extras(ctx, real), source.extras(ctx, Batch.concat([real, *synthetic]))
    for name in pooled:
        np.testing.assert_array_equal(alone[name], pooled[name], err_msg=name)


# -- (c) resume -----------------------------------------------------------------------------------
def test_a_killed_ngram_chain_resumes_from_its_counts_to_the_same_numbers(straight, tmp_path, monkeypatch):
    spec = _spec()
    _crash_at(5, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", progress=False)
    store = RunStore(tmp_path / "cut")
    assert json.loads((store.path / "manifest.json").read_text())["generations_completed"] == 4
    ck = store.read_npz("checkpoint.npz")
    assert {f"{STATS}keys_3", f"{STATS}counts_1"} <= set(ck) and ck[f"{STATS}counts_3"].dtype == np.int64
    monkeypatch.undo()
    resumed = run(spec, store.path, resume=True, progress=False)
    assert _lines(resumed) == _lines(straight)
    assert _lines(resumed, "provenance.jsonl") == _lines(straight, "provenance.jsonl")
    last = spec.generations
    for key, value in straight.generation(last).items():
        np.testing.assert_array_equal(resumed.generation(last)[key], value, err_msg=key)


def test_a_run_that_kept_the_pool_resumes_keeping_counts(straight, tmp_path, monkeypatch):
    """A run directory written before n-gram statistics (synthetic sets stored, no counts in the
    checkpoint): the resume adds up the stored sets and continues to the numbers of a straight run."""
    spec = _spec()
    _pooled(monkeypatch)
    _crash_at(5, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "old", progress=False)
    store = RunStore(tmp_path / "old")
    assert not any(k.startswith(STATS) for k in store.read_npz("checkpoint.npz"))
    assert "synthetic_X" in store.generation(3)
    monkeypatch.undo()
    resumed = run(spec, store.path, resume=True, progress=False)
    assert _lines(resumed) == _lines(straight)
    assert any(k.startswith(STATS) for k in resumed.read_npz("checkpoint.npz"))  # counts from here on


# -- the estimate ---------------------------------------------------------------------------------
def test_the_estimate_counts_no_pool_for_an_accumulating_ngram_chain():
    base = ["replicates=3", "generations=200", "train_size=1000"]
    kept = estimate(load_spec("lm-ngram", [*base, "policy.kind=accumulate"]))
    pooled = estimate(load_spec("lm-ngram", [*base, "policy.kind=accumulate_subsample"]))
    assert kept.parts["accumulated synthetic sets (disk)"] == 0
    assert pooled.parts["accumulated synthetic sets (disk)"] > 0
    assert pooled.parts["training sets (memory)"] > 50 * kept.parts["training sets (memory)"]
