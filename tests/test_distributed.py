"""Several processes for one run (what `accelerate launch` does on a multi-GPU machine), on the CPU.

``torch.distributed.run`` (torchrun, the launcher under `accelerate launch --multi_gpu`) starts
two CPU processes that talk over gloo; accelerate sets up the group and DDP exactly as it does
for GPUs with NCCL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("accelerate")

from modelcollapse.store import RunStore  # noqa: E402

HERE = Path(__file__).parent
TINY_LM = ["replicates=1", "train_size=48", "metric_samples=16", "heldout_size=32", "model.epochs=1",
           "model.n_embd=32", "data.tokenizer.vocab_size=400"]  # fmt: skip


def launch(args: list[str], cwd: Path, processes: int = 2) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_two_processes_train_like_one_and_generate_and_score_exactly_like_one(tmp_path):
    worker = str(HERE / "dist_worker.py")
    one = subprocess.run([sys.executable, worker, str(tmp_path / "one")], capture_output=True, text=True,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    launch([worker, str(tmp_path / "two"), str(tmp_path / "one")], tmp_path)
    a, b = np.load(tmp_path / "one" / "fit.npz"), np.load(tmp_path / "two" / "fit.npz")
    # Training: the same minibatches, split over the processes with gradients averaged by DDP.
    # Only the order of float32 sums differs (~1e-7 relative per step); over the 8 AdamW steps
    # here that moves weights by ~3e-6, so 1e-4 catches any real difference (a lost row, a
    # gradient counted twice or unscaled moves weights by ~1e-3) without flagging rounding.
    weights = [k for k in a.files if k.startswith("w/")]
    assert weights and max(np.abs(a[k] - b[k]).max() for k in weights) < 1e-4
    np.testing.assert_allclose(b["train_loss"], a["train_loss"], rtol=1e-5)
    np.testing.assert_allclose(b["val_loss"], a["val_loss"], rtol=1e-5)
    # Generation and scoring from the same weights: each chunk of prompts has its own seed and
    # is computed whole by one process, so the results are identical, not just close.
    u, v = np.load(tmp_path / "one" / "use.npz"), np.load(tmp_path / "two" / "use.npz")
    assert int(u["world"]) == 1 and int(v["world"]) == 2
    np.testing.assert_array_equal(v["tokens"], u["tokens"])
    np.testing.assert_array_equal(v["scores"], u["scores"])


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # three launches of lm-tiny (about a minute); the test below keeps two processes in CI
def test_cli_under_a_launcher_writes_one_run_and_resumes(tmp_path):
    sets = [a for o in TINY_LM for a in ("--set", o)]
    single = tmp_path / "single"
    subprocess.run([sys.executable, "-m", "modelcollapse", "run", "lm-tiny", *sets, "--set", "generations=2",
                    "--out", str(single), "-q", "--no-report"], check=True, cwd=tmp_path, timeout=600,
                   env={**os.environ, "HF_HUB_OFFLINE": "1"})  # fmt: skip
    # No --out: the directory is named after the main process's clock and every process uses it.
    launch(["-m", "modelcollapse", "run", "lm-tiny", *sets, "--set", "generations=1", "-q", "--no-report"], tmp_path)
    (run_dir,) = (tmp_path / "runs").iterdir()
    launch(["-m", "modelcollapse", "run", "--resume", "--out", str(run_dir), "--set", "generations=2", "-q"],
           tmp_path)  # fmt: skip
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["resumed"]) == 1
    assert (run_dir / "report.html").is_file()
    rows, ref = _metrics(run_dir), _metrics(single)
    assert [(r["replicate"], r["generation"]) for r in rows] == [(0, 0), (0, 1), (0, 2)]  # written once
    # Generation 0 trains on real text only: equal up to float rounding of the gradient sums.
    assert rows[0]["perplexity"] == pytest.approx(ref[0]["perplexity"], rel=1e-5)
    # Later generations train on sampled text; a token whose sampling threshold falls within
    # that rounding (a chance of about 1e-3 here) changes the data, but not the perplexity by 1%.
    for got, want in zip(rows[1:], ref[1:]):
        assert got["perplexity"] == pytest.approx(want["perplexity"], rel=1e-2)


def test_a_store_that_may_not_write_writes_nothing(tmp_path):
    store = RunStore.create(tmp_path / "run", "name: x\n", writable=False)
    store.write_text("config.yaml", "x")
    store.write_npz("real.npz", {"X": np.zeros(2)})
    store.write_tensors(store.generation_file(0), {"X": np.zeros(2)})
    assert store.append_jsonl("metrics.jsonl", [{"a": 1}]) == 0
    store.truncate("metrics.jsonl", 0)
    store.update_manifest(status="completed")
    assert not (tmp_path / "run").exists()
