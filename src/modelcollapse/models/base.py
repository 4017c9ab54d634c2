"""The model contract, shared by every family.

A model follows the scikit-learn estimator shape:

* hyperparameters are keyword-only ``__init__`` arguments, stored unchanged, no work done;
* ``fit(X, *, rng=None) -> self`` sets fitted attributes whose names end in ``_``;
* ``sample(n, *, rng) -> array`` draws through the generator it is given (never a stored seed);
* ``log_prob(X) -> array`` gives per-example log densities (log probabilities when discrete);
* ``state_dict()`` / ``load_state_dict()`` move the fitted state in and out as plain arrays,
  which the run directory stores as ``.npz`` (never pickle).

Replicates. Families whose fit is a closed form (``batched = True``) accept a leading
replicate axis: ``fit`` on ``(R, n, ...)`` data fits R models at once, and ``sample`` with
a list of R generators draws ``(R, n, ...)``, replicate r using generator r only. For the
others, :class:`ReplicatedModel` loops over replicates behind the same interface.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Union

import numpy as np

from .. import distributed

RNG = Union[np.random.Generator, Sequence[np.random.Generator]]


class NotFittedError(RuntimeError):
    pass


class FitError(RuntimeError):
    """A fit that cannot produce a model (for example too few distinct points)."""


def draw(rng: RNG, fn: Callable[[np.random.Generator], np.ndarray], batch_shape: tuple = ()) -> np.ndarray:
    """Apply ``fn`` to one generator, or to each of a list and stack the results on axis 0.

    ``batch_shape`` is the model's replicate shape: a batched model must get exactly one
    generator per replicate, so replicate r's draws depend on its own stream only.
    """
    if rng is None:
        raise TypeError("sample() needs an explicit rng: a numpy Generator or a list of them")
    if isinstance(rng, np.random.Generator):
        if batch_shape:
            raise ValueError(f"a model batched over {batch_shape[0]} replicates needs a list of that many generators")
        return fn(rng)
    if batch_shape and len(rng) != batch_shape[0]:
        raise ValueError(f"got {len(rng)} generators for a model batched over {batch_shape[0]} replicates")
    return np.stack([fn(g) for g in rng])


class BaseModel:
    """Common machinery: parameter introspection, repr, fitted checks."""

    #: True when fit/sample/log_prob accept a leading replicate axis (vectorised chains).
    batched: ClassVar[bool] = False
    #: The data the family fits: "continuous" (float (n, d)), "discrete" (int (n,)), "image"
    #: (float (n, H, W) in [0, 1]) or "text" (int blocks (n, L)); a plug-in may name its own.
    data_type: ClassVar[str] = "continuous"
    #: Metrics a run computes when its spec lists none (those the data kind allows).
    default_metrics: ClassVar[tuple[str, ...]] = ()
    #: Report sections the family adds to every run of it (see :mod:`modelcollapse.report`).
    report_sections: ClassVar[tuple[Any, ...]] = ()

    # -- hooks the engine calls; all optional ------------------------------------------------
    @classmethod
    def check_spec(cls, spec: Any) -> None:
        """Refuse a whole experiment spec this family cannot run (raise ``ValueError("key: why")``),
        e.g. more mixture components than training examples. Called at validation, before any work."""

    @classmethod
    def min_train_size(cls, params: dict[str, Any]) -> int:
        """The fewest training examples a fit needs; every generation's size (``train_size`` may be a
        schedule) is checked against it at validation."""
        return 1

    @classmethod
    def check_source(cls, params: dict[str, Any], source: Any) -> None:
        """Refuse loaded data the family cannot fit (raise :class:`~modelcollapse.errors.DataError`);
        called once before generation 0, after the data is loaded and before the run directory exists."""

    @classmethod
    def state_nbytes(cls, params: dict[str, Any], example_nbytes: int, train_size: int) -> int | None:
        """Bytes of one fitted model's ``state_dict`` (what each generation file stores per replicate),
        for the resource estimate before a run; None when the family cannot say."""
        return None

    @classmethod
    def fit_nbytes(cls, params: dict[str, Any], example_nbytes: int, train_size: int) -> int:
        """Bytes one fit holds at its peak beyond the state (EM responsibilities, optimiser moments)."""
        return 0

    @classmethod
    def supports(cls, capability: str, params: dict[str, Any]) -> bool:
        """Whether models with hyperparameters ``params`` offer ``capability`` (a method name such as
        ``as_mixture``, which some metrics require)."""
        return callable(getattr(cls, capability, None))

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _check_fitted(self) -> None:
        if not any(k.endswith("_") and not k.startswith("_") for k in vars(self)):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(X) first")

    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "BaseModel":
        raise NotImplementedError

    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        raise NotImplementedError

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def state_dict(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "BaseModel":
        raise NotImplementedError


class ReplicatedModel:
    """R independent unbatched models behind the batched interface.

    A replicate whose fit fails is *stopped*: its model becomes ``None``, ``stopped[r]``
    records why, and it is skipped from then on (its samples and metrics are NaN).
    """

    batched = True

    def __init__(self, factory: Callable[[], BaseModel], replicates: int) -> None:
        self.factory = factory
        self.models: list[BaseModel | None] = [None] * replicates
        self.stopped: dict[int, str] = {}

    @property
    def data_type(self) -> str:
        return self.factory().data_type

    def fit(self, X: np.ndarray, *, rng: RNG | None = None, workers: int = 1, pool: Any = None,
            sample_weight: np.ndarray | None = None, min_size: int = 1, **fit_kwargs: Any) -> "ReplicatedModel":
        """Fit every running replicate on its own data ``X[r]``; ``fit_kwargs`` go to each fit (e.g. X_val).

        ``sample_weight`` (R, n), from a filtering policy: examples of weight 0 are left out of replicate
        r's fit, other weights go to a family whose ``fit`` takes ``sample_weight`` (all 1: plain fit). A
        replicate with fewer than ``min_size`` examples left keeps its current model. With ``workers``
        > 1 the fits run in ``pool`` (a :class:`~modelcollapse.pool.WorkerPool` the caller keeps for the
        run), or in a pool made for this call."""
        seeds = [None] * len(self.models) if rng is None else [g.integers(2**63) for g in rng]
        todo = [r for r in range(len(self.models)) if r not in self.stopped]
        data = [(X[r], {}) for r in range(len(self.models))] if sample_weight is None else \
            weighted_subsets(X, sample_weight)
        if sample_weight is not None:  # too little left: the replicate keeps what it had
            todo = [r for r in todo if len(data[r][0]) >= min_size or self.models[r] is None]
        # A warm-started family continues from the previous generation's weights, passed as plain state.
        warm = getattr(self.factory(), "warm_start", False)
        prev = [self.models[r].state_dict() if warm and self.models[r] is not None else None for r in range(len(self.models))]
        results = _map(_fit_one, [(self.factory, data[r][0], seeds[r], prev[r], {**fit_kwargs, **data[r][1]})
                                  for r in todo], workers, pool)
        for r, (model, err) in zip(todo, results):
            self.models[r] = model
            if err is not None:
                self.stopped[r] = err
        return self

    def snapshot(self) -> "ReplicatedModel":
        """A frozen view of the current fits (a later fit replaces models; it never mutates them)."""
        copy = type(self).__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.models, copy.stopped = list(self.models), dict(self.stopped)
        return copy

    def not_converged(self) -> int:
        """How many replicates' latest fits stopped at their iteration limit (``converged_`` False)."""
        return sum(1 for m in self.models if m is not None and getattr(m, "converged_", True) is False)

    def sample(self, n: int, *, rng: Sequence[np.random.Generator], prompts: np.ndarray | None = None) -> np.ndarray:
        """One draw per replicate; ``prompts`` (R, n, ...) conditions replicate r on ``prompts[r]``."""
        out = []
        for r, g in enumerate(rng):
            model = self.models[r]
            extra = {} if prompts is None else {"prompts": prompts[r]}
            out.append(model.sample(n, rng=g, **extra) if model is not None else None)
        return _stack_with_nan(out)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        return _stack_with_nan([m.log_prob(x) if m is not None else None for m, x in zip(self.models, X)])

    # -- additive statistics, one replicate at a time (see uses_statistics) --------------------
    # A family fitted per replicate whose fit is a function of additive statistics (the n-gram's counts)
    # keeps them under ``accumulate`` like a batched one: each running replicate's, stacked on a leading
    # axis as ``state_dict`` stacks states (ragged arrays padded, ``<key>#rows`` their lengths). A stopped
    # replicate's rows are zeros of the right dtype: it is never fitted again, so they are never read.
    def statistics(self, X: np.ndarray, shift: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Replicate r's statistics of its own data ``X[r]`` (and ``shift[r]``), stacked."""
        family = self.factory()
        return _stack_exact([None if r in self.stopped else
                             family.statistics(X[r], None if shift is None else shift[r])
                             for r in range(len(self.models))])

    def add_statistics(self, a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        family = self.factory()
        return _stack_exact([None if r in self.stopped else family.add_statistics(_row(a, r), _row(b, r))
                             for r in range(len(self.models))])

    def fit_statistics(self, stats: dict[str, np.ndarray]) -> "ReplicatedModel":
        """Fit every running replicate from its own statistics; one whose fit fails is stopped, as in :meth:`fit`."""
        for r in range(len(self.models)):
            if r in self.stopped:
                continue
            try:
                self.models[r] = self.factory().fit_statistics(_row(stats, r))
            except (FitError, ValueError, np.linalg.LinAlgError) as exc:
                self.models[r], self.stopped[r] = None, f"{type(exc).__name__}: {exc}"
        return self

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every replicate's state stacked on a leading axis. A state that holds training examples (a KDE's
        points, an n-gram's blocks) is longer for a replicate a filter left more examples: such arrays are
        padded to the longest, and ``<key>#rows`` records each replicate's length."""
        states = [m.state_dict() if m is not None else None for m in self.models]
        template = next((s for s in states if s is not None), None)
        if template is None:
            return {}
        out = {}
        for k in template:
            arrays = [None if s is None else np.asarray(s[k]) for s in states]
            if len({a.shape for a in arrays if a is not None}) > 1:
                rows = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int64)
                arrays = [None if a is None else _pad_rows(a, int(rows.max())) for a in arrays]
                out[k + RAGGED] = rows
            out[k] = _stack_with_nan(arrays)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], stopped: dict[int, str] | None = None) -> "ReplicatedModel":
        self.stopped = dict(stopped or {})
        for r in range(len(self.models)):
            if r in self.stopped:
                self.models[r] = None
                continue
            self.models[r] = self.factory().load_state_dict(_row(state, r))
        return self


def weighted_subsets(X: np.ndarray, weight: np.ndarray) -> list[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Per replicate, the examples of positive weight and, unless those are all 1, their weights as
    ``sample_weight`` (for a family whose fit takes it)."""
    out = []
    for x, w in zip(X, np.asarray(weight, dtype=float)):
        keep = w > 0
        out.append((x[keep], {} if np.all(w[keep] == 1) else {"sample_weight": w[keep]}))
    return out


def _fit_one(args: tuple) -> tuple[BaseModel | None, str | None]:
    factory, X, seed, previous, fit_kwargs = args
    rng = None if seed is None else np.random.default_rng(int(seed))
    try:
        model = factory() if previous is None else factory().load_state_dict(previous)
        return model.fit(X, rng=rng, **fit_kwargs), None
    except (FitError, ValueError, np.linalg.LinAlgError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _map(fn: Callable, items: list, workers: int, pool: Any = None) -> list:
    # Under a multi-process launch each fit already spans every process: no worker pool on top.
    if workers <= 1 or len(items) <= 1 or distributed.launched():
        from threadpoolctl import threadpool_limits

        # One BLAS/OpenMP thread per fit, as in a worker process: on the small arrays of one replicate
        # more threads only wait on each other (EM ran ten times slower with two), and fits then give
        # the same numbers in this process and in a worker. (PyTorch families set their own count.)
        with threadpool_limits(limits=1):
            return [fn(it) for it in items]
    if pool is not None:
        return pool.map(fn, items)
    from ..pool import WorkerPool

    with WorkerPool(workers) as own:
        return own.map(fn, items)


#: Suffix of the per-replicate lengths of a state array whose replicates hold different numbers of rows.
RAGGED = "#rows"


def _row(stacked: dict[str, np.ndarray], r: int) -> dict[str, np.ndarray]:
    """Replicate r's arrays of a stacked state or statistics, ragged ones cut to their own length."""
    own = {k: v[r] for k, v in stacked.items() if not k.endswith(RAGGED)}
    for k in own:
        if k + RAGGED in stacked:
            own[k] = own[k][: int(stacked[k + RAGGED][r])]
    return own


def _stack_exact(per: list[dict[str, np.ndarray] | None]) -> dict[str, np.ndarray]:
    """Per-replicate dicts of arrays stacked on a leading axis, keeping their dtype (counts stay exact
    integers); ragged arrays are padded with ``<key>#rows`` their lengths, a missing replicate is zeros."""
    template = next((d for d in per if d is not None), None)
    if template is None:
        return {}
    out = {}
    for k in template:
        arrays = [None if d is None else np.asarray(d[k]) for d in per]
        like = np.asarray(template[k])
        if len({a.shape for a in arrays if a is not None}) > 1:
            rows = np.array([0 if a is None else len(a) for a in arrays], dtype=np.int64)
            arrays = [None if a is None else _pad_rows(a, int(rows.max())) for a in arrays]
            like = _pad_rows(like, int(rows.max()))
            out[k + RAGGED] = rows
        out[k] = np.stack([np.zeros_like(like) if a is None else a for a in arrays])
    return out


def _pad_rows(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with zero rows appended up to ``n`` (trimmed again on load, so the fill never matters)."""
    if a.ndim == 0 or len(a) == n:
        return a
    return np.concatenate([a, np.zeros((n - len(a), *a.shape[1:]), dtype=a.dtype)])


def _stack_with_nan(arrays: list[np.ndarray | None]) -> np.ndarray:
    template = next((a for a in arrays if a is not None), None)
    if template is None:
        raise FitError("every replicate has stopped")
    template = np.asarray(template)
    if len(arrays) == sum(a is not None for a in arrays):  # nothing stopped: keep the dtype (token ids stay ints)
        return np.stack(arrays)
    dtype = template.dtype if np.issubdtype(template.dtype, np.floating) else np.float64  # keep float32 images small
    fill = np.full(template.shape, np.nan, dtype=dtype)
    return np.stack([np.asarray(a, dtype=dtype) if a is not None else fill for a in arrays])
