"""One chain of generations for all replicates, in memory (no I/O: see ``loop.py``).

Generation 0 is fitted on M_0 real examples. Generation g >= 1 is fitted on the training
set of M_g examples the policy builds from the real set and the synthetic sets drawn so far;
the synthetic set drawn from generation g-1 has M_g examples. M_g = ``train_size``, or its
schedule at g (:mod:`.schedules`).

The chain names no family and no data kind: the family (``MODELS``) fits and samples,
the data kind's :class:`~modelcollapse.data.Source` draws real data, holds the held-out
split, checks the data before the first fit and says what each generation stores for the
report, and the policy (``POLICIES``) builds each training set.
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from . import metrics as M
from .batch import Batch, provenance_counts
from .config import ExperimentSpec
from .data import Source, load_source
from .errors import DataError
from .models import MODELS, FitError, ReplicatedModel
from .policies import Policy, build_policy
from .policies.base import PolicyContext, uses_statistics
from .pool import WorkerPool
from .rng import RandomStreams


def make_model(spec: ExperimentSpec, source: Source) -> Any:
    """A model for all replicates (vectorised families directly, others one per replicate), with the
    hyperparameters the data provides (``source.model_params()``)."""
    return MODELS.get(spec.model.kind).make(spec.model, source.model_params(), spec.replicates)


@dataclass
class Generation:
    """What one generation produced: metric values, provenance, and the synthetic set it drew."""

    index: int
    metrics: dict[str, np.ndarray]
    provenance: np.ndarray  # (R, index + 1): real, then one column per source generation
    synthetic: Batch | None
    newly_stopped: dict[int, str] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # stored beside the parameters (image previews)
    not_converged: int = 0  # replicates whose fit reached its iteration limit (scikit-learn would warn)
    lineage: dict[str, np.ndarray] = field(default_factory=dict)  # per-example origins of the training set


#: Per-example sources are stored for as many replicates as keep this many entries per generation
#: (at least one replicate): exact lineage for ordinary runs, bounded files for 20,000-replicate ones.
LINEAGE_ENTRIES = 1 << 12


def lineage_arrays(train: Batch) -> dict[str, np.ndarray]:
    """The training set's per-example sources, as provenance columns (0 real, j + 1 generation j's model),
    and weights when a filter set them, for the first replicates; the smallest integer type that holds them.
    Nothing when every replicate's set has one source (``replace``): the provenance counts say it all."""
    R, n = train.origin.shape
    shown = max(1, min(R, LINEAGE_ENTRIES // max(n, 1)))
    source = train.origin[:shown] + 1
    if train.weight is None and (source == source[:, :1]).all():
        return {}
    out = {"lineage/source": source.astype(np.min_scalar_type(int(source.max(initial=0))))}
    if train.weight is not None:
        out["lineage/weight"] = train.weight[:shown].astype(np.float32)
    return out


class Chain:
    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec
        self.family = MODELS.get(spec.model.kind)
        _check_installed(self.family)
        self.source = load_source(spec.data)
        self.truth = self.source.truth
        self.policy: Policy = build_policy(spec.policy)
        self.sizes = spec.sizes()  # M_g for every generation
        self.streams = RandomStreams(spec.seed, range(spec.replicates))
        self.model = make_model(spec, self.source)
        params = spec.model.model_dump()
        metrics = [M.resolve(name, spec.model.kind, spec.data.kind, params) for name in spec.metrics]
        self.metric_fns = {m.name: m.fn for m in metrics}
        self.needs = frozenset().union(*(m.needs for m in metrics))
        self.cache: dict[str, Any] = {}
        self.history: list[Batch] = []  # synthetic sets the policy may still need
        # An accumulating chain of a family with additive statistics keeps those, not the pool: each
        # generation costs O(train_size), not O(g * train_size). (A data kind whose extras read the
        # training set beyond its real examples keeps the pool: see Source.extras_need_pool.)
        self.incremental = uses_statistics(type(self.policy), self.family.cls) and not _extras_need_pool(self.source)
        self.stats: dict[str, np.ndarray] | None = None
        self.stopped: dict[int, str] = {}
        self.real: Batch | None = None
        self.heldout: np.ndarray | None = None
        self.model0: Any = None
        # Checks and helpers before any fit (and before the run directory exists).
        self.family.hook("check_source")(self.family.params(spec.model, self.source.model_params()), self.source)
        prepared = self.source.prepare(spec, self.family, self.needs)
        self.aux: dict[str, Any] = prepared.aux
        self.info: dict[str, Any] = prepared.info  # facts about the run for the manifest
        self.fit_kwargs: dict[str, Any] = prepared.fit_kwargs  # e.g. validation blocks for best-epoch selection
        self.pool = WorkerPool(spec.workers)  # processes for per-replicate fits, started on first use
        self.policy_metrics = self.policy.metric_names()
        self.min_size = _min_train_size(self.family, spec)

    def close(self) -> None:
        """End the worker processes (the loop calls this however the run ends)."""
        self.pool.close()

    # -- the two kinds of generation --------------------------------------------------
    def first(self) -> Generation:
        self.real = self.draw_real(int(self.sizes[0]))
        self.heldout = self.source.heldout(self.spec, self.needs, self.streams["heldout"])
        if self.incremental:
            self.stats = self.model.statistics(self.real.X)
        return self._fit_and_measure(0, self.real, synthetic=None)

    def step(self, g: int) -> Generation:
        n = self.policy.synthetic_size(int(self.sizes[g]))
        X = self.sample(n, self.streams["sample"])
        synthetic = Batch(X, np.full(X.shape[:2], g - 1, dtype=np.int64))
        if self.incremental:
            self._add_statistics(X)
            return self._fit_and_measure(g, None, synthetic)
        self.history = [*self.history, synthetic] if self.policy.needs_history else [synthetic]
        context = self.context(g) if self.policy.uses_context else None
        train = self.policy.build(
            real=self.real,
            synthetic=self.history,
            train_size=int(self.sizes[g]),
            rngs=self.streams["policy"],
            draw_real=self.draw_real,
            **({"context": context} if context is not None else {}),
        )
        return self._fit_and_measure(g, train, synthetic, {} if context is None else context.records)

    def sample(self, n: int, rngs: list[np.random.Generator]) -> np.ndarray:
        """``n`` examples per replicate from the current model (language models continue real prompts)."""
        return self.model.sample(n, rng=rngs, **self.source.sample_kwargs(self.real, n))

    def context(self, g: int) -> PolicyContext:
        return PolicyContext(generation=g, generations=self.spec.generations, model=self.model, model0=self.model0,
                             truth=self.truth, source=self.source, rngs=self.streams["detector"],
                             data_type=self.family.data_type, sampler=lambda n: self.sample(n, self.streams["detector"]))

    def _add_statistics(self, X: np.ndarray) -> None:
        """Fold a synthetic set into the running statistics (shifted by the real set's, see GaussianModel)."""
        self.stats = self.model.add_statistics(self.stats, self.model.statistics(X, self.stats.get("shift")))

    def draw_real(self, n: int) -> Batch:
        return self.source.draw(n, self.streams["real"])

    def _fit_and_measure(self, g: int, train: Batch | None, synthetic: Batch | None,
                         recorded: dict[str, np.ndarray] | None = None) -> Generation:
        """Fit generation g on ``train``, or on the running statistics when ``train`` is None."""
        if train is None:
            self.model.fit_statistics(self.stats)
            # A family fitted per replicate may stop a replicate whose statistics it cannot fit.
            newly = {r: why for r, why in self.model.stopped.items() if r not in self.stopped} \
                if isinstance(self.model, ReplicatedModel) else {}
            not_converged = 0
        elif isinstance(self.model, ReplicatedModel):
            weights = {} if train.weight is None else {"sample_weight": train.weight, "min_size": self.min_size}
            self.model.fit(train.X, rng=self.streams["fit"], workers=self.spec.workers, pool=self.pool,
                           **weights, **self.fit_kwargs)
            newly = {r: why for r, why in self.model.stopped.items() if r not in self.stopped}
            not_converged = self.model.not_converged()
        elif train.weight is not None:
            self._fit_weighted(train)
            newly, not_converged = {}, 0
        else:
            self.model.fit(train.X)
            newly, not_converged = {}, 0
        self.stopped.update(newly)
        if g == 0 and len(self.stopped) == self.spec.replicates:
            # Every replicate failing on real data is a setting problem, not collapse: fail loudly.
            raise FitError(f"every replicate failed to fit generation 0: {next(iter(self.stopped.values()))}")
        if g == 0:  # a later fit replaces a batched model's arrays, never writes into them: a shallow copy holds
            self.model0 = self.model.snapshot() if isinstance(self.model, ReplicatedModel) else copy.copy(self.model)
        ctx = M.MetricContext(
            model=self.model,
            truth=self.truth,
            heldout=self.heldout,
            rngs=self.streams["metric"],
            generation=g,
            n_samples=self.spec.metric_samples,
            model_kind=self.spec.model.kind,
            cache=self.cache,
            model0=self.model0,
            aux=self.aux,
        )
        if len(self.stopped) == self.spec.replicates:  # nothing left to measure
            values = {name: np.full(self.spec.replicates, np.nan) for name in self.metric_fns}
        else:
            values = {name: np.asarray(fn(ctx), dtype=float) for name, fn in self.metric_fns.items()}
        for name in self.policy_metrics:  # what the policy recorded (a filter's detector), NaN at generation 0
            values[name] = np.asarray((recorded or {}).get(name, np.full(self.spec.replicates, np.nan)), dtype=float)
        if train is None:  # the real set, then the set drawn from each earlier generation (M_1 .. M_g)
            R = self.spec.replicates
            row = self.sizes[: g + 1].copy()
            row[0] = len(self.real)
            counts = np.broadcast_to(row, (R, g + 1))  # the same for every replicate: one row, not R
            # The source's extras read at most the real examples of the training set (extras_need_pool is
            # False, or the chain would keep the pool): under an additive policy those are the real set.
            extras, lineage = self.source.extras(ctx, self.real), {}
        else:
            counts, extras = provenance_counts(train.origin, g, train.weight), self.source.extras(ctx, train)
            lineage = lineage_arrays(train) if g else {}
        return Generation(g, values, counts, synthetic, newly, extras, not_converged, lineage)

    def _fit_weighted(self, train: Batch) -> None:
        """A batched family fitted with ``sample_weight``; a replicate left with fewer examples than the
        family needs keeps its previous model (its rows of the state are put back after the fit)."""
        w = np.asarray(train.weight, dtype=float)
        empty = (w > 0).sum(axis=1) < self.min_size
        if not empty.any():
            self.model.fit(train.X, sample_weight=w)
            return
        before = {k: np.array(v, copy=True) for k, v in self.model.state_dict().items()}
        self.model.fit(train.X, sample_weight=np.where(empty[:, None], 1.0, w))  # a stand-in fit, put back below
        after = self.model.state_dict()
        self.model.load_state_dict({k: np.where(_rows(empty, v.ndim), before[k], v) for k, v in after.items()})

    # -- checkpoint support -----------------------------------------------------------
    def model_state(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def restore(self, *, real: Batch, heldout: np.ndarray | None, model_state: dict, model0_state: dict,
                history: Iterable[Batch], stopped: dict[int, str], stopped0: dict[int, str],
                rng_state: dict[str, np.ndarray], stats: dict[str, np.ndarray] | None = None) -> None:
        """Put the chain back where a checkpoint left it (the loop reads the files). ``history`` is
        read one set at a time: a chain that keeps statistics takes them from the checkpoint (``stats``),
        or adds up the stored sets in the order the run did (a run directory of version 0.1, or one written
        before its family kept statistics: the n-gram's)."""
        self.real = real
        self.heldout = heldout if self.source.stores_heldout else self.source.heldout(self.spec, self.needs, [])
        self.stopped = dict(stopped)
        # The models first: a family fitted per replicate adds up statistics of its running replicates only.
        if isinstance(self.model, ReplicatedModel):
            self.model.load_state_dict(model_state, stopped=self.stopped)
            self.model0 = make_model(self.spec, self.source).load_state_dict(model0_state, stopped=stopped0)
        else:
            self.model.load_state_dict(model_state)
            self.model0 = make_model(self.spec, self.source).load_state_dict(model0_state)
        if self.incremental and stats is not None:
            self.stats, self.history = dict(stats), []
        elif self.incremental:
            self.stats = self.model.statistics(real.X)
            for batch in history:
                self._add_statistics(batch.X)
            self.history = []
        else:
            self.history = list(history)
        self.streams.load_state_arrays(rng_state)


def _extras_need_pool(source: Source) -> bool:
    """Whether the data kind's extras read the training set beyond its real examples: a source that
    stores no extras reads nothing, one that does says so (:attr:`Source.extras_need_pool`)."""
    return type(source).extras is not Source.extras and bool(getattr(source, "extras_need_pool", True))


def _rows(mask: np.ndarray, ndim: int) -> np.ndarray:
    return mask.reshape(mask.shape + (1,) * (ndim - 1))


def _min_train_size(family: Any, spec: ExperimentSpec) -> int:
    """The fewest examples a replicate's fit needs (a filter may leave fewer): the family's minimum, and
    one example per component for a mixture (whose own check compares the component count instead)."""
    params = spec.model.model_dump()
    hook = getattr(family.cls, "min_train_size", None)  # a plug-in need not derive from BaseModel
    return max(1, int(hook(params)) if callable(hook) else 1, int(params.get("n_components", 1)))


def _check_installed(family: Any) -> None:
    """A family's optional dependencies (``requires``: (module, how to install)), checked before any work."""
    for module, hint in getattr(family.cls, "requires", ()):
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked in sys.modules, or a broken install
            found = False
        if not found:
            raise DataError(f"model.kind={family.name!r} needs {module}: {hint}")
