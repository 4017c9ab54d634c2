"""Plug-ins: entry points found at start-up and listed with their origin, a broken one reported in one
line and skipped, registration from Python, and the example plug-in installed and run by the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from modelcollapse import BaseModel, load_spec, register_model, register_policy, run
from modelcollapse.config import SpecError
from modelcollapse.models import MODELS, GaussianModel
from modelcollapse.policies import POLICIES, Policy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "laplace-plugin"


def _cli(*args: str, path: Path | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path) if path else "",
                                                                       os.environ.get("PYTHONPATH", "")]))}
    return subprocess.run([sys.executable, "-m", "modelcollapse", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example plug-in, pip-installed into a folder of its own (its entry points and all)."""
    target = tmp_path_factory.mktemp("site")
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target",
                    str(target), str(EXAMPLE)], check=True, capture_output=True, timeout=600, cwd=target)
    return target


def test_the_example_plugin_is_listed_with_its_origin(installed):
    out = _cli("plugins", path=installed)
    assert out.returncode == 0, out.stderr
    line = next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("laplace "))
    assert "plug-in modelcollapse-laplace 0.1.0" in line and "mc_laplace:LaplaceModel" in line
    assert "for laplace" in next(ln for ln in out.stdout.splitlines() if ln.strip().startswith("variance_ratio"))
    assert "gaussian" in out.stdout and "built-in" in out.stdout
    presets = _cli("presets", path=installed)
    assert "model family laplace" in presets.stdout


def test_the_example_plugin_runs_through_the_cli(installed, tmp_path):
    out = _cli("run", str(EXAMPLE / "laplace.yaml"), "--set", "replicates=4", "--set", "generations=6",
               "--out", str(tmp_path / "run"), "--quiet", path=installed)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 7 and {"nll", "w1", "w2", "variance_ratio"} <= rows[0].keys()
    first = np.array([r["variance_ratio"] for r in rows if r["generation"] == 0])
    assert np.all((first > 0.3) & (first < 3))  # 2 b^2 of a Laplace fitted to N(0, 1) data: near 1
    assert (tmp_path / "run" / "figures" / "density.png").stat().st_size > 0


def test_a_broken_plugin_is_reported_in_one_line_and_skipped(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[modelcollapse.models]\nbroken = broken_plugin:Model\n")
    (tmp_path / "broken_plugin.py").write_text("raise ImportError('needs a library that is not installed')\n")
    out = _cli("presets", path=tmp_path)
    assert out.returncode == 0
    warnings = [ln for ln in out.stderr.splitlines() if "broken" in ln]
    assert len(warnings) == 1 and "failed to load" in warnings[0] and "needs a library" in warnings[0]
    assert "gaussian" in out.stdout
    listing = _cli("plugins", path=tmp_path)
    assert "failed to load" in listing.stdout and "broken-plugin 0.1" in listing.stdout
    ran = _cli("run", "gaussian", "--set", "replicates=2", "--set", "generations=2", "--out",
               str(tmp_path / "run"), "--quiet", "--no-report", path=tmp_path)
    assert ran.returncode == 0, ran.stderr


class Shifted(GaussianModel):
    """A notebook's family: a Gaussian whose fitted mean is moved by ``shift``."""

    def __init__(self, *, estimator: str = "mle", shift: float = 0.0) -> None:
        super().__init__(estimator=estimator)
        self.shift = shift

    def fit(self, X, *, rng=None):
        super().fit(X, rng=rng)
        self.mean_ = self.mean_ + self.shift
        return self


def test_register_model_from_python_joins_the_spec_and_the_engine(tmp_path):
    register_model("shifted-test", Shifted)
    try:
        spec = load_spec({"model": {"kind": "shifted-test", "shift": 0.5}, "replicates": 3, "generations": 4})
        # The inherited defaults that apply: kl and the closed-form w2 name the gaussian family, so the
        # new one gets the empirical w2 and no kl.
        assert spec.metrics == ["mean_error", "variance_ratio", "w2", "tail_mass"]
        rows = run(spec, tmp_path / "run", progress=False).read_jsonl("metrics.jsonl")
        drift = np.mean([r["mean_error"] for r in rows if r["generation"] == 4])
        assert drift > 4 * 0.5**2 * 0.9  # each generation moves the mean by 0.5: (5 x 0.5)^2 ~ 6
        with pytest.raises(SpecError, match="shift"):
            load_spec({"model": {"kind": "shifted-test", "shift": "far"}})
        with pytest.raises(SpecError, match="did you mean 'shift'"):
            load_spec({"model": {"kind": "shifted-test", "shfit": 1}})
        assert MODELS.sources()["shifted-test"] == "registered in Python"
        register_model("shifted-test", Shifted)  # a notebook cell run twice: replaces
    finally:
        MODELS.remove("shifted-test")


def test_a_registration_cannot_shadow_another_entry():
    with pytest.raises(ValueError, match="already registered"):
        register_model("gaussian", Shifted)
    with pytest.raises(TypeError, match="lacks"):
        register_model("nothing", type("Nothing", (), {}))


def test_register_policy_from_python(tmp_path):
    @dataclass(frozen=True)
    class Halves(Policy):
        """Half previous generation, half real (a hand-made policy)."""

        def build(self, *, real, synthetic, train_size, rngs, draw_real):
            from modelcollapse.batch import Batch

            half = train_size // 2
            return Batch.concat([real.head(half), synthetic[-1].head(train_size - half)])

    register_policy("halves-test", Halves)
    try:
        spec = load_spec({"policy": {"kind": "halves-test"}, "replicates": 2, "generations": 2})
        store = run(spec, tmp_path / "run", progress=False)
        assert [ln["real"] for ln in store.read_jsonl("provenance.jsonl")] == [100.0, 50.0, 50.0]
        with pytest.raises(SpecError, match="no effect"):
            load_spec({"policy": {"kind": "halves-test", "real_fraction": 0.3}})
    finally:
        POLICIES.remove("halves-test")


def test_plugins_can_be_switched_off(tmp_path):
    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[modelcollapse.models]\nbroken = broken_plugin:Model\n")
    env = {**os.environ, "MODELCOLLAPSE_NO_PLUGINS": "1", "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "modelcollapse", "plugins"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "broken" not in out.stdout + out.stderr


def test_base_model_is_the_public_contract():
    assert issubclass(MODELS.get("laplace").cls, BaseModel)
