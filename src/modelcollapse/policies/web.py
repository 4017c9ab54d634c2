"""A contaminated web: each generation crawls fresh real data mixed with what models have published.

Generation g's training set is ``round(s_g * train_size)`` synthetic examples and the rest newly
drawn real data, where the synthetic share ``s_g`` is a constant, a list (generations 1, 2, ...)
or a schedule over the run that grows as models fill the web:

* ``{schedule: linear, start: a, end: b}``: from a at generation 1 to b at the last generation;
* ``{schedule: logistic, start: a, end: b, midpoint: m, steepness: k}``: a + (b - a) / (1 + e^{-k (g - m)}),
  m the middle of the run unless given;
* ``{schedule: constant, start: a}``: a throughout (the same as ``synthetic_share: a``).

``source: last`` takes the synthetic part from the previous generation's model; ``source: all``
draws it uniformly from everything every earlier generation published (the web keeps old model
output). Every example keeps its origin, so the stored provenance is exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import BeforeValidator, Field, ValidationError

from ..batch import Batch, take_from
from ..params import Spec
from .base import Policy, choose, register_policy

Share = Annotated[float, Field(ge=0, le=1)]


class ShareSchedule(Spec):
    """The synthetic share over generations 1..G."""

    schedule: Literal["constant", "linear", "logistic"]
    start: Share = 0.0
    end: Share = 1.0
    midpoint: Optional[Annotated[float, Field(ge=0)]] = None  # logistic: the generation of the half-way point
    steepness: Annotated[float, Field(gt=0, le=100)] = 1.0  # logistic: rate per generation
    # The generations the schedule spans (linear: reaches ``end`` there; logistic: midpoint in the middle);
    # None: the run's. A run resumed with more generations keeps its numbers only with a fixed span.
    span: Optional[Annotated[int, Field(ge=1)]] = None

    def depends_on_run_length(self) -> bool:
        return self.schedule == "linear" and self.span is None or \
            self.schedule == "logistic" and self.span is None and self.midpoint is None


def _share(value: Any) -> Any:
    """One clear message for a bad share, instead of one per member of the union."""
    if isinstance(value, bool):
        raise ValueError(f"must be a number in [0, 1], a list of them or a schedule mapping, got {value!r}")
    if isinstance(value, (int, float)):
        if not 0 <= value <= 1:
            raise ValueError(f"must be in [0, 1], got {value}")
        return float(value)
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError("the list is empty: give the share of generations 1, 2, ...")
        for i, v in enumerate(value):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"entry {i} (generation {i + 1}) is {v!r}: shares must be numbers in [0, 1]")
        return [float(v) for v in value]
    if isinstance(value, dict):
        try:
            return ShareSchedule.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    if isinstance(value, ShareSchedule):
        return value
    raise ValueError(f"must be a number in [0, 1], a list of them or {{schedule: linear, start, end}}, got {value!r}")


SyntheticShare = Annotated[Union[float, list[float], ShareSchedule], BeforeValidator(_share)]


def share_at(share: Any, g: int, generations: int) -> float:
    """The synthetic share at generation ``g`` >= 1 of a run of ``generations``, for a value as a spec
    stores it (a number, a list or a schedule mapping)."""
    if isinstance(share, (int, float)):
        return float(share)
    if isinstance(share, (list, tuple)):
        return float(share[g - 1])
    s = share if isinstance(share, ShareSchedule) else ShareSchedule.model_validate(share)
    generations = s.span or generations
    if s.schedule == "constant":
        return s.start
    if s.schedule == "linear":
        return s.start + (s.end - s.start) * min((g - 1) / max(generations - 1, 1), 1.0)  # then holds at end
    mid = (generations + 1) / 2 if s.midpoint is None else s.midpoint
    return s.start + (s.end - s.start) / (1.0 + float(np.exp(-s.steepness * (g - mid))))


def _schedule(share: Any) -> ShareSchedule | None:
    if isinstance(share, ShareSchedule):
        return share
    return ShareSchedule.model_validate(share) if isinstance(share, dict) else None


@register_policy("web")
@dataclass(frozen=True)
class Web(Policy):
    """Fresh real data plus a (growing) share of model output: what a crawl of the web returns."""

    synthetic_share: SyntheticShare = 0.5
    source: Literal["last", "all"] = "last"

    uses_context = True
    crawlable = True

    @property
    def needs_history(self) -> bool:  # type: ignore[override]
        return self.source == "all"

    def check_experiment(self, spec: Any) -> None:
        if isinstance(self.synthetic_share, (list, tuple)) and len(self.synthetic_share) < spec.generations:
            raise ValueError(f"policy.synthetic_share: the list has {len(self.synthetic_share)} shares "
                             f"(generations 1-{len(self.synthetic_share)}) but the run has generations 1-"
                             f"{spec.generations}: no share for generation {len(self.synthetic_share) + 1}")

    def describe(self) -> str:
        """``web (synthetic share linear 0.1 → 0.9, source all)`` for reports."""
        s = _schedule(self.synthetic_share)
        if s is None:
            share = (f"{self.synthetic_share:g}" if isinstance(self.synthetic_share, (int, float))
                     else f"list {self.synthetic_share[0]:g} … {self.synthetic_share[-1]:g}")
        elif s.schedule == "constant":
            share = f"{s.start:g}"
        else:
            share = f"{s.schedule} {s.start:g} → {s.end:g}" + (f" over {s.span} generations" if s.span else "")
        return f"web (synthetic share {share}, source {self.source})"

    def check_resume(self, generations: int, stored: int) -> str | None:
        s = _schedule(self.synthetic_share)
        if generations != stored and s is not None and s.depends_on_run_length():
            return (f"policy.synthetic_share: the {s.schedule} schedule spans the run's {stored} generations, so "
                    f"{generations} would change the shares of the generations already run; give it a fixed "
                    f"span (span: {generations}) in a new run")
        return None

    def build(self, *, real, synthetic, train_size, rngs, draw_real, context):
        share = share_at(self.synthetic_share, context.generation, context.generations)
        n_syn = int(round(share * train_size))
        parts = []
        if train_size - n_syn:
            parts.append(draw_real(train_size - n_syn))
        if n_syn:
            if self.source == "last":
                parts.append(synthetic[-1].head(n_syn))
            else:
                published = sum(len(b) for b in synthetic)
                parts.append(take_from(synthetic, choose(rngs, published, n_syn)))
        return Batch.concat(parts) if len(parts) > 1 else parts[0]
