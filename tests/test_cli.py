"""The command line, end to end: every preset at tiny size, errors, resume, report."""

import json
import os
import subprocess
import sys

import pytest

from modelcollapse.cli import main
from modelcollapse.config import load_spec, presets

TINY = {
    "gaussian": ["replicates=5", "generations=12"],
    "gaussian-accumulate": ["replicates=5", "generations=12"],
    "discrete": ["replicates=5", "generations=12"],
    "gmm": ["replicates=2", "generations=3", "train_size=200", "workers=1"],
    "kde": ["replicates=2", "generations=3", "train_size=100", "metric_samples=200"],
    "vae-digits": ["replicates=2", "generations=2", "train_size=200", "model.epochs=3", "metric_samples=100",
                   "workers=1"],
    "vae-minority": ["replicates=1", "generations=2", "train_size=200", "model.epochs=3", "metric_samples=100",
                     "workers=1"],
    "vae-mnist": ["replicates=1", "generations=1", "train_size=200", "model.epochs=1", "metric_samples=100",
                  "workers=1"],
    "paper-vae": ["generations=1", "train_size=200", "model.epochs=1", "metric_samples=100"],
    "lm-ngram": ["replicates=2", "generations=3", "train_size=200", "metric_samples=50"],
}


def _sets(overrides):
    return [arg for o in overrides for arg in ("--set", o)]


def test_tiny_sizes_cover_every_preset():
    assert set(TINY) == set(presets())


@pytest.mark.parametrize("preset", sorted(TINY))
def test_every_preset_runs_end_to_end_with_its_report(preset, tmp_path):
    out = tmp_path / "run"
    assert main(["run", preset, *_sets(TINY[preset]), "--out", str(out), "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert (out / "report.html").stat().st_size > 10_000
    assert list((out / "figures").glob("*.png"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    spec = load_spec(preset, TINY[preset])
    assert len(rows) == spec.replicates * (spec.generations + 1)


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
    assert main(["run", "discrete", *_sets(TINY["discrete"]), "--out", str(out), "-q", "--no-report"]) == 0
    assert main(["report", str(out)]) == 0
    assert (out / "report.html").exists()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_presets_and_show(capsys):
    assert main(["presets"]) == 0
    listing = capsys.readouterr().out
    for name in TINY:
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
@pytest.mark.parametrize("preset", sorted(TINY))
def test_full_size_presets(preset, tmp_path):
    """Every preset at its default size, as a user runs it (minutes; `pytest -m slow`)."""
    assert main(["run", preset, "--out", str(tmp_path / "run"), "-q"]) == 0
