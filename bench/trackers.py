"""Benchmark: what an experiment tracker costs a fast chain, per generation and once.

The `gaussian` preset's chain (1001 generations) is run in-process without a tracker and with each
installed tracker (TensorBoard, MLflow, W&B offline), into scratch directories, without a report.
Printed per tracker: the run's seconds, the ratio against the run without a tracker measured in the
same process, and the cost per generation after the tracker's start-up (its imports, opening its
run). A tracker's first use in the process pays its imports, so each is started once before timing.

    python bench/trackers.py [--replicates 200] [--generations 1000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
import warnings
from pathlib import Path

import modelcollapse as mc
from modelcollapse.trackers import Session, TrackerWarning

REQUIRES = {"tensorboard": "tensorboardX", "mlflow": "mlflow", "wandb": "wandb"}


def timed(spec: mc.ExperimentSpec, out: Path, trackers: list[str]) -> tuple[float, float]:
    """(seconds of the whole run, seconds before its first generation: the trackers' start-up)."""
    session = Session(trackers, spec.logging) if trackers else None
    started: list[float] = []

    def first(g: int) -> None:
        if g == 0:
            started.append(time.perf_counter())

    t0 = time.perf_counter()
    mc.run(spec, out, progress=False, trackers=session, on_generation=first)
    if session is not None:
        session.finish(out, "completed")
    return time.perf_counter() - t0, started[0] - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--generations", type=int, default=1000)
    args = ap.parse_args()
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.simplefilter("error", TrackerWarning)  # a tracker that fails would make the numbers meaningless
    spec = mc.load_spec("gaussian", [f"replicates={args.replicates}", f"generations={args.generations}"])
    installed = [t for t, module in REQUIRES.items() if importlib.util.find_spec(module)]
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        small = mc.load_spec("gaussian", ["replicates=2", "generations=2"])
        for t in installed:  # imports paid here, not in the timed runs
            timed(small, root / f"warm-{t}", [t])
        base, base_start = timed(spec, root / "none", [])
        print(f"gaussian preset, {args.replicates} replicates x {args.generations + 1} generations")
        print(f"{'trackers':<28}{'seconds':>9}{'ratio':>8}{'start-up s':>12}{'ms/generation':>15}")
        print(f"{'none':<28}{base:9.2f}{1.0:8.2f}{base_start:12.2f}{'':>15}")
        for combo in [[t] for t in installed] + ([installed] if len(installed) > 1 else []):
            total, start = timed(spec, root / "-".join(combo), combo)
            per_gen = ((total - start) - (base - base_start)) / (args.generations + 1) * 1000
            print(f"{','.join(combo):<28}{total:9.2f}{total / base:8.2f}{start:12.2f}{per_gen:15.2f}")


if __name__ == "__main__":
    main()
