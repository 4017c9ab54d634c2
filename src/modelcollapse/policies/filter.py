"""Filtering: any policy's candidate training set, passed through a detector of synthetic data.

``policy: {kind: filter, base: {...any other policy...}, detector: {kind: ...}, action: ...}``.
Each generation the base policy proposes candidates, the detector (:mod:`modelcollapse.detectors`)
flags those it judges synthetic, and the action decides what a flag costs:

* ``drop``: flagged examples are left out (weight 0). A base that draws new real data each
  generation (``web``, ``fresh``) can be crawled for more: the filter asks it for ``crawl`` times
  ``train_size`` candidates and keeps the first ``train_size`` that pass. A base that has only
  what it was given (``replace``, ``mix``, ...) trains on fewer; a replicate left with fewer than
  its family's minimum keeps its previous model (there is nothing clean to learn from).
* ``downweight``: flagged examples count ``weight`` in the fit (families whose ``fit`` takes
  ``sample_weight``).
* ``resample``: flagged examples are replaced by examples drawn, with replacement, from those
  that passed, so the set keeps its size and is made of real-looking data only.

Each generation records the detector's accuracy, precision, recall and false-positive rate on
the candidates, the share of the final training set that is synthetic (``synthetic_passed``)
and its effective size (``train_kept``, the sum of the weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BeforeValidator, Field, SerializeAsAny

from ..batch import REAL, Batch
from ..detectors import DETECTION_METRICS, DETECTORS, DetectorSpec, build_detector, detection_metrics
from ..detectors.base import validate_detector
from .base import POLICIES, Policy, PolicySpec, register_policy

FILTER_METRICS = (*DETECTION_METRICS, "synthetic_passed", "train_kept")


def _base_policy(value: Any) -> PolicySpec:
    """The ``base:`` mapping validated as a policy section of its own kind (not another filter)."""
    from ..config import _dispatch

    spec = _dispatch("policy", value)
    if spec.kind == "filter":
        raise ValueError("kind: a filter's base cannot be another filter (chain the detectors in one instead)")
    return spec


# validate_default: the default mappings become spec objects too, so a dumped spec is the same either way.
BaseSection = Annotated[SerializeAsAny[PolicySpec], BeforeValidator(_base_policy), Field(validate_default=True)]
DetectorSection = Annotated[SerializeAsAny[DetectorSpec], BeforeValidator(validate_detector),
                            Field(validate_default=True)]


@register_policy("filter")
@dataclass(frozen=True)
class Filter(Policy):
    """A base policy's candidates, filtered by a detector of synthetic data before training."""

    base: BaseSection = field(default_factory=lambda: {"kind": "replace"})
    detector: DetectorSection = field(default_factory=lambda: {"kind": "oracle"})
    action: Literal["drop", "downweight", "resample"] = "drop"
    weight: Annotated[float, Field(ge=0, lt=1)] = 0.1  # downweight: what a flagged example counts
    crawl: Annotated[float, Field(ge=1, le=100)] = 2.0  # drop from a crawlable base: candidates per kept example

    uses_context = True

    # The base and detector, built once (a frozen dataclass: set through object.__setattr__).
    def __post_init__(self) -> None:
        base = self.base if isinstance(self.base, dict) else self.base.model_dump()
        detector = self.detector if isinstance(self.detector, dict) else self.detector.model_dump()
        object.__setattr__(self, "_base", POLICIES.get(base["kind"]).build(_base_policy(base)))
        object.__setattr__(self, "_detector", build_detector(detector))

    # -- what the chain asks of a policy ---------------------------------------------------
    @property
    def needs_history(self) -> bool:  # type: ignore[override]
        return self._base.needs_history

    def candidates(self, train_size: int) -> int:
        """Candidates to gather for ``train_size`` examples: more when dropping from a crawlable base."""
        if self.action == "drop" and self._base.crawlable:
            return int(math.ceil(self.crawl * train_size))
        return train_size

    def synthetic_size(self, train_size: int) -> int:
        return self._base.synthetic_size(self.candidates(train_size))

    def check_sizes(self, sizes):
        return self._base.check_sizes(sizes)

    def check_resume(self, generations: int, stored: int) -> str | None:
        return self._base.check_resume(generations, stored)

    def metric_names(self) -> tuple[str, ...]:
        return (*self._base.metric_names(), *FILTER_METRICS)

    def check_experiment(self, spec: Any) -> None:
        from ..models import MODELS

        self._base.check_experiment(spec)
        family = MODELS.get(spec.model.kind)
        kinds = type(self._detector).data_types
        if kinds is not None and family.data_type not in kinds:
            usable = sorted(n for n in DETECTORS.names()
                            if DETECTORS.get(n).cls.data_types is None or family.data_type in DETECTORS.get(n).cls.data_types)
            raise ValueError(f"policy.detector.kind: {self.detector_kind!r} reads {' or '.join(sorted(kinds))} data; "
                             f"model.kind={spec.model.kind!r} fits {family.data_type} data (use {', '.join(usable)})")
        self._detector.check_experiment(spec)
        if self.action == "downweight" and not takes_sample_weight(family.cls):
            takers = sorted(n for n in MODELS.names() if takes_sample_weight(MODELS.get(n).cls))
            raise ValueError(f"policy.action: 'downweight' needs a family whose fit takes sample_weight "
                             f"({', '.join(takers)}); model.kind={spec.model.kind!r} does not (use drop or resample)")

    @property
    def detector_kind(self) -> str:
        return self.detector["kind"] if isinstance(self.detector, dict) else self.detector.kind

    def describe(self) -> str:
        """``filter: oracle (false_negative_rate=0.2) on web (synthetic_share=0.8), drop`` for reports."""
        base = self.base if isinstance(self.base, dict) else self.base.model_dump()
        detector = self.detector if isinstance(self.detector, dict) else self.detector.model_dump()
        action = f"downweight to {self.weight:g}" if self.action == "downweight" else self.action
        built = self._base
        on = built.describe() if callable(getattr(built, "describe", None)) else _short(base)
        return f"filter: {_short(detector)} on {on}, {action}"

    # -- the training set --------------------------------------------------------------------
    def build(self, *, real, synthetic, train_size, rngs, draw_real, context):
        n = self.candidates(train_size)
        extra = {"context": context} if self._base.uses_context else {}
        cand = self._base.build(real=real, synthetic=synthetic, train_size=n, rngs=rngs, draw_real=draw_real, **extra)
        flags = np.asarray(self._detector.flag(cand, context), dtype=bool)
        for name, values in detection_metrics(flags, cand.origin).items():
            context.record(name, values)
        if self.action == "drop":
            out = _drop(cand, flags, train_size if n > train_size else None, rngs)
        elif self.action == "downweight":
            out = Batch(cand.X, cand.origin, cand.labels, np.where(flags, self.weight, 1.0))
        else:
            out = _resample(cand, flags, rngs)
        w = np.ones(out.origin.shape) if out.weight is None else out.weight
        kept = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            context.record("synthetic_passed", np.where(kept > 0, (w * (out.origin != REAL)).sum(axis=1) / kept, np.nan))
        context.record("train_kept", kept)
        return out


def _short(section: dict) -> str:
    """``kind (key=value, ...)`` of a nested section, leaving out keys at their defaults or zero."""
    rest = {k: v for k, v in section.items() if k != "kind" and v not in (0, 0.0, None)}
    # A detector's defaults go without saying; a base policy's settings are the experiment (mix's 10%).
    defaults = DETECTORS.get(section["kind"]).spec().model_dump() if "real_fraction" not in section else {}
    shown = ", ".join(f"{k}={_value(v)}" for k, v in rest.items() if defaults.get(k) != v)
    return f"{section['kind']} ({shown})" if shown else section["kind"]


def _value(v: Any) -> str:
    if isinstance(v, dict):  # a share schedule: the logistic keys only where they mean something
        keep = {k: x for k, x in v.items() if x is not None and (v.get("schedule") == "logistic" or
                                                                k not in ("steepness", "midpoint"))}
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in keep.items()) + "}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _drop(cand: Batch, flags: np.ndarray, keep: int | None, rngs: list[np.random.Generator]) -> Batch:
    """Flagged examples get weight 0; with ``keep`` (a crawl), ``keep`` unflagged examples of each replicate,
    drawn uniformly, are the training set (flagged ones pad a replicate that found too few, at weight 0).
    Uniformly, not the first ones: a base lists its real part first, and taking the head of the crawl would
    favour real data over synthetic data the detector missed."""
    if keep is None:
        return Batch(cand.X, cand.origin, cand.labels, (~flags).astype(float))
    u = np.stack([g.random(flags.shape[1]) for g in rngs])
    order = np.argsort(flags + u, axis=1)[:, :keep]  # unflagged (key < 1) first, in random order
    out = cand.take(order)
    return Batch(out.X, out.origin, out.labels, (~np.take_along_axis(flags, order, axis=1)).astype(float))


def _resample(cand: Batch, flags: np.ndarray, rngs: list[np.random.Generator]) -> Batch:
    """Each flagged example replaced by a uniform draw from the replicate's unflagged ones; a replicate
    with none keeps its candidates at weight 0 (it keeps its previous model)."""
    R, n = flags.shape
    idx = np.tile(np.arange(n), (R, 1))
    empty = np.zeros(R, dtype=bool)
    for r in range(R):
        passed = np.flatnonzero(~flags[r])
        if not len(passed):
            empty[r] = True
            continue
        bad = np.flatnonzero(flags[r])
        idx[r, bad] = passed[rngs[r].integers(len(passed), size=len(bad))]
    out = cand.take(idx)
    if empty.any():
        out.weight = np.where(empty[:, None], 0.0, 1.0) * np.ones((R, n))
    return out


def takes_sample_weight(cls: type) -> bool:
    """Whether a family's ``fit`` accepts ``sample_weight`` (scikit-learn's test for the same)."""
    import inspect

    fit = getattr(cls, "fit", None)
    return callable(fit) and "sample_weight" in inspect.signature(fit).parameters
