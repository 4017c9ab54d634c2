"""The policy contract, the policy registry and the ``policy:`` section of a spec.

A policy is a small frozen dataclass whose :meth:`Policy.build` makes generation g's
training set from the real pool and the synthetic sets drawn so far. Its fields are its
settings: :func:`register_policy` derives the spec section from them (bounds go in the
annotations, as for model families), so ``policy: {kind: mix, real_fraction: 0.1}`` is
validated against ``Mix``'s own declaration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import Field

from ..batch import Batch
from ..params import Spec, dataclass_fields, derive
from ..registry import Registry, entry_point_group
from ..models.family import same_class

DrawReal = Callable[[int], Batch]


@dataclass
class PolicyContext:
    """What a policy that looks beyond the data (``uses_context``) may read while it builds generation
    ``generation``'s training set: the models so far, the data source, a random stream of its own, and
    where it records per-replicate values that become metrics (``metric_names``)."""

    generation: int
    generations: int  # the run's last generation (schedules over the run need it)
    model: Any  # generation g - 1's fitted model, batched over replicates
    model0: Any  # generation 0's (fitted on real data only)
    truth: Any  # the original distribution (a fitted model for closed forms, a dataset otherwise)
    source: Any  # the data kind's Source (draws real examples with labels)
    rngs: list[np.random.Generator]  # the "detector" stream of each replicate
    data_type: str
    #: ``n`` samples per replicate of generation g - 1's model, from the detector stream (with prompts for text)
    sampler: Callable[[int], np.ndarray] | None = None
    records: dict[str, np.ndarray] = field(default_factory=dict)

    def sample(self, n: int) -> np.ndarray:
        if self.sampler is None:
            raise RuntimeError("this PolicyContext was made without a sampler")
        return self.sampler(n)

    def record(self, name: str, values: Any) -> None:
        self.records[name] = np.asarray(values, dtype=float)

    def draw_real(self, n: int) -> Batch:
        """``n`` fresh real examples per replicate from this context's own stream (a detector's
        training data: it does not move the stream the training sets are drawn from)."""
        return self.source.draw(n, self.rngs)

    @property
    def replicates(self) -> int:
        return len(self.rngs)


@dataclass(frozen=True)
class Policy:
    needs_history: ClassVar[bool] = False  # keep every synthetic set (accumulating policies)
    #: The training set is the real set and every synthetic set so far, in any order: a family whose
    #: fit depends on its data only through additive statistics can add each set's and keep no pool.
    additive: ClassVar[bool] = False
    #: ``build`` also takes ``context`` (a :class:`PolicyContext`): the web's schedule, detectors.
    uses_context: ClassVar[bool] = False
    #: The real part is drawn new each generation, so a filter may gather more candidates than it keeps.
    crawlable: ClassVar[bool] = False
    #: A training set may draw on several sources (what lineage files store); ``replace`` never does.
    mixes_sources: ClassVar[bool] = True

    def synthetic_size(self, train_size: int) -> int:
        """How many examples to draw from generation g - 1's model for a training set of ``train_size``."""
        return train_size

    def metric_names(self) -> tuple[str, ...]:
        """Per-replicate values the policy records each generation (stored as metrics; NaN at generation 0)."""
        return ()

    def check_resume(self, generations: int, stored: int) -> str | None:
        """Why a run of ``stored`` generations cannot continue to ``generations`` (a schedule over the
        run's length would change), or None."""
        return None

    def check_experiment(self, spec: Any) -> None:
        """Refuse a whole experiment this policy cannot run (raise ``ValueError("policy.key: why")``):
        a detector that cannot read the family's data, a schedule shorter than the run."""

    def build(
        self,
        *,
        real: Batch,
        synthetic: list[Batch],
        train_size: int,
        rngs: list[np.random.Generator],
        draw_real: DrawReal,
    ) -> Batch:
        raise NotImplementedError

    def check_sizes(self, sizes: np.ndarray) -> str | None:
        """Why the training-set sizes ``sizes[g]`` (a schedule) cannot work with this policy, or None."""
        return None


def uses_statistics(policy_cls: type, family_cls: type) -> bool:
    """Whether a chain fits from running sufficient statistics instead of the accumulated pool: an
    additive policy and a family that offers ``statistics``, ``add_statistics`` and ``fit_statistics``.
    A batched family keeps them for all replicates at once; one fitted per replicate (the n-gram) keeps
    each replicate's, through :class:`~modelcollapse.models.ReplicatedModel`, which stacks them."""
    return bool(getattr(policy_cls, "additive", False)
                and all(callable(getattr(family_cls, name, None))
                        for name in ("statistics", "add_statistics", "fit_statistics")))


class PolicySpec(Spec):
    """Base of every ``policy:`` section; each policy's own is derived from its dataclass."""

    kind: str
    # Every spec written so far has this key, so every policy accepts it; only the policies
    # that declare a real_fraction field (mix, fresh) use it, and the others require 0.
    real_fraction: Annotated[float, Field(ge=0, le=1)] = 0.0


@dataclass(frozen=True)
class PolicyKind:
    """A registered policy: its name, dataclass and derived spec."""

    name: str
    cls: type[Policy]
    spec: type[PolicySpec]

    def settings(self, spec: PolicySpec) -> dict[str, Any]:
        """The values of the policy's own fields (not keys it merely accepts, like an unused real_fraction)."""
        names = {f.name for f in fields(self.cls) if f.init}
        return {k: v for k, v in spec.model_dump(exclude={"kind"}).items() if k in names}

    def build(self, spec: PolicySpec) -> Policy:
        return self.cls(**self.settings(spec))

    def describe(self, spec: PolicySpec) -> str:
        """``kind (key=value, ...)`` for reports, or the policy's own ``describe()`` (a filter names its
        detector and its base)."""
        custom = getattr(self.cls, "describe", None)
        if callable(custom):
            return str(self.build(spec).describe())
        own = ", ".join(f"{k}={v}" for k, v in self.settings(spec).items())
        return f"{self.name} ({own})" if own else self.name


POLICIES: Registry[PolicyKind] = Registry("policy kind")


def register_policy(name: str, cls: Any = None) -> Any:
    """Register a frozen :class:`Policy` dataclass as ``policy: {kind: name}`` (call or decorator)."""
    if cls is None:
        return lambda c: register_policy(name, c)
    if not (isinstance(cls, type) and is_dataclass(cls) and callable(getattr(cls, "build", None))):
        raise TypeError(f"register_policy({name!r}, ...) needs a dataclass with a build() method, got {cls!r}")
    own = dataclass_fields(cls)
    extra = None if "real_fraction" in own else _unused_real_fraction(name)
    spec = derive(name, cls, own, PolicySpec, extra_check=extra)
    POLICIES.add(name, PolicyKind(name, cls, spec), replace=same_class(POLICIES._items.get(name), cls),
                 module=cls.__module__)
    return cls


def _unused_real_fraction(kind: str) -> Callable[[dict[str, Any]], None]:
    def check(params: dict[str, Any]) -> None:
        if params.get("real_fraction", 0) != 0:
            users = sorted(n for n in POLICIES.names() if "real_fraction" in POLICIES.get(n).cls.__dataclass_fields__)
            raise ValueError(f"real_fraction: {params['real_fraction']} has no effect with kind={kind!r}; "
                             f"set it to 0 or use kind {' or '.join(repr(u) for u in users)}")

    return check


def _from_entry_point(name: str, obj: Any) -> None:
    """A ``modelcollapse.policies`` entry point names a Policy dataclass (or a module that registers its own)."""
    if isinstance(obj, type) and name not in POLICIES._items:
        register_policy(name, obj)


entry_point_group("modelcollapse.policies", "policy", _from_entry_point, POLICIES.sources)


def build_policy(spec: PolicySpec) -> Policy:
    """The policy a validated ``policy:`` section describes."""
    return POLICIES.get(spec.kind).build(spec)


def choose(rngs: list[np.random.Generator], pool: int, size: int) -> np.ndarray:
    """Per replicate, ``size`` distinct indices out of ``pool``, each from its own generator."""
    return np.stack([g.choice(pool, size=size, replace=False) for g in rngs])
