"""Spec validation: every bad spec fails before any work, naming the key and the value."""

import pytest

from modelcollapse.config import ExperimentSpec, SpecError, load_spec, presets


def _error(raw: dict, overrides=()) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(raw, overrides)
    return str(info.value)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"data": {"kind": "gausian"}}, ["data.kind", "'gausian'", "did you mean 'gaussian'"]),
        ({"model": {"kind": "gmn"}}, ["model.kind", "did you mean 'gmm'"]),
        ({"policy": {"kind": "acumulate"}}, ["policy.kind", "did you mean 'accumulate'"]),
        ({"replicatse": 3}, ["replicatse", "did you mean 'replicates'"]),
        ({"data": {"kind": "gaussian", "meen": [0.0]}}, ["data.meen", "did you mean 'mean'"]),
        ({"train_size": -5}, ["train_size", "-5"]),
        ({"replicates": 0}, ["replicates", "0"]),
        ({"generations": -1}, ["generations", "-1"]),
        ({"policy": {"kind": "mix", "real_fraction": 1.5}}, ["policy.real_fraction", "1.5"]),
        ({"policy": {"kind": "fresh", "real_fraction": -0.1}}, ["policy.real_fraction", "-0.1"]),
        ({"policy": {"kind": "replace", "real_fraction": 0.2}}, ["policy.real_fraction", "no effect"]),
        ({"data": {"kind": "gaussian", "mean": [0, 0], "cov": [[1, 2], [2, 1]]}}, ["data.cov", "positive definite"]),
        ({"data": {"kind": "gaussian", "mean": [0, 0], "cov": [[1, 0.5], [0.2, 1]]}}, ["data.cov", "symmetric"]),
        ({"data": {"kind": "gaussian", "mean": [0, 0], "cov": [[1.0]]}}, ["data.cov", "2x2"]),
        ({"data": {"kind": "gmm", "weights": [0.3, 0.3]}}, ["data.weights", "sum to 1"]),
        ({"data": {"kind": "categorical", "probs": [0.5, 0.6]}}, ["data.probs", "sum to 1"]),
        ({"data": {"kind": "zipf", "categories": 1}, "model": {"kind": "categorical"}}, ["data.categories", "1"]),
        ({"metrics": ["tv"]}, ["metrics[0]", "'tv'", "model.kind='gaussian'", "available"]),
        ({"metrics": ["w3"]}, ["metrics[0]", "'w3'", "did you mean"]),
        ({"model": {"kind": "categorical"}}, ["model.kind", "cannot be fitted", "continuous"]),
        ({"model": {"kind": "kde", "bandwidth": -1}}, ["model.bandwidth", "-1"]),
        ({"model": {"kind": "gmm", "covariance_type": "ful"}}, ["model.covariance_type", "ful"]),
        ({"model": {"kind": "gmm", "n_components": 5}, "train_size": 3}, ["model.n_components", "train_size"]),
    ],
)
def test_bad_specs_name_the_key_and_the_value(raw, expected):
    message = _error(raw)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} missing from: {message}"


def test_every_problem_is_reported_at_once():
    message = _error({"train_size": -1, "replicates": 0})
    assert "train_size" in message and "replicates" in message


def test_overrides_parse_values_as_yaml():
    spec = load_spec("gaussian", ["replicates=7", "policy.kind=mix", "policy.real_fraction=0.25",
                                  "data.mean=[1.0]", "name=custom"])
    assert spec.replicates == 7 and spec.policy.kind == "mix" and spec.policy.real_fraction == 0.25
    assert spec.data.mean == [1.0] and spec.name == "custom"


def test_exponent_notation_is_a_number_in_overrides_and_files(tmp_path):
    """YAML 1.1 reads 1e-12 as a string; a user means a number (and a strict spec refused the string)."""
    assert load_spec("gmm", ["model.tol=1e-12", "model.reg_covar=2E-3"]).model.tol == 1e-12
    spec = tmp_path / "s.yaml"
    spec.write_text("model: {kind: gmm, tol: 1e-5}\ndata: {kind: gmm}\n")
    assert load_spec(str(spec)).model.tol == 1e-5
    assert load_spec("gmm", ["name='1e3'"]).name == "1e3"  # quoted: still a string


def test_override_into_a_list_element():
    spec = load_spec("gmm", ["data.weights.0=0.4", "data.weights.1=0.6"])
    assert spec.data.weights == [0.4, 0.6]


@pytest.mark.parametrize("bad", ["replicates", "a..b=1", "=3"])
def test_malformed_overrides(bad):
    with pytest.raises(SpecError):
        load_spec("gaussian", [bad])


def test_unknown_preset_suggests_a_name():
    message = _error("gausian")  # type: ignore[arg-type]
    assert "did you mean 'gaussian'" in message


def test_missing_spec_file():
    assert "does not exist" in _error("nowhere/spec.yaml")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(presets()))
def test_presets_are_valid_and_round_trip(name, tmp_path):
    spec = load_spec(name)
    assert spec.name == name and spec.description
    path = tmp_path / "spec.yaml"
    path.write_text(spec.to_yaml())
    assert load_spec(str(path)) == spec


def test_required_presets_exist():
    assert {"gaussian", "gaussian-accumulate", "discrete", "gmm", "kde"} <= set(presets())


def test_default_metrics_follow_the_family():
    assert load_spec({"data": {"kind": "zipf"}, "model": {"kind": "categorical"}}).metrics[0] == "tv"
    spec = ExperimentSpec()
    assert "variance_ratio" in spec.metrics
