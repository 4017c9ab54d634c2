"""The built-in presets that are studies (errors-*, sweep-*): each expands and validates into the
cells it is meant to have, its sources of error are switched on by the knobs it says, and a tiny
version of it runs end to end (cells, tables, study report). The full sizes are in
test_full_size_study_presets (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from modelcollapse.config import presets, read_source, study_presets
from modelcollapse.study import build, load_results
from modelcollapse.study import sweep

#: study preset -> its settings (named cells, or grid settings where it has no named cells)
EXPECTED = {
    "errors-gmm": ["stat", "expr", "approx", "all", "stat+expr", "stat+approx", "expr+approx", "none"],
    "errors-gaussian": ["mle-M20", "unbiased-M20", "mle-M100", "unbiased-M100"],
    "errors-kde": ["stat", "expr", "all", "none", "scott", "scott-unlimited"],
    "errors-vae": ["stat", "expr", "approx", "all", "none"],
    "sweep-policies": [f"{family}_policy={policy}" for family in ("gaussian", "discrete", "gmm")
                       for policy in ("replace", "mix-0.1", "fresh-0.1", "accumulate", "accumulate_subsample")],
    "sweep-sample-size": [f"train_size={m}" for m in (100, 500, 1000, 10000)],
}

#: How each preset is shrunk for CI: ``sets`` added to the study's own `set:` keys (which a cell's own
#: value of the same key overrides; `--set` would override the cells too), ``cells`` replacing the values
#: of the cells that set that key themselves.
TINY = {
    "errors-gmm": {"sets": ["replicates=2", "generations=3", "train_size=2000", "heldout_size=200"]},
    "errors-gaussian": {"sets": ["replicates=20", "generations=5"]},
    "errors-kde": {"sets": ["replicates=2", "generations=3", "train_size=1000", "metric_samples=500"]},
    # nll and latent_std need no digit classifier (training it takes ~10 s a process)
    "errors-vae": {"sets": ["replicates=1", "generations=1", "train_size=200", "metric_samples=50",
                            "metrics=[nll, latent_std]"], "cells": {"model.epochs": 1}},
    "sweep-policies": {"cells": {"replicates": 2, "generations": 3}},
    "sweep-sample-size": {"sets": ["replicates=2", "generations=3"]},
}
TORCH = {"errors-vae"}


def tiny(name: str):
    """The study ``name`` at its CI size."""
    raw = read_source(name)  # a fresh copy of the preset's mapping
    for overrides in (raw.get("cells") or {}).values():
        for key, value in TINY[name].get("cells", {}).items():
            if key in overrides:
                overrides[key] = value
    common = dict(raw.get("set") or {})
    for assignment in TINY[name].get("sets", []):
        key, value = assignment.split("=", 1)
        common[key] = yaml.safe_load(value)
    raw["set"] = common
    return build(raw)


def test_every_study_preset_is_listed_here():
    assert set(study_presets()) == set(EXPECTED) == set(TINY)
    assert not set(EXPECTED) & set(presets())  # presets() lists the single runs only


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_study_preset_expands_into_its_cells(name):
    study = build(name)
    assert study.name == name and study.description
    assert study.settings == EXPECTED[name]
    assert len(study.cells) == len(EXPECTED[name])  # one seed: the spec's
    for cell in study.cells:
        assert cell.spec.name.startswith(f"{name}.")
    if study.errors is not None:
        # The report reads each source at the first setting's grid values: an errors study has no grid.
        assert not study.definition.get("grid") and not study.definition.get("zip")
        variants = {c.variant: c for c in study.cells}
        sources = study.errors["sources"]
        assert set(sources.values()) <= set(variants)
        # The first metric the report may read is computed by every source.
        first = study.errors["metric"][0]
        assert all(first in variants[v].spec.metrics for v in sources.values())


def _by_variant(name):
    return {c.variant: c.spec for c in build(name).cells}


def test_errors_gmm_switches_on_one_source_per_cell():
    s = _by_variant("errors-gmm")
    k_true = len(s["none"].data.weights)
    big = s["none"].train_size
    assert k_true == 3 and big >= 20_000
    exact = {"n_components": k_true, "init_params": "kmeans", "n_init": 3, "max_iter": 2000, "tol": 1e-6}
    assert {k: getattr(s["none"].model, k) for k in exact} == exact
    # statistical only: the family holds the truth, fitted exactly, from finitely many samples
    assert s["stat"].train_size == 1000 and s["stat"].model == s["none"].model
    # expressivity only: too few components, unlimited data, exact fit
    assert s["expr"].model.n_components < k_true and s["expr"].train_size == big
    assert s["expr"].model.model_dump(exclude={"n_components"}) == s["none"].model.model_dump(exclude={"n_components"})
    # approximation only: the family holds the truth, unlimited data, EM stopped after 2 steps from one start
    assert s["approx"].model.n_components == k_true and s["approx"].train_size == big
    assert (s["approx"].model.max_iter, s["approx"].model.n_init) == (2, 1)
    # all three
    assert s["all"].train_size == 1000 and s["all"].model == s["expr+approx"].model
    assert s["all"].model.n_components < k_true and s["all"].model.max_iter == 2
    for spec in s.values():
        assert spec.data == s["none"].data and spec.metrics == s["none"].metrics
        assert (spec.replicates, spec.generations) == (s["none"].replicates, s["none"].generations)


def test_errors_kde_and_vae_knobs():
    kde = _by_variant("errors-kde")
    assert (kde["stat"].model.bandwidth, kde["stat"].train_size) == (0.05, 400)
    assert (kde["expr"].model.bandwidth, kde["expr"].train_size) == (0.5, 10_000)
    assert (kde["all"].model.bandwidth, kde["all"].train_size) == (0.5, 400)
    assert (kde["none"].model.bandwidth, kde["none"].train_size) == (0.05, 10_000)
    vae = _by_variant("errors-vae")
    ref = vae["none"].model
    assert vae["expr"].model.latent_dim < ref.latent_dim and vae["approx"].model.epochs < ref.epochs
    assert vae["stat"].train_size < vae["none"].train_size == 1437  # every training digit
    # the well-trained cells take about as many minibatches: epochs x ceil(M / batch)
    steps = {v: vae[v].model.epochs * -(-vae[v].train_size // vae[v].model.batch_size) for v in ("stat", "none")}
    assert abs(steps["stat"] - steps["none"]) / steps["none"] < 0.1


def test_errors_gaussian_and_sweeps_vary_what_they_say():
    g = _by_variant("errors-gaussian")
    assert {(s.model.estimator, s.train_size) for s in g.values()} == \
        {(e, m) for e in ("mle", "unbiased") for m in (20, 100)}
    sizes = build("sweep-sample-size")
    assert [c.spec.train_size for c in sizes.cells] == [100, 500, 1000, 10000]
    assert {c.spec.generations for c in sizes.cells} == {1000}
    policies = build("sweep-policies")
    kinds = {(c.variant, c.spec.model.kind, c.spec.policy.kind) for c in policies.cells}
    assert {(f, p) for f, _, p in kinds} == {(f, p) for f in ("gaussian", "discrete", "gmm")
                                             for p in ("replace", "mix", "fresh", "accumulate", "accumulate_subsample")}
    assert {(f, m) for f, m, _ in kinds} == {("gaussian", "gaussian"), ("discrete", "categorical"), ("gmm", "gmm")}
    assert all(c.spec.policy.real_fraction == 0.1 for c in policies.cells if c.spec.policy.kind in ("mix", "fresh"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_tiny_study_preset_runs_end_to_end(name, tmp_path):
    if name in TORCH:
        pytest.importorskip("torch")
    study = tiny(name)
    assert [c.setting for c in study.cells] == EXPECTED[name]
    out = tmp_path / name
    outcome = sweep(study, out, workers=1, progress=False, cell_reports=False)
    assert outcome.ok and len(outcome.completed) == len(study.cells), outcome.failed
    table = load_results(out)
    assert set(table["setting"]) == set(EXPECTED[name])
    assert len(table) == sum(c.spec.replicates * (c.spec.generations + 1) for c in study.cells)
    html = (out / "report.html").read_text()
    if study.errors is not None:
        assert "Sources of error" in html and "alone moves the model furthest" in html
    if name == "errors-gmm":
        _check_errors_gmm(table)


def _check_errors_gmm(table):
    """Qualitative checks that hold for any seed.

    The truth has three well-separated modes. No two-component mixture comes within an L2 distance of
    about 0.094 of it (the minimum of l2_distance over all two-component mixtures, found numerically
    from 40 starts), so `expr` and `all` are at least that far off at generation 0 (measured: 0.108 to
    0.16 over 400 replicates). A three-component fit by EM (3 k-means starts) to 1000 samples is off by
    its statistical error alone: 0.019 +- 0.004, at most 0.041 over 400 replicates. The threshold 0.06
    sits between the two with a margin of over 9 standard deviations of `stat` and the whole gap to the
    two-component floor; it is checked for every replicate, not on average.
    """
    g0 = table[table["generation"] == 0]
    l2 = {v: g0.loc[g0["variant"] == v, "l2_distance"].to_numpy() for v in ("stat", "expr", "all")}
    assert np.all(np.isfinite(np.concatenate(list(l2.values()))))
    assert l2["stat"].max() < 0.06 < min(l2["expr"].min(), l2["all"].min()), l2


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_full_size_study_presets(name, tmp_path):
    """Every study preset at its default size, as `modelcollapse run NAME` runs it (1-4 minutes each here)."""
    from modelcollapse.cli import main

    if name in TORCH:
        pytest.importorskip("torch")
    assert main(["run", name, "--out", str(tmp_path / name), "-q"]) == 0


# -- mitigations ------------------------------------------------------------------------------------------
# Listed here for test_every_study_preset_is_listed_here only: the parametrised tests above were collected
# before these lines run, so they leave it out. Its 85 cells (5 families x 17 mitigations) are checked, run
# tiny (two families) and at full size (slow) in test_mitigations.py.
EXPECTED["mitigations"] = [f"{family}_policy={policy}" for family in ("gaussian", "discrete", "gmm", "ngram", "vae")
                           for policy in ("replace", "mix-0.1", "fresh-0.02", "fresh-0.05", "fresh-0.1", "fresh-0.2",
                                          "fresh-0.5", "accumulate", "accumulate_subsample", "web-growing",
                                          "filter-oracle", "filter-oracle-0.05", "filter-oracle-0.1",
                                          "filter-oracle-0.2", "filter-oracle-0.4", "filter-learned",
                                          "filter-verifier")]
TINY["mitigations"] = {"cells": {"replicates": 2, "generations": 2}}  # all five families: see test_mitigations.py


def test_mitigations_preset_expands_into_its_cells():
    study = build("mitigations")
    assert study.settings == EXPECTED["mitigations"] and len(study.cells) == 85
    assert all(c.spec.name.startswith("mitigations.") for c in study.cells)


def test_presets_listing_counts_every_cell_of_each_study(capsys):
    """The listing counts cells without resolving them; it must agree with the expansion (labelled grid
    values, a mapping, count as many values as they have labels)."""
    from modelcollapse.cli import main
    from modelcollapse.study.spec import build

    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("mitigations", "sweep-policies", "errors-gmm"):
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        assert f" {len(build(name).cells)} cells " in line
