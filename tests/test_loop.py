"""The generation loop: determinism, resume, workers, degenerate chains, the run directory."""

import json

import numpy as np
import pytest

from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.loop import run
from modelcollapse.models import FitError
from modelcollapse.models.gmm import GMMModel
from modelcollapse.store import RunDirError

SMALL = {
    "gaussian": ["replicates=6", "generations=8", "train_size=20"],
    "accumulate": ["replicates=6", "generations=8", "train_size=20", "policy.kind=accumulate_subsample"],
    # accumulate itself: the chain keeps running statistics, rebuilt on resume from the stored sets
    "accumulate-statistics": ["replicates=6", "generations=8", "train_size=20", "policy.kind=accumulate"],
    "categorical-statistics": ["replicates=6", "generations=8", "train_size=30", "data.categories=12",
                               "policy.kind=accumulate"],
    "discrete": ["replicates=6", "generations=8", "train_size=30", "data.categories=12"],
    "gmm": ["replicates=3", "generations=5", "train_size=150", "workers=1", "policy.kind=fresh",
            "policy.real_fraction=0.2", "metrics=[l2_distance, nll, tail_mass, component_weights, w2]"],
    "kde": ["replicates=3", "generations=5", "train_size=100", "policy.kind=mix", "policy.real_fraction=0.1",
            "metric_samples=200"],
    "vae": ["replicates=2", "generations=5", "train_size=100", "model.epochs=2", "model.hidden=32",
            "metric_samples=50", "workers=1", "policy.kind=accumulate_subsample"],
    "ngram": ["replicates=2", "generations=6", "train_size=100", "metric_samples=40", "policy.kind=mix",
              "policy.real_fraction=0.1"],
    # The scikit-learn adapter (a KDE is rebuilt by refitting on resume) and the example plug-in's family.
    "sklearn-kde": ["replicates=3", "generations=5", "train_size=100", "metric_samples=200",
                    "model={kind: sklearn, estimator: sklearn.neighbors.KernelDensity, params: {bandwidth: 0.3}}",
                    "metrics=[nll, w1, l2_distance]"],
    "sklearn-bgm": ["replicates=3", "generations=5", "train_size=150", "metric_samples=200", "workers=1",
                    "model={kind: sklearn, estimator: sklearn.mixture.BayesianGaussianMixture, "
                    "params: {n_components: 2}}", "metrics=[nll, l2_distance, tail_mass]"],
    "laplace": ["replicates=6", "generations=8", "train_size=20", "model={kind: laplace}", "metrics=null"],
}
PRESET = {"gaussian": "gaussian", "accumulate": "gaussian", "accumulate-statistics": "gaussian",
          "categorical-statistics": "discrete", "discrete": "discrete", "gmm": "gmm", "kde": "kde",
          "vae": "vae-digits", "ngram": "lm-ngram", "sklearn-kde": "kde", "sklearn-bgm": "gmm", "laplace": "gaussian"}


def _spec(case: str, *extra: str):
    return load_spec(PRESET[case], [*SMALL[case], *extra])


def _lines(store, name="metrics.jsonl") -> list[str]:
    return (store.path / name).read_text().splitlines()


@pytest.mark.parametrize("case", list(SMALL))
def test_resume_after_interruption_gives_identical_numbers(case, tmp_path, monkeypatch):
    spec = _spec(case, "checkpoint_every=2")
    full = run(spec, tmp_path / "full", progress=False)

    original_step = Chain.step

    def crash_at_5(self, g):
        if g == 5:
            raise KeyboardInterrupt
        return original_step(self, g)

    monkeypatch.setattr(Chain, "step", crash_at_5)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", progress=False)
    cut_manifest = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert cut_manifest["status"] == "interrupted"
    assert cut_manifest["generations_completed"] == 4  # last checkpoint; generation 4's rows are on disk too
    monkeypatch.setattr(Chain, "step", original_step)

    resumed = run(spec, tmp_path / "cut", resume=True, progress=False)
    assert _lines(resumed) == _lines(full)
    assert _lines(resumed, "provenance.jsonl") == _lines(full, "provenance.jsonl")
    last = spec.generations
    for key, value in full.generation(last).items():
        np.testing.assert_array_equal(resumed.generation(last)[key], value)
    assert resumed.manifest()["status"] == "completed"


def test_resume_can_extend_a_finished_run(tmp_path):
    long = run(_spec("gaussian"), tmp_path / "long", progress=False)
    short = run(_spec("gaussian", "generations=3"), tmp_path / "short", progress=False)
    extended = run(_spec("gaussian"), short.path, resume=True, progress=False)
    assert _lines(extended) == _lines(long)


def test_replicate_numbers_do_not_depend_on_the_replicate_count(tmp_path):
    few = run(_spec("discrete", "replicates=2"), tmp_path / "few", progress=False).read_jsonl("metrics.jsonl")
    many = run(_spec("discrete", "replicates=5"), tmp_path / "many", progress=False).read_jsonl("metrics.jsonl")
    assert [r for r in many if r["replicate"] < 2] == few


@pytest.mark.parametrize("case", ["gmm", "vae"])
def test_same_numbers_whatever_the_number_of_workers(case, tmp_path):
    one = run(_spec(case, "workers=1", "generations=2"), tmp_path / "one", progress=False)
    two = run(_spec(case, "workers=2", "generations=2"), tmp_path / "two", progress=False)
    assert _lines(one) == _lines(two)


def test_seed_changes_the_numbers(tmp_path):
    a = run(_spec("gaussian"), tmp_path / "a", progress=False)
    b = run(_spec("gaussian", "seed=1"), tmp_path / "b", progress=False)
    assert _lines(a) != _lines(b)


def test_policies_share_the_synthetic_draws_of_generation_one():
    """Common random numbers: generation 1's samples do not depend on the policy."""
    firsts = []
    for policy in ("replace", "accumulate"):
        chain = Chain(_spec("gaussian", f"policy.kind={policy}"))
        chain.first()
        gen = chain.step(1)
        firsts.append(gen.synthetic.X)
    np.testing.assert_array_equal(*firsts)


def test_run_directory_contents(tmp_path):
    spec = _spec("gaussian")
    store = run(spec, tmp_path / "run", progress=False)
    for name in ("config.yaml", "manifest.json", "metrics.jsonl", "provenance.jsonl", "real.npz", "checkpoint.npz"):
        assert (store.path / name).is_file(), name
    rows = store.read_jsonl("metrics.jsonl")
    assert len(rows) == spec.replicates * (spec.generations + 1)
    assert set(rows[0]) == {"replicate", "generation", *spec.metrics}
    manifest = store.manifest()
    assert manifest["status"] == "completed" and manifest["versions"]["numpy"]
    assert [p["generation"] for p in manifest["provenance"]] == list(range(spec.generations + 1))
    assert manifest["provenance"][0] == {"generation": 0, "size": 20, "real": 20.0, "synthetic": 0.0}
    gen3 = store.generation(3)
    assert gen3["model/mean"].shape == (6, 1)
    # Provenance is stored as its non-zero columns (replace: the previous generation only) ...
    np.testing.assert_array_equal(gen3["provenance/sources"], [3])  # column j + 1 = generation j = 2
    assert gen3["provenance/counts"].shape == (1, 1)  # the same for every replicate: one row, as uint8
    dense = store.provenance(3)  # ... and read back whole
    assert dense.shape == (6, 4) and (dense[:, 3] == 20).all() and dense[:, :3].sum() == 0
    # Each generation's metric values are kept in its file too (metric rows can be rebuilt from them).
    values = [r["variance_ratio"] for r in rows if r["generation"] == 3]
    np.testing.assert_array_equal(gen3["metric/variance_ratio"], values)
    assert not list(store.path.rglob("*.tmp")) and not list(store.path.rglob("*.pkl"))


def test_refuses_a_non_empty_directory(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(RunDirError, match="not empty"):
        run(_spec("gaussian"), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_resume_refuses_a_different_spec(tmp_path):
    store = run(_spec("gaussian", "generations=2"), tmp_path / "run", progress=False)
    with pytest.raises(RunDirError, match="train_size"):
        run(_spec("gaussian", "train_size=50"), store.path, resume=True, progress=False)
    with pytest.raises(RunDirError, match="does not exist"):
        run(_spec("gaussian"), tmp_path / "nothing", resume=True, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="not a run directory"):
        run(_spec("gaussian"), tmp_path / "empty", resume=True, progress=False)


def test_a_failing_replicate_stops_and_the_others_go_on(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = GMMModel.fit

    def flaky(self, X, *, rng=None):
        calls["n"] += 1
        if calls["n"] == 5:  # generation 1, replicate 1 (workers=1 fits in order)
            raise FitError("component lost all its points")
        return original(self, X, rng=rng)

    monkeypatch.setattr(GMMModel, "fit", flaky)
    store = run(_spec("gmm", "policy.kind=replace", "policy.real_fraction=0", "model.backend=sklearn"), tmp_path / "run",
                progress=False)
    rows = store.read_jsonl("metrics.jsonl")
    dead = [r for r in rows if r["replicate"] == 1 and r["generation"] >= 1]
    assert all(r["l2_distance"] is None and "lost all its points" in r["stopped"] for r in dead)
    alive = [r for r in rows if r["replicate"] != 1]
    assert all(r["l2_distance"] is not None for r in alive)
    assert "1" in store.manifest()["stopped"] and store.manifest()["status"] == "completed"


def test_run_ends_early_when_every_replicate_stops(tmp_path, monkeypatch):
    original = GMMModel.fit
    calls = {"n": 0}

    def fails_after_gen0(self, X, *, rng=None):
        calls["n"] += 1
        if calls["n"] > 3:
            raise FitError("degenerate")
        return original(self, X, rng=rng)

    monkeypatch.setattr(GMMModel, "fit", fails_after_gen0)
    store = run(_spec("gmm", "policy.kind=replace", "policy.real_fraction=0", "model.backend=sklearn"), tmp_path / "run",
                progress=False)
    manifest = store.manifest()
    assert manifest["status"] == "completed" and "every replicate stopped" in manifest["stopped_early"]
    assert manifest["generations_completed"] == 1


def test_a_collapsed_gaussian_chain_keeps_running(tmp_path):
    """With 2 samples a generation the variance underflows to exactly 0 within ~400 generations."""
    spec = load_spec("gaussian", ["replicates=3", "generations=600", "train_size=2", "metrics=[variance_ratio, kl, w2]"])
    store = run(spec, tmp_path / "run", progress=False)
    last = [r for r in store.read_jsonl("metrics.jsonl") if r["generation"] == 600]
    assert all(r["variance_ratio"] == 0.0 for r in last)
    assert all(r["kl"] == float("inf") for r in last)  # stored as 1e999: infinite, not missing
    assert "1e999" in (store.path / "metrics.jsonl").read_text()
    assert all(r["w2"] is not None for r in last)


def test_resume_before_the_first_checkpoint_starts_over(tmp_path, monkeypatch):
    spec = _spec("gaussian")
    full = run(spec, tmp_path / "full", progress=False)
    original_step = Chain.step

    def crash(self, g):
        raise KeyboardInterrupt

    monkeypatch.setattr(Chain, "step", crash)  # generation 0 is recorded, no checkpoint yet
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", progress=False)
    assert not (tmp_path / "cut" / "checkpoint.npz").exists()
    monkeypatch.setattr(Chain, "step", original_step)
    resumed = run(spec, tmp_path / "cut", resume=True, progress=False)
    assert _lines(resumed) == _lines(full)


def test_every_replicate_failing_on_real_data_fails_the_run(tmp_path, monkeypatch):
    def never(self, X, *, rng=None):
        raise FitError("bad setting")

    monkeypatch.setattr(GMMModel, "fit", never)
    with pytest.raises(FitError, match="generation 0: FitError: bad setting"):
        run(_spec("gmm", "model.backend=sklearn"), tmp_path / "run", progress=False)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "failed"
