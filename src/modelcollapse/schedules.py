"""Training-set sizes over generations: ``train_size`` as a number or a schedule.

``train_size`` in a spec is one of

* an integer M: every generation is fitted on M examples (the paper's setting);
* ``{kind: linear, a: A, b: B}``: M_g = A * g + B, which must be a positive integer for
  every generation (a fractional A or B is allowed when the products are whole);
* ``{kind: power, M0: M, p: P}``: M_g = round(M * (g + 1) ** P), rounded to the nearest
  integer because a power of g + 1 is rarely whole (P = 1 grows linearly, P > 1 makes the sum
  of 1 / M_g converge, the paper's condition for a bounded Wasserstein distance);
* an explicit list ``[M_0, M_1, ...]`` with at least ``generations + 1`` entries.

Generation 0 is fitted on M_0 real examples; generation g >= 1 on M_g examples that the policy
builds (each synthetic set drawn from generation g-1 has M_g examples).
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

import numpy as np
from pydantic import Field

from .params import Spec

#: Sizes beyond this are a mistake (a runaway power schedule), not an experiment.
MAX_SIZE = 2**31 - 1


class LinearSchedule(Spec):
    """M_g = a * g + b."""

    kind: Literal["linear"]
    a: float
    b: float

    def raw(self, g: np.ndarray) -> np.ndarray:
        return self.a * g + self.b

    def describe(self) -> str:
        return f"linear: {self.a:g} g + {self.b:g}"


class PowerSchedule(Spec):
    """M_g = round(M0 * (g + 1) ** p)."""

    kind: Literal["power"]
    M0: Annotated[float, Field(gt=0)]
    p: float

    def raw(self, g: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.round(self.M0 * (g + 1.0) ** self.p)

    def describe(self) -> str:
        return f"power: round({self.M0:g} (g + 1)^{self.p:g})"


Schedule = Annotated[Union[LinearSchedule, PowerSchedule], Field(discriminator="kind")]
TrainSize = Union[Annotated[int, Field(ge=1)], list[Annotated[int, Field(ge=1)]], Schedule]


class ScheduleError(ValueError):
    """A schedule that gives an impossible size; the message names the generation."""


def sizes(train_size: TrainSize, generations: int) -> np.ndarray:
    """M_g for g = 0..generations as int64; raises :class:`ScheduleError` naming the first bad generation.

    >>> sizes(100, 2).tolist()
    [100, 100, 100]
    >>> sizes(LinearSchedule(kind="linear", a=50, b=100), 3).tolist()
    [100, 150, 200, 250]
    >>> sizes(PowerSchedule(kind="power", M0=10, p=2), 3).tolist()
    [10, 40, 90, 160]
    """
    g = np.arange(generations + 1)
    if isinstance(train_size, (int, np.integer)):
        return np.full(len(g), int(train_size), dtype=np.int64)
    if isinstance(train_size, (list, tuple)):
        if len(train_size) < len(g):
            raise ScheduleError(f"the list has {len(train_size)} sizes (generations 0-{len(train_size) - 1}) but the "
                                f"run has generations 0-{generations}: no size for generation {len(train_size)}")
        return np.asarray(train_size[: len(g)], dtype=np.int64)
    raw = train_size.raw(g.astype(float))
    bad = ~np.isfinite(raw) | (raw > MAX_SIZE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScheduleError(f"{train_size.describe()} gives {raw[i]:.4g} at generation {i}: above {MAX_SIZE:,}")
    bad = np.abs(raw - np.round(raw)) > 1e-9 * np.maximum(1.0, np.abs(raw))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScheduleError(f"{train_size.describe()} gives {raw[i]:g} at generation {i}: not a whole number of "
                            "examples")
    out = np.round(raw).astype(np.int64)
    if (out < 1).any():
        i = int(np.flatnonzero(out < 1)[0])
        raise ScheduleError(f"{train_size.describe()} gives {out[i]} at generation {i}: sizes must be at least 1")
    return out


def describe(train_size: TrainSize, generations: int) -> str:
    """A short description for reports: ``100``, or the schedule and its first and last sizes."""
    if isinstance(train_size, (int, np.integer)):
        return str(train_size)
    m = sizes(train_size, generations)
    head = "list" if isinstance(train_size, (list, tuple)) else train_size.describe()
    return f"{head} ({m[0]} at generation 0 … {m[-1]} at generation {generations})"
