"""Benchmark: the KDE family's replicates sampled and scored at once (BatchedKDE) against the loop over
replicates (ReplicatedModel), and against the per-replicate scoring of before (one 16 MB block a replicate).

The ``kde`` preset's setting: a 1-D two-component mixture, 400 training points a generation, 500 held-out
points scored (``nll``), 1,000 points drawn per Wasserstein metric, at the preset's 10 replicates and at
100. Every side gets the same generators and must give the same numbers (checked before a time is
printed). Times are the best of ``--repeats``, the sides interleaved; then whole generations of the
preset's chain, with its metrics (``l2_distance`` among them, which no side changes and which dominates)
and with the family's default metrics.

    python bench/kde.py [--replicates 10 100] [--repeats 7] [--generations 5] [--set train_size=100 ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np

from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.data import load_source
from modelcollapse.mixtures import logsumexp
from modelcollapse.models.base import ReplicatedModel
from modelcollapse.models.kde import BatchedKDE, KDEModel
from modelcollapse.rng import stream


def previous_log_prob(self: KDEModel, X: np.ndarray) -> np.ndarray:
    """``KDEModel.log_prob`` as it was before the blocked kernel (kept here as the baseline)."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 3:
        return np.stack([previous_log_prob(self, x) for x in X])
    n, d = self.data_.shape
    h2 = self.bandwidth_**2
    norm = np.log(n) + 0.5 * d * np.log(2 * np.pi * h2)
    out = np.empty(len(X))
    step = max(1, 2_000_000 // max(n * d, 1))
    for s in range(0, len(X), step):
        sq = np.sum((X[s : s + step, None, :] - self.data_[None]) ** 2, axis=-1)
        a = -0.5 * sq / h2
        out[s : s + step] = logsumexp(a, axis=1) - norm
    return out


@contextmanager
def variant(name: str) -> Iterator[None]:
    """``batched`` (the engine now), ``loop`` (ReplicatedModel, today's kernel) or ``before`` (ReplicatedModel
    and the previous kernel): the class attributes the engine reads, swapped for the block."""
    saved = KDEModel.replicated, KDEModel.log_prob
    try:
        if name != "batched":
            KDEModel.replicated = None  # the family's make() then falls back to ReplicatedModel
        if name == "before":
            KDEModel.log_prob = previous_log_prob
        yield
    finally:
        KDEModel.replicated, KDEModel.log_prob = saved


def best_times(fns: dict[str, Callable[[Any], Any]], setup: Callable[[], Any], repeats: int
               ) -> tuple[dict[str, float], dict[str, Any]]:
    """Best seconds of each function of ``setup()`` (made before the clock starts: fresh generators) over
    ``repeats`` interleaved rounds (a busy machine slows all sides alike)."""
    best = dict.fromkeys(fns, np.inf)
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            arg = setup()
            with variant(name):
                t0 = time.perf_counter()
                results[name] = fn(arg)
                best[name] = min(best[name], time.perf_counter() - t0)
    return best, results


def operations(R: int, repeats: int, sets: list[str]) -> None:
    spec = load_spec("kde", [*sets, f"replicates={R}"])
    source = load_source(spec.data)
    X = source.draw(spec.train_size, [stream(0, r, "real") for r in range(R)]).X
    heldout = source.draw(spec.heldout_size, [stream(0, r, "heldout") for r in range(R)]).X
    factory = partial(KDEModel, bandwidth=spec.model.bandwidth)
    loop, batched = ReplicatedModel(factory, R), BatchedKDE(factory, R)

    def rngs(kind: str) -> Callable[[], list[np.random.Generator]]:
        return lambda: [stream(0, r, kind) for r in range(R)]

    n_next, n_metric = spec.train_size, spec.metric_samples
    ops: dict[str, tuple[Callable[[], Any], dict[str, Callable[[Any], Any]]]] = {
        f"fit ({spec.train_size} points)": (rngs("fit"), {
            "loop": lambda g: loop.fit(X, rng=g), "batched": lambda g: batched.fit(X, rng=g)}),
        f"sample {n_next} (next generation)": (rngs("sample"), {
            "loop": lambda g: loop.sample(n_next, rng=g), "batched": lambda g: batched.sample(n_next, rng=g)}),
        f"sample {n_metric} (w1, w2)": (rngs("metric"), {
            "loop": lambda g: loop.sample(n_metric, rng=g), "batched": lambda g: batched.sample(n_metric, rng=g)}),
        f"log_prob of {spec.heldout_size} (nll)": (lambda: None, {
            "before": lambda _: loop.log_prob(heldout), "loop": lambda _: loop.log_prob(heldout),
            "batched": lambda _: batched.log_prob(heldout)}),
    }
    print(f"  {R} replicates, ms per call for all of them (best of {repeats}):")
    print(f"    {'operation':34s} {'before':>8s} {'loop':>8s} {'batched':>8s}  loop/batched  before/batched")
    for op, (setup, fns) in ops.items():
        t, res = best_times(fns, setup, repeats)
        for name in fns:  # fit returns the model: compared below by what it holds
            if not op.startswith("fit"):
                np.testing.assert_array_equal(res[name], res["batched"])
        before = f"{1e3 * t['before']:8.2f}" if "before" in t else f"{'-':>8s}"
        ratio = f"{t['before'] / t['batched']:13.1f}x" if "before" in t else ""
        print(f"    {op:34s} {before} {1e3 * t['loop']:8.2f} {1e3 * t['batched']:8.2f}  "
              f"{t['loop'] / t['batched']:11.2f}x {ratio}")
    np.testing.assert_array_equal(np.stack([m.data_ for m in loop.models]), np.stack([m.data_ for m in batched.models]))


def generations(R: int, G: int, sets: list[str]) -> None:
    """Generations 1..G of the preset's chain (fit, sample, every metric) on each side, the sides stepped
    in turn (a busy machine slows all alike); the median seconds of a generation."""
    spec = load_spec("kde", [*sets, f"replicates={R}", f"generations={G}"])
    sides = ("before", "loop", "batched")
    chains, times, metrics = {}, {n: [] for n in sides}, {n: [] for n in sides}
    for name in sides:
        with variant(name):
            chains[name] = Chain(spec)
            chains[name].first()
    for g in range(1, G + 1):
        for name in sides:
            with variant(name):
                t0 = time.perf_counter()
                gen = chains[name].step(g)
                times[name].append(time.perf_counter() - t0)
            metrics[name].append(gen.metrics)
    for name in sides:
        chains[name].close()
        for k in metrics[name][0]:
            np.testing.assert_array_equal([m[k] for m in metrics[name]], [m[k] for m in metrics["batched"]])
    t = {n: float(np.median(times[n])) for n in sides}
    print(f"  {R} replicates, a generation of the chain with metrics {', '.join(spec.metrics)}; median of {G}:\n    "
          f"before {1e3 * t['before']:.0f} ms, loop {1e3 * t['loop']:.0f} ms, batched {1e3 * t['batched']:.0f} ms; "
          f"before/batched {t['before'] / t['batched']:.2f}x, loop/batched {t['loop'] / t['batched']:.2f}x "
          "(same metrics checked)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, nargs="+", default=[10, 100])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--generations", type=int, default=5, help="of the whole chain (0: skip)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the preset, e.g. --set train_size=100 (repeatable)")
    a = p.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    changed = f" with {', '.join(a.set)}" if a.set else ""
    print(f"KDE family, the kde preset's setting{changed} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load {load:.1f} at start)")
    print("  before: ReplicatedModel and the previous per-replicate scoring; loop: ReplicatedModel (KDEModel's "
          "blocked scoring); batched: BatchedKDE")
    for R in a.replicates:
        operations(R, a.repeats, a.set)
    family_defaults = f"metrics=[{', '.join(KDEModel.default_metrics)}]"  # the preset's, less l2_distance
    for R in a.replicates if a.generations else ():
        generations(R, a.generations, a.set)
        generations(R, a.generations, [*a.set, family_defaults])


if __name__ == "__main__":
    main()
