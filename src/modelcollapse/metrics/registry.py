"""Metric registry: each metric is a pure function with its metadata beside it.

A metric takes a :class:`MetricContext` (the fitted generation for all replicates, the
original distribution, real held-out data, generators) and returns one value per
replicate, shape ``(R,)``, or a vector per replicate, shape ``(R, k)``. Aggregation over
replicates belongs to reports and sweeps, never to a metric.

Where a metric applies is declared, not hard-wired: ``models`` names families (or ``None``:
any family of the data's type), ``data`` names data kinds or data types ("continuous"), and
``requires`` names methods the family must offer (``as_mixture``, ``token_log_probs``), so
a plug-in family gets every metric its methods allow. One name may have several
implementations (``w2`` is a closed form for a Gaussian fitted to Gaussian data and an
empirical distance elsewhere); :func:`resolve` picks the most specific one that applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..registry import UnknownNameError, entry_point_group, origin, suggest


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
    models: frozenset[str] | None  # family names, or None: any family
    data: frozenset[str]  # data kinds and/or data types
    higher_is_better: bool | None
    description: str
    vector: bool = False  # one vector per replicate (stored, not plotted as a curve)
    needs: frozenset[str] = frozenset()  # "heldout", "classifier", "model0": prepared only when needed
    requires: frozenset[str] = frozenset()  # methods the family must offer (Family.supports)
    source: str = "built-in"  # where it was registered (see modelcollapse plugins)

    def applies(self, model_kind: str, data_kind: str, params: dict[str, Any] | None = None) -> bool:
        from ..data import DATA
        from ..models import MODELS

        if self.models is not None and model_kind not in self.models:
            return False
        if model_kind not in MODELS or data_kind not in DATA:
            return False
        if data_kind not in self.data and DATA.get(data_kind).data_type not in self.data:
            return False
        family = MODELS.get(model_kind)
        return all(family.supports(cap, params) for cap in self.requires)

    @property
    def specificity(self) -> int:
        """Higher for implementations that name their families: they win over generic ones."""
        return 1 if self.models is not None else 0


_METRICS: dict[str, list[Metric]] = {}

CONTINUOUS_DATA = frozenset({"gaussian", "gmm"})  # data kinds whose truth is a Gaussian mixture
DISCRETE_DATA = frozenset({"categorical", "zipf"})
IMAGE_DATA = frozenset({"digits", "mnist", "imbalanced"})
TEXT_DATA = frozenset({"text"})


def register(
    name: str,
    *,
    models: Iterable[str] | None,
    data: Iterable[str],
    higher_is_better: bool | None,
    description: str,
    vector: bool = False,
    needs: Iterable[str] = frozenset(),
    requires: Iterable[str] = frozenset(),
) -> Callable[[Callable[[MetricContext], np.ndarray]], Callable[[MetricContext], np.ndarray]]:
    """Decorator: register ``fn`` as metric ``name`` (also ``modelcollapse.register_metric``)."""

    def deco(fn: Callable[[MetricContext], np.ndarray]) -> Callable[[MetricContext], np.ndarray]:
        metric = Metric(name, fn, None if models is None else frozenset(models), frozenset(data), higher_is_better,
                        description, vector, frozenset(needs), frozenset(requires), origin(fn.__module__))
        for other in _METRICS.get(name, []):
            if (other.models, other.data, other.requires) == (metric.models, metric.data, metric.requires):
                raise ValueError(f"metric {name!r} registered twice for the same model and data kinds")
        _METRICS.setdefault(name, []).append(metric)
        _METRICS[name].sort(key=lambda m: -m.specificity)
        return fn

    return deco


def sources() -> dict[str, str]:
    """metric name -> where its implementations came from (and for which families, when they say)."""
    _load_plugins()
    out = {}
    for name, impls in sorted(_METRICS.items()):
        by_source: dict[str, list[str]] = {}
        for m in impls:
            by_source.setdefault(m.source, []).extend(sorted(m.models or ()))
        out[name] = "; ".join(src if src == "built-in" or not fams else f"{src} for {', '.join(fams)}"
                              for src, fams in by_source.items())
    return out


def _from_entry_point(name: str, obj: Any) -> None:
    """A ``modelcollapse.metrics`` entry point names a module (or function) whose import registered metrics."""


entry_point_group("modelcollapse.metrics", "metric", _from_entry_point, lambda: sources())


def all_metric_names() -> list[str]:
    _load_plugins()
    return sorted(_METRICS)


def available(model_kind: str, data_kind: str, params: dict[str, Any] | None = None) -> list[str]:
    """Names of the metrics that a (model kind, data kind) pair can compute."""
    _load_plugins()
    return [n for n, impls in sorted(_METRICS.items()) if any(m.applies(model_kind, data_kind, params) for m in impls)]


def resolve(name: str, model_kind: str, data_kind: str, params: dict[str, Any] | None = None) -> Metric:
    _load_plugins()
    if name not in _METRICS:
        raise UnknownNameError(f"unknown metric {name!r}{suggest(name, all_metric_names())}")
    for m in _METRICS[name]:
        if m.applies(model_kind, data_kind, params):
            return m
    raise UnknownNameError(
        f"metric {name!r} cannot be computed for model.kind={model_kind!r} on data.kind={data_kind!r}; "
        f"available: {', '.join(available(model_kind, data_kind, params))}"
    )


def _load_plugins() -> None:
    from .. import plugins

    plugins.load()
