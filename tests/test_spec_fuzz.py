"""Property-based: a few hundred malformed specs and overrides, generated, thrown at ``load_spec`` and the
CLI. Every one is either valid or refused with a message: exit 2, no traceback, nothing created."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelcollapse.cli import main
from modelcollapse.config import SpecError, load_spec, read_source

PRESETS = ["gaussian", "discrete", "gmm", "kde", "lm-ngram", "vae-digits"]
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["gaussian", "gmm", "kde", "replace", "mix", "full", "scott", "mle", "os.system", "1e9", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=8)


def _paths(node, prefix=()):
    """Every key path of a nested spec dict (and list indices), so a mutation can land anywhere."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


@st.composite
def malformed(draw):
    raw = copy.deepcopy(read_source(draw(st.sampled_from(PRESETS))))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(raw) if p]
        path = draw(st.sampled_from(paths))
        node = raw
        for key in path[:-1]:
            node = node[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete" and isinstance(node, dict):
            node.pop(path[-1], None)
        elif action == "add" and isinstance(node, dict):
            node[draw(st.text(min_size=1, max_size=10))] = draw(values)
        else:
            node[path[-1]] = draw(values)
    return raw


def _check_cli(args: list[str], out: Path, capsys) -> int:
    try:
        code = main([*args, "--out", str(out)] if args[0] == "run" else args)
    except SystemExit as exc:  # argparse's own usage errors (an override that looks like an option): exit 2
        code = exc.code
    err = capsys.readouterr().err
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert "error:" in err and not out.exists()
    return code


@SETTINGS
@given(raw=malformed())
def test_malformed_specs_are_valid_or_refused_with_a_message(raw, tmp_path_factory, capsys):
    try:
        load_spec(raw)
        valid = True
    except SpecError as exc:
        valid = False
        assert str(exc).strip()
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "spec.yaml"
    try:
        path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    except yaml.YAMLError:
        return
    args = ["show", str(path)] if valid else ["run", str(path)]
    assert _check_cli(args, tmp / "out", capsys) == (0 if valid else 2)


keys = st.sampled_from(["replicates", "generations", "train_size", "seed", "name", "data.kind", "data.mean",
                        "data.cov", "model.kind", "model.estimator", "policy.kind", "policy.real_fraction",
                        "metrics", "report.density_generations", "report.density_generations.0", "workers",
                        "checkpoint_every", "keep_params", "model", "data", "x.y.z", "metrics.0"])
texts = st.one_of(st.text(max_size=20), st.sampled_from(["[1, 2", "{a: 1", ".nan", "-.inf", "true", "1e9", "\t1",
                                                         "*alias", "&a [1]", "[]", "{}", "null", "'3'", "-1"]))


@SETTINGS
@given(overrides=st.lists(st.tuples(keys, texts).map(lambda kv: f"{kv[0]}={kv[1]}") | st.text(max_size=15),
                          min_size=1, max_size=3))
def test_malformed_overrides_are_valid_or_refused_with_a_message(overrides, tmp_path_factory, capsys):
    try:
        load_spec("gaussian", overrides)
        valid = True
    except SpecError:
        valid = False
    args = [a for o in overrides for a in ("--set", o)]
    tmp = tmp_path_factory.mktemp("fuzz")
    command = ["show", "gaussian", *args] if valid else ["run", "gaussian", *args]
    code = _check_cli(command, tmp / "out", capsys)
    assert code == (0 if valid else 2) or (code == 2 and any(o.startswith("-") for o in overrides))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_anywhere_are_refused(value):
    for raw in ({"data": {"kind": "gaussian", "mean": [value]}}, {"model": {"kind": "kde", "bandwidth": value}},
                {"metric_samples": value}, {"model": {"kind": "sklearn", "params": {"tol": value}}}):
        with pytest.raises(SpecError, match="finite"):
            load_spec(raw)
