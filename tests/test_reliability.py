"""A bad day: killed runs, worker processes, malformed input, and the guarantees the other tests rely on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from modelcollapse.cli import main
from modelcollapse.config import SpecError, load_spec
from modelcollapse.integrity import verify
from modelcollapse.loop import run
from modelcollapse.rng import ROLES, stream
from modelcollapse.store import RunStore

# scikit-learn's per-replicate fits in two worker processes: a run that lasts long enough to be killed
# (batched EM would finish these 30 generations in a second or two)
GMM = ["replicates=4", "generations=30", "train_size=200", "workers=2", "checkpoint_every=2", "metric_samples=200",
       "metrics=[l2_distance, tail_mass]", "model.backend=sklearn"]


def _launch(out: Path, *extra: str) -> subprocess.Popen:
    args = [a for o in [*GMM, *extra] for a in ("--set", o)]
    return subprocess.Popen([sys.executable, "-m", "modelcollapse", "run", "gmm", *args, "--out", str(out), "-q",
                             "--no-report"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_workers(proc: subprocess.Popen, count: int = 2, timeout: float = 120) -> list[psutil.Process]:
    parent = psutil.Process(proc.pid)
    deadline = time.time() + timeout
    while time.time() < deadline:
        kids = parent.children(recursive=True)
        if len(kids) >= count + 1:  # the workers and multiprocessing's resource tracker
            return kids
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before its workers started: {proc.stderr.read().decode()}")
        time.sleep(0.1)
    raise AssertionError("the run's workers did not start")


def _gone(procs: list[psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def test_no_worker_outlives_a_killed_run(tmp_path):
    proc = _launch(tmp_path / "run")
    workers = _wait_for_workers(proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not _gone(workers), "worker processes outlived kill -9 of the run by 10 s"


def test_sigterm_ends_the_run_cleanly(tmp_path):
    proc = _launch(tmp_path / "run")
    workers = _wait_for_workers(proc)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert not _gone(workers)
    store = RunStore(tmp_path / "run")
    assert store.manifest()["status"] == "interrupted" and (tmp_path / "run" / ".lock").read_text() == ""
    assert not verify(store).problems


def _kill_and_resume(tmp_path: Path, kills: int, seed: int) -> None:
    """kill -9 at random moments, resume each time: the result is the uninterrupted run's, to the bit."""
    straight = run(load_spec("gmm", [*GMM, "workers=1"]), tmp_path / "straight", progress=False)
    out, rng = tmp_path / "killed", np.random.default_rng(seed)
    for i in range(kills):
        proc = _launch(out) if i == 0 else subprocess.Popen(
            [sys.executable, "-m", "modelcollapse", "run", "--resume", "--out", str(out), "-q", "--no-report"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        workers = _wait_for_workers(proc)
        time.sleep(rng.uniform(0.2, 3.0))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not _gone(workers)
        assert not verify(RunStore(out)).problems  # whatever the moment, nothing the checkpoint covers is torn
    assert main(["run", "--resume", "--out", str(out), "-q", "--no-report"]) == 0
    store = RunStore(out)
    assert store.read_jsonl("metrics.jsonl") == straight.read_jsonl("metrics.jsonl")
    assert store.read_jsonl("provenance.jsonl") == straight.read_jsonl("provenance.jsonl")
    assert store.manifest()["status"] == "completed"


def test_kill_and_resume_small(tmp_path):
    _kill_and_resume(tmp_path, kills=2, seed=0)


@pytest.mark.slow
def test_kill_and_resume_torture(tmp_path):
    _kill_and_resume(tmp_path, kills=12, seed=1)


# -- guarantees the other tests lean on ---------------------------------------------------------
def test_every_replicate_and_role_has_its_own_stream():
    """A one-character slip in rng.py once gave replicates 0 and 1 the same streams and every test
    passed; this one would not."""
    first = {(r, role): stream(7, r, role).integers(2**63) for r in range(5) for role in ROLES}
    assert len(set(first.values())) == len(first)
    assert stream(7, 0, "sample").integers(2**63) == first[(0, "sample")]  # and reproducible
    assert stream(8, 0, "sample").integers(2**63) != first[(0, "sample")]


def test_replicates_of_a_run_are_different_chains(tmp_path):
    for preset, extra in (("gaussian", []), ("discrete", []), ("kde", ["train_size=50", "metric_samples=100"])):
        rows = run(load_spec(preset, ["replicates=3", "generations=2", *extra]), tmp_path / preset,
                   progress=False).read_jsonl("metrics.jsonl")
        for g in range(3):
            values = [tuple(v for k, v in r.items() if k not in ("replicate",)) for r in rows if r["generation"] == g]
            assert len(set(values)) == 3, f"{preset}: replicates share numbers at generation {g}"


def test_infinity_and_missing_values_round_trip(tmp_path, monkeypatch):
    """A variance that collapses to exactly zero gives an infinite KL (stored 1e999 in JSON, infinity in
    Parquet), and a stopped replicate's values are null: readers give back inf and None/NaN."""
    from modelcollapse import results

    spec = load_spec("gaussian", ["replicates=3", "generations=40", "train_size=2", "metrics=[kl, variance_ratio]"])
    for fmt, rows_limit in (("jsonl", 10**9), ("parquet", 1)):
        monkeypatch.setattr(results, "PARQUET_ROWS", rows_limit)
        store = run(spec, tmp_path / fmt, progress=False)
        rows = store.metric_rows()
        assert any(r["kl"] == float("inf") for r in rows), fmt
        cols = results.read_metric_columns(store.path)
        assert np.isinf(cols.values["kl"]).any()
        if fmt == "jsonl":
            assert "1e999" in (store.path / "metrics.jsonl").read_text()


# -- input that must be refused with a message, exit 2, and nothing written ------------------------
BAD_FILES = {
    "syntax.yaml": b"name: x\nreplicates: [3\n",
    "tab.yaml": b"name: x\n\treplicates: 3\n",
    "binary.yaml": bytes(range(256)),
    "nan.yaml": b"data: {kind: gaussian, mean: [.nan]}\n",
    "inf.yaml": b"model: {kind: kde, bandwidth: .inf}\n",
    "bool.yaml": b"generations: true\n",
    "negative-generation.yaml": b"report: {density_generations: [-1]}\n",
    "list.yaml": b"- a\n- b\n",
    "empty.yaml": b"",
    "alias.yaml": b"a: &x [1]\nb: *x\n",
    "string-int.yaml": b"replicates: '3'\n",
    "deep-nan.yaml": b"model: {kind: sklearn, params: {tol: .nan}}\n",
}
BAD_ARGS = [
    ["--set", "replicates=1e9"], ["--set", "replicates=1000000000"], ["--set", "generations=1000000000"],
    ["--set", "report.density_generations.9=3"], ["--set", "report.density_generations.x=3"], ["--set", "=3"],
    ["--set", "a..b=3"], ["--set", "name=a/b"], ["--set", "seed=-1"], ["--set", "workers=100000"],
    ["--set", "data.mean=[1, 2]"], ["--set", "policy.kind=mix", "--set", "policy.real_fraction=2"],
    ["--set", "model={kind: sklearn, estimator: os.system}"], ["--set", "metrics=[w3]"], ["--set", "data"],
]


def _refused(args: list[str], tmp_path: Path, capsys) -> str:
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err
    return err


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_spec_files_are_refused(name, tmp_path, capsys):
    (tmp_path / name).write_bytes(BAD_FILES[name])
    err = _refused(["run", str(tmp_path / name)], tmp_path, capsys)
    if name in ("syntax.yaml", "tab.yaml", "alias.yaml"):
        assert "line " in err and "column " in err


@pytest.mark.parametrize("args", BAD_ARGS, ids=[" ".join(a) for a in BAD_ARGS])
def test_bad_overrides_are_refused(args, tmp_path, capsys):
    _refused(["run", "gaussian", *args], tmp_path, capsys)


def test_paths_are_named_as_what_they_are(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "afile").write_text("x")
    assert "is a directory" in _refused(["run", str(tmp_path / "adir")], tmp_path, capsys)
    assert "named pipe" in _refused(["run", str(tmp_path / "fifo.yaml")], tmp_path, capsys)
    assert main(["run", "gaussian", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(["run", "--resume", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file, not a run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "adir")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_a_broken_stored_spec_on_resume_is_a_message(tmp_path, capsys):
    store = run(load_spec("gaussian", ["replicates=2", "generations=2"]), tmp_path / "run", progress=False)
    (store.path / "config.yaml").write_text("replicates: [2\n")
    assert main(["run", "--resume", "--out", str(store.path)]) == 2
    assert "config.yaml, line 2, column 1" in capsys.readouterr().err


def test_an_error_names_its_key_once():
    with pytest.raises(SpecError) as info:
        load_spec({"data": {"kind": "categorical", "probs": [0.5, 0.6]}, "model": {"kind": "categorical"}})
    assert "data.probs: must be non-negative" in str(info.value) and "probs.probs" not in str(info.value)


def test_the_preset_listing_keeps_square_brackets(capsys):
    assert main(["presets"]) == 0
    assert "pip install 'modelcollapse[paper]'" in capsys.readouterr().out


def test_show_states_the_resources_a_run_needs(capsys):
    assert main(["show", "gaussian"]) == 0
    assert "estimated: memory about" in capsys.readouterr().err


def test_a_run_too_large_for_the_machine_is_refused_unless_forced(tmp_path, capsys):
    from modelcollapse.resources import estimate, total_memory

    spec = load_spec("gaussian", ["replicates=100000000"])
    assert estimate(spec).memory > total_memory()
    err = _refused(["run", "gaussian", "--set", "replicates=100000000"], tmp_path, capsys)
    assert "replicates: this run is too large" in err and "--force" in err
