"""Benchmark: accumulating chains cost the same at generation 1,000 as at generation 1.

``accumulate`` trains each generation on the real set and every synthetic set so far. Families whose
fit is a function of additive statistics (Gaussian, categorical, n-gram) keep those instead of the pool,
so a generation costs O(train_size) whatever its index (the n-gram: the size of its count table, which
is the model itself, and a sampling that grows with its logarithm); the pooled refit (what every family
did before, and what ``accumulate_subsample`` still needs) grows with the index. Time per generation,
early against late, for both.

    python bench/accumulate.py [--replicates 100] [--generations 1000] [--window 100]
                               [--ngram-generations 100] [--ngram-window 10]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.models import CategoricalModel, GaussianModel, NGramModel


def step_times(preset: str, overrides: list[str]) -> np.ndarray:
    chain = Chain(load_spec(preset, overrides))
    chain.first()
    times = []
    for g in range(1, chain.spec.generations + 1):
        t0 = time.perf_counter()
        chain.step(g)
        times.append(time.perf_counter() - t0)
    chain.close()
    return np.array(times)


def pooled_times(cls: type, preset: str, overrides: list[str]) -> np.ndarray:
    """The same chain refitting the whole pool, as before (the family without ``fit_statistics``)."""
    fit_statistics = cls.fit_statistics
    try:
        cls.fit_statistics = None
        return step_times(preset, overrides)
    finally:
        cls.fit_statistics = fit_statistics


def report(label: str, t: np.ndarray, w: int) -> None:
    G = len(t)
    print(f"  {label}: generations 1-{w}: {1e3 * t[:w].mean():7.2f}   {G - w + 1}-{G}: {1e3 * t[-w:].mean():7.2f}   "
          f"ratio late/early {t[-w:].mean() / t[:w].mean():.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=100)
    p.add_argument("--generations", type=int, default=1000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--pooled-generations", type=int, default=300, help="the pooled refit is quadratic: keep it short")
    p.add_argument("--ngram-replicates", type=int, default=3, help="the lm-ngram preset's (train_size 1000)")
    p.add_argument("--ngram-generations", type=int, default=100, help="0 leaves the n-gram out")
    p.add_argument("--ngram-window", type=int, default=10)
    a = p.parse_args()
    w = a.window
    print(f"accumulate: {a.replicates} replicates, metrics off; ms per generation")
    for preset, cls in (("gaussian", GaussianModel), ("discrete", CategoricalModel)):
        base = [f"replicates={a.replicates}", "policy.kind=accumulate", "metrics=[]"]
        report(f"{preset:9s} statistics ", step_times(preset, [*base, f"generations={a.generations}"]), w)
        report(f"{preset:9s} pooled refit", pooled_times(cls, preset, [*base, f"generations={a.pooled_generations}"]), w)
    if a.ngram_generations:
        base = [f"replicates={a.ngram_replicates}", f"generations={a.ngram_generations}", "policy.kind=accumulate",
                "metrics=[]"]
        print(f"lm-ngram, {a.ngram_replicates} replicates of 1000 blocks, metrics off; ms per generation")
        report("ngram     statistics ", step_times("lm-ngram", base), a.ngram_window)
        report("ngram     pooled refit", pooled_times(NGramModel, "lm-ngram", base), a.ngram_window)


if __name__ == "__main__":
    main()
