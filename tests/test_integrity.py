"""Run directories that cannot lie: every file a checkpoint covers is verified before a resume or a
report, a damaged run is refused naming the file, and ``repair`` rebuilds what can be rebuilt, exactly,
or says plainly what is lost. Each kind of file is cut short, overwritten with NUL bytes, deleted, and
filled with garbage."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from modelcollapse import results
from modelcollapse.cli import main
from modelcollapse.config import load_spec
from modelcollapse.integrity import verify
from modelcollapse.loop import run
from modelcollapse.store import RunDirError, RunStore

LEGACY = Path(__file__).parent / "data" / "legacy"
# Checkpoints at generations 0, 4, 8 and 12 (checkpoint_every=4): the last two are kept.
SPEC = ["replicates=5", "generations=12", "train_size=30", "checkpoint_every=4"]
MORE = "generations=16"


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "nul":  # what a filesystem shows after losing unflushed blocks
        path.write_bytes(b"\0" * len(data))
    elif how == "deleted":
        path.unlink()
    elif how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(max(len(data), 64)))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """The same run straight through to 16 generations, and a finished 12-generation run to damage."""
    base = tmp_path_factory.mktemp("integrity")
    straight = run(load_spec("gaussian", [*SPEC, MORE]), base / "straight", progress=False)
    done = run(load_spec("gaussian", SPEC), base / "done", progress=False)
    return {"rows": straight.read_jsonl("metrics.jsonl"), "provenance": straight.read_jsonl("provenance.jsonl"),
            "done": done.path}


def _copy(reference: dict, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference["done"], tmp_path / "run"))


FILES = ["metrics.jsonl", "provenance.jsonl", "checkpoint.npz", "real.npz", "manifest.json",
         "generations/gen_000005.safetensors", "generations/gen_000012.safetensors"]


@pytest.mark.parametrize("name, how", [(name, how) for name in FILES for how in ("truncated", "nul", "deleted")]
                         + [("checkpoint.npz", "garbage"), ("real.npz", "garbage")])
def test_damage_is_refused_then_repaired_and_the_run_goes_on_to_the_same_numbers(name, how, reference, tmp_path,
                                                                                capsys):
    out = _copy(reference, tmp_path)
    damage(out / name, how)
    # Refused by the report and by a resume, naming the file; nothing is changed by the refusal.
    assert main(["report", str(out)]) == 2
    assert name in capsys.readouterr().err
    assert main(["run", "--resume", "--out", str(out), "--set", MORE, "-q", "--no-report"]) == 2
    assert "is damaged" in capsys.readouterr().err
    # Repaired: rebuilt exactly, or rolled back to the previous checkpoint; never a false "completed".
    assert main(["repair", str(out)]) == 0
    said = capsys.readouterr().err
    assert "status" in said
    assert not verify(RunStore(out)).problems
    status = RunStore(out).manifest()["status"]
    if name in ("checkpoint.npz", "generations/gen_000012.safetensors"):
        assert status == "interrupted" and "previous checkpoint" in said
    else:
        assert status == "completed"
    # The run continues to the numbers of a run that was never damaged.
    assert main(["run", "--resume", "--out", str(out), "--set", MORE, "-q", "--no-report"]) == 0
    store = RunStore(out)
    assert store.read_jsonl("metrics.jsonl") == reference["rows"]
    assert store.read_jsonl("provenance.jsonl") == reference["provenance"]
    assert store.manifest()["status"] == "completed"
    if name.endswith("gen_000005.safetensors"):  # not needed to go on: set aside, and said so
        assert "lost: generations/gen_000005.safetensors" in said
        assert (out / "damaged" / "gen_000005.safetensors").exists() == (how != "deleted")
    assert main(["report", str(out)]) == 0


def test_a_truncated_metrics_file_no_longer_resumes_as_completed(reference, tmp_path, capsys):
    """The issue's case: cut metrics.jsonl, resume with more generations. Before: exit 0, "completed", NUL
    bytes and 208 of 310 rows missing. Now: refused, and repair + resume gives every row once."""
    out = _copy(reference, tmp_path)
    with open(out / "metrics.jsonl", "r+b") as fh:
        fh.truncate(1000)
    assert main(["run", "--resume", "--out", str(out), "--set", MORE, "-q", "--no-report"]) == 2
    assert "cut short" in capsys.readouterr().err
    assert b"\0" not in (out / "metrics.jsonl").read_bytes()
    assert main(["run", "--resume", "--repair", "--out", str(out), "--set", MORE, "-q", "--no-report"]) == 0
    assert RunStore(out).read_jsonl("metrics.jsonl") == reference["rows"]


def test_a_lost_spec_cannot_be_repaired_and_says_so(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    (out / "config.yaml").write_text("replicates: [unclosed\n")
    assert main(["report", str(out)]) == 2
    assert main(["repair", str(out)]) == 1
    assert "spec is lost" in capsys.readouterr().err


def test_both_checkpoints_damaged_marks_the_run_damaged(reference, tmp_path, capsys):
    out = _copy(reference, tmp_path)
    damage(out / "checkpoint.npz", "garbage")
    damage(out / "checkpoint.prev.npz", "garbage")
    assert main(["repair", str(out)]) == 1
    manifest = RunStore(out).manifest()
    assert manifest["status"] == "damaged" and "cannot be used" in manifest["error"]
    assert main(["run", "--resume", "--out", str(out), "-q"]) == 2


@pytest.mark.parametrize("how", ["truncated", "garbage", "deleted"])
def test_damaged_parquet_metrics_are_rebuilt(how, tmp_path, monkeypatch):
    monkeypatch.setattr(results, "PARQUET_ROWS", 1)  # a small run stored as a large one is
    spec = load_spec("gaussian", [*SPEC, "checkpoint_every=3"])
    straight = run(spec, tmp_path / "straight", progress=False).metric_rows()
    store = run(spec, tmp_path / "run", progress=False)
    parts = results.part_files(store.path)
    assert len(parts) >= 2 and not (store.path / "metrics.jsonl").exists()
    assert store.metric_rows() == straight
    damage(parts[1], how)
    with pytest.raises(RunDirError, match=parts[1].name):
        run(spec, store.path, resume=True, progress=False)
    assert main(["repair", str(store.path)]) == 0
    assert RunStore(store.path).metric_rows() == straight


def test_runs_of_version_0_1_are_checked_by_parsing_and_counting(tmp_path, capsys):
    out = Path(shutil.copytree(LEGACY / "gaussian-accumulate", tmp_path / "old"))
    assert not verify(RunStore(out)).problems
    lines = (out / "metrics.jsonl").read_bytes().splitlines(keepends=True)
    broken = b"{" + b"x" * (len(lines[5]) - 2) + b"\n"  # same length: only parsing can tell
    (out / "metrics.jsonl").write_bytes(b"".join(lines[:5]) + broken + b"".join(lines[6:]))
    assert "line 6 is not valid JSON" in str(verify(RunStore(out)).problems[0])
    # Version 0.1 kept no metric values in its generation files: the rows cannot be rebuilt, and the
    # repair says so instead of inventing them.
    assert main(["repair", str(out)]) == 1
    assert "written by version 0.1" in capsys.readouterr().err


def test_keep_params_ends_keeps_what_a_resume_needs(tmp_path, monkeypatch):
    """Large models keep parameters for generation 0 and the latest only, but never drop those a
    checkpoint (or the one before it) still needs: a crash at any point resumes to the same numbers."""
    from modelcollapse.chain import Chain

    spec = load_spec("gaussian", [*SPEC, "keep_params=ends", "checkpoint_every=3"])
    straight = run(spec, tmp_path / "straight", progress=False).read_jsonl("metrics.jsonl")
    step = Chain.step

    def crash(self, g):
        if g == 10:
            raise KeyboardInterrupt
        return step(self, g)

    monkeypatch.setattr(Chain, "step", crash)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", progress=False)
    store = RunStore(tmp_path / "cut")
    with_params = [g for g in store.generations() if store.model_state(g)]
    assert with_params == [0, 6, 9]  # generation 0, the previous checkpoint (6), the last one (9) = the latest
    monkeypatch.setattr(Chain, "step", step)
    resumed = run(spec, store.path, resume=True, progress=False)
    assert resumed.read_jsonl("metrics.jsonl") == straight
    assert [g for g in resumed.generations() if resumed.model_state(g)] == [0, 9, 12]


def test_a_second_writer_is_refused_and_a_stale_lock_is_taken_over(reference, tmp_path):
    out = _copy(reference, tmp_path)
    holder = RunStore(out)
    holder.lock()
    try:
        with pytest.raises(RunDirError, match=rf"in use by another process \(pid {os.getpid()} on "):
            run(load_spec("gaussian", [*SPEC, MORE]), out, resume=True, progress=False)
        assert main(["repair", str(out)]) == 2
    finally:
        holder.unlock()
    # A writer that died without unlocking (kill -9) leaves its note in the lock file, not the lock.
    (out / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "since": "then"}))
    store = run(load_spec("gaussian", [*SPEC, MORE]), out, resume=True, progress=False)
    assert store.manifest()["status"] == "completed" and (out / ".lock").read_text() == ""


def test_files_follow_the_users_umask(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    code = (f"import os; os.umask(0o027); from modelcollapse.cli import main; "
            f"raise SystemExit(main(['run', 'gaussian', '--set', 'replicates=2', '--set', 'generations=3', "
            f"'--out', {str(out)!r}, '-q']))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o640}, modes


def test_a_parquet_part_written_just_before_a_crash_is_not_counted_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "PARQUET_ROWS", 1)
    spec = load_spec("gaussian", [*SPEC, "checkpoint_every=3"])
    straight = run(spec, tmp_path / "straight", progress=False).metric_rows()
    original, calls = RunStore.write_checkpoint, {"n": 0}

    def crash_on_the_third(self, arrays):  # its part is on disk, the checkpoint that would cover it is not
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, arrays)

    monkeypatch.setattr(RunStore, "write_checkpoint", crash_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        run(spec, tmp_path / "cut", progress=False)
    assert len(results.part_files(tmp_path / "cut")) == 3
    monkeypatch.setattr(RunStore, "write_checkpoint", original)
    assert run(spec, tmp_path / "cut", resume=True, progress=False).metric_rows() == straight
