"""Benchmark: the theory costs nothing next to the simulation it is drawn over.

For each case, the time of ``theory.curves(spec)`` (every closed form that applies, at every generation)
against the time of the engine's chain for the same spec, measured in the same run, and their ratio.
The cases are the presets' own sizes plus the largest exact transition-matrix computation the theory does
(M = 1000 over 1000 generations; above ``wright_fisher.EXACT_MAX_SIZE`` = 2000 it switches to the
diffusion approximation, and the exact absorption time above ``theory.EXACT_ABSORPTION_SIZE`` = 300).

    python bench/theory.py [--replicates R]
"""

from __future__ import annotations

import argparse
import time

from modelcollapse import theory
from modelcollapse.chain import Chain
from modelcollapse.config import load_spec

CASES = [
    ("gaussian", ["generations=1000", "train_size=100"]),
    ("gaussian", ["generations=200", "train_size={kind: power, M0: 10, p: 1.5}", "model.estimator=unbiased"]),
    ("gaussian", ["generations=1000", "data.mean=[0.0, 0.0, 0.0]",
                  "data.cov=[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]", "metrics=[log_det_ratio, kl]"]),
    ("gaussian-accumulate", ["generations=1000"]),
    ("discrete", ["generations=1000", "train_size=100"]),
    ("discrete", ["generations=1000", "train_size=1000", "data.categories=10"]),
]


def simulate(spec) -> float:
    t0 = time.perf_counter()
    chain = Chain(spec)
    chain.first()
    for g in range(1, spec.generations + 1):
        chain.step(g)
    chain.close()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, help="replicates of each simulation (default: the preset's, 200)")
    args = p.parse_args()
    print(f"{'case':<70} {'theory s':>9} {'simulation s':>13} {'ratio':>7}")
    for preset, overrides in CASES:
        spec = load_spec(preset, [*overrides, *([f"replicates={args.replicates}"] if args.replicates else [])])
        t0 = time.perf_counter()
        found = theory.curves(spec)
        t_theory = time.perf_counter() - t0
        t_sim = simulate(spec)
        name = f"{preset} {' '.join(o for o in overrides if not o.startswith('data.cov'))}"[:70]
        print(f"{name:<70} {t_theory:9.3f} {t_sim:13.2f} {t_theory / t_sim:7.3f}   ({len(found)} results)")


if __name__ == "__main__":
    main()
