"""The `mitigations` study preset and its report section: the preset expands into families x mitigations
with the settings it says; ``report.mitigations`` is validated before anything runs; the answer ("at
least 10% fresh real data", "none of the tested ...") is read correctly from hand-made results tables
with known answers; a tiny version of the preset runs end to end and its report says the answer."""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelcollapse.cli import main
from modelcollapse.config import SpecError, read_source
from modelcollapse.report.mitigations import analyse, enough, relative_change
from modelcollapse.study import build, expand, sweep
from modelcollapse.study.index import StudyDir

FAMILIES = ["gaussian", "discrete", "gmm", "ngram", "vae"]
MITIGATIONS = ["replace", "mix-0.1", "fresh-0.02", "fresh-0.05", "fresh-0.1", "fresh-0.2", "fresh-0.5", "accumulate",
               "accumulate_subsample", "web-growing", "filter-oracle", "filter-oracle-0.05", "filter-oracle-0.1",
               "filter-oracle-0.2", "filter-oracle-0.4", "filter-learned", "filter-verifier"]


# -- the preset ----------------------------------------------------------------------------------
def test_preset_expands_into_families_times_mitigations():
    study = build("mitigations")
    assert study.name == "mitigations" and "min on 2 cores" in study.description
    assert len(study.cells) == len(FAMILIES) * len(MITIGATIONS) == 85
    assert study.settings == [f"{f}_policy={m}" for f in FAMILIES for m in MITIGATIONS]
    assert {c.variant for c in study.cells} == set(FAMILIES)
    assert {c.values["policy"] for c in study.cells} == set(MITIGATIONS)  # the labels, not the sections
    assert study.cells[0].name.startswith("gaussian_policy=replace-")
    by = {(c.variant, c.values["policy"]): c.spec for c in study.cells}
    kinds = {"gaussian": "gaussian", "discrete": "categorical", "gmm": "gmm", "ngram": "ngram", "vae": "vae"}
    metric = study.report["mitigations"]["metric"]
    for (family, mitigation), spec in by.items():
        assert spec.model.kind == kinds[family] and metric[family] in spec.metrics
    g = {f: by[(f, "replace")] for f in FAMILIES}
    for f in FAMILIES:  # a family's sizes are the same under every mitigation
        assert {(s.replicates, s.generations, s.train_size) for (ff, _), s in by.items() if ff == f} == \
            {(g[f].replicates, g[f].generations, g[f].train_size)}
    fresh = {m: by[("gaussian", m)].policy for m in MITIGATIONS if m.startswith("fresh")}
    assert {m: p.real_fraction for m, p in fresh.items()} == {f"fresh-{x:g}": x for x in (0.02, 0.05, 0.1, 0.2, 0.5)}
    assert (by[("gmm", "mix-0.1")].policy.kind, by[("gmm", "mix-0.1")].policy.real_fraction) == ("mix", 0.1)
    web = by[("gaussian", "web-growing")].policy
    assert web.kind == "web" and (web.synthetic_share.start, web.synthetic_share.end) == (0.5, 0.9)
    for m in MITIGATIONS:
        if not m.startswith("filter"):
            continue
        p = by[("discrete", m)].policy.model_dump()
        assert (p["base"]["kind"], p["base"]["synthetic_share"], p["base"]["source"]) == ("web", 0.8, "last")
        assert (p["action"], p["crawl"]) == ("drop", 5.0)
        if m.startswith("filter-oracle"):
            e = float(m.rsplit("-", 1)[1]) if m != "filter-oracle" else 0.0
            assert p["detector"] == {"kind": "oracle", "false_positive_rate": e, "false_negative_rate": e}
    assert by[("ngram", "filter-learned")].policy.detector.kind == "learned"
    assert by[("vae", "filter-verifier")].policy.detector.kind == "verifier"


def test_preset_shows_and_its_yaml_comment_names_every_mitigation(capsys):
    assert main(["show", "mitigations"]) == 0
    assert "mitigations:" in capsys.readouterr().out
    text = (Path(__file__).resolve().parents[1] / "src/modelcollapse/presets/studies/mitigations.yaml").read_text()
    header = text.split("\nname:")[0]
    for word in ("replace", "mix-0.1", "fresh-F", "accumulate_subsample", "web-growing", "filter-oracle",
                 "filter-learned", "filter-verifier", *FAMILIES[:4], "VAE"):
        assert word in header


# -- labelled grid values (the preset's grid) -------------------------------------------------------
def test_long_unlabelled_policies_would_share_a_name_and_are_refused():
    web = {"kind": "web", "synthetic_share": 0.5}
    policies = [{"kind": "filter", "base": web, "detector": {"kind": "oracle", "false_positive_rate": e,
                                                             "false_negative_rate": e}} for e in (0.1, 0.2)]
    with pytest.raises(SpecError) as exc:
        expand({"base": "gaussian", "set": {"replicates": 2, "generations": 2}, "grid": {"policy": policies}})
    assert "two settings are both named" in str(exc.value) and "give the values labels" in str(exc.value)
    study = expand({"base": "gaussian", "set": {"replicates": 2, "generations": 2},
                    "grid": {"policy": {"e10": policies[0], "e20": policies[1]}}})
    assert study.settings == ["policy=e10", "policy=e20"]


# -- validation of report.mitigations ------------------------------------------------------------
def _small(**mitigations_report) -> dict:
    """Two families x five mitigations, with a report.mitigations built from the keyword arguments."""
    web = {"kind": "web", "synthetic_share": 0.5}
    report = {"metric": {"a": "variance_ratio", "b": "variance_ratio"}, "within": 0.1,
              "curves": {"real data": {"x": "policy.real_fraction", "where": {"policy.kind": "fresh"},
                                       "points": {"replace": 0}, "better": "higher"},
                         "detector error": {"x": "policy.detector.false_negative_rate",
                                            "where": {"policy.kind": "filter"}, "better": "lower"}}}
    report.update(mitigations_report)
    return {"name": "small", "base": "gaussian", "set": {"replicates": 4, "generations": 3},
            "cells": {"a": {"train_size": 50}, "b": {"train_size": 80}},
            "grid": {"policy": {
                "replace": {"kind": "replace"},
                "fresh-0.1": {"kind": "fresh", "real_fraction": 0.1},
                "fresh-0.5": {"kind": "fresh", "real_fraction": 0.5},
                "oracle-0": {"kind": "filter", "base": web, "crawl": 2, "detector": {"kind": "oracle"}},
                "oracle-0.2": {"kind": "filter", "base": web, "crawl": 2,
                               "detector": {"kind": "oracle", "false_positive_rate": 0.2, "false_negative_rate": 0.2}},
            }},
            "report": {"heatmap": False, "mitigations": report}}


def test_a_good_mapping_expands():
    study = expand(_small())
    assert len(study.cells) == 10 and study.report["mitigations"]["within"] == 0.1


@pytest.mark.parametrize("change, needle", [
    ({"metric": None}, "report.mitigations.metric: missing"),
    ({"metric": {"a": "variance_ratio"}}, "report.mitigations.metric: no metric for family b"),
    ({"metric": "w3"}, "report.mitigations.metric: 'w3' is not computed by a_policy=replace"),
    ({"within": 0}, "report.mitigations.within: must be a positive number"),
    ({"within": "10%"}, "report.mitigations.within: must be a positive number"),
    ({"generation": 4}, "report.mitigations.generation: 4 is not a generation after 0"),
    ({"generation": 0}, "report.mitigations.generation: 0 is not a generation after 0"),
    ({"generation": 1.5}, "report.mitigations.generation: must be an integer"),
    ({"famliy": "variant"}, "report.mitigations: unknown key 'famliy'; did you mean 'family'?"),
    ({"family": "seed"}, "report.mitigations.family: 'seed' is not an axis of this study (axes: variant, policy"),
    ({"family": "policy", "mitigation": "policy"}, "family and mitigation are both 'policy'"),
    ({"mention": ["replace", "acumulate"]}, "report.mitigations.mention: 'acumulate' is not a mitigation"),
    ({"curves": {"r": {"x": "policy.real_fraction", "where": {"policy.kind": "fresh"}}}},
     "report.mitigations.curves.r.better: must be higher"),
    ({"curves": {"r": {"x": "policy.real_fracton", "better": "higher"}}},
     "report.mitigations.curves.r: 'policy.real_fracton' is not a key of any cell's spec"),
    ({"curves": {"r": {"x": "policy.real_fraction", "better": "higher", "wehre": {}}}},
     "report.mitigations.curves.r: unknown key 'wehre'; did you mean 'where'?"),
    ({"curves": {"r": {"better": "higher", "points": {"replase": 0}}}},
     "report.mitigations.curves.r.points: 'replase' is not a mitigation; did you mean 'replace'?"),
    ({"curves": {"r": {"x": "policy.real_fraction", "where": {"policy.kind": "mix"}, "better": "higher"}}},
     "report.mitigations.curves.r: no setting of family a is on this curve"),
    ({"curves": {"r": {"x": "policy.kind", "where": {"policy.kind": "fresh"}, "better": "higher"}}},
     "(a curve's x must be a number in every setting it matches"),
    ({"curves": {"r": {"x": "policy.real_fraction", "where": {"policy.kind": "fresh"}, "points": {"replace": 0.1},
                       "better": "higher"}}}, "are both at x=0.1"),
    ({"curves": {"r": {"x": "policy.real_fraction", "where": {"policy.kind": "fresh"}, "better": "higher",
                       "say": "at least some"}}}, "report.mitigations.curves.r.say: must be text with {x}"),
])
def test_bad_mappings_are_refused_before_anything_runs(change, needle):
    definition = _small()
    definition["report"]["mitigations"].update(change)
    if change.get("metric", 0) is None:
        del definition["report"]["mitigations"]["metric"]
    with pytest.raises(SpecError) as exc:
        expand(definition)
    assert needle in str(exc.value), str(exc.value)


def test_the_preset_mapping_with_a_typo_in_a_family_is_refused():
    raw = read_source("mitigations")
    raw["report"]["mitigations"]["metric"]["gausian"] = raw["report"]["mitigations"]["metric"].pop("gaussian")
    with pytest.raises(SpecError) as exc:
        expand(raw)
    assert "no metric for family gaussian" in str(exc.value)


# -- the answer, from hand-made results ----------------------------------------------------------
def test_enough_is_the_least_demanding_value_with_every_more_demanding_one_enough():
    fresh = [(0.0, -0.5), (0.02, -0.3), (0.05, 0.04), (0.1, -0.2), (0.2, -0.05), (0.5, 0.01)]
    assert enough(fresh, "higher", 0.1) == 0.2  # 5% is within, but 10% is not: "at least 5%" would be wrong
    assert enough(fresh, "higher", 0.6) == 0.0
    assert enough([(0.1, 0.3), (0.5, 0.2)], "higher", 0.1) is None
    error = [(0.0, 0.01), (0.05, -0.09), (0.1, 0.1), (0.2, 0.2), (0.4, np.nan)]
    assert enough(error, "lower", 0.1) == 0.1  # the band is closed: exactly 10% is within
    assert enough(error, "lower", 0.005) is None
    assert enough(error, "lower", 1.0) == 0.2  # a missing value is not enough


def test_relative_change_is_a_ratio_of_medians_with_an_interval():
    g0 = np.array([1.0, 1.0, 1.0, 1.0, np.nan])
    gG = np.array([0.5, 0.6, 0.7, 0.8, 0.1])  # the last replicate stopped at generation 0: dropped
    r = relative_change(g0, gG, "x")
    assert r["n"] == 4 and r["change"] == pytest.approx(-0.35)
    assert r["ci_low"] <= r["change"] <= r["ci_high"] and -0.5 <= r["ci_low"] and r["ci_high"] <= -0.2 + 1e-9
    assert relative_change(g0, gG, "x") == r  # seeded by the setting
    assert np.isnan(relative_change(np.zeros(3), np.ones(3), "x")["change"])  # 0 at generation 0: no ratio


def _fake_study(path: Path, definition: dict, change: dict) -> Path:
    """A study directory whose results are made by hand: every replicate of a setting has its metric 1 at
    generation 0 and 1 + change[(family, mitigation)] at its last generation (0.5 elsewhere)."""
    study = expand(definition)
    folder = StudyDir.create(path, study)
    folder.unlock()
    index = folder.read()
    rows = []
    for e in index["cells"]:
        fam, mit = e["variant"], e["values"]["policy"]
        G = e["spec"]["generations"]
        for r in range(e["spec"]["replicates"]):
            for g in range(G + 1):
                v = 1.0 if g == 0 else (1.0 + change[(fam, mit)] + 0.001 * (r - 1.5) if g == G else 0.5)
                rows.append({"cell": e["name"], "setting": e["setting"], "variant": fam, "seed": 0, "policy": mit,
                             "replicate": r, "generation": g, "variance_ratio": v, "stopped": None})
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False), path / "results.parquet")
    return path


KNOWN = {  # a: 10% fresh real data is enough, and a detector that errs at most 0%: not 20%
    ("a", "replace"): -0.5, ("a", "fresh-0.1"): -0.08, ("a", "fresh-0.5"): 0.02, ("a", "oracle-0"): 0.0,
    ("a", "oracle-0.2"): 0.15,
    # b: no real fraction up to 50% is enough; every tested detector error is
    ("b", "replace"): 0.9, ("b", "fresh-0.1"): 0.4, ("b", "fresh-0.5"): 0.12, ("b", "oracle-0"): -0.01,
    ("b", "oracle-0.2"): 0.05,
}


def test_sentences_from_a_hand_made_table(tmp_path):
    definition = _small(curves={
        "real data": {"x": "policy.real_fraction", "where": {"policy.kind": "fresh"}, "points": {"replace": 0},
                      "better": "higher", "say": "at least {x} fresh real data per generation",
                      "noun": "real fractions"},
        "detector error": {"x": "policy.detector.false_negative_rate", "where": {"policy.kind": "filter"},
                           "better": "lower", "say": "a filter whose detector errs at most {x}",
                           "noun": "detector error rates"}})
    path = _fake_study(tmp_path / "fake", definition, KNOWN)
    result = analyse(path, StudyDir.open(path).read(), definition)
    assert not result["notes"], result["notes"]
    a, b = result["families"]["a"], result["families"]["b"]
    assert a["generation"] == b["generation"] == 3
    assert a["mitigations"]["fresh-0.1"]["change"] == pytest.approx(-0.08)
    assert [p["x"] for p in a["curves"]["real data"]["points"]] == [0.0, 0.1, 0.5]
    assert a["curves"]["real data"]["enough"] == 0.1 and a["curves"]["detector error"]["enough"] == 0.0
    assert b["curves"]["real data"]["enough"] is None and b["curves"]["detector error"]["enough"] == 0.2
    assert a["sentence"] == (
        "a: variance_ratio stays within 10% of generation 0 after 3 generations with at least 10% fresh real data "
        "per generation, or with a filter whose detector errs at most 0% (the most demanding tested value; 20% is "
        "not enough); replace drifts 50% down, oracle-0 drifts 0%.")
    assert b["sentence"] == (
        "b: variance_ratio stays within 10% of generation 0 after 3 generations with a filter whose detector errs "
        "at most 20% (every tested value); none of the tested real fractions up to 50% is enough; replace drifts "
        "90% up, oracle-0 drifts 1% down.")


def test_no_curve_enough_and_an_explicit_generation(tmp_path):
    change = {k: 0.5 for k in KNOWN}
    definition = _small(generation=2, mention=["fresh-0.5"])
    path = _fake_study(tmp_path / "fake", definition, change)
    result = analyse(path, StudyDir.open(path).read(), definition)
    a = result["families"]["a"]
    assert a["generation"] == 2 and a["mitigations"]["replace"]["change"] == pytest.approx(-0.5)
    assert a["sentence"] == (
        "a: variance_ratio does not stay within 10% of generation 0 after 2 generations in any tested setting on the "
        "curves: none of the tested real data up to 50% is enough; none of the tested detector error down to 0% is "
        "enough; fresh-0.5 drifts 50% down.")


# -- a tiny version, end to end ---------------------------------------------------------------------
def tiny_mitigations(families=("gaussian", "discrete")) -> dict:
    """The preset with two cheap families, 3 replicates x 3 generations and smaller sets."""
    raw = copy.deepcopy(read_source("mitigations"))
    raw["cells"] = {f: raw["cells"][f] for f in families}
    raw["override"] = {"replicates": 3, "generations": 3}
    raw["cells"]["discrete"]["train_size"] = 200
    for policy in raw["grid"]["policy"].values():
        if policy.get("detector", {}).get("kind") == "learned":
            policy["detector"]["train_size"] = 50
    return raw


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mitigations") / "tiny"
    study = build(tiny_mitigations())
    assert len(study.cells) == 2 * len(MITIGATIONS)
    outcome = sweep(study, out, workers=1, progress=False, cell_reports=False)
    assert outcome.ok and len(outcome.completed) == len(study.cells), outcome.failed
    return out


def test_tiny_preset_runs_and_its_report_says_the_answer(tiny_run):
    answer = json.loads((tiny_run / "tables" / "mitigations.json").read_text())
    assert set(answer["families"]) == {"gaussian", "discrete"} and answer["within"] == 0.1
    gaussian = answer["families"]["gaussian"]
    assert gaussian["metric"] == "variance_ratio" and gaussian["generation"] == 3
    assert set(gaussian["mitigations"]) == set(MITIGATIONS)
    assert all(r["n"] == 3 for r in gaussian["mitigations"].values())
    assert [p["x"] for p in gaussian["curves"]["real data"]["points"]] == [0, 0.02, 0.05, 0.1, 0.2, 0.5]
    assert [p["x"] for p in gaussian["curves"]["detector error"]["points"]] == [0, 0.05, 0.1, 0.2, 0.4]
    text = (tiny_run / "report.html").read_text()
    words = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"data:image[^\"]*", "", text))))
    for family in ("gaussian", "discrete"):
        sentence = answer["families"][family]["sentence"]
        assert sentence.startswith(f"{family}: ") and "of generation 0 after 3 generations" in sentence
        assert words.count(sentence) == 2  # at the top and in the section
    assert text.index("How much is needed") < text.index("Metrics over generations") < text.index("id='mitigations'")
    assert "Heat map" not in words  # report.heatmap: false
    for name in ("mitigations_ranking", "mitigations_curves"):
        assert (tiny_run / "figures" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert "bold: within 10%" in words and "filter-oracle-0.05" in words


def test_a_report_with_a_broken_mapping_says_so_and_stands(tiny_run, tmp_path):
    import shutil

    from modelcollapse.report.study import write_study_report

    copied = tmp_path / "copy"
    shutil.copytree(tiny_run, copied)
    definition = StudyDir.open(copied).definition()
    definition["report"]["mitigations"]["metric"] = "no_such_metric"
    (copied / "study.yaml").write_text(json.dumps(definition))  # JSON is YAML
    text = write_study_report(copied).read_text()
    words = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", re.sub(r"data:image[^\"]*", "", text))))
    assert "report.mitigations.metric: 'no_such_metric' is not computed by gaussian_policy=replace" in words
    assert "How much is needed" not in words and "Metrics over generations" in words


@pytest.mark.slow
def test_full_size_mitigations(tmp_path):
    """The preset at its default size, as `modelcollapse run mitigations` runs it (~6 minutes on 2 cores)."""
    out = tmp_path / "mitigations"
    assert main(["run", "mitigations", "--out", str(out), "-q"]) == 0
    answer = json.loads((out / "tables" / "mitigations.json").read_text())
    assert set(answer["families"]) == set(FAMILIES)
    for family, result in answer["families"].items():
        assert result["mitigations"]["replace"]["within"] is False  # every family collapses under replace


def test_without_curves_the_sentence_lists_what_is_enough(tmp_path):
    definition = _small(curves={}, mention=["replace"])
    path = _fake_study(tmp_path / "fake", definition, KNOWN)
    families = analyse(path, StudyDir.open(path).read(), definition)["families"]
    assert families["a"]["sentence"] == ("a: variance_ratio stays within 10% of generation 0 after 3 generations with "
                                         "fresh-0.1, fresh-0.5, oracle-0; replace drifts 50% down.")
    change = {k: 0.5 for k in KNOWN}
    path = _fake_study(tmp_path / "none", definition, change)
    families = analyse(path, StudyDir.open(path).read(), definition)["families"]
    assert families["b"]["sentence"] == ("b: variance_ratio does not stay within 10% of generation 0 after 3 "
                                         "generations with any tested mitigation; replace drifts 50% up.")
