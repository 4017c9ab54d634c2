"""Metrics for categorical data: how much of the original's tail a fitted distribution keeps."""

from __future__ import annotations

import numpy as np

from .registry import DISCRETE_DATA, MetricContext, register

CAT = {"categorical"}


def _p_q(ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    return ctx.model.probs_, ctx.truth.probs_


def tail_set(q: np.ndarray, share: float = 0.10) -> np.ndarray:
    """Indices of the original's least likely categories that together hold at most ``share`` of its mass."""
    order = np.argsort(q, kind="stable")
    keep = np.cumsum(q[order]) <= share + 1e-12
    return order[keep]


@register("tv", models=CAT, data=DISCRETE_DATA, higher_is_better=False,
          description="total variation distance to the original")
def tv(ctx: MetricContext) -> np.ndarray:
    p, q = _p_q(ctx)
    return 0.5 * np.abs(p - q).sum(axis=-1)


@register("kl", models=CAT, data=DISCRETE_DATA, higher_is_better=False,
          description="KL(fitted || original) in nats (finite even after categories vanish)")
def kl(ctx: MetricContext) -> np.ndarray:
    p, q = _p_q(ctx)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


@register("entropy", models=CAT, data=DISCRETE_DATA, higher_is_better=True,
          description="entropy of the fitted distribution in nats")
def entropy(ctx: MetricContext) -> np.ndarray:
    p, _ = _p_q(ctx)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


@register("support_size", models=CAT, data=DISCRETE_DATA, higher_is_better=True,
          description="number of categories with fitted probability > 0")
def support_size(ctx: MetricContext) -> np.ndarray:
    p, _ = _p_q(ctx)
    return (p > 0).sum(axis=-1).astype(float)


@register("tail_mass", models=CAT, data=DISCRETE_DATA, higher_is_better=True,
          description="fitted probability of the categories holding the original's least likely 10% (~0.10 at the start)")
def tail_mass(ctx: MetricContext) -> np.ndarray:
    p, q = _p_q(ctx)
    if "tail_set" not in ctx.cache:
        ctx.cache["tail_set"] = tail_set(q)
    return p[..., ctx.cache["tail_set"]].sum(axis=-1)


@register("gini_simpson", models=CAT, data=DISCRETE_DATA, higher_is_better=True,
          description="1 - sum p^2, the chance two draws differ; decays as (1 - 1/n)^(g+1) in expectation")
def gini_simpson(ctx: MetricContext) -> np.ndarray:
    p, _ = _p_q(ctx)
    return 1.0 - np.sum(p**2, axis=-1)
