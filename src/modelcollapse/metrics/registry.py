"""Metric registry: each metric is a pure function with its metadata beside it.

A metric takes a :class:`MetricContext` (the fitted generation for all replicates, the
original distribution, real held-out data, generators) and returns one value per
replicate, shape ``(R,)``, or a vector per replicate, shape ``(R, k)``. Aggregation over
replicates belongs to reports and sweeps, never to a metric.

One name may have several implementations (``w2`` is a closed form for a Gaussian
model and an empirical distance for a KDE); :func:`resolve` picks the one that applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..registry import UnknownNameError, suggest


@dataclass
class MetricContext:
    model: Any  # batched model: leading axis = replicate
    truth: Any  # the original distribution (an unbatched fitted model)
    heldout: np.ndarray  # real held-out data, (R, m, ...)
    rngs: list[np.random.Generator]  # the "metric" stream of each replicate
    generation: int
    n_samples: int  # sample size for sample-based metrics
    model_kind: str
    cache: dict[str, Any] = field(default_factory=dict)  # truth-derived constants, computed once
    model0: Any = None  # generation 0's batched model (for metrics in its frame, e.g. latent_std)
    aux: dict[str, Any] = field(default_factory=dict)  # run-wide helpers, e.g. the digit classifier
    memo: dict[str, Any] = field(default_factory=dict)  # this generation only: samples shared by metrics

    @property
    def replicates(self) -> int:
        return len(self.rngs)


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[MetricContext], np.ndarray]
    models: frozenset[str]
    data: frozenset[str]
    higher_is_better: bool | None
    description: str
    vector: bool = False  # one vector per replicate (stored, not plotted as a curve)
    needs: frozenset[str] = frozenset()  # "heldout", "classifier", "model0": prepared only when needed

    def applies(self, model_kind: str, data_kind: str) -> bool:
        return model_kind in self.models and data_kind in self.data


_METRICS: dict[str, list[Metric]] = {}

CONTINUOUS_DATA = frozenset({"gaussian", "gmm"})
DISCRETE_DATA = frozenset({"categorical", "zipf"})
IMAGE_DATA = frozenset({"digits", "mnist", "imbalanced"})
TEXT_DATA = frozenset({"text"})


def register(
    name: str,
    *,
    models: set[str],
    data: frozenset[str],
    higher_is_better: bool | None,
    description: str,
    vector: bool = False,
    needs: set[str] = frozenset(),
) -> Callable[[Callable[[MetricContext], np.ndarray]], Callable[[MetricContext], np.ndarray]]:
    def deco(fn: Callable[[MetricContext], np.ndarray]) -> Callable[[MetricContext], np.ndarray]:
        metric = Metric(name, fn, frozenset(models), frozenset(data), higher_is_better, description, vector,
                        frozenset(needs))
        for other in _METRICS.get(name, []):
            if other.models & metric.models and other.data & metric.data:
                raise ValueError(f"metric {name!r} registered twice for the same model and data kinds")
        _METRICS.setdefault(name, []).append(metric)
        return fn

    return deco


def all_metric_names() -> list[str]:
    return sorted(_METRICS)


def available(model_kind: str, data_kind: str) -> list[str]:
    """Names of the metrics that a (model kind, data kind) pair can compute."""
    return [n for n, impls in sorted(_METRICS.items()) if any(m.applies(model_kind, data_kind) for m in impls)]


def resolve(name: str, model_kind: str, data_kind: str) -> Metric:
    if name not in _METRICS:
        raise UnknownNameError(f"unknown metric {name!r}{suggest(name, all_metric_names())}")
    for m in _METRICS[name]:
        if m.applies(model_kind, data_kind):
            return m
    raise UnknownNameError(
        f"metric {name!r} cannot be computed for model.kind={model_kind!r} on data.kind={data_kind!r}; "
        f"available: {', '.join(available(model_kind, data_kind))}"
    )
