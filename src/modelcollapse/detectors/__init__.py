"""Detectors of synthetic data, for the ``filter`` policy. ``DETECTORS`` maps ``detector.kind`` to its entry."""

from .base import (DETECTION_METRICS, DETECTORS, Detector, DetectorSpec, build_detector, detection_metrics,
                   register_detector, validate_detector)
from .learned import Learned  # noqa: I001  (import order is registration order)
from .oracle import Oracle
from .scores import Perplexity, Verifier

__all__ = ["DETECTION_METRICS", "DETECTORS", "Detector", "DetectorSpec", "Learned", "Oracle", "Perplexity",
           "Verifier", "build_detector", "detection_metrics", "register_detector", "validate_detector"]
