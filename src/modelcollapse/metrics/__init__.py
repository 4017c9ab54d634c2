"""Metrics: pure functions with metadata, grouped by data type."""

from . import continuous, discrete, images, text  # noqa: F401  (registration side effects)
from ..registry import UnknownNameError
from .registry import Metric, MetricContext, all_metric_names, available, register, resolve, sources

__all__ = ["Metric", "MetricContext", "all_metric_names", "available", "defaults", "register",
           "resolve", "sources"]


def defaults(model_kind: str, data_kind: str, params: dict | None = None) -> list[str]:
    """The family's default metrics that this data kind allows (what a spec without ``metrics`` computes)."""
    from ..models import MODELS

    family = MODELS.get(model_kind)
    unknown = [m for m in family.default_metrics if m not in all_metric_names()]
    if unknown:
        raise UnknownNameError(f"model.kind={model_kind!r} lists default metrics that are not registered: "
                               f"{', '.join(unknown)}")
    ok = set(available(model_kind, data_kind, params))
    return [m for m in family.default_metrics if m in ok]
