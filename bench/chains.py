"""Benchmark: vectorised Gaussian chains against a plain Python loop over replicates.

Both sides draw from the same per-replicate random streams, so they must produce the
same numbers; the benchmark checks that before it prints the speed ratio.

    python bench/chains.py [--replicates 1000] [--generations 100] [--train-size 100] [--dim 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from modelcollapse.models import GaussianModel
from modelcollapse.rng import stream


def vectorised(R: int, G: int, n: int, d: int, seed: int = 0) -> np.ndarray:
    """The engine's way: one batched model for all replicates."""
    real = [stream(seed, r, "real") for r in range(R)]
    sample = [stream(seed, r, "sample") for r in range(R)]
    X = np.stack([g.standard_normal((n, d)) for g in real])
    model = GaussianModel().fit(X)
    for _ in range(G):
        model.fit(model.sample(n, rng=sample))
    return np.trace(model.covariance_, axis1=-2, axis2=-1)


def looped(R: int, G: int, n: int, d: int, seed: int = 0) -> np.ndarray:
    """The notebook way: one model per replicate, a Python loop over replicates."""
    out = np.empty(R)
    for r in range(R):
        real, sample = stream(seed, r, "real"), stream(seed, r, "sample")
        model = GaussianModel().fit(real.standard_normal((n, d)))
        for _ in range(G):
            model.fit(model.sample(n, rng=[sample])[0])
        out[r] = np.trace(model.covariance_)
    return out


def numpy_only(R: int, G: int, n: int, d: int, seed: int = 0) -> np.ndarray:
    """The floor: the same normal variates drawn from the same streams and their moments, nothing else."""
    real = [stream(seed, r, "real") for r in range(R)]
    sample = [stream(seed, r, "sample") for r in range(R)]
    X = np.stack([g.standard_normal((n, d)) for g in real])
    for _ in range(G + 1):
        mean = X.mean(axis=-2)
        centred = X - mean[..., None, :]
        cov = np.swapaxes(centred, -1, -2) @ centred / n
        X = np.stack([g.standard_normal((n, d)) for g in sample])
    return np.trace(cov, axis1=-2, axis2=-1)


def best_of(fn, repeats: int, *args) -> tuple[float, np.ndarray]:
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=1000)
    p.add_argument("--generations", type=int, default=100)
    p.add_argument("--train-size", type=int, default=100)
    p.add_argument("--dim", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--floor-train-size", type=int, default=10_000)
    p.add_argument("--floor-replicates", type=int, default=100)
    a = p.parse_args()
    args = (a.replicates, a.generations, a.train_size, a.dim)
    t_vec, v = best_of(vectorised, a.repeats, *args)
    t_loop, w = best_of(looped, a.repeats, *args)
    np.testing.assert_allclose(v, w, rtol=1e-9)  # same streams, same numbers
    work = a.replicates * (a.generations + 1)
    print(f"Gaussian chains: {a.replicates} replicates x {a.generations} generations, M={a.train_size}, d={a.dim}")
    print(f"  vectorised : {work / t_vec:12,.0f} replicate-generations/s  ({t_vec:.3f} s)")
    print(f"  python loop: {work / t_loop:12,.0f} replicate-generations/s  ({t_loop:.3f} s)")
    print(f"  speed-up   : {t_loop / t_vec:.1f}x  (identical results checked)")
    # The engine against the floor at a large training set, where drawing the variates dominates.
    big = (a.floor_replicates, a.generations, a.floor_train_size, a.dim)
    t_floor, _ = best_of(numpy_only, a.repeats, *big)
    t_big, _ = best_of(vectorised, a.repeats, *big)
    print(f"Gaussian chains at M={a.floor_train_size:,}: {a.floor_replicates} replicates x {a.generations} generations")
    print(f"  vectorised engine: {t_big:.3f} s;  numpy alone (same variates, moments only): {t_floor:.3f} s")
    print(f"  engine throughput: {t_floor / t_big:.0%} of numpy alone")


if __name__ == "__main__":
    main()
