"""Benchmark: accumulating chains cost the same at generation 1,000 as at generation 1.

``accumulate`` trains each generation on the real set and every synthetic set so far. Families whose
fit is a function of additive statistics (Gaussian, categorical) keep those instead of the pool, so
a generation costs O(train_size) whatever its index; the pooled refit (what every family did before,
and what ``accumulate_subsample`` still needs) grows with the index. Time per generation, early
against late, for both.

    python bench/accumulate.py [--replicates 100] [--generations 1000] [--window 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from modelcollapse.chain import Chain
from modelcollapse.config import load_spec
from modelcollapse.models import CategoricalModel, GaussianModel


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=100)
    p.add_argument("--generations", type=int, default=1000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--pooled-generations", type=int, default=300, help="the pooled refit is quadratic: keep it short")
    a = p.parse_args()
    w = a.window
    print(f"accumulate: {a.replicates} replicates, metrics off; ms per generation")
    for preset, cls in (("gaussian", GaussianModel), ("discrete", CategoricalModel)):
        base = [f"replicates={a.replicates}", "policy.kind=accumulate", "metrics=[]"]
        t = step_times(preset, [*base, f"generations={a.generations}"])
        G = a.generations
        print(f"  {preset:9s} statistics : generations 1-{w}: {1e3 * t[:w].mean():6.2f}   "
              f"{G - w + 1}-{G}: {1e3 * t[-w:].mean():6.2f}   ratio late/early {t[-w:].mean() / t[:w].mean():.2f}")
        fit_statistics = cls.fit_statistics
        try:
            cls.fit_statistics = None  # the same chain refitting the whole pool, as before
            P = a.pooled_generations
            t = step_times(preset, [*base, f"generations={P}"])
        finally:
            cls.fit_statistics = fit_statistics
        print(f"  {preset:9s} pooled refit: generations 1-{w}: {1e3 * t[:w].mean():6.2f}   "
              f"{P - w + 1}-{P}: {1e3 * t[-w:].mean():6.2f}   ratio late/early {t[-w:].mean() / t[:w].mean():.2f}")


if __name__ == "__main__":
    main()
