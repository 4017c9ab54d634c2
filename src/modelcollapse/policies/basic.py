"""The five policies of the paper and its follow-ups: replace, mix, fresh, accumulate(_subsample)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, ClassVar

import numpy as np
from pydantic import Field

from ..batch import Batch, take_from
from .base import Policy, choose, register_policy

Fraction = Annotated[float, Field(ge=0, le=1)]


@register_policy("replace")
@dataclass(frozen=True)
class Replace(Policy):
    """Train only on the previous generation's samples (the paper's main setting)."""

    mixes_sources: ClassVar[bool] = False

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        return synthetic[-1]


@register_policy("mix")
@dataclass(frozen=True)
class Mix(Policy):
    """``real_fraction`` of each set drawn from generation 0's real training set (paper: 10%)."""

    real_fraction: Fraction = 0.1

    def check_sizes(self, sizes):
        # The real part is drawn from generation 0's set of sizes[0] examples, without replacement.
        n_real = np.round(self.real_fraction * sizes)
        if (n_real > sizes[0]).any():
            g = int(np.flatnonzero(n_real > sizes[0])[0])
            return (f"policy mix keeps {int(n_real[g])} real examples at generation {g} (real_fraction "
                    f"{self.real_fraction:g} of {sizes[g]}) but generation 0's real set has only {sizes[0]}; "
                    "use fresh to draw new real data")
        return None

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        n_real = int(round(self.real_fraction * train_size))
        kept = real.take(choose(rngs, len(real), n_real))
        return Batch.concat([kept, synthetic[-1].head(train_size - n_real)])


@register_policy("fresh")
@dataclass(frozen=True)
class Fresh(Policy):
    """Like ``mix``, but the real part is newly drawn from the original distribution each generation."""

    real_fraction: Fraction = 0.1

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        n_real = int(round(self.real_fraction * train_size))
        return Batch.concat([draw_real(n_real), synthetic[-1].head(train_size - n_real)])


@register_policy("accumulate")
@dataclass(frozen=True)
class Accumulate(Policy):
    """The real set plus every synthetic set so far: the training set grows each generation."""

    needs_history: ClassVar[bool] = True
    additive: ClassVar[bool] = True

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        return Batch.concat([real, *synthetic])


@register_policy("accumulate_subsample")
@dataclass(frozen=True)
class AccumulateSubsample(Policy):
    """``train_size`` examples drawn uniformly, without replacement, from the accumulated pool."""

    needs_history: ClassVar[bool] = True

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        pool = [real, *synthetic]  # drawn from in place: concatenating a growing pool costs O(g) a generation
        return take_from(pool, choose(rngs, sum(len(b) for b in pool), train_size))
