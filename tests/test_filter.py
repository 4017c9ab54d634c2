"""The contaminated web, filtering and detectors: provenance, detector statistics, weighted fits,
what a perfect filter buys, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from modelcollapse import load_spec, run
from modelcollapse.batch import REAL
from modelcollapse.chain import Chain
from modelcollapse.config import ExperimentSpec
from modelcollapse.detectors import detection_metrics
from modelcollapse.models import GaussianModel
from modelcollapse.models.categorical import CategoricalModel
from modelcollapse.policies.web import share_at


def spec(policy: dict, **kw) -> ExperimentSpec:
    base = {"replicates": 8, "generations": 4, "train_size": 50, "metrics": ["variance_ratio", "mean_error"]}
    return ExperimentSpec.model_validate({**base, **kw, "policy": policy})


def chain(s: ExperimentSpec):
    c = Chain(s)
    try:
        return [c.first()] + [c.step(g) for g in range(1, s.generations + 1)]
    finally:
        c.close()


# -- the web ------------------------------------------------------------------------------------
def test_share_schedules():
    assert share_at(0.3, 7, 10) == 0.3
    assert share_at([0.1, 0.2, 0.4], 3, 3) == 0.4
    lin = {"schedule": "linear", "start": 0.1, "end": 0.9}
    assert share_at(lin, 1, 5) == pytest.approx(0.1) and share_at(lin, 5, 5) == pytest.approx(0.9)
    assert share_at(lin, 3, 5) == pytest.approx(0.5)
    logi = {"schedule": "logistic", "start": 0.0, "end": 1.0, "midpoint": 4, "steepness": 2.0}
    assert share_at(logi, 4, 8) == pytest.approx(0.5)
    assert share_at(logi, 1, 8) < 0.01 and share_at(logi, 8, 8) > 0.99


@pytest.mark.parametrize("source", ["last", "all"])
def test_web_provenance_follows_the_schedule(source):
    shares = [0.2, 0.4, 0.6, 0.8]
    gens = chain(spec({"kind": "web", "synthetic_share": shares, "source": source}))
    for g in range(1, 5):
        counts = gens[g].provenance
        n_syn = round(shares[g - 1] * 50)
        assert (counts[:, 0] == 50 - n_syn).all()  # the rest is fresh real data
        assert (counts[:, 1:].sum(axis=1) == n_syn).all()
        if source == "last":
            assert (counts[:, g] == n_syn).all()  # all from the previous generation
    # source: all draws from every earlier generation's output: at generation 4 (48 of 200 published
    # examples drawn uniformly), generations 0-2 supply about three quarters; that none do for 8
    # replicates has probability (50/200 choose 40)... below 1e-20.
    if source == "all":
        assert gens[4].provenance[:, 1:4].sum() > 0


def test_web_real_part_is_fresh_each_generation():
    s = spec({"kind": "web", "synthetic_share": 0.0})
    c = Chain(s)
    try:
        c.first()
        a = c.policy.build(real=c.real, synthetic=[c.real], train_size=50, rngs=c.streams["policy"],
                           draw_real=c.draw_real, context=c.context(1))
        assert not np.isin(a.X[0], c.real.X[0]).any()  # new draws, not generation 0's set
    finally:
        c.close()


# -- detector statistics ------------------------------------------------------------------------
def test_detection_metrics_on_known_answers():
    origin = np.array([[REAL, REAL, REAL, REAL, 0, 0, 0, 0, 0, 0]])
    flags = np.array([[True, False, False, False, True, True, True, True, False, False]])
    m = detection_metrics(flags, origin)
    assert m["detector_accuracy"][0] == pytest.approx(7 / 10)  # 3 real right + 4 synthetic right
    assert m["detector_precision"][0] == pytest.approx(4 / 5)
    assert m["detector_recall"][0] == pytest.approx(4 / 6)
    assert m["detector_false_positive_rate"][0] == pytest.approx(1 / 4)
    nothing = detection_metrics(np.zeros((1, 3), bool), np.full((1, 3), REAL))
    assert np.isnan(nothing["detector_precision"][0]) and np.isnan(nothing["detector_recall"][0])


def test_oracle_error_rates_are_realised():
    fpr, fnr = 0.05, 0.2
    s = spec({"kind": "filter", "base": {"kind": "web", "synthetic_share": 0.5},
              "detector": {"kind": "oracle", "false_positive_rate": fpr, "false_negative_rate": fnr}},
             replicates=20, train_size=500, generations=5)
    gens = chain(s)
    got_fpr = np.mean([g.metrics["detector_false_positive_rate"] for g in gens[1:]])
    got_recall = np.mean([g.metrics["detector_recall"] for g in gens[1:]])
    # 20 replicates x 5 generations x 1000 candidates (crawl 2), half real: 50,000 of each; the standard
    # errors are 0.001 (FPR) and 0.0018 (recall), so 0.01 is over 5 of them: fails for no seed in practice.
    assert got_fpr == pytest.approx(fpr, abs=0.01)
    assert got_recall == pytest.approx(1 - fnr, abs=0.01)
    # The crawl kept train_size examples (2x candidates, ~52% pass) and the provenance counts only those.
    for g in gens[1:]:
        assert (g.provenance.sum(axis=1) == g.metrics["train_kept"]).all()
        assert (g.metrics["train_kept"] == 500).all()
        # passed synthetic: 0.5 * 0.2 / (0.5 * 0.2 + 0.5 * 0.95) of the kept set
        assert np.mean(g.metrics["synthetic_passed"]) == pytest.approx(0.1 / 0.575, abs=0.03)


# -- what a perfect filter buys ------------------------------------------------------------------
def test_perfect_oracle_on_replace_keeps_generation_0_like_real_data():
    """A replace chain offers only synthetic data: a perfect filter drops all of it, so every model
    keeps what it learned from real data (variance ratio at generation 0's value), while the chain
    without a filter collapses."""
    kw = {"replicates": 400, "generations": 20, "train_size": 20}
    filtered = chain(spec({"kind": "filter", "detector": {"kind": "oracle"}}, **kw))
    plain = chain(spec({"kind": "replace"}, **kw))
    real_only = chain(spec({"kind": "fresh", "real_fraction": 1.0}, **kw))
    v0 = filtered[0].metrics["variance_ratio"]
    np.testing.assert_array_equal(filtered[-1].metrics["variance_ratio"], v0)  # nothing synthetic learned
    assert (filtered[-1].metrics["train_kept"] == 0).all()
    # A chain fed real data only has E[variance ratio] = (M - 1) / M = 0.95 at every generation (MLE);
    # the mean of 400 replicates has standard error sqrt(2 / M) * 0.95 / 20 = 0.015: 0.06 is 4 of them.
    for gens in (filtered, real_only):
        assert np.mean(gens[-1].metrics["variance_ratio"]) == pytest.approx(0.95, abs=0.06)
    # Without the filter: E = 0.95^21 = 0.34 after 20 generations.
    assert np.mean(plain[-1].metrics["variance_ratio"]) < 0.5


def test_perfect_oracle_on_a_web_trains_on_real_data_only():
    gens = chain(spec({"kind": "filter", "base": {"kind": "web", "synthetic_share": 0.6},
                       "detector": {"kind": "oracle"}, "crawl": 3.0}))
    for g in gens[1:]:
        assert (g.provenance[:, 1:] == 0).all()  # nothing synthetic got through
        assert (g.provenance[:, 0] == 50).all()  # and the crawl found enough real data (150 x 0.4 = 60)
        assert (g.metrics["synthetic_passed"] == 0).all()


def test_resample_and_downweight_keep_the_size():
    for action in ("resample", "downweight"):
        gens = chain(spec({"kind": "filter", "base": {"kind": "mix", "real_fraction": 0.5},
                           "detector": {"kind": "oracle"}, "action": action}))
        for g in gens[1:]:
            assert g.provenance.sum(axis=1).tolist() == [50] * 8
        if action == "resample":  # every synthetic example replaced by a real one
            assert (gens[-1].provenance[:, 0] == 50).all()
        else:  # 25 synthetic at weight 0.1 of 25 + 2.5
            np.testing.assert_allclose(gens[-1].metrics["train_kept"], 27.5)


# -- learned detectors ---------------------------------------------------------------------------
def test_learned_detector_beats_chance_on_a_collapsing_gaussian():
    # Small training sets (M = 20) make generation 5 differ from the truth in mean and spread (each
    # generation moves the mean by N(0, 1/20)); candidates are half real, so chance is 0.5. The mean of
    # 16 replicates' accuracies has a standard error near 0.02; 0.55 leaves a wide margin below what
    # QDA reaches (about 0.6-0.7).
    gens = chain(spec({"kind": "filter", "base": {"kind": "web", "synthetic_share": 0.5},
                       "detector": {"kind": "learned", "train_size": 500}},
                      replicates=16, generations=5, train_size=20))
    assert np.mean(gens[5].metrics["detector_accuracy"]) > 0.55


# -- weighted fits -------------------------------------------------------------------------------
def test_gaussian_weights_match_numpy_and_dropping():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3, 40, 2))
    w = rng.uniform(0.1, 2.0, size=(3, 40))
    for estimator, ddof in (("mle", 0), ("unbiased", 1)):
        m = GaussianModel(estimator=estimator).fit(X, sample_weight=w)
        for r in range(3):
            # numpy's weighted covariance (aweights) is the reference: the same divisor V1 - ddof V2 / V1
            ref = np.cov(X[r].T, aweights=w[r], ddof=ddof) if ddof else np.cov(X[r].T, aweights=w[r], bias=True)
            np.testing.assert_allclose(m.covariance_[r], ref, rtol=1e-12)
            np.testing.assert_allclose(m.mean_[r], np.average(X[r], axis=0, weights=w[r]), rtol=1e-12)
        keep = (np.arange(40) % 3 != 0).astype(float)
        dropped = GaussianModel(estimator=estimator).fit(X, sample_weight=np.tile(keep, (3, 1)))
        plain = GaussianModel(estimator=estimator).fit(X[:, keep > 0])
        np.testing.assert_allclose(dropped.covariance_, plain.covariance_, rtol=1e-12)


def test_categorical_weights_count_their_weight():
    X = np.array([[0, 1, 1, 2], [2, 2, 2, 0]])
    w = np.array([[1.0, 0.5, 0.5, 0.0], [1.0, 1.0, 0.0, 2.0]])
    m = CategoricalModel(n_categories=3).fit(X, sample_weight=w)
    np.testing.assert_allclose(m.probs_, [[0.5, 0.5, 0.0], [0.5, 0.0, 0.5]])


def test_batched_gmm_drop_equals_a_fit_on_the_kept_examples():
    from modelcollapse.models.gmm import GMMModel

    s = spec({"kind": "filter", "detector": {"kind": "oracle", "false_negative_rate": 0.5}}, data={"kind": "gmm"},
             model={"kind": "gmm", "n_components": 2}, metrics=["variance_ratio"], replicates=4, generations=2,
             train_size=200)
    c = Chain(s)
    try:
        c.first()
        seeds_rng = [np.random.default_rng(r) for r in range(4)]
        X = c.source.draw(200, seeds_rng).X
        w = (np.random.default_rng(9).random((4, 200)) < 0.6).astype(float)  # ragged: 4 different sizes
        child = [np.random.default_rng(100 + r) for r in range(4)]
        seeds = [np.random.default_rng(100 + r).integers(2**63) for r in range(4)]
        c.model.fit(X, rng=child, sample_weight=w, min_size=2)
        for r in range(4):
            ref = GMMModel(n_components=2).fit(X[r][w[r] > 0], rng=np.random.default_rng(int(seeds[r])))
            np.testing.assert_allclose(c.model.models[r].means_, ref.means_, rtol=1e-8)
    finally:
        c.close()


# -- runs: resume and bad input --------------------------------------------------------------------
FILTER_SET = ["replicates=3", "train_size=40", "metric_samples=200", "heldout_size=100",
              "policy={kind: filter, base: {kind: web, synthetic_share: 0.7, source: all}, "
              "detector: {kind: learned, train_size: 100}}"]


def test_a_resumed_filter_run_gives_the_same_numbers(tmp_path):
    whole = run(load_spec("gaussian", [*FILTER_SET, "generations=6"]), tmp_path / "a", progress=False)
    run(load_spec("gaussian", [*FILTER_SET, "generations=3", "checkpoint_every=1"]), tmp_path / "b", progress=False)
    resumed = run(load_spec("gaussian", [*FILTER_SET, "generations=6", "checkpoint_every=1"]), tmp_path / "b",
                  resume=True, progress=False)
    assert whole.read_jsonl("metrics.jsonl") == resumed.read_jsonl("metrics.jsonl")
    assert whole.read_jsonl("provenance.jsonl") == resumed.read_jsonl("provenance.jsonl")
    rows = whole.read_jsonl("metrics.jsonl")
    assert {"detector_accuracy", "synthetic_passed", "train_kept"} <= set(rows[0])
    assert rows[0]["detector_accuracy"] is None and rows[-1]["detector_accuracy"] is not None


def test_a_schedule_over_the_run_cannot_be_stretched_on_resume(tmp_path):
    from modelcollapse.store import RunDirError

    web = "policy={kind: web, synthetic_share: {schedule: linear, start: 0.2, end: 0.8}}"
    run(load_spec("gaussian", ["replicates=2", "generations=3", web]), tmp_path / "a", progress=False)
    with pytest.raises(RunDirError, match="span"):
        run(load_spec("gaussian", ["replicates=2", "generations=6", web]), tmp_path / "a", resume=True, progress=False)
    fixed = "policy={kind: web, synthetic_share: {schedule: linear, start: 0.2, end: 0.8, span: 6}}"
    run(load_spec("gaussian", ["replicates=2", "generations=3", fixed]), tmp_path / "b", progress=False)
    store = run(load_spec("gaussian", ["replicates=2", "generations=6", fixed]), tmp_path / "b", resume=True,
                progress=False)
    assert store.manifest()["status"] == "completed"


@pytest.mark.parametrize("setting, message", [
    ("policy={kind: filter, detector: {kind: oracle, false_positive_rate: 1.5}}", "false_positive_rate"),
    ("policy={kind: filter, detector: {kind: oracle, false_negative_rate: -0.1}}", "false_negative_rate"),
    ("policy={kind: filter, detector: {kind: perplexity}}", "reads text data"),
    ("policy={kind: web, synthetic_share: {schedule: linear, start: 0.1, end: 1.5}}", "end"),
    ("policy={kind: web, synthetic_share: [0.1, 0.2]}", "no share for generation 3"),
    ("policy={kind: filter, detector: {kind: verifier, reference: truth}}", None),  # fine on a closed form
])
def test_bad_policy_input_exits_2_and_writes_nothing(setting, message, tmp_path, capsys):
    from modelcollapse.cli import main

    out = tmp_path / "run"
    args = ["run", "gaussian", "--set", setting, "--set", "generations=5", "--set", "replicates=2", "--out", str(out)]
    if message is None:
        assert main(["show", "gaussian", "--set", setting]) == 0
        return
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_downweight_refused_for_a_family_without_weights(capsys):
    from modelcollapse.cli import main

    code = main(["show", "gmm", "--set", "policy={kind: filter, action: downweight}"])
    err = capsys.readouterr().err
    assert code == 2 and "downweight" in err and "sample_weight" in err


def _text_chain(detector: str):
    s = load_spec("lm-ngram", ["replicates=4", "generations=5", "train_size=200", "metric_samples=20",
                               "metrics=[perplexity]",
                               f"policy={{kind: filter, base: {{kind: web, synthetic_share: 0.5}}, detector: {detector}}}"])
    return chain(s)


def test_detectors_of_machine_text_beat_chance_on_an_ngram_chain():
    # Candidates are half real blocks, half generation 4's continuations: chance is 0.5. Each replicate's
    # accuracy is over 200 candidates (standard error ~0.035); the mean of 4 has ~0.018, and both
    # detectors reach well above 0.6 (bag of n-grams ~0.7, the generating model's perplexity ~0.93).
    assert np.mean(_text_chain("{kind: learned, train_size: 200}")[5].metrics["detector_accuracy"]) > 0.6
    assert np.mean(_text_chain("{kind: perplexity, reference: previous}")[5].metrics["detector_accuracy"]) > 0.8


@pytest.mark.parametrize("preset, sets", [
    ("kde", ["train_size=60", "heldout_size=100", "metric_samples=100", "metrics=[variance_ratio]"]),
    ("lm-ngram", ["train_size=40", "metric_samples=10", "heldout_size=20", "metrics=[perplexity]"]),
])
def test_families_that_store_examples_resume_after_a_ragged_drop(preset, sets, tmp_path):
    """A filter on a replace chain leaves each replicate a different number of examples; a KDE or an
    n-gram model stores its examples, so the stacked state is padded and trimmed again on resume."""
    drop = "policy={kind: filter, detector: {kind: oracle, false_negative_rate: 0.5}}"
    common = ["replicates=3", *sets, drop, "checkpoint_every=1"]
    whole = run(load_spec(preset, [*common, "generations=4"]), tmp_path / "a", progress=False)
    kept = [r["train_kept"] for r in whole.read_jsonl("metrics.jsonl") if r["generation"] == 2]
    assert len(set(kept)) > 1  # ragged indeed (equal counts for 3 replicates: probability under 1%)
    run(load_spec(preset, [*common, "generations=2"]), tmp_path / "b", progress=False)
    resumed = run(load_spec(preset, [*common, "generations=4"]), tmp_path / "b", resume=True, progress=False)
    assert whole.read_jsonl("metrics.jsonl") == resumed.read_jsonl("metrics.jsonl")


def test_a_detector_registered_from_python_is_used_by_a_filter():
    from dataclasses import dataclass

    import modelcollapse as mc

    @mc.register_detector("above")
    @dataclass(frozen=True)
    class Above(mc.Detector):
        """Flags every example above ``level`` (a stand-in for a user's own classifier)."""

        level: float = 0.0

        def flag(self, candidates, context):
            return candidates.X[..., 0] > self.level

    gens = chain(spec({"kind": "filter", "base": {"kind": "fresh", "real_fraction": 1.0},
                       "detector": {"kind": "above", "level": 0.5}}))
    # All candidates are real: what was flagged is exactly the real data above 0.5 (false positives), a
    # share P(Z > 0.5) = 0.309 of 400 draws (standard error 0.023): 0.08 is 3.5 of them.
    assert np.mean(gens[1].metrics["detector_false_positive_rate"]) == pytest.approx(0.31, abs=0.08)
    with pytest.raises(ValueError, match="level"):
        spec({"kind": "filter", "detector": {"kind": "above", "level": "high"}})
