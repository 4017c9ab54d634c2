"""Run directories written by version 0.1 (before the registries were rebuilt) still load, report and
resume: ``tests/data/legacy`` holds two, written by main at commit 888b8eb."""

import shutil
from pathlib import Path

import pytest
import yaml

from modelcollapse.config import load_spec
from test_presets_unchanged import _close
from modelcollapse.loop import run
from modelcollapse.report import write_report
from modelcollapse.store import RunStore

LEGACY = Path(__file__).parent / "data" / "legacy"


@pytest.mark.parametrize("name", ["gaussian-accumulate", "gmm-subsample"])
def test_old_run_directories_report_and_resume_to_the_numbers_of_a_fresh_run(name, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(LEGACY / name, old)
    html = write_report(old)
    assert "completed" in html.read_text()
    stored = yaml.safe_load((old / "config.yaml").read_text())
    more = stored["generations"] + 2
    # As `modelcollapse run --resume` reads it: a field added since (the GMM's backend) as it was then.
    spec = load_spec(old / "config.yaml", [f"generations={more}"], stored=True)
    resumed = run(spec, old, resume=True, progress=False)
    fresh = run(spec, tmp_path / "fresh", progress=False)
    # Rows version 0.1 wrote computed the closed-form L2 distance one mixture at a time; it is now
    # computed for all replicates at once (same formula, another summation order): 1e-12 relative.
    old_rows, new_rows = resumed.read_jsonl("metrics.jsonl"), fresh.read_jsonl("metrics.jsonl")
    assert len(old_rows) == len(new_rows)
    assert all(_close(a, b, 1e-12) for a, b in zip(old_rows, new_rows))
    assert resumed.read_jsonl("provenance.jsonl") == fresh.read_jsonl("provenance.jsonl")
    assert RunStore.open(old).manifest()["status"] == "completed"
    write_report(old)
