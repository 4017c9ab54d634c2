"""Studies: expansion of grid, zip, named cells and seeds; names and hashes; validation before anything
runs; the local backend (same numbers for 1 and 2 workers, a failing cell, kill and resume); tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelcollapse as mc
from modelcollapse.cli import main
from modelcollapse.config import SpecError
from modelcollapse.store import RunDirError
from modelcollapse.study import build, expand
from modelcollapse.study.index import StudyDir
from modelcollapse.study.results import bootstrap_mean
from modelcollapse.study.spec import parse_seeds, parse_values
from modelcollapse.study.runner import sweep

TINY = ["replicates=6", "generations=8", "metric_samples=200", "heldout_size=100"]


# -- expansion -----------------------------------------------------------------------------------------
def test_grid_is_every_combination_in_order():
    study = build("gaussian", grid=["train_size=10,20,30", "policy.kind=replace,accumulate"], sets=TINY)
    assert len(study.cells) == 6
    assert [(c.spec.train_size, c.spec.policy.kind) for c in study.cells] == [
        (m, k) for m in (10, 20, 30) for k in ("replace", "accumulate")]
    assert study.axes == ["train_size", "policy.kind"]
    assert all(c.spec.replicates == 6 and c.spec.generations == 8 for c in study.cells)


def test_zip_varies_keys_together_and_seeds_multiply():
    study = expand({"base": "gaussian", "set": TINY,
                    "zip": {"train_size": [10, 100], "heldout_size": [50, 60]}, "seeds": "3-5"})
    got = [(c.spec.train_size, c.spec.heldout_size, c.spec.seed) for c in study.cells]
    assert got == [(m, h, s) for m, h in ((10, 50), (100, 60)) for s in (3, 4, 5)]
    assert len(study.settings) == 2  # a setting is a cell without its seed


def test_named_cells_are_crossed_with_the_grid():
    study = expand({"base": "gaussian", "cells": {"mle": {"model.estimator": "mle"},
                                                  "unbiased": {"model": {"kind": "gaussian", "estimator": "unbiased"}}},
                    "grid": {"train_size": [10, 20]}, "set": {"replicates": 2, "generations": 2}})
    assert [(c.variant, c.spec.model.estimator, c.spec.train_size) for c in study.cells] == [
        ("mle", "mle", 10), ("mle", "mle", 20), ("unbiased", "unbiased", 10), ("unbiased", "unbiased", 20)]
    assert study.cells[0].name.startswith("mle_train_size=10-")


def test_order_base_set_cell_grid_then_command_line():
    definition = {"base": "gaussian", "set": {"replicates": 3, "generations": 4},
                  "cells": {"a": {"replicates": 5}, "b": {"generations": 6, "train_size": 50}},
                  "grid": {"generations": [7, 8]}}
    got = [(c.spec.replicates, c.spec.generations) for c in expand(definition).cells]
    assert got == [(5, 7), (5, 8), (3, 7), (3, 8)]  # a cell's value beats `set`, a grid value beats the cell's
    study = build(definition, sets=["replicates=2"])  # --set: over everything, and stored as `override`
    assert [c.spec.replicates for c in study.cells] == [2, 2, 2, 2]
    assert study.definition["override"] == {"replicates": 2}


def test_names_are_readable_and_hashes_stable():
    a = build("gaussian", grid=["train_size=10,20", "model.estimator=mle,unbiased"], seeds="0,1", sets=TINY)
    b = build("gaussian", grid=["train_size=10,20", "model.estimator=mle,unbiased"], seeds="0,1", sets=TINY)
    assert [c.name for c in a.cells] == [c.name for c in b.cells]
    assert a.cells[0].name == f"train_size=10_estimator=mle_seed=0-{a.cells[0].hash}"
    assert len({c.hash for c in a.cells}) == len(a.cells)
    # The hash is of the resolved spec: a default written out changes nothing, a changed value does.
    c = build("gaussian", grid=["train_size=10,20", "model.estimator=mle,unbiased"], seeds="0,1",
              sets=[*TINY, "policy.kind=replace"])
    d = build("gaussian", grid=["train_size=10,20", "model.estimator=mle,unbiased"], seeds="0,1",
              sets=[*TINY, "replicates=7"])
    assert [x.hash for x in c.cells] == [x.hash for x in a.cells]
    assert not {x.hash for x in d.cells} & {x.hash for x in a.cells}


def test_grid_values_parse_as_yaml():
    assert parse_values("k", "1,2.5,abc,[1, 2],{a: 1}") == [1, 2.5, "abc", [1, 2], {"a": 1}]
    assert parse_values("k", "[[0, 1], [2, 3]]") == [[0, 1], [2, 3]]
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("4,2") == [4, 2] and parse_seeds([1]) == [1]


@pytest.mark.parametrize("kwargs, needle", [
    (dict(grid=["train_sise=10,20"]), "every cell: train_sise: unknown key; did you mean 'train_size'?"),
    (dict(grid=["train_size="]), "--grid train_size: no values"),
    (dict(grid=["train_size=10,0"]), "cell train_size=0: train_size: must be at least 1, got 0"),
    (dict(grid=["policy.kind=replace,acumulate"]), "cell kind=acumulate: policy.kind: unknown value 'acumulate'"),
    (dict(seeds="5-1"), "seeds: range '5-1' is empty"),
    (dict(seeds="0,0"), "seed 0 is listed twice"),
])
def test_bad_input_is_refused_naming_cell_key_and_value(kwargs, needle, tmp_path):
    with pytest.raises(SpecError) as exc:
        build("gaussian", sets=TINY, **kwargs)
    assert needle in str(exc.value)


@pytest.mark.parametrize("definition, needle", [
    ({"base": "gaussian", "grid": {}}, "grid: empty"),
    ({"base": "gaussian", "zip": {"train_size": [1, 2], "seed": [1]}}, "zip: every key needs a list of the same length"),
    ({"base": "gaussian", "cells": {}}, "cells: empty"),
    ({"base": "gaussian", "grid": {"seed": [1]}, "gird": 1}, "study: unknown key 'gird'; did you mean 'grid'?"),
    ({"base": "nope", "seeds": [1]}, "'nope' is neither a spec file nor a preset"),
    ({"base": "gaussian", "cells": {"a": {}, "b": {"replicates": 200}}}, "resolve to the same spec"),
])
def test_bad_study_definitions(definition, needle):
    with pytest.raises(SpecError) as exc:
        expand(definition)
    assert needle in str(exc.value)


def test_an_invalid_cell_writes_nothing(tmp_path, capsys):
    out = tmp_path / "study"
    code = main(["sweep", "gaussian", "--grid", "train_size=10,1", "--set", "model.estimator=unbiased",
                 "--out", str(out), "-q"])
    assert code == 2 and not out.exists()
    assert "cell train_size=1: train_size: 1 at generation 0 is below the 2 examples a gaussian fit needs" in \
        capsys.readouterr().err


def test_study_file_with_relative_base(tmp_path):
    (tmp_path / "base.yaml").write_text("name: mine\nreplicates: 2\ngenerations: 2\n")
    (tmp_path / "study.yaml").write_text("base: base.yaml\ngrid: {train_size: [5, 6]}\n")
    study = build(str(tmp_path / "study.yaml"))
    assert study.name == "mine" and [c.spec.train_size for c in study.cells] == [5, 6]


# -- running -------------------------------------------------------------------------------------------
GRID = ["train_size=10,40", "policy.kind=replace,accumulate"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "grid"
    outcome = sweep(build("gaussian", grid=GRID, seeds="0,1", sets=TINY), out, workers=2, progress=False,
                    cell_reports=False, report=False)
    assert outcome.ok and len(outcome.completed) == 8
    return out


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["cell", "replicate", "generation"]).reset_index(drop=True)


def test_same_numbers_with_one_and_two_workers(two_workers, tmp_path):
    out = tmp_path / "one"
    sweep(build("gaussian", grid=GRID, seeds="0,1", sets=TINY), out, workers=1, progress=False, cell_reports=False,
          report=False)
    pd.testing.assert_frame_equal(_sorted(mc.load_results(out)), _sorted(mc.load_results(two_workers)))


def test_study_index_and_cells_are_ordinary_runs(two_workers):
    index = json.loads((two_workers / "study.json").read_text())
    assert index["status"] == "completed" and len(index["cells"]) == 8
    for entry in index["cells"]:
        assert entry["status"] == "completed" and entry["seconds"] > 0 and entry["error"] is None
        run_dir = two_workers / entry["path"]
        assert json.loads((run_dir / "manifest.json").read_text())["status"] == "completed"
        assert mc.load_spec(str(run_dir / "config.yaml")).model_dump() == entry["spec"]


def test_load_results_columns_and_rows(two_workers):
    df = mc.load_results(two_workers)
    assert len(df) == 8 * 6 * 9  # cells x replicates x generations 0..8
    assert list(df.columns[:8]) == ["cell", "setting", "variant", "seed", "train_size", "policy.kind", "replicate",
                                    "generation"]
    assert {"w2", "variance_ratio", "mean_error", "kl"} <= set(df.columns)
    assert sorted(df["seed"].unique()) == [0, 1] and sorted(df["train_size"].unique()) == [10, 40]
    some = mc.load_results(two_workers, metrics=["w2"], generations=[0, 8])
    assert len(some) == 8 * 6 * 2 and "w2" in some and "kl" not in some
    # One run directory reads the same rows as the study holds for it.
    cell = df["cell"].iloc[0]
    one = mc.load_results(two_workers / "cells" / cell)
    assert list(one.columns[:2]) == ["replicate", "generation"] and len(one) == 6 * 9
    np.testing.assert_array_equal(one.sort_values(["replicate", "generation"])["w2"].to_numpy(),
                                  df[df["cell"] == cell].sort_values(["replicate", "generation"])["w2"].to_numpy())


def test_aggregate_table(two_workers):
    agg = pd.read_parquet(two_workers / "aggregate.parquet")
    assert set(agg["metric"]) == {"w2", "variance_ratio", "mean_error", "kl"}  # grid columns are not metrics
    assert len(agg) == 4 * 9 * 4  # settings x generations x metrics
    df = mc.load_results(two_workers)
    row = agg[(agg.metric == "w2") & (agg.generation == 8)].iloc[0]
    pooled = df[(df.setting == row.setting) & (df.generation == 8)]["w2"]
    assert row.n == 12 and row["mean"] == pytest.approx(pooled.mean()) and row["median"] == pytest.approx(pooled.median())
    assert row.ci_low <= row["mean"] <= row.ci_high


def test_bootstrap_interval_matches_a_direct_resampling():
    """The shared-weights matrix form gives the intervals of resampling each row directly with the same draws."""
    rng = np.random.default_rng(1)
    values = rng.exponential(size=(3, 40))
    values[1, 5] = np.nan
    lo, hi = bootstrap_mean(values, np.random.default_rng(7), resamples=500)
    weights = np.random.default_rng(7).multinomial(40, np.full(40, 1 / 40), size=500)
    for i in range(3):
        ok = ~np.isnan(values[i])
        means = [np.average(values[i][ok], weights=w[ok]) for w in weights]
        np.testing.assert_allclose([lo[i], hi[i]], np.percentile(means, [2.5, 97.5]), rtol=1e-12)


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path, capsys):
    study = build("gaussian", grid=["train_size=10,20,30"], sets=TINY)
    out = tmp_path / "s"
    StudyDir.create(out, study).unlock()
    bad = out / "cells" / study.cells[1].name
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("in the way")  # the cell cannot create its run directory
    code = main(["sweep", "--resume", "--out", str(out), "-q", "--workers", "2", "--no-cell-reports", "--no-report"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"failed: {study.cells[1].name}: RunDirError" in err and "2 cells completed" in err
    index = json.loads((out / "study.json").read_text())
    assert [e["status"] for e in index["cells"]] == ["completed", "failed", "completed"]
    assert index["status"] == "failed" and "is a file" in index["cells"][1]["error"]
    assert set(mc.load_results(out)["cell"]) == {study.cells[0].name, study.cells[2].name}
    # Fixed, a relaunch runs only the failed cell.
    bad.unlink()
    assert main(["sweep", "--resume", "--out", str(out), "-q", "--no-cell-reports", "--no-report"]) == 0
    assert "2 earlier" in capsys.readouterr().err


def test_resume_refusals(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", "gaussian", *sum((["--set", s] for s in TINY), []), "--out", str(run_dir), "-q",
                 "--no-report"]) == 0
    assert main(["sweep", "--resume", "--out", str(run_dir)]) == 2
    assert "is not a study directory (no study.json) (it is a run directory" in capsys.readouterr().err
    assert main(["sweep", "--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_killed_study_resumes_to_the_same_results(two_workers, tmp_path):
    """kill -9 of the sweep mid-way: the relaunch skips completed cells, resumes the interrupted one from its
    checkpoint, and every number equals the uninterrupted study's."""
    out = tmp_path / "killed"
    # Slower cells (more replicates, checkpoints every generation) so that the kill lands inside one.
    sets = [*TINY, "checkpoint_every=1"]
    cmd = [sys.executable, "-m", "modelcollapse", "sweep", "gaussian", "--grid", GRID[0], "--grid", GRID[1],
           "--seeds", "0,1", *sum((["--set", s] for s in sets), []), "--workers", "1", "--out", str(out), "-q",
           "--no-cell-reports", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            done = sum(e["status"] == "completed" for e in json.loads((out / "study.json").read_text())["cells"])
        except (OSError, ValueError):
            done = 0
        if done >= 3 or proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    index = json.loads((out / "study.json").read_text())
    finished = sum(e["status"] == "completed" for e in index["cells"])
    assert 3 <= finished < 8, "the kill should land mid-study"
    code = main(["sweep", "--resume", "--out", str(out), "-q", "--no-cell-reports", "--no-report"])
    assert code == 0
    a = _sorted(mc.load_results(out))
    b = _sorted(mc.load_results(two_workers))
    # The same spec up to checkpoint_every (which never changes numbers): same metric values.
    metrics = ["mean_error", "variance_ratio", "w2", "kl"]
    np.testing.assert_array_equal(a[metrics].to_numpy(), b[metrics].to_numpy())


def test_relaunching_the_same_study_skips_it_and_a_different_one_is_refused(two_workers, capsys):
    assert main(["sweep", "gaussian", "--grid", GRID[0], "--grid", GRID[1], "--seeds", "0,1",
                 *sum((["--set", s] for s in TINY), []), "--out", str(two_workers), "-q", "--no-report"]) == 0
    assert "8 of 8 cells already completed" in capsys.readouterr().err
    assert main(["sweep", "gaussian", "--grid", "train_size=11", "--out", str(two_workers), "-q"]) == 2
    assert "holds a different study" in capsys.readouterr().err


def test_run_of_a_study_preset_file_sweeps_it(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text("name: tiny\nbase: gaussian\nset: {replicates: 3, generations: 3}\nseeds: [0, 1]\n")
    out = tmp_path / "out"
    assert main(["run", str(study), "--out", str(out), "-q", "--no-report"]) == 0
    assert "2 cells completed" in capsys.readouterr().err
    assert StudyDir.open(out).read()["status"] == "completed"
    with pytest.raises(RunDirError):
        StudyDir.open(tmp_path)


# -- labelled grid and zip values -------------------------------------------------------------------------
LABELLED = {"base": "gaussian", "set": {"replicates": 2, "generations": 2},
            "grid": {"policy": {"plain": {"kind": "replace"}, "fresh-0.1": {"kind": "fresh", "real_fraction": 0.1}},
                     "train_size": [10, 20]}}


def test_labelled_grid_values_name_the_cells_and_stand_for_the_values():
    study = expand(LABELLED)
    assert study.settings == ["policy=plain_train_size=10", "policy=plain_train_size=20",
                              "policy=fresh-0.1_train_size=10", "policy=fresh-0.1_train_size=20"]
    assert [c.values for c in study.cells][2] == {"policy": "fresh-0.1", "train_size": 10}
    assert [(c.spec.policy.kind, c.spec.train_size) for c in study.cells] == [
        ("replace", 10), ("replace", 20), ("fresh", 10), ("fresh", 20)]
    assert study.cells[2].spec.policy.real_fraction == 0.1
    # a number as a label reads as the number does in a name
    zipped = expand({"base": "gaussian", "set": {"replicates": 2, "generations": 2},
                     "zip": {"train_size": {"small": 10, "big": 100}, "heldout_size": [50, 60]}, "seeds": [0, 1]})
    assert zipped.settings == ["train_size=small_heldout_size=50", "train_size=big_heldout_size=60"]
    assert [(c.spec.train_size, c.spec.heldout_size, c.seed) for c in zipped.cells] == [
        (10, 50, 0), (10, 50, 1), (100, 60, 0), (100, 60, 1)]
    assert expand({"base": "gaussian", "grid": {"train_size": {0.5: 10, 2: 20}}}).settings == [
        "train_size=0.5", "train_size=2"]


@pytest.mark.parametrize("grid, needle", [
    ({"policy": {}}, "study: grid.policy: empty (give at least one label: value)"),
    ({"train_size": {"a b": 10}}, "study: grid.train_size: label 'a b' may use letters, digits and _ . + - only"),
    ({"train_size": {True: 10}}, "label True may use letters"),
])
def test_bad_labels_are_refused(grid, needle):
    with pytest.raises(SpecError) as exc:
        expand({"base": "gaussian", "grid": grid})
    assert needle in str(exc.value)


def test_settings_whose_names_would_be_the_same_are_refused():
    web = {"kind": "web", "synthetic_share": 0.5}
    filters = [{"kind": "filter", "base": web, "detector": {"kind": "oracle", "false_negative_rate": e}}
               for e in (0.1, 0.2)]  # both cut to "filter-web-0.5-last-orac..." in a name: their results would mix
    with pytest.raises(SpecError) as exc:
        expand({"base": "gaussian", "set": {"replicates": 2, "generations": 2}, "grid": {"policy": filters}})
    assert "two settings are both named" in str(exc.value) and "give the values labels" in str(exc.value)
    seeds = expand({"base": "gaussian", "grid": {"train_size": [10, 20]}, "seeds": "0-2"})  # seeds share a setting
    assert len(seeds.cells) == 6 and len(seeds.settings) == 2


def test_labels_are_the_values_in_the_tables(tmp_path):
    out = tmp_path / "labelled"
    study = build(LABELLED, sets=["generations=1"])
    assert sweep(study, out, workers=1, progress=False, cell_reports=False, report=False).ok
    table = mc.load_results(out)
    assert set(table["policy"]) == {"plain", "fresh-0.1"} and set(table["train_size"]) == {10.0, 20.0}
    # the stored definition (labels and all) expands into the same cells: a relaunch skips them
    again = sweep(build(StudyDir.open(out).definition()), out, workers=1, progress=False, cell_reports=False,
                  report=False)
    assert sorted(again.skipped) == sorted(c.name for c in study.cells) and not again.completed
