"""One chain of generations for all replicates, in memory (no I/O: see ``loop.py``).

Generation 0 is fitted on ``train_size`` real examples. Generation g >= 1 is fitted on
the training set the policy builds from the real set and the synthetic sets drawn so
far; every synthetic set has ``train_size`` examples sampled from generation g-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import metrics as M
from .config import ExperimentSpec
from .data import build_truth
from .models import MODELS, ReplicatedModel
from .policies import REAL, Batch, Policy, build_policy, provenance_counts
from .rng import RandomStreams


def make_model(spec: ExperimentSpec, truth: Any) -> Any:
    """A batched model for all replicates: vectorised families directly, others replicated."""
    cls = MODELS.get(spec.model.kind)
    params = spec.model.model_dump(exclude={"kind"})
    if "n_categories" in cls._param_names():
        params["n_categories"] = truth.n_categories
    if cls.batched:
        return cls(**params)
    return ReplicatedModel(partial(cls, **params), spec.replicates)


@dataclass
class Generation:
    """What one generation produced: metric values, provenance, and the synthetic set it drew."""

    index: int
    metrics: dict[str, np.ndarray]
    provenance: np.ndarray  # (R, index + 1): real, then one column per source generation
    synthetic: Batch | None
    newly_stopped: dict[int, str] = field(default_factory=dict)


class Chain:
    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec
        self.truth = build_truth(spec.data)
        self.policy: Policy = build_policy(spec.policy.kind, spec.policy.real_fraction)
        self.streams = RandomStreams(spec.seed, range(spec.replicates))
        self.model = make_model(spec, self.truth)
        metrics = [M.resolve(name, spec.model.kind, spec.data.kind) for name in spec.metrics]
        self.metric_fns = {m.name: m.fn for m in metrics}
        self.needs_heldout = any(m.heldout for m in metrics)
        self.cache: dict[str, Any] = {}
        self.history: list[Batch] = []  # synthetic sets the policy may still need
        self.stopped: dict[int, str] = {}
        self.real: Batch | None = None
        self.heldout: np.ndarray | None = None

    # -- the two kinds of generation --------------------------------------------------
    def first(self) -> Generation:
        self.real = self.draw_real(self.spec.train_size)
        # Held-out real data only when a metric reads it (20,000 replicates x 1,000 points adds up).
        size = self.spec.heldout_size if self.needs_heldout else 0
        self.heldout = self.truth.sample(size, rng=self.streams["heldout"])
        return self._fit_and_measure(0, self.real, synthetic=None)

    def step(self, g: int) -> Generation:
        X = self.model.sample(self.spec.train_size, rng=self.streams["sample"])
        synthetic = Batch(X, np.full(X.shape[:2], g - 1, dtype=np.int64))
        self.history = [*self.history, synthetic] if self.policy.needs_history else [synthetic]
        train = self.policy.build(
            real=self.real,
            synthetic=self.history,
            train_size=self.spec.train_size,
            rngs=self.streams["policy"],
            draw_real=self.draw_real,
        )
        return self._fit_and_measure(g, train, synthetic)

    def draw_real(self, n: int) -> Batch:
        X = self.truth.sample(n, rng=self.streams["real"])
        return Batch(X, np.full(X.shape[:2], REAL, dtype=np.int64))

    def _fit_and_measure(self, g: int, train: Batch, synthetic: Batch | None) -> Generation:
        if isinstance(self.model, ReplicatedModel):
            self.model.fit(train.X, rng=self.streams["fit"], workers=self.spec.workers)
            newly = {r: why for r, why in self.model.stopped.items() if r not in self.stopped}
        else:
            self.model.fit(train.X)
            newly = {}
        self.stopped.update(newly)
        ctx = M.MetricContext(
            model=self.model,
            truth=self.truth,
            heldout=self.heldout,
            rngs=self.streams["metric"],
            generation=g,
            n_samples=self.spec.metric_samples,
            model_kind=self.spec.model.kind,
            cache=self.cache,
        )
        if len(self.stopped) == self.spec.replicates:  # nothing left to measure
            values = {name: np.full(self.spec.replicates, np.nan) for name in self.metric_fns}
        else:
            values = {name: np.asarray(fn(ctx), dtype=float) for name, fn in self.metric_fns.items()}
        return Generation(g, values, provenance_counts(train.origin, g), synthetic, newly)

    # -- checkpoint support -----------------------------------------------------------
    def model_state(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def restore(self, *, real: Batch, heldout: np.ndarray, model_state: dict, history: list[Batch],
                stopped: dict[int, str], rng_state: dict[str, np.ndarray]) -> None:
        self.real, self.heldout, self.history = real, heldout, history
        self.stopped = dict(stopped)
        if isinstance(self.model, ReplicatedModel):
            self.model.load_state_dict(model_state, stopped=self.stopped)
        else:
            self.model.load_state_dict(model_state)
        self.streams.load_state_arrays(rng_state)
