"""The oracle: stored provenance, read through imperfect watermarks or provenance tracking."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import Field

from ..batch import REAL
from .base import Detector, register_detector

Rate = Annotated[float, Field(ge=0, le=1)]


@register_detector("oracle")
@dataclass(frozen=True)
class Oracle(Detector):
    """Knows each example's origin, then errs: a real example is flagged with probability
    ``false_positive_rate``, a synthetic one missed with probability ``false_negative_rate``
    (independently, from the detector stream of its replicate)."""

    false_positive_rate: Rate = 0.0
    false_negative_rate: Rate = 0.0

    def flag(self, candidates, context):
        synthetic = candidates.origin != REAL
        u = np.stack([g.random(synthetic.shape[1]) for g in context.rngs])
        return np.where(synthetic, u >= self.false_negative_rate, u < self.false_positive_rate)
