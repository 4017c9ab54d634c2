"""Experiment trackers, read back with each tracker's own reader and compared with the run directory.

TensorBoard: its event accumulator on ``trackers/tensorboard/<name>``; MLflow: its client on the
local file store ``trackers/mlflow``; W&B: the offline run files (``wandb_records``, W&B's own
protobuf records). The expected values are computed here, independently, from ``metrics.jsonl``,
``provenance.jsonl`` and ``timings.jsonl``. Each run is made once per module (tiny specs); a tracker
whose package is missing is left out and its tests are skipped.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import statistics
import sys
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from modelcollapse import cli
from modelcollapse.config import load_spec
from modelcollapse.loop import run
from modelcollapse.models import FitError
from modelcollapse.models.gmm import GMMModel
from modelcollapse.report import write_report
from modelcollapse.trackers import TRACKERS, Session, TrackerWarning
from modelcollapse.trackers.base import tracker_class

# --- what is installed --------------------------------------------------------------------------------------------

READER = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # what reads each one back
INSTALLED = [name for name in TRACKERS
             if all(importlib.util.find_spec(m) for m in (*tracker_class(name).requires, READER[name]))]
LIVE = ",".join(INSTALLED)


def _need(name: str) -> None:
    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed (pip install \"modelcollapse[{name}]\")")


# --- tolerances ---------------------------------------------------------------------------------------------------

# MLflow (its file store writes repr(float)) and W&B (JSON) keep float64 exactly; the expected values are computed
# here by other code (statistics.median, math.fsum, a hand-written quantile), which may round differently from numpy
# by a few ulps of the values summarized: 1e-12 of the values' scale is far above that and far below any real error.
DOUBLE = 1e-12
# TensorBoard scalars are float32 (tensorboardX writes simple_value, a float): rounding a double to float32 moves it
# by at most 2**-24 ~ 6e-8 of its value, so 1e-6 relative holds every stored value and catches any other error.
FLOAT32 = 1e-6


def close(actual: float, expected: float, rel: float, scale: float = 0.0) -> bool:
    """``actual`` within ``rel`` of ``expected``, or within DOUBLE of ``scale`` (the largest value summarized)."""
    return abs(actual - expected) <= rel * abs(expected) + DOUBLE * scale


# --- what a run directory says a tracker should hold (computed independently of modelcollapse.trackers) -----------

def _quantile(values: list[float], p: float) -> float:
    """The linear-interpolation quantile (type 7, numpy's default): between the sorted values at (n-1)p."""
    s = sorted(values)
    h = (len(s) - 1) * p
    lo = math.floor(h)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (h - lo) * (s[hi] - s[lo])


@dataclass
class Expected:
    generations: list[int]
    scalars: dict[str, dict[int, float]]  # key -> generation -> value
    scale: dict[str, dict[int, float]]  # the largest magnitude summarized into that value
    histograms: dict[str, dict[int, list[float]]]  # vector metric -> generation -> entries
    replicates: int
    stopped_rows: int  # metric rows of stopped replicates (all null)


def expected(run_dir: Path) -> Expected:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    gens = sorted({r["generation"] for r in rows})
    kinds: dict[str, str] = {}
    for r in rows:
        for k, v in r.items():
            if k in ("replicate", "generation") or isinstance(v, (str, bool)):
                continue
            if isinstance(v, list):
                kinds[k] = "vector"
            elif isinstance(v, (int, float)):
                kinds.setdefault(k, "scalar")
    scalars: dict[str, dict[int, float]] = defaultdict(dict)
    scale: dict[str, dict[int, float]] = defaultdict(dict)
    hists: dict[str, dict[int, list[float]]] = defaultdict(dict)
    for g in gens:
        at = [r for r in rows if r["generation"] == g]
        running = [r for r in at if not r.get("stopped")]
        scalars["replicates/running"][g] = float(len(running))
        scale["replicates/running"][g] = 0.0
        for name, kind in kinds.items():
            present = [r[name] for r in at if r.get(name) is not None]  # a stopped replicate's row holds null
            if kind == "vector":
                entries = [float(x) for v in present for x in v if math.isfinite(x)]
                if entries:
                    hists[name][g] = entries
                continue
            if not present:
                continue
            stats = {"median": statistics.median(present), "mean": math.fsum(present) / len(present),
                     "q05": _quantile(present, 0.05), "q95": _quantile(present, 0.95)}
            for stat, value in stats.items():
                if math.isfinite(value):
                    scalars[f"{name}/{stat}"][g] = float(value)
                    scale[f"{name}/{stat}"][g] = max(abs(x) for x in present)
    for line in (run_dir / "provenance.jsonl").read_text().splitlines():
        p = json.loads(line)
        scalars["provenance/real_share"][p["generation"]] = p["real"] / (p["real"] + p["synthetic"])
        scale["provenance/real_share"][p["generation"]] = 1.0
    for line in (run_dir / "timings.jsonl").read_text().splitlines():  # a resumed run redoes some: the last wins
        t = json.loads(line)
        scalars["time/generation_seconds"][t["generation"]] = t["seconds"]
        scale["time/generation_seconds"][t["generation"]] = 0.0
    return Expected(gens, dict(scalars), dict(scale), dict(hists), max(r["replicate"] for r in rows) + 1,
                    sum(1 for r in rows if r.get("stopped")))


def flat_spec(run_dir: Path) -> dict[str, Any]:
    """config.yaml without its logging section, flattened to dotted keys; lists (and empty mappings) as JSON text."""
    raw = yaml.safe_load((run_dir / "config.yaml").read_text())
    raw.pop("logging", None)
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, (list, dict)):
            flat[prefix] = json.dumps(value)
        else:
            flat[prefix] = value

    walk("", raw)
    return flat


def report_files(run_dir: Path) -> set[str]:
    return {"report.html", *(f"figures/{p.name}" for p in (run_dir / "figures").glob("*.png"))}


def decoded_texts(run_dir: Path, n: int) -> dict[int, list[str]]:
    """The first ``n`` generated texts of each generation: the token ids its generation file keeps, decoded by the
    data kind's tokenizer."""
    from safetensors.numpy import load_file

    from modelcollapse.data import load_source

    spec = load_spec(str(run_dir / "config.yaml"))
    source = load_source(spec.data)
    out = {}
    for path in sorted((run_dir / "generations").glob("gen_*.safetensors")):
        tokens = {k: v for k, v in load_file(path).items() if k == "preview_tokens"}
        out[int(path.stem.split("_")[1])] = source.preview_texts(tokens)[:n]
    return out


# --- what each tracker holds, read with its own reader ------------------------------------------------------------

@dataclass
class Logged:
    """One tracker run, as its reader shows it."""

    values: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # key -> [(step, value)] as logged
    histograms: dict[str, dict[int, dict[str, float]]] = field(default_factory=dict)  # count, min, max (, sum)
    texts: dict[int, list[str]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    artifacts: set[str] = field(default_factory=set)
    info: dict[str, Any] = field(default_factory=dict)

    def scalars(self) -> dict[str, dict[int, float]]:
        """The last value logged at each step."""
        return {k: dict(v) for k, v in self.values.items()}

    def per_step(self, key: str) -> Counter:
        return Counter(step for step, _ in self.values[key])


def read_tensorboard(logdir: Path) -> Logged:
    from tensorboard.backend.event_processing import event_accumulator as ea
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = ea.EventAccumulator(str(logdir), size_guidance={k: 0 for k in ea.DEFAULT_SIZE_GUIDANCE})  # 0: keep all
    acc.Reload()
    tags = acc.Tags()
    out = Logged(info={"tags": tags, "acc": acc})
    for tag in tags["scalars"]:
        out.values[tag] = [(e.step, e.value) for e in acc.Scalars(tag)]
    for tag in tags["histograms"]:
        out.histograms[tag] = {e.step: {"count": e.histogram_value.num, "min": e.histogram_value.min,
                                        "max": e.histogram_value.max, "sum": e.histogram_value.sum}
                               for e in acc.Histograms(tag)}
    if "samples/text_summary" in tags["tensors"]:  # tensorboardX files add_text("samples") under this tag
        for e in acc.Tensors("samples/text_summary"):
            table = e.tensor_proto.string_val[0].decode()
            rows = table.splitlines()[2:]  # past the header and the |---| line
            out.texts[e.step] = [row[2:-2].split(" | ", 1)[1].replace("&#124;", "|") for row in rows]
    for tag in tags["images"]:
        out.artifacts.add(tag)
        out.info.setdefault("image_steps", {})[tag] = [(e.step, e.width, e.height) for e in acc.Images(tag)]
    try:
        content = acc.PluginTagToContent("hparams")
    except KeyError:  # no hparams at all
        content = {}
    if "_hparams_/session_start_info" in content:
        data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        for k, v in data.session_start_info.hparams.items():
            out.params[k] = getattr(v, v.WhichOneof("kind"))
    return out


def mlflow_client(store: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from mlflow.tracking import MlflowClient

    # MLflow 3 refuses a file store unless this is set (the tracker sets it for itself; the reader here too)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    return MlflowClient(tracking_uri=store.resolve().as_uri())


def read_mlflow(store: Path, monkeypatch: pytest.MonkeyPatch, experiment: str) -> dict[str, Logged]:
    """Every run of ``experiment`` by run name."""
    client = mlflow_client(store, monkeypatch)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment!r} in {store}"
    out = {}
    for found in client.search_runs([exp.experiment_id]):
        run_id = found.info.run_id
        logged = Logged(params=dict(found.data.params),
                        info={"status": found.info.status, "tags": dict(found.data.tags), "run_id": run_id,
                              "experiment": exp.name})
        for key in found.data.metrics:
            history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp)
            logged.values[key] = [(m.step, m.value) for m in history]

        def walk(path: str | None = None) -> None:
            for a in client.list_artifacts(run_id, path):
                walk(a.path) if a.is_dir else logged.artifacts.add(a.path)

        walk()
        if "samples.json" in logged.artifacts:  # log_table's file: {"columns": [...], "data": [[...], ...]}
            with tempfile.TemporaryDirectory() as tmp:
                table = json.loads(Path(client.download_artifacts(run_id, "samples.json", tmp)).read_text())
            logged.info["samples"] = table
            for row in table["data"]:
                g, i, text = (row[table["columns"].index(c)] for c in ("generation", "index", "text"))
                logged.texts.setdefault(int(g), []).append(text)
        assert found.info.run_name not in out, f"two MLflow runs named {found.info.run_name!r}"
        out[found.info.run_name] = logged
    return out


def wandb_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))


def read_wandb(path: Path) -> Logged:
    from wandb_records import read_run

    run_ = read_run(path)
    out = Logged(params={k: v for k, v in run_.config.items() if not k.startswith("_")}, info={"run": run_})
    for step in sorted(run_.history):
        for key, value in run_.history[step].items():
            if key.startswith("_"):
                continue
            if isinstance(value, dict) and value.get("_type") == "histogram":
                out.histograms.setdefault(key, {})[step] = {"count": sum(value["values"]), "min": value["bins"][0],
                                                            "max": value["bins"][-1]}
            elif isinstance(value, dict) and value.get("_type") == "table-file":
                table = json.loads((run_.files_dir / value["path"]).read_text())
                out.info.setdefault("tables", {})[key] = (step, table)
                if key == "samples":
                    for g, i, text in table["data"]:
                        out.texts.setdefault(g, []).append(text)
            else:
                out.values.setdefault(key, []).append((step, float(value)))
    for kind, _name, paths in run_.artifacts:
        if kind == "report":
            out.artifacts |= set(paths)
    return out


def read(tracker: str, folder: Path, name: str, monkeypatch: pytest.MonkeyPatch, *, experiment: str = "modelcollapse",
         group: str | None = None) -> Logged:
    """The tracker run ``name`` (of ``group``) whose files are under ``folder`` (a run's ``trackers``)."""
    if tracker == "tensorboard":
        return read_tensorboard(folder / "tensorboard" / (group or "") / name)
    if tracker == "mlflow":
        return read_mlflow(folder / "mlflow", monkeypatch, group or experiment)[name]
    runs = [read_wandb(p) for p in wandb_files(folder / "wandb")]
    runs = [r for r in runs if r.info["run"].name == name and r.info["run"].group == (group or "")]
    assert len(runs) == 1, f"{len(runs)} W&B runs named {name!r} in {folder}"
    return runs[0]


def check_summaries(logged: Logged, exp: Expected, rel: float) -> None:
    """Each summary at each generation, logged once, equal to the one computed from the run's files."""
    assert set(logged.values) == set(exp.scalars)
    for key, by_gen in exp.scalars.items():
        assert sorted(logged.per_step(key).items()) == [(g, 1) for g in sorted(by_gen)], key
        got = logged.scalars()[key]
        for g, value in by_gen.items():
            assert close(got[g], value, rel, exp.scale[key][g]), (key, g, got[g], value)


def check_histograms(logged: Logged, exp: Expected) -> None:
    assert exp.histograms, "the spec should have a vector metric"
    assert set(logged.histograms) == set(exp.histograms)
    for key, by_gen in exp.histograms.items():
        assert sorted(logged.histograms[key]) == sorted(by_gen)
        for g, entries in by_gen.items():
            h = logged.histograms[key][g]
            assert h["count"] == len(entries)  # counts are whole numbers: exact
            # min and max are entries copied, not computed (TensorBoard: HistogramProto doubles; W&B: the outer bin
            # edges of numpy.histogram): equal within float64 rounding of a linspace end point
            assert close(h["min"], min(entries), DOUBLE, max(map(abs, entries)))
            assert close(h["max"], max(entries), DOUBLE, max(map(abs, entries)))
            if "sum" in h:
                assert close(h["sum"], math.fsum(entries), DOUBLE, max(map(abs, entries)) * len(entries))


# --- the runs, each made once ------------------------------------------------------------------------------------

# A 2-D mixture with a vector metric (component_weights), fitted per replicate so that one replicate can be made
# to fail: replicate 1 stops at generation 2 and its metric rows are null from there on.
# checkpoint_every: fixed, so that two runs of the spec write the same checkpoints (by default they follow the clock).
GMM = ["replicates=5", "generations=4", "train_size=100", "heldout_size=200", "metric_samples=200", "workers=1",
       "model.backend=sklearn", "metrics=[l2_distance, nll, tail_mass, component_weights]",
       "report.density_generations=[0, 4]", "checkpoint_every=2"]
GMM_REPLICATES, STOPS_AT, STOPPED_REPLICATE = 5, 2, 1
LM = ["replicates=2", "generations=2", "train_size=20", "heldout_size=20", "metric_samples=10", "data.source=lee",
      "data.tokenizer.min_count=1", "metrics=[perplexity, vocab_size, distinct_1]", "logging.text_samples=3"]
GAUSSIAN = ["replicates=4", "generations=6", "train_size=20", "checkpoint_every=2"]


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def _flaky_fit(mp: pytest.MonkeyPatch) -> None:
    """Replicate 1's fit fails at generation 2 (fits run in order, one per running replicate)."""
    original, calls = GMMModel.fit, {"n": 0}

    def fit(self, X, **kwargs):
        calls["n"] += 1
        if calls["n"] == STOPS_AT * GMM_REPLICATES + STOPPED_REPLICATE + 1:
            raise FitError("component lost all its points")
        return original(self, X, **kwargs)

    mp.setattr(GMMModel, "fit", fit)


@pytest.fixture(scope="module", autouse=True)
def tracker_env(tmp_path_factory):
    """No tracking server, no W&B login; W&B's caches in a temporary folder; MLflow's file-store switch unset (each
    run below sets it as it needs)."""
    home = tmp_path_factory.mktemp("wandb-home")
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT",
                    "WANDB_RUN_GROUP", "WANDB_NAME"):
            mp.delenv(var, raising=False)
        for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
            mp.setenv(var, str(home / var.lower()))
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "unset")  # recorded, so that the tracker's own setting is undone after
        mp.delenv("MLFLOW_ALLOW_FILE_STORE")
        yield
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()  # the W&B core process this module started


@pytest.fixture(scope="module")
def gmm_live(tmp_path_factory, tracker_env):
    """The mixture run through the CLI with every installed tracker, as `modelcollapse run --log` does: the report
    and figures go to the trackers at the end. MLFLOW_ALLOW_FILE_STORE is unset: the MLflow tracker sets it."""
    if not INSTALLED:
        pytest.skip("no experiment tracker is installed")
    out = tmp_path_factory.mktemp("gmm-live") / "run"
    with pytest.MonkeyPatch.context() as mp:
        _flaky_fit(mp)
        mp.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
        assert cli.main(["run", "gmm", *_sets(GMM), "--log", LIVE, "--out", str(out), "--quiet"]) == 0
        allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    return {"path": out, "mlflow_allowed": allowed}


@pytest.fixture(scope="module")
def gmm_plain(tmp_path_factory):
    """The same spec, no trackers, with its report."""
    out = tmp_path_factory.mktemp("gmm-plain") / "run"
    with pytest.MonkeyPatch.context() as mp:
        _flaky_fit(mp)
        run(load_spec("gmm", GMM), out, progress=False)
    write_report(out)
    return out


@pytest.fixture(scope="module")
def lm_live(tmp_path_factory, tracker_env):
    """A tiny trigram LM with every installed tracker; MLFLOW_ALLOW_FILE_STORE set by the environment (the other
    way MLflow's file store is allowed)."""
    if not INSTALLED:
        pytest.skip("no experiment tracker is installed")
    out = tmp_path_factory.mktemp("lm-live") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        assert cli.main(["run", "lm-ngram", *_sets(LM), "--log", LIVE, "--out", str(out), "--quiet", "--no-report"]) == 0
    return out


@pytest.fixture(scope="module")
def lm_exported(lm_live, tmp_path_factory):
    """The language model's run exported after the fact (its texts decoded again from the generation files)."""
    out = tmp_path_factory.mktemp("lm-export")
    assert cli.main(["export", str(lm_live), "--to", LIVE, "--dir", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def exports(gmm_live, gmm_plain, tmp_path_factory):
    """`modelcollapse export` of the run made without trackers, and of the live-logged run (into its own folder)."""
    if not INSTALLED:
        pytest.skip("no experiment tracker is installed")
    base = tmp_path_factory.mktemp("exports")
    plain, live = base / "plain", base / "live"
    assert cli.main(["export", str(gmm_plain), "--to", LIVE, "--dir", str(plain)]) == 0
    assert cli.main(["export", str(gmm_live["path"]), "--to", LIVE, "--dir", str(live)]) == 0
    return {"plain": plain, "live": live}


@pytest.fixture(scope="module")
def study(tmp_path_factory, tracker_env):
    """A two-cell study logged live to TensorBoard and MLflow (one worker process: MLflow imports once), then
    exported to every installed tracker."""
    live = [t for t in ("tensorboard", "mlflow") if t in INSTALLED]
    if not live:
        pytest.skip("neither tensorboard nor mlflow is installed")
    base = tmp_path_factory.mktemp("study")
    out = base / "study"
    assert cli.main(["sweep", "gaussian", "--grid", "train_size=20,50", "--set", "replicates=4", "--set",
                     "generations=3", "--log", ",".join(live), "--out", str(out), "--quiet", "--workers", "1",
                     "--no-cell-reports", "--no-report"]) == 0
    index = json.loads((out / "study.json").read_text())
    assert cli.main(["export", str(out), "--to", LIVE, "--dir", str(base / "exported")]) == 0
    return {"path": out, "live": live, "index": index, "exported": base / "exported"}


# --- 1. summaries: every tracker holds the numbers of the run's files ---------------------------------------------

@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_summaries_per_generation_match_the_run_files(gmm_live, tracker, monkeypatch):
    _need(tracker)
    path = gmm_live["path"]
    exp = expected(path)
    # the run this checks: replicate 1 stopped at generation 2, its rows null from there (left out of the summaries)
    assert exp.stopped_rows == 3 and exp.generations == [0, 1, 2, 3, 4]
    assert [exp.scalars["replicates/running"][g] for g in exp.generations] == [5, 5, 4, 4, 4]
    assert {"nll/median", "nll/mean", "nll/q05", "nll/q95", "provenance/real_share", "time/generation_seconds"} \
        <= set(exp.scalars)
    logged = read(tracker, path / "trackers", "gmm", monkeypatch)
    check_summaries(logged, exp, FLOAT32 if tracker == "tensorboard" else DOUBLE)


# --- 2. TensorBoard ----------------------------------------------------------------------------------------------

def test_tensorboard_holds_histograms_hparams_and_the_report(gmm_live, monkeypatch):
    _need("tensorboard")
    path = gmm_live["path"]
    logged = read_tensorboard(path / "trackers" / "tensorboard" / "gmm")
    check_histograms(logged, expected(path))
    hparams = {k: (str(v) if v is None or isinstance(v, (list, dict)) else v) for k, v in flat_spec(path).items()}
    assert logged.params == hparams  # HParams holds numbers, strings and booleans; None as text
    from matplotlib.image import imread

    figures = sorted((path / "figures").glob("*.png"))
    assert figures and logged.artifacts == {f"report/{p.stem}" for p in figures}
    for p in figures:  # each figure once, at the last generation, at its own size
        height, width = imread(p).shape[:2]
        assert logged.info["image_steps"][f"report/{p.stem}"] == [(4, width, height)]
    assert "report/text_summary" in logged.info["tags"]["tensors"]  # where the report is


# --- 3. MLflow ---------------------------------------------------------------------------------------------------

def test_mlflow_run_params_artifacts_and_status(gmm_live, monkeypatch):
    _need("mlflow")
    path = gmm_live["path"]
    assert gmm_live["mlflow_allowed"] == "true"  # unset before the run: the tracker allowed its file store itself
    runs = read_mlflow(path / "trackers" / "mlflow", monkeypatch, "modelcollapse")
    assert list(runs) == ["gmm"]
    logged = runs["gmm"]
    assert logged.info["status"] == "FINISHED"
    manifest = json.loads((path / "manifest.json").read_text())
    assert logged.info["tags"]["modelcollapse.key"] == manifest["run_id"]
    assert logged.params == {k: str(v) for k, v in flat_spec(path).items()}  # MLflow parameters are text
    assert logged.artifacts == report_files(path)
    assert not logged.histograms and not any(k.startswith("component_weights") for k in logged.values)  # none in MLflow


# --- 4. W&B ------------------------------------------------------------------------------------------------------

def test_wandb_offline_run_config_histograms_and_report_artifact(gmm_live, monkeypatch):
    _need("wandb")
    path = gmm_live["path"]
    [file] = wandb_files(path / "trackers" / "wandb")
    logged = read_wandb(file)
    w = logged.info["run"]
    manifest = json.loads((path / "manifest.json").read_text())
    assert (w.run_id, w.name, w.project, w.group) == (manifest["run_id"], "gmm", "modelcollapse", "")
    assert logged.params == flat_spec(path)  # JSON values: numbers, text, booleans and null as they are
    check_histograms(logged, expected(path))
    reports = [a for a in w.artifacts if a[0] == "report"]
    assert len(reports) == 1 and set(reports[0][2]) == report_files(path)
    assert w.exit_code == 0


# --- language models: a table of generated texts ------------------------------------------------------------------

@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_language_model_texts_and_summaries(lm_live, tracker, monkeypatch):
    _need(tracker)
    logged = read(tracker, lm_live / "trackers", "lm-ngram", monkeypatch)
    check_summaries(logged, expected(lm_live), FLOAT32 if tracker == "tensorboard" else DOUBLE)
    texts = decoded_texts(lm_live, 3)
    assert all(len(t) == 3 and all(t) for t in texts.values())
    if tracker == "tensorboard":  # one markdown table per generation; newlines shown as spaces
        assert logged.texts == {g: [s.replace("\n", " ") for s in t] for g, t in texts.items()}
    else:  # one table at the end: generation, index, text
        assert logged.texts == texts
    if tracker == "wandb":
        step, table = logged.info["tables"]["samples"]
        assert step == 2 and table["columns"] == ["generation", "index", "text"]
        assert table["data"] == [[g, i, t] for g in sorted(texts) for i, t in enumerate(texts[g])]
    if tracker == "mlflow":
        assert "samples.json" in logged.artifacts and logged.info["samples"]["columns"] == ["generation", "index", "text"]


@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_language_model_export_carries_the_same_texts(lm_live, lm_exported, tracker, monkeypatch):
    _need(tracker)
    live = read(tracker, lm_live / "trackers", "lm-ngram", monkeypatch)
    exported = read(tracker, lm_exported, "lm-ngram", monkeypatch)
    assert exported.texts == live.texts and len(exported.texts) == 3
    assert exported.scalars() == live.scalars()  # the same doubles (float32 for TensorBoard), bit for bit


# --- 5. a failing tracker never changes the run -------------------------------------------------------------------

VOLATILE = ("elapsed", "started / finished", "timings.jsonl", "trackers/", "manifest.json")  # report rows


def _files(run_dir: Path, volatile: tuple[str, ...] = VOLATILE) -> dict[str, Any]:
    """Everything a run wrote but its timings, tracker files and lock; the manifest without times and ids;
    a generation file as its tensors and metadata."""
    from safetensors import safe_open

    out: dict[str, Any] = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir).as_posix()
        if not p.is_file() or rel.split("/")[0] in ("trackers", "timings.jsonl", ".lock"):
            continue
        if rel == "manifest.json":
            m = json.loads(p.read_text())
            for k in ("started", "updated", "finished", "run_id", "elapsed_seconds"):
                m.pop(k, None)
            out[rel] = m
        elif p.suffix == ".safetensors":
            with safe_open(str(p), "numpy") as f:
                out[rel] = (f.metadata(), {k: f.get_tensor(k).tobytes() for k in f.keys()})
        elif rel == "report.html":  # less what differs between any two runs: times, and the sizes of those files
            rows = "|".join(map(re.escape, volatile))
            out[rel], n = re.subn(rf"<tr><td>({rows})</td><td>[^<]*</td></tr>", "", p.read_text())
            assert n >= 4, "the report's rows of times and file sizes have changed: update this test"
        else:
            out[rel] = p.read_bytes()
    return out


def _same_files(a: Path, b: Path, *, logging_differs: bool = False) -> None:
    volatile = (*VOLATILE, "config.yaml") if logging_differs else VOLATILE
    fa, fb = _files(a, volatile), _files(b, volatile)
    if logging_differs:  # a spec that names trackers says so in config.yaml: the rest is the same
        for f in (fa, fb):
            raw = yaml.safe_load(f.pop("config.yaml"))
            raw.pop("logging", None)
            f["config.yaml"] = raw
    assert sorted(fa) == sorted(fb)
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"files that differ: {differ}"


def test_failing_trackers_warn_once_and_the_run_files_are_unchanged(gmm_plain, tmp_path, monkeypatch):
    for name in ("tensorboard", "mlflow"):
        _need(name)
    from modelcollapse.trackers.mlflow import MLflowTracker
    from modelcollapse.trackers.tensorboard import TensorBoardTracker

    original_log = TensorBoardTracker.log

    def log(self, record):  # a full disk from generation 2 on: were it called again, it would warn again
        if record.generation >= 2:
            raise OSError("disk full")
        return original_log(self, record)

    def refuse(self, *args, **kwargs):
        raise PermissionError("no access to the tracking store")

    monkeypatch.setattr(TensorBoardTracker, "log", log)
    monkeypatch.setattr(MLflowTracker, "__init__", refuse)
    _flaky_fit(monkeypatch)
    spec = load_spec("gmm", GMM)  # the trackers given as a session (as the CLI does): config.yaml is the same too
    out = tmp_path / "run"
    with pytest.warns(TrackerWarning) as caught:
        session = Session(["tensorboard", "mlflow"], spec.logging)
        store = run(spec, out, progress=False, trackers=session)
        write_report(store.path)
        session.finish(store.path, "completed")
    warned = [str(w.message) for w in caught if issubclass(w.category, TrackerWarning)]
    assert len(warned) == 2, warned  # exactly one per failing tracker
    assert any("tensorboard" in m and "OSError: disk full" in m for m in warned)
    assert any("mlflow" in m and "PermissionError: no access to the tracking store" in m for m in warned)
    assert set(session.failed) == {"tensorboard", "mlflow"} and not session.active
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"
    _same_files(out, gmm_plain)
    # what TensorBoard had before its disk filled stays readable: generations 0 and 1, the writer closed
    logged = read_tensorboard(out / "trackers" / "tensorboard" / "gmm")
    assert sorted(logged.per_step("nll/median").items()) == [(0, 1), (1, 1)]


def test_a_tracker_failing_to_start_in_a_spec_run_warns_once(gmm_plain, tmp_path, monkeypatch):
    _need("tensorboard")
    from modelcollapse.trackers.tensorboard import TensorBoardTracker

    def refuse(self, *args, **kwargs):
        raise OSError("read-only file system")

    monkeypatch.setattr(TensorBoardTracker, "__init__", refuse)
    _flaky_fit(monkeypatch)
    out = tmp_path / "run"
    with pytest.warns(TrackerWarning) as caught:  # the run's own session: spec.logging.trackers
        run(load_spec("gmm", [*GMM, "logging.trackers=[tensorboard]"]), out, progress=False)
        write_report(out)
    warned = [str(w.message) for w in caught if issubclass(w.category, TrackerWarning)]
    assert len(warned) == 1 and "tensorboard" in warned[0] and "read-only file system" in warned[0]
    _same_files(out, gmm_plain, logging_differs=True)


def test_the_cli_warns_once_of_a_failing_tracker_and_completes(tmp_path, monkeypatch, capsys):
    _need("tensorboard")
    from modelcollapse.trackers.tensorboard import TensorBoardTracker

    def log(self, record):
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardTracker, "log", log)
    out = tmp_path / "run"
    assert cli.main(["run", "gaussian", *_sets(GAUSSIAN), "--log", "tensorboard", "--out", str(out), "-q",
                     "--no-report"]) == 0
    err = capsys.readouterr().err
    assert err.count("tracker tensorboard failed (OSError: disk full)") == 1 and "logged to" not in err
    assert "modelcollapse export DIR --to tensorboard" in err  # how to send it later
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"


# --- 6. a tracker that is not installed, or a misspelt one --------------------------------------------------------

def _not_installed(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else find_spec(name, *a))


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_tracker_not_installed_is_refused_before_anything_is_written(command, tmp_path, monkeypatch, capsys):
    _not_installed(monkeypatch, "wandb")
    out = tmp_path / "out"
    grid = ["--grid", "train_size=20,50"] if command == "sweep" else []
    assert cli.main([command, "gaussian", *grid, "--log", "wandb", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "modelcollapse[wandb]"' in err and "wandb" in err
    assert not out.exists()


def test_not_installed_through_the_tracker_class(tmp_path, monkeypatch, capsys):
    from modelcollapse.trackers.tensorboard import TensorBoardTracker

    monkeypatch.setattr(TensorBoardTracker, "requires", ("tensorboardX_is_not_here",))
    out = tmp_path / "out"
    assert cli.main(["run", "gaussian", "--log", "mlflow,tensorboard", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tensorboardX_is_not_here" in err and 'pip install "modelcollapse[tensorboard]"' in err
    assert ("modelcollapse[mlflow]" in err) == ("mlflow" not in INSTALLED)  # only what is missing is named
    assert not out.exists()


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_a_misspelt_tracker_is_refused_with_a_suggestion(command, tmp_path, capsys):
    out = tmp_path / "out"
    grid = ["--grid", "train_size=20,50"] if command == "sweep" else []
    assert cli.main([command, "gaussian", *grid, "--log", "tensorbord", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "tensorbord" in err and "did you mean 'tensorboard'" in err
    assert not out.exists()


# --- 7. export after the fact -------------------------------------------------------------------------------------

@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_export_carries_the_numbers_of_a_live_run(gmm_live, gmm_plain, exports, tracker, monkeypatch):
    _need(tracker)
    live = read(tracker, gmm_live["path"] / "trackers", "gmm", monkeypatch)
    of_plain = read(tracker, exports["plain"], "gmm", monkeypatch)
    of_live = read(tracker, exports["live"], "gmm", monkeypatch)
    rel = FLOAT32 if tracker == "tensorboard" else DOUBLE
    check_summaries(of_plain, expected(gmm_plain), rel)
    check_summaries(of_live, expected(gmm_live["path"]), rel)
    # Bit for bit: the same float64 values summarized the same way (the metric rows keep them exactly). Only the
    # seconds differ from run to run: the live run's export carries the live run's own timings.
    seconds = "time/generation_seconds"
    assert of_live.scalars() == live.scalars()
    assert {k: v for k, v in of_plain.scalars().items() if k != seconds} == \
        {k: v for k, v in live.scalars().items() if k != seconds}
    assert of_plain.histograms == live.histograms == of_live.histograms
    assert of_plain.params == live.params == of_live.params
    assert of_plain.artifacts == live.artifacts == of_live.artifacts
    if tracker == "mlflow":
        assert of_plain.info["status"] == of_live.info["status"] == "FINISHED"
        assert of_live.info["tags"]["modelcollapse.key"] != live.info["tags"]["modelcollapse.key"]  # a new run
    if tracker == "wandb":
        assert of_live.info["run"].run_id != live.info["run"].run_id


def test_export_refuses_an_unknown_tracker_and_a_directory_that_is_not_a_run(gmm_plain, tmp_path, capsys):
    assert cli.main(["export", str(gmm_plain), "--to", "tensorbord", "--dir", str(tmp_path / "t")]) == 2
    assert "did you mean 'tensorboard'" in capsys.readouterr().err
    assert cli.main(["export", str(gmm_plain), "--to", "", "--dir", str(tmp_path / "t")]) == 2
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("not a run")
    for what in ("empty", "file.txt", "missing"):
        assert cli.main(["export", str(tmp_path / what), "--to", "tensorboard"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file.txt"] and not any((tmp_path / "empty").iterdir())


# --- 8. a study: one tracker run per cell, grouped by the study's name --------------------------------------------

def test_a_study_logs_one_tracker_run_per_cell(study, monkeypatch):
    index, out = study["index"], study["path"]
    name, cells = index["name"], {c["name"]: out / c["path"] for c in index["cells"]}
    assert len(cells) == 2 and all(c.get("tracker_errors") is None for c in index["cells"])
    if "mlflow" in study["live"]:
        runs = read_mlflow(out / "trackers" / "mlflow", monkeypatch, name)  # the experiment named after the study
        assert set(runs) == set(cells)
        for cell, logged in runs.items():
            assert logged.info["tags"]["modelcollapse.group"] == name and logged.info["status"] == "FINISHED"
            check_summaries(logged, expected(cells[cell]), DOUBLE)
    if "tensorboard" in study["live"]:
        assert {p.name for p in (out / "trackers" / "tensorboard" / name).iterdir()} == set(cells)
        for cell, path in cells.items():
            check_summaries(read_tensorboard(out / "trackers" / "tensorboard" / name / cell), expected(path), FLOAT32)


@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_a_study_exports_one_run_per_cell_grouped_by_its_name(study, tracker, monkeypatch):
    _need(tracker)
    index, out, exported = study["index"], study["path"], study["exported"]
    name, cells = index["name"], {c["name"]: out / c["path"] for c in index["cells"]}
    if tracker == "tensorboard":
        assert {p.name for p in (exported / "tensorboard" / name).iterdir()} == set(cells)
    if tracker == "mlflow":
        assert set(read_mlflow(exported / "mlflow", monkeypatch, name)) == set(cells)
    if tracker == "wandb":
        runs = [read_wandb(p).info["run"] for p in wandb_files(exported / "wandb")]
        assert sorted((r.group, r.name) for r in runs) == sorted((name, c) for c in cells)
    for cell, path in cells.items():
        logged = read(tracker, exported, cell, monkeypatch, group=name)
        check_summaries(logged, expected(path), FLOAT32 if tracker == "tensorboard" else DOUBLE)


# --- 9. resume: the same tracker run continues --------------------------------------------------------------------

@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tracker_env):
    """A run interrupted after generation 3 (its last checkpoint: generation 2) and resumed: generation 3 is redone."""
    if not INSTALLED:
        pytest.skip("no experiment tracker is installed")
    out = tmp_path_factory.mktemp("resume") / "run"
    spec = load_spec("gaussian", [*GAUSSIAN, f"logging.trackers=[{LIVE}]"])

    def interrupt(g: int) -> None:
        if g == 3:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        with pytest.raises(KeyboardInterrupt):
            run(spec, out, progress=False, on_generation=interrupt)
        assert json.loads((out / "manifest.json").read_text())["generations_completed"] == 2
        run(spec, out, progress=False, resume=True)
    return out


@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_a_resumed_run_continues_its_tracker_run(resumed, tracker, monkeypatch):
    _need(tracker)
    exp = expected(resumed)
    key = json.loads((resumed / "manifest.json").read_text())["run_id"]
    assert [json.loads(t)["generation"] for t in (resumed / "timings.jsonl").read_text().splitlines()] == \
        [0, 1, 2, 3, 3, 4, 5, 6]
    if tracker == "tensorboard":  # purge_step: the interrupted session's generation 3 is dropped, not shown twice
        check_summaries(read_tensorboard(resumed / "trackers" / "tensorboard" / "gaussian"), exp, FLOAT32)
    if tracker == "mlflow":
        runs = read_mlflow(resumed / "trackers" / "mlflow", monkeypatch, "modelcollapse")
        assert list(runs) == ["gaussian"]  # one run, found again by its key
        logged = runs["gaussian"]
        assert logged.info["tags"]["modelcollapse.key"] == key and logged.info["status"] == "FINISHED"
        # MLflow cannot take back a value: the redone generation 3 is there twice, the later value (the one the run
        # directory keeps) last; every other generation once.
        for k in exp.scalars:
            assert sorted(logged.per_step(k).items()) == [(g, 2 if g == 3 else 1) for g in range(7)], k
            for g, value in exp.scalars[k].items():
                assert close(logged.scalars()[k][g], value, DOUBLE, exp.scale[k][g]), (k, g)
        assert logged.params == {k: str(v) for k, v in flat_spec(resumed).items()}
    if tracker == "wandb":  # offline, each session writes its own files, under the same run id
        sessions = [read_wandb(p) for p in wandb_files(resumed / "trackers" / "wandb")]
        assert [s.info["run"].run_id for s in sessions] == [key, key]
        first, second = sorted(sessions, key=lambda s: min(s.values["kl/median"])[0])
        assert (first.info["run"].exit_code, second.info["run"].exit_code) == (1, 0)  # interrupted, then completed
        assert sorted(first.scalars()["kl/median"]) == [0, 1, 2, 3]
        assert sorted(second.scalars()["kl/median"]) == [3, 4, 5, 6]
        # together, the second session's generation 3 (the one the run directory keeps) in place of the first's
        merged = Logged(values={k: [(s, v) for s, v in first.values[k] if s < 3] + second.values[k]
                                for k in second.values})
        check_summaries(merged, exp, DOUBLE)


# --- 10. logging never blocks a resume ----------------------------------------------------------------------------

def test_resume_with_other_trackers_is_allowed(tmp_path, monkeypatch):
    _need("tensorboard")
    out = tmp_path / "run"

    def interrupt(g: int) -> None:
        if g == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(load_spec("gaussian", GAUSSIAN), out, progress=False, on_generation=interrupt)
    run(load_spec("gaussian", [*GAUSSIAN, "logging.trackers=[tensorboard]"]), out, progress=False, resume=True)
    assert yaml.safe_load((out / "config.yaml").read_text())["logging"]["trackers"] == ["tensorboard"]
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"
    logged = read_tensorboard(out / "trackers" / "tensorboard" / "gaussian")
    exp = expected(out)
    assert sorted(logged.per_step("kl/median").items()) == [(3, 1), (4, 1), (5, 1), (6, 1)]  # from the resume on
    for key, by_step in logged.scalars().items():
        for g, value in by_step.items():
            assert close(value, exp.scalars[key][g], FLOAT32, exp.scale[key][g]), (key, g)


# --- the pieces: summaries, and TensorBoard sessions in the same second --------------------------------------------

def test_summarize_counts_running_replicates_whatever_the_first_metric():
    from modelcollapse.trackers import summarize

    weights = np.array([[0.5, 0.5], [np.nan, np.nan], [0.2, 0.8]])  # replicate 1 stopped: its row is NaN
    nll = np.array([1.0, np.nan, 3.0])
    kl = np.array([0.1, np.nan, np.inf])  # an infinite KL: every summary over it is inf or NaN
    out = summarize(3, {"component_weights": weights, "nll": nll, "kl": kl}, real_share=0.25, seconds=1.5)
    assert out.generation == 3 and out.scalars["replicates/running"] == 2
    assert list(out.histograms["component_weights"]) == [0.5, 0.5, 0.2, 0.8]
    # over (1, 3): the median and mean are 2, the 5% and 95% quantiles 1.1 and 2.9 (to rounding of 0.05 * 2)
    assert out.scalars["nll/median"] == out.scalars["nll/mean"] == 2.0
    assert close(out.scalars["nll/q05"], 1.1, DOUBLE, 3.0) and close(out.scalars["nll/q95"], 2.9, DOUBLE, 3.0)
    assert not any(k.startswith("kl/") for k in out.scalars)  # not finite: left out, the run directory has them
    assert out.scalars["provenance/real_share"] == 0.25 and out.scalars["time/generation_seconds"] == 1.5
    every = summarize(4, {"component_weights": np.full((3, 2), np.nan), "kl": np.full(3, np.nan)})
    assert every.scalars == {"replicates/running": 0.0} and not every.histograms  # all stopped: said, not skipped


def test_tensorboard_sessions_started_in_the_same_second_keep_both_files(tmp_path, monkeypatch):
    _need("tensorboard")
    import tensorboardX.event_file_writer as efw

    from modelcollapse.config import LoggingSpec
    from modelcollapse.trackers import GenerationLog
    from modelcollapse.trackers.base import TrackerRun
    from modelcollapse.trackers.tensorboard import TensorBoardTracker

    monkeypatch.setattr(efw.time, "time", lambda: 1_800_000_000.0)  # tensorboardX names a file by its second
    options = LoggingSpec()
    first = TensorBoardTracker(tmp_path, TrackerRun("r", "k", "p"), {"seed": 0}, options)
    for g in (0, 1, 2):
        first.log(GenerationLog(g, {"x": float(g)}))
    first.close("interrupted")
    again = TensorBoardTracker(tmp_path, TrackerRun("r", "k", "p", resume=True, start=2), {"seed": 0}, options)
    for g in (2, 3):
        again.log(GenerationLog(g, {"x": 10.0 + g}))
    again.close("completed")
    assert len(list((tmp_path / "r").iterdir())) == 2
    logged = read_tensorboard(tmp_path / "r")
    # generation 2 of the first session is purged (the resumed session redid it); values are small integers: exact
    assert logged.values["x"] == [(0, 0.0), (1, 1.0), (2, 12.0), (3, 13.0)]
    assert logged.params == {"seed": 0}  # from the first session, once


def test_a_tensorboard_tracker_added_on_resume_writes_the_hparams(tmp_path):
    _need("tensorboard")
    from modelcollapse.config import LoggingSpec
    from modelcollapse.trackers import GenerationLog
    from modelcollapse.trackers.base import TrackerRun
    from modelcollapse.trackers.tensorboard import TensorBoardTracker

    tracker = TensorBoardTracker(tmp_path, TrackerRun("r", "k", "p", resume=True, start=3), {"seed": 0, "a.b": "x"},
                                 LoggingSpec())
    tracker.log(GenerationLog(3, {"x": 1.0}))
    tracker.close("completed")
    assert read_tensorboard(tmp_path / "r").params == {"seed": 0, "a.b": "x"}


def test_a_study_run_refuses_a_tracker_not_installed(tmp_path, monkeypatch, capsys):
    from modelcollapse.study import runner

    def written(*args, **kwargs):  # stop here: the check should have refused before
        raise AssertionError("the study directory was written")

    monkeypatch.setattr(runner.StudyDir, "create", written)
    _not_installed(monkeypatch, "wandb")
    study = tmp_path / "s.yaml"
    study.write_text("name: tiny\nbase: gaussian\nset: {replicates: 3, generations: 3}\nseeds: [0, 1]\n")
    out = tmp_path / "out"
    assert cli.main(["run", str(study), "--log", "wandb", "--out", str(out), "-q"]) == 2
    assert 'pip install "modelcollapse[wandb]"' in capsys.readouterr().err and not out.exists()


def test_a_study_whose_cells_name_a_tracker_not_installed_is_refused_before_anything_is_written(tmp_path, monkeypatch,
                                                                                                 capsys):
    _not_installed(monkeypatch, "wandb")
    study = tmp_path / "s.yaml"
    study.write_text("name: tiny\nbase: gaussian\nset: {replicates: 3, generations: 3, logging: {trackers: [wandb]}}\n"
                     "seeds: [0, 1]\n")
    out = tmp_path / "out"
    assert cli.main(["sweep", str(study), "--out", str(out), "-q"]) == 2
    assert 'pip install "modelcollapse[wandb]"' in capsys.readouterr().err and not out.exists()
