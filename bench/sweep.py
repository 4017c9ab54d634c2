"""Benchmark: one study on the local pool with 1 and 2 workers and on Ray (2 CPUs); load_results on a large run.

The same 8 Gaussian cells (4 training-set sizes x 2 seeds, a few seconds each) run three times, each a whole
``sweep()`` (pool or tasks started, cells run, study tables written), and must give identical tables. Ray is
started before its sweep and stopped after it, both timed apart, so its start-up does not hide in the
per-cell overhead. Then ``load_results`` reads a 1000-generation x 1000-replicate run (made once with
``modelcollapse run``; ``--big DIR`` keeps it for the next time): all of it, and one metric at one generation.

    python bench/sweep.py [--quick] [--replicates 100] [--generations 300] [--repeats 1] [--big DIR] [--no-ray]

The speed-up of 2 workers over 1 is bounded by the cores free during the run: the load average is printed
before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import modelcollapse as mc
from modelcollapse.study import build
from modelcollapse.study.runner import sweep

QUIET = {"progress": False, "cell_reports": False, "report": False}
METRICS = ["mean_error", "variance_ratio", "w2", "kl"]


def _study(replicates: int, generations: int):
    return build("gaussian", grid=["train_size=50,100,200,400"], seeds="0,1",
                 sets=[f"replicates={replicates}", f"generations={generations}"], name="bench")


def _cpu() -> float:
    """CPU seconds of this process and its ended children (the local pool's workers, once shut down)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed_sweep(study, out: Path, **kwargs) -> tuple[float, float, float]:
    """Wall seconds of the sweep, the sum of its cells' own (wall) seconds, and the CPU seconds it used
    (NaN for Ray, whose workers are not this process's children)."""
    t0, c0 = time.perf_counter(), _cpu()
    outcome = sweep(study, out, **kwargs, **QUIET)
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    assert outcome.ok and len(outcome.completed) == len(study.cells), outcome
    cells = json.loads((out / "study.json").read_text())["cells"]
    return wall, sum(c["seconds"] for c in cells), cpu if kwargs.get("backend", "local") == "local" else float("nan")


def _table(out: Path) -> pd.DataFrame:
    return mc.load_results(out).sort_values(["cell", "replicate", "generation"]).reset_index(drop=True)


def _autogroup() -> bool:
    try:
        return Path("/proc/sys/kernel/sched_autogroup_enabled").read_text().strip() == "1"
    except OSError:
        return False


def _ray_start(workers: int):
    try:
        import ray
    except ImportError:
        return None, 0.0
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, num_gpus=0, include_dashboard=False, log_to_driver=False,
             configure_logging=True, logging_level="ERROR")
    return ray, time.perf_counter() - t0


def bench_backends(a: argparse.Namespace, root: Path) -> None:
    study = _study(a.replicates, a.generations)
    n = len(study.cells)
    print(f"study: {n} Gaussian cells (train_size 50-400 x 2 seeds), {a.replicates} replicates x "
          f"{a.generations} generations each; cell reports and study report off")
    best: dict[str, tuple[float, float, float]] = {}
    extra = {}
    for rep in range(a.repeats):
        runs = [("local, 1 worker", {"workers": 1}), ("local, 2 workers", {"workers": 2})]
        if not a.no_ray:
            runs.append(("ray, 2 CPUs", {"workers": 2, "backend": "ray"}))
        for label, kwargs in runs:
            out = root / f"{label.split(',')[0]}-{kwargs['workers']}-{rep}"
            ray = None
            if kwargs.get("backend") == "ray":
                ray, start = _ray_start(2)
                if ray is None:
                    print("  ray: not installed (pip install 'ray>=2.9,<3'); skipped")
                    continue
            wall, cell_seconds, cpu = _timed_sweep(study, out, **kwargs)
            if ray is not None:
                t0 = time.perf_counter()
                ray.shutdown()
                stop = time.perf_counter() - t0
                extra = {"start": min(start, extra.get("start", start)), "stop": min(stop, extra.get("stop", stop))}
            if label not in best or wall < best[label][0]:
                best[label] = (wall, cell_seconds, cpu)
            if rep == 0:
                table = _table(out)
                if label == "local, 1 worker":
                    reference = table
                else:  # same cells, same numbers, whatever ran them
                    pd.testing.assert_frame_equal(table, reference, check_exact=True)
            shutil.rmtree(out, ignore_errors=True)
    t1 = best["local, 1 worker"][0]
    for label, (wall, cells, cpu) in best.items():
        used = "" if math.isnan(cpu) else f"; {cpu:6.2f} CPU s, {cpu / wall:.2f} cores busy on average"
        print(f"  {label:17s}: {wall:6.2f} s   ({wall / n:.2f} s per cell; cells' own time {cells:6.2f} s{used})")
    t2 = best["local, 2 workers"][0]
    print(f"  speed-up, 2 workers over 1: {t1 / t2:.2f}x  (goal >= 1.8x; identical tables checked)")
    if _autogroup() and os.getloadavg()[0] > (os.cpu_count() or 1):
        print("  note: this machine is busy, and its kernel shares the CPU between sessions (autogroup): the local "
              "pool's workers share this session's part, Ray's workers (one session each) do not; the times above "
              "are not what 2 free cores give")
    if "ray, 2 CPUs" in best:
        tr = best["ray, 2 CPUs"][0]
        print(f"  ray: start-up {extra['start']:.1f} s and shutdown {extra['stop']:.1f} s, outside the time above; "
              f"end to end {extra['start'] + tr + extra['stop']:.1f} s")
        print(f"  ray over local 2 workers: {tr / t2:.2f}x the time; overhead {(tr - t2) / n * 1e3:+.0f} ms per cell "
              f"({'with' if tr >= t2 else 'saving'} {abs(tr - t2):.2f} s over {n} cells)")


def bench_load(a: argparse.Namespace, root: Path) -> None:
    R, G = a.big_replicates, a.big_generations
    big = Path(a.big) if a.big else root / "big"
    made = None
    manifest = big / "manifest.json"
    if not manifest.is_file() or json.loads(manifest.read_text()).get("status") != "completed":
        shutil.rmtree(big, ignore_errors=True)
        cmd = [sys.executable, "-m", "modelcollapse", "run", "gaussian", "--set", f"replicates={R}", "--set",
               f"generations={G}", "--no-report", "-q", "--out", str(big)]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        made = time.perf_counter() - t0
    else:  # reused: its own size
        spec = mc.load_spec(str(big / "config.yaml"))
        R, G = spec.replicates, spec.generations
    rows = R * (G + 1)
    parts = list((big / "metrics").glob("*.parquet"))
    stored = f"{sum(p.stat().st_size for p in parts) / 2**20:.1f} MiB of Parquet" if parts else "JSON lines"
    print(f"load_results: a {G}-generation x {R}-replicate run ({rows:,} rows, {stored}"
          + (f"; `modelcollapse run` made it in {made:.1f} s)" if made is not None else f"; reused {big})"))
    mc.load_results(big, metrics=["w2"], generations=[G])  # imports (pyarrow, pandas) out of the timings
    timings = {}
    subset = {"metrics": ["w2"], "generations": [G]}
    for label, kwargs in (("all of it", {}), (f"metrics=['w2'], generations=[{G}]", subset)):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            df = mc.load_results(big, **kwargs)
            best = min(best, time.perf_counter() - t0)
        timings[label] = best
        print(f"  {label:34s}: {best * 1e3:8.1f} ms  ({len(df):,} rows x {df.shape[1]} columns)")
    full, part = timings.values()
    print(f"  the subset is read {full / part:.0f}x faster than the whole table")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small cells, and a 400 x 300 run for load_results")
    p.add_argument("--replicates", type=int, help="per cell (default 100; --quick 20)")
    p.add_argument("--generations", type=int, help="per cell (default 300; --quick 50)")
    p.add_argument("--repeats", type=int, default=1, help="run each backend this many times, keep the fastest")
    p.add_argument("--no-ray", action="store_true")
    p.add_argument("--big", help="directory of the large run for load_results (made there when missing)")
    a = p.parse_args()
    a.replicates = a.replicates or (20 if a.quick else 100)
    a.generations = a.generations or (50 if a.quick else 300)
    # --quick: still over 100,000 rows, so that the run's metrics are Parquet parts as the large run's are
    a.big_replicates, a.big_generations = (300, 400) if a.quick else (1000, 1000)
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}  ({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        bench_backends(a, root)
        bench_load(a, root)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
