"""Lineage: where each generation's training data came from (``modelcollapse lineage``), and the report's
provenance section (composition by source, a filter's detector)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelcollapse.cli import main
from modelcollapse.config import load_spec
from modelcollapse.lineage import DEPTH_BINS, LineageError, lineage, synthetic_depth
from modelcollapse.loop import run
from modelcollapse.store import RunStore

G = 5  # generations of every run here
FILTER = ("policy={kind: filter, base: {kind: web, synthetic_share: 0.8, source: all}, "
          "detector: {kind: oracle, false_negative_rate: 0.2, false_positive_rate: 0.1}}")


def make(base: Path, name: str, *overrides: str, preset: str = "gaussian", replicates: int = 4) -> Path:
    out = base / name
    spec = load_spec(preset, [f"replicates={replicates}", f"generations={G}", "train_size=50", "heldout_size=50",
                              "metric_samples=50", *overrides])
    run(spec, out, progress=False)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("lineage")
    return {
        "replace": make(base, "replace"),
        "mix": make(base, "mix", "policy={kind: mix, real_fraction: 0.3}"),
        "mix_half": make(base, "mix_half", "policy={kind: mix, real_fraction: 0.5}"),
        "fresh": make(base, "fresh", "policy={kind: fresh, real_fraction: 1.0}"),
        "web": make(base, "web", "policy={kind: web, synthetic_share: 0.6, source: all}"),
        "filter": make(base, "filter", FILTER),
        "accumulate": make(base, "accumulate", preset="gaussian-accumulate"),
    }


def sources(path: Path, g: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Generation g's stored per-example sources (provenance columns) and weights; None when not stored."""
    arrays = RunStore.open(path, writable=False).read_tensors(RunStore.generation_file(g), "lineage/")
    return (arrays["lineage/source"].astype(int), arrays.get("lineage/weight")) if arrays else None


# -- per-example lookups --------------------------------------------------------------------------
def test_replace_every_example_comes_from_the_previous_generation(runs):
    for g in range(1, G + 1):
        for i in (0, 17, 49):
            ex = lineage(runs["replace"], g, replicate=3, index=i)["example"]
            assert ex["source_generation"] == g - 1 and ex["source"] == f"generation {g - 1}"
            assert not ex["dropped"] and ex["depth"] == pytest.approx(g)
        # A set from one source stores no per-example lineage: the provenance counts say it all.
        assert sources(runs["replace"], g) is None
        assert (RunStore.open(runs["replace"], writable=False).provenance(g)[:, g] == 50).all()


def test_mix_is_exactly_30_percent_real_and_the_rest_from_the_previous_generation(runs):
    for g in range(1, G + 1):
        src, _ = sources(runs["mix"], g)
        assert ((src == 0).sum(axis=1) == 15).all()
        assert ((src == g).sum(axis=1) == 35).all()
        found = [lineage(runs["mix"], g, replicate=1, index=i)["example"]["source_generation"] for i in range(50)]
        assert found.count(None) == 15 and found.count(g - 1) == 35
    summary = lineage(runs["mix"], 3)
    assert summary["real_share"] == pytest.approx(0.3)
    assert [(p["generation"], p["share"]) for p in summary["composition"]] == [(None, pytest.approx(0.3)),
                                                                             (2, pytest.approx(0.7))]


def test_web_sources_agree_with_the_provenance_counts_of_every_replicate(runs):
    store = RunStore.open(runs["web"], writable=False)
    for g in range(1, G + 1):
        src, _ = sources(runs["web"], g)
        counts = store.provenance(g)
        assert src.shape == (4, 50)
        for r in range(4):
            assert (np.bincount(src[r], minlength=g + 1) == counts[r]).all()
        if g >= 2:  # source: all draws from every earlier generation, not only the last
            assert len(np.unique(src[src > 0])) > 1
    r, i = 2, int(np.flatnonzero(src[2] > 0)[0])
    assert lineage(runs["web"], G, replicate=r, index=i)["example"]["source_generation"] == src[r, i] - 1


def test_filter_drop_reports_dropped_examples_and_kept_counts_match_provenance(runs):
    store = RunStore.open(runs["filter"], writable=False)
    dropped_seen = 0
    for g in range(1, G + 1):
        src, weight = sources(runs["filter"], g)
        assert weight is not None
        counts = store.provenance(g)
        for r in range(4):
            kept = src[r][weight[r] > 0]
            assert (np.bincount(kept, minlength=g + 1) == counts[r]).all()
        r, i = np.argwhere(weight == 0)[0]
        ex = lineage(runs["filter"], g, replicate=int(r), index=int(i))["example"]
        assert ex["dropped"] and ex["weight"] == 0.0
        dropped_seen += 1
        r, i = np.argwhere(weight > 0)[0]
        assert not lineage(runs["filter"], g, replicate=int(r), index=int(i))["example"]["dropped"]
    assert dropped_seen == G


def test_replicates_beyond_the_stored_lineage_are_named(tmp_path, monkeypatch):
    from modelcollapse import chain

    monkeypatch.setattr(chain, "LINEAGE_ENTRIES", 100)  # 100 // 50 examples: replicates 0 and 1 only
    path = make(tmp_path, "few", "policy={kind: web, synthetic_share: 0.5}")
    assert sources(path, 2)[0].shape == (2, 50)
    assert lineage(path, 2, replicate=1, index=3)["example"]
    with pytest.raises(LineageError, match=r"replicate 3: per-example lineage is stored for replicates 0-1"):
        lineage(path, 2, replicate=3, index=3)
    assert lineage(path, 2, replicate=3)["size"] == 50  # the composition is stored for every replicate


def test_accumulate_with_running_statistics_derives_its_order(runs):
    """An accumulating Gaussian chain keeps statistics, not the pool: its lineage is the real set, then each
    generation's samples in order (the same in every replicate)."""
    for i, expected in ((0, None), (49, None), (50, 0), (99, 0), (100, 1), (G * 50 + 49, G - 1)):
        ex = lineage(runs["accumulate"], G, replicate=3, index=i)["example"]
        assert ex["source_generation"] == expected and "real set first" in ex["note"]


# -- the synthetic depth ------------------------------------------------------------------------
def test_synthetic_depth_by_hand():
    # replace: D(g) = g; mix 0.5: D(g) = 1 - 2^-g; fresh 1.0: 0; accumulate (equal sizes): H_{g+1} - 1.
    replace = [np.array([[10]]), *[np.eye(1, g + 1, g, dtype=int) * 10 for g in range(1, 6)]]
    half = [np.array([[10]]), *[np.array([[5, *[0] * (g - 1), 5]]) for g in range(1, 6)]]
    fresh = [np.array([[10]]), *[np.array([[10, *[0] * g]]) for g in range(1, 6)]]
    accumulate = [np.full((1, g + 1), 10) for g in range(6)]
    assert synthetic_depth(replace)[0][:, 0] == pytest.approx(range(6))
    assert synthetic_depth(half)[0][:, 0] == pytest.approx([1 - 0.5**g for g in range(6)])
    assert synthetic_depth(fresh)[0][:, 0] == pytest.approx(np.zeros(6))
    assert synthetic_depth(accumulate)[0][:, 0] == pytest.approx([sum(1 / k for k in range(2, g + 2))
                                                                  for g in range(6)])
    # The profile: mix 0.5 at generation 2 is half real, a quarter one model removed, a quarter two.
    profile = synthetic_depth(half)[1]
    assert profile[2, 0, :3] == pytest.approx([0.5, 0.25, 0.25]) and profile.sum(axis=2) == pytest.approx(1)
    # Per replicate, and a replicate whose filter kept nothing keeps its previous model's depth.
    two = [np.array([[10], [10]]), np.array([[0, 10], [5, 5]]), np.array([[0, 0, 0], [0, 4, 4]])]
    depth = synthetic_depth(two)[0]
    assert depth[1] == pytest.approx([1, 0.5]) and depth[2] == pytest.approx([1, 0.5 * 1 + 0.5 * 1.5])


@pytest.mark.parametrize("name, expected", [
    ("replace", lambda g: g),
    ("mix_half", lambda g: 1 - 0.5**g),
    ("fresh", lambda g: 0.0),
    ("accumulate", lambda g: sum(1 / k for k in range(2, g + 2))),
])
def test_synthetic_depth_of_runs(runs, name, expected):
    for g in range(G + 1):
        result = lineage(runs[name], g)
        assert result["synthetic_depth"] == pytest.approx(expected(g))
        assert sum(result["depth_profile"]) == pytest.approx(1)
        assert len(result["depth_profile"]) == DEPTH_BINS
    assert lineage(runs["fresh"], G)["real_share"] == 1.0
    assert lineage(runs[name], G, replicate=2)["synthetic_depth"] == pytest.approx(expected(G))


def test_ancestry_follows_the_largest_source_back_to_real_data(runs):
    steps = lineage(runs["replace"], G)["ancestry"]
    assert [s["generation"] for s in steps] == list(range(G, -1, -1))
    assert "next" not in steps[-1] and steps[-1]["real_share"] == 1.0
    assert [s["generation"] for s in lineage(runs["fresh"], G)["ancestry"]] == [G]  # fed real data only
    assert [s["generation"] for s in lineage(runs["mix"], 3)["ancestry"]] == [3, 2, 1, 0]


def test_a_filter_that_keeps_nothing_keeps_the_previous_model(tmp_path):
    """A perfect detector on replace drops every example: each replicate keeps generation 0's model, which is
    fitted on real data (depth 0)."""
    path = make(tmp_path, "none", "policy={kind: filter, base: {kind: replace}}", replicates=2)
    result = lineage(path, 2)
    assert result["size"] == 0 and result["real_share"] is None and result["synthetic_depth"] == 0
    assert [(s["generation"], s.get("empty", False)) for s in result["ancestry"]] == [(2, True), (1, True), (0, False)]
    assert lineage(path, 2, replicate=1, index=0)["example"]["dropped"]


def test_filter_detector_metrics_are_given(runs):
    d = lineage(runs["filter"], G)["detector"]
    assert set(d) == {"detector_accuracy", "detector_precision", "detector_recall", "detector_false_positive_rate",
                      "synthetic_passed", "train_kept"}
    values = RunStore.open(runs["filter"], writable=False).generation(G)
    assert d["detector_recall"] == pytest.approx(np.nanmean(values["metric/detector_recall"]))
    one = lineage(runs["filter"], G, replicate=2)["detector"]
    assert one["train_kept"] == values["metric/train_kept"][2]
    assert all(v is None for v in lineage(runs["filter"], 0)["detector"].values())
    assert "detector" not in lineage(runs["replace"], G)


def test_an_interrupted_run_can_be_read(tmp_path):
    def stop(g):
        if g == 2:
            raise KeyboardInterrupt

    spec = load_spec("gaussian", ["replicates=3", f"generations={G}", "train_size=30", "metric_samples=30",
                                  "policy={kind: mix, real_fraction: 0.5}"])
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", progress=False, on_generation=stop)
    assert lineage(tmp_path / "cut", 2)["synthetic_depth"] == pytest.approx(0.75)
    with pytest.raises(LineageError, match="generation 3 is out of range: the run has generations 0-2"):
        lineage(tmp_path / "cut", 3)


# -- the command line ---------------------------------------------------------------------------
def snapshot(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(path.rglob("*"))}


def test_cli_text_and_json(runs, capsys):
    path = runs["web"]
    before = snapshot(path)
    assert main(["lineage", str(path), "--generation", "3"]) == 0
    text = capsys.readouterr().out
    assert "generation 3" in text and "mean over 4 replicates" in text
    assert "real data" in text and "generation 2's model" in text and "synthetic depth" in text
    assert main(["lineage", str(path), "--generation", "3", "--replicate", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["generation"] == 3 and result["replicate"] == 1 and not result["averaged"]
    assert sum(p["count"] for p in result["composition"]) == 50
    assert main(["lineage", str(path), "-g", "3", "--index", "49", "--json"]) == 0
    example = json.loads(capsys.readouterr().out)["example"]
    assert example["index"] == 49 and example["source_generation"] in (0, 1, 2)
    assert main(["lineage", str(path), "-g", "3", "--index", "49"]) == 0
    assert f"sampled from generation {example['source_generation']}'s model" in capsys.readouterr().out
    assert main(["lineage", str(runs["filter"]), "-g", str(G)]) == 0
    assert "detector (mean over replicates): accuracy" in capsys.readouterr().out
    assert snapshot(path) == before


def test_cli_generation_zero_with_an_index_is_real_data(runs, capsys):
    assert main(["lineage", str(runs["replace"]), "-g", "0", "--index", "7"]) == 0
    out = capsys.readouterr().out
    assert "real data" in out and "generation 0" in out
    assert main(["lineage", str(runs["replace"]), "-g", "0", "--index", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["example"]["source"] == "real"


@pytest.mark.parametrize("args, message", [
    (["-g", "12"], "generation 12 is out of range: the run has generations 0-5"),
    (["-g", "-1"], "generation -1 is out of range"),
    (["-g", "2", "--replicate", "4"], "replicate 4 is out of range: the run has replicates 0-3"),
    (["-g", "2", "--replicate", "-2"], "replicate -2 is out of range"),
    (["-g", "2", "--index", "50"], "index 50 is out of range: generation 2's training set has 50 examples"),
    (["-g", "0", "--index", "50"], "index 50 is out of range"),
    (["-g", "2", "--replicate", "9", "--index", "1"], "replicate 9 is out of range"),
])
def test_cli_bad_input_exits_2_and_writes_nothing(runs, capsys, args, message):
    path = runs["mix"]
    before = snapshot(path)
    assert main(["lineage", str(path), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and not captured.out
    assert len(captured.err.strip().splitlines()) == 1
    assert snapshot(path) == before


def test_cli_not_a_run_directory(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for target, message in ((tmp_path / "empty", "is not a run directory"), (tmp_path / "nowhere", "does not exist")):
        assert main(["lineage", str(target), "-g", "1"]) == 2
        assert message in capsys.readouterr().err
    assert list((tmp_path / "empty").iterdir()) == [] and not (tmp_path / "nowhere").exists()


# -- the report -----------------------------------------------------------------------------------
def test_report_of_a_filter_run_draws_the_detector_in_the_provenance_section(runs, tmp_path):
    from modelcollapse.report import write_report

    path = Path(shutil.copytree(runs["filter"], tmp_path / "filter"))
    text = write_report(path).read_text()
    figures = {p.name for p in (path / "figures").glob("*.png")}
    assert {"provenance.png", "provenance_detector.png", "metric_w2.png"} <= figures
    assert not any(name.startswith("metric_detector") or name in ("metric_synthetic_passed.png",
                                                                  "metric_train_kept.png") for name in figures)
    assert "metric_detector_accuracy" not in text and 'alt="provenance_detector"' in text
    provenance = text[text.index("<h2>Provenance of the training data</h2>"):]
    assert "Median over replicates at generation 5: accuracy" in provenance
    assert "on web (synthetic share 0.8, source" in provenance  # the policy, described in the caption


@pytest.mark.parametrize("name", ["replace", "accumulate", "web"])
def test_report_provenance_without_a_detector(runs, tmp_path, name):
    from modelcollapse.report import write_report
    from modelcollapse.report.sections import provenance_shares

    path = Path(shutil.copytree(runs[name], tmp_path / name))
    text = write_report(path).read_text()
    assert (path / "figures" / "provenance.png").exists()
    assert not (path / "figures" / "provenance_detector.png").exists()
    lines = RunStore.open(path, writable=False).read_jsonl("provenance.jsonl")
    gens, shares = provenance_shares(lines)
    assert list(gens) == list(range(G + 1))
    assert sum(shares.values()) == pytest.approx(np.ones(G + 1))
    if name == "replace":
        assert set(shares) == {"real data", "previous generation"}
    if name == "accumulate":  # a seventh of generation 6's data is from each source: real, g-1, g-2, older
        assert shares["older generations"][G] == pytest.approx((G - 2) / (G + 1))
        assert shares["2 generations back"][G] == pytest.approx(1 / (G + 1))
    if name == "web":
        assert "Policy web (synthetic share 0.6, source" in text
        assert "Synthetic share of the training set (mean over replicates): 0.6 at generation 1" in text
        assert shares["real data"][1:] == pytest.approx(np.full(G, 0.4))
    assert not math.isnan(shares["real data"][0])
