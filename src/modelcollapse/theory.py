"""Closed forms for the chains that have them, to draw beside the simulation.

Notation: M = ``train_size``, generation g = 0, 1, ... (generation 0 is fitted on M real
examples), ``replace`` policy (each generation sees only M samples of the previous one).

Gaussian, covariance estimated with divisor M (``mle``) or M - 1 (``unbiased``). Given the
previous fit, M * cov_g / divisor is Wishart(M - 1, cov_{g-1}), so with
c = (M - 1) / M for ``mle`` and c = 1 for ``unbiased``:

* E[cov_g] = c^(g+1) cov_0, so E[variance_ratio_g] = c^(g+1);
* mean_g | past ~ N(mean_{g-1}, cov_{g-1} / M), so
  E[mean_error_g] = tr(cov_0) / M * sum_{j=0..g} c^j  (= (g+1) tr(cov_0) / M when unbiased:
  it grows without bound, the paper's theorem, while the variance itself still collapses
  almost surely: E[log det cov] drifts down in both cases).

Categorical with maximum likelihood (no smoothing): the counts are a Wright-Fisher chain.
Each probability is a martingale, so E[p_g] = p_truth and E[tail_mass_g] is the original
tail mass for every g, while the Gini-Simpson index decays geometrically:
E[1 - sum p_g^2] = (1 - sum q^2) (1 - 1/M)^(g+1).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .data import build_truth
from .metrics.discrete import tail_set


def expected(spec: Any, metric: str) -> np.ndarray | None:
    """E[metric] at generations 0..G when a closed form applies to ``spec``, else None."""
    if spec.policy.kind != "replace" and not (spec.policy.kind in ("mix", "fresh") and spec.policy.real_fraction == 0):
        return None
    g = np.arange(spec.generations + 1)
    M = spec.train_size
    if spec.model.kind == "gaussian" and spec.data.kind == "gaussian":
        c = (M - 1) / M if spec.model.estimator == "mle" else 1.0
        if metric == "variance_ratio":
            return c ** (g + 1.0)
        if metric == "mean_error":
            tr0 = float(np.trace(np.asarray(spec.data.cov, dtype=float)))
            return tr0 / M * (np.cumsum(c**g))
        return None
    if spec.model.kind == "categorical" and spec.model.smoothing == 0:
        q = build_truth(spec.data).probs_
        if metric == "gini_simpson":
            return (1 - np.sum(q**2)) * (1 - 1 / M) ** (g + 1.0)
        if metric == "tail_mass":
            return np.full(len(g), q[tail_set(q)].sum())
    return None
