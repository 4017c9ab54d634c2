"""``model: {kind: sklearn}``: any scikit-learn density estimator, seeded from the chain's streams, and a
spec that cannot name anything else (a spec is data, never a way to run code)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.neighbors import KernelDensity

from modelcollapse import load_spec, register_estimator, run
from modelcollapse.config import SpecError
from modelcollapse.models.sklearn_adapter import ESTIMATORS

GMM = "sklearn.mixture.GaussianMixture"


def _spec(estimator: str, params: dict | None = None, **extra):
    raw = {"data": {"kind": "gmm"}, "model": {"kind": "sklearn", "estimator": estimator, "params": params},
           "replicates": 3, "generations": 3, "train_size": 150, "metric_samples": 200, **extra}
    return load_spec(raw)


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "subprocess.Popen", "numpy.random.Generator",
                                  "sklearnx.mixture.GaussianMixture", "canary_module.Anything"])
def test_a_spec_naming_anything_but_scikit_learn_is_refused_before_any_import(name, tmp_path, monkeypatch):
    (tmp_path / "canary_module.py").write_text("open(__file__ + '.imported', 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SpecError, match="is not allowed") as info:
        _spec(name)
    assert "model.estimator" in str(info.value) and name in str(info.value)
    assert not (tmp_path / "canary_module.py.imported").exists() and "canary_module" not in sys.modules


@pytest.mark.parametrize("name, why", [
    ("sklearn.linear_model.LinearRegression", "not a density estimator"),
    ("sklearn.mixture.NoSuchMixture", "no such class"),
    ("sklearn.mixture", "not a density estimator"),  # a module, not a class
])
def test_scikit_learn_names_that_are_not_density_estimators_are_refused(name, why):
    with pytest.raises(SpecError, match=why):
        _spec(name)


@pytest.mark.parametrize("params, why", [
    ({"random_state": 3}, "random_state is set by the chain"),
    ({"n_componentz": 2}, "n_componentz"),
    ({"n_components": 0}, "n_components"),
])
def test_bad_estimator_params_name_the_key(params, why):
    with pytest.raises(SpecError, match=why) as info:
        _spec(GMM, params)
    assert "model.params" in str(info.value)


def test_metrics_follow_what_the_estimator_is():
    assert "l2_distance" in _spec(GMM).metrics  # a Gaussian mixture: the closed-form metrics apply
    assert "l2_distance" in _spec("sklearn.neighbors.KernelDensity", {"bandwidth": 0.3}).metrics
    tophat = _spec("sklearn.neighbors.KernelDensity", {"bandwidth": 0.3, "kernel": "tophat"})
    assert "l2_distance" not in tophat.metrics and {"nll", "w1", "w2"} <= set(tophat.metrics)
    with pytest.raises(SpecError, match="l2_distance"):
        _spec("sklearn.neighbors.KernelDensity", {"kernel": "tophat"}, metrics=["l2_distance"])


@pytest.mark.parametrize("estimator, params", [
    (GMM, {"n_components": 2}),
    ("sklearn.mixture.BayesianGaussianMixture", {"n_components": 2, "max_iter": 300}),
    ("sklearn.neighbors.KernelDensity", {"bandwidth": 0.4}),
])
def test_each_estimator_runs_a_chain_deterministically(estimator, params, tmp_path):
    spec = _spec(estimator, params)
    a = run(spec, tmp_path / "a", progress=False).read_jsonl("metrics.jsonl")
    b = run(spec.model_copy(update={"workers": 2}), tmp_path / "b", progress=False).read_jsonl("metrics.jsonl")
    assert a == b and len(a) == 3 * 4
    other = run(spec.model_copy(update={"seed": 1}), tmp_path / "c", progress=False).read_jsonl("metrics.jsonl")
    assert a != other  # the seed reaches the estimator: fits and samples come from the chain's streams
    assert all(np.isfinite(r["nll"]) for r in a)


def test_register_estimator_allows_a_class_outside_scikit_learn():
    class Wide(KernelDensity):
        """A KDE with a wide default bandwidth (defined here, not under sklearn.)."""

        def __init__(self, *, bandwidth=2.0, kernel="gaussian"):
            super().__init__(bandwidth=bandwidth, kernel=kernel)

    name = f"{Wide.__module__}.{Wide.__qualname__}"
    with pytest.raises(SpecError, match="not allowed"):
        _spec(name)
    register_estimator(Wide)
    try:
        assert _spec(name).model.estimator == name
    finally:
        ESTIMATORS.remove(name)
