"""Benchmark: the batched EM backend against scikit-learn's GaussianMixture in a loop over replicates.

The paper's mixture setting: a 2-D two-component mixture, full covariances, tol 1e-5, max_iter 2000,
N = 1000 points a generation, 100 replicates. Every side runs the same chain (fit, then sample the next
generation's data from the fit) for the same generations from the same real data; the figure is
replicate-generations per second, on one core (one BLAS thread, one process) unless said otherwise.
Sides: scikit-learn's GaussianMixture in a loop over replicates (the baseline), the batched EM in numpy
arrays (the code torch devices run), the batched EM compiled (the CPU default), the latter on workers,
and on a CUDA device when PyTorch sees one.

    python bench/gmm.py [--replicates 100] [--generations 10] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import contextmanager
from functools import partial

import numpy as np
from threadpoolctl import threadpool_limits

from modelcollapse.config import load_spec
from modelcollapse.data import load_source
from modelcollapse.models import batched_em
from modelcollapse.models.base import ReplicatedModel
from modelcollapse.models.gmm import BatchedGMM, GMMModel
from modelcollapse.pool import WorkerPool
from modelcollapse.rng import stream

PAPER = dict(n_components=2, covariance_type="full", tol=1e-5, max_iter=2000)


def chain(model: ReplicatedModel, X: np.ndarray, G: int, seed: int = 0, **fit_kwargs) -> tuple[float, np.ndarray]:
    """Seconds for G generations of fit-then-sample, and the last fits' sorted weights."""
    R, N = X.shape[:2]
    fit = [stream(seed, r, "fit") for r in range(R)]
    sample = [stream(seed, r, "sample") for r in range(R)]
    t0 = time.perf_counter()
    for _ in range(G):
        model.fit(X, rng=fit, **fit_kwargs)
        X = model.sample(N, rng=sample)
    seconds = time.perf_counter() - t0
    return seconds, np.array([np.sort(m.weights_) if m is not None else [np.nan] * 2 for m in model.models])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicates", type=int, default=100)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    R, G = a.replicates, a.generations
    source = load_source(load_spec("gmm").data)
    X = source.draw(a.train_size, [stream(0, r, "real") for r in range(R)]).X
    work = R * G
    print(f"GMM chains, the paper's setting: {R} replicates x {G} generations, N={a.train_size}, 2-D, K=2, full, "
          f"tol 1e-5 ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    with threadpool_limits(limits=1):
        chain(BatchedGMM(partial(GMMModel, **PAPER), 2), X[:2], 1)  # load the compiled kernels outside the timing
        t_sk, w_sk = chain(ReplicatedModel(partial(GMMModel, backend="sklearn", **PAPER), R), X, G)
        with arrays_only():
            t_a, w_a = chain(BatchedGMM(partial(GMMModel, **PAPER), R), X, G)
        t_b, w_b = chain(BatchedGMM(partial(GMMModel, **PAPER), R), X, G)
    # Same model, same data at generation 0; the initialisations differ (k-means streams), so the
    # chains drift apart: the check is that both fit the same kind of mixture, not the same numbers.
    print(f"  scikit-learn loop (1 core)      : {work / t_sk:10,.0f} replicate-generations/s  ({t_sk:.2f} s)")
    print(f"  batched EM, numpy arrays (1 core): {work / t_a:10,.0f} replicate-generations/s  ({t_a:.2f} s), "
          f"{t_sk / t_a:.1f}x the loop")
    print(f"  batched EM, compiled (1 core)   : {work / t_b:10,.0f} replicate-generations/s  ({t_b:.2f} s), "
          f"{t_sk / t_b:.1f}x the loop")
    with WorkerPool(a.workers) as pool:
        model = BatchedGMM(partial(GMMModel, **PAPER), R)
        chain(model, X, 1, workers=a.workers, pool=pool)  # start the workers outside the timing
        t_w, w_w = chain(BatchedGMM(partial(GMMModel, **PAPER), R), X, G, workers=a.workers, pool=pool)
    np.testing.assert_array_equal(w_w, w_b)  # the same numbers on any number of workers
    print(f"  batched EM, compiled ({a.workers} workers): {work / t_w:10,.0f} replicate-generations/s  ({t_w:.2f} s), "
          f"{t_sk / t_w:.1f}x the 1-core loop")
    print(f"  mean smaller weight at generation {G}: scikit-learn {np.nanmean(w_sk[:, 0]):.3f}, "
          f"arrays {np.nanmean(w_a[:, 0]):.3f}, compiled {np.nanmean(w_b[:, 0]):.3f}")
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        gpu = partial(GMMModel, device="cuda", **PAPER)
        chain(BatchedGMM(gpu, R), X, 1)  # CUDA start-up outside the timing
        t_g, _ = chain(BatchedGMM(gpu, R), X, G)
        print(f"  batched EM, torch on {torch.cuda.get_device_name()}: {work / t_g:10,.0f} replicate-generations/s "
              f"({t_g:.2f} s), {t_sk / t_g:.1f}x the 1-core loop")


@contextmanager
def arrays_only():
    """The batched EM in numpy arrays (the code the torch device runs), not compiled."""
    original = batched_em.fit
    batched_em.fit = partial(original, compiled=False)
    try:
        yield
    finally:
        batched_em.fit = original

if __name__ == "__main__":
    main()
