"""Detectors that read a reference model's score of each example.

``perplexity`` (text): the mean log-probability per token under a reference language model,
the machine-text detection literature's basic signal (model output is more probable under a
model than human prose is). A one-feature logistic regression learns, each generation, which
side of the score is synthetic from fresh real blocks and samples of the previous generation.

``verifier``: keep what a reference scores as plausible (the verification line of work, Feng et
al. 2024): an example is flagged when its log density under the reference falls below the
``quantile`` of real examples' (so about that share of real data is rejected too). The reference
is the true density where the data kind has one in closed form, or generation 0's model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from .base import Detector, register_detector
from .learned import fit_and_flag


def has_closed_form(spec: Any) -> bool:
    """Whether the data kind's truth is a fitted model with a density (not a dataset)."""
    from ..data import DataSpec

    return type(spec.data).truth is not DataSpec.truth


def reference_scores(reference: str, context: Any, X: np.ndarray) -> np.ndarray:
    """(R, n) log densities of ``X`` under the reference: the truth (one model for every replicate),
    generation 0's model or the previous generation's (both batched)."""
    if reference == "truth":
        return np.stack([np.asarray(context.truth.log_prob(x), dtype=float) for x in X])
    model = context.model0 if reference == "generation0" else context.model
    return np.asarray(model.log_prob(X), dtype=float)


@register_detector("perplexity")
@dataclass(frozen=True)
class Perplexity(Detector):
    """A threshold on the per-token log-probability under a reference LM, learned each generation."""

    data_types = frozenset({"text"})

    reference: Literal["generation0", "previous"] = "generation0"
    train_size: Annotated[int, Field(ge=10, le=100_000)] = 200

    def flag(self, candidates, context):
        def score(X: np.ndarray) -> np.ndarray:
            s = reference_scores(self.reference, context, X) / X.shape[-1]
            return np.nan_to_num(s, nan=0.0, neginf=-1e3)[..., None]  # a token the reference never saw

        real = score(context.draw_real(self.train_size).X)
        fake = score(context.sample(self.train_size))
        from sklearn.linear_model import LogisticRegression

        return fit_and_flag(real, fake, score(candidates.X), lambda: LogisticRegression())


@register_detector("verifier")
@dataclass(frozen=True)
class Verifier(Detector):
    """Rejects examples a reference model finds implausible (log density below a real-data quantile)."""

    reference: Literal["auto", "truth", "generation0"] = "auto"
    quantile: Annotated[float, Field(ge=0, lt=1)] = 0.05
    calibration_size: Annotated[int, Field(ge=10, le=1_000_000)] = 1000

    def check_experiment(self, spec: Any) -> None:
        if self.reference == "truth" and not has_closed_form(spec):
            raise ValueError(f"policy.detector.reference: 'truth' needs a density in closed form; data.kind="
                             f"{spec.data.kind!r} is a dataset (use generation0 or auto)")

    def flag(self, candidates, context):
        reference = self.reference
        if reference == "auto":
            reference = "truth" if callable(getattr(context.truth, "log_prob", None)) else "generation0"
        real = reference_scores(reference, context, context.draw_real(self.calibration_size).X)
        threshold = np.nanquantile(real, self.quantile, axis=1) if self.quantile > 0 else np.full(len(real), -np.inf)
        scores = reference_scores(reference, context, candidates.X)
        return ~(scores >= threshold[:, None])  # NaN (a stopped replicate's) counts as flagged
