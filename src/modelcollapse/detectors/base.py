"""The detector contract and registry: which candidate training examples look synthetic.

A detector is a small frozen dataclass whose :meth:`Detector.flag` marks each candidate example
of every replicate as synthetic (True) or real (False). Like a policy, its fields are its
settings and the ``detector:`` section of a filter policy is derived from them, so
``detector: {kind: oracle, false_negative_rate: 0.2}`` is validated against the class itself.
``data_types`` says which data the detector can read (None: any).
"""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass
from typing import Any, ClassVar

import numpy as np

from ..batch import REAL, Batch
from ..params import Spec, dataclass_fields, derive
from ..registry import Registry, entry_point_group, suggest
from ..models.family import same_class


@dataclass(frozen=True)
class Detector:
    #: Data types (``BaseModel.data_type``) the detector reads; None: any.
    data_types: ClassVar[frozenset[str] | None] = None

    def flag(self, candidates: Batch, context: Any) -> np.ndarray:
        """(R, n) booleans: True where the example is judged synthetic. ``context`` is the filter's
        :class:`~modelcollapse.policies.base.PolicyContext` (models, source, the detector stream)."""
        raise NotImplementedError

    def check_experiment(self, spec: Any) -> None:
        """Refuse an experiment the detector cannot serve (raise ``ValueError("policy.detector.key: why")``)."""


class DetectorSpec(Spec):
    """Base of every ``detector:`` section; each detector's own is derived from its dataclass."""

    kind: str


@dataclass(frozen=True)
class DetectorKind:
    name: str
    cls: type[Detector]
    spec: type[DetectorSpec]

    def build(self, spec: DetectorSpec | dict) -> Detector:
        values = spec.model_dump(exclude={"kind"}) if isinstance(spec, Spec) else {k: v for k, v in spec.items()
                                                                                   if k != "kind"}
        return self.cls(**values)


DETECTORS: Registry[DetectorKind] = Registry("detector kind")


def register_detector(name: str, cls: Any = None) -> Any:
    """Register a frozen :class:`Detector` dataclass as ``detector: {kind: name}`` (call or decorator)."""
    if cls is None:
        return lambda c: register_detector(name, c)
    if not (isinstance(cls, type) and is_dataclass(cls) and callable(getattr(cls, "flag", None))):
        raise TypeError(f"register_detector({name!r}, ...) needs a dataclass with a flag() method, got {cls!r}")
    spec = derive(name, cls, dataclass_fields(cls), DetectorSpec)
    DETECTORS.add(name, DetectorKind(name, cls, spec), replace=same_class(DETECTORS._items.get(name), cls),
                  module=cls.__module__)
    return cls


def _from_entry_point(name: str, obj: Any) -> None:
    if isinstance(obj, type) and name not in DETECTORS._items:
        register_detector(name, obj)


entry_point_group("modelcollapse.detectors", "detector", _from_entry_point, DETECTORS.sources)


def validate_detector(value: Any) -> DetectorSpec:
    """A ``detector:`` mapping validated by the class its ``kind`` names."""
    if isinstance(value, Spec):
        value = value.model_dump()
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping with a 'kind', got {value!r}")
    kind = value.get("kind")
    if kind is None:
        raise ValueError(f"kind: missing (choices: {', '.join(sorted(DETECTORS.names()))})")
    if not isinstance(kind, str) or kind not in DETECTORS:
        raise ValueError(f"kind: unknown detector {kind!r}{suggest(str(kind), DETECTORS.names())}")
    return DETECTORS.get(kind).spec.model_validate(value)


def build_detector(value: Any) -> Detector:
    spec = validate_detector(value)
    return DETECTORS.get(spec.kind).build(spec)


# -- what a filter records about its detector ---------------------------------------------------
DETECTION_METRICS = ("detector_accuracy", "detector_precision", "detector_recall", "detector_false_positive_rate")


def detection_metrics(flags: np.ndarray, origin: np.ndarray) -> dict[str, np.ndarray]:
    """Per replicate: accuracy, precision (flagged that are synthetic), recall (synthetic that are flagged)
    and false-positive rate (real that are flagged) of ``flags`` against the true ``origin``; NaN where a
    ratio has nothing to count (no flags, no synthetic or no real candidates)."""
    synthetic = origin != REAL
    tp = (flags & synthetic).sum(axis=1)
    fp = (flags & ~synthetic).sum(axis=1)
    n_syn, n_real = synthetic.sum(axis=1), (~synthetic).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "detector_accuracy": (flags == synthetic).mean(axis=1),
            "detector_precision": np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), np.nan),
            "detector_recall": np.where(n_syn > 0, tp / np.maximum(n_syn, 1), np.nan),
            "detector_false_positive_rate": np.where(n_real > 0, fp / np.maximum(n_real, 1), np.nan),
        }
