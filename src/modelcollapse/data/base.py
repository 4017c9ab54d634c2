"""The data-kind contract: a spec section that describes the original distribution, and the
:class:`Source` that serves it to a run.

A data kind is a :class:`DataSpec` subclass (its fields are the ``data:`` section of a
spec, validated by pydantic) registered with :func:`register_data`. ``load()`` gives the
run-time :class:`Source`, which owns everything specific to the data: drawing real
examples (with labels where they exist), the held-out split, the checks before the first
fit, the hyperparameters a family takes from the data, what each generation stores for the
report, and the report sections. The chain, the loop and the report core call these and
nothing else, so a new data kind touches none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..batch import REAL, Batch
from ..params import Spec
from ..registry import Registry, entry_point_group


@dataclass
class Prepared:
    """What :meth:`Source.prepare` hands the chain before generation 0."""

    info: dict[str, Any] = field(default_factory=dict)  # facts for the manifest (data source, accuracies)
    aux: dict[str, Any] = field(default_factory=dict)  # run-wide helpers for metrics (a digit classifier)
    fit_kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments of every fit (validation blocks)


class Source:
    """A data kind at run time. The defaults serve a distribution given in closed form: ``truth``
    is a fitted model of a matching family (it can ``sample`` and be scored)."""

    #: Whether the held-out examples are drawn per replicate and saved in ``real.npz`` (a dataset's
    #: fixed test split is not: it is rebuilt from the spec).
    stores_heldout: ClassVar[bool] = True
    #: Whether :meth:`extras` reads more of its ``train`` than the real examples in it. A source that reads
    #: at most those says False (images count their classes; text stores samples and reads no training
    #: data): an accumulating chain that keeps running statistics instead of the pool then hands it the
    #: real set, which is the whole real part of an additive policy's training set. True, the safe
    #: default for a source that overrides ``extras``, keeps the pool so that the training set exists.
    extras_need_pool: ClassVar[bool] = True

    def __init__(self, spec: "DataSpec", truth: Any) -> None:
        self.spec, self.truth = spec, truth

    def model_params(self) -> dict[str, Any]:
        """Hyperparameters a family takes from the data (those it marks ``FROM_DATA``)."""
        return {}

    def prepare(self, run: Any, family: Any, needs: frozenset[str]) -> Prepared:
        """Checks before the first fit (raise :class:`~modelcollapse.errors.DataError`) and helpers."""
        return Prepared()

    def draw(self, n: int, rngs: list[np.random.Generator]) -> Batch:
        """``n`` real examples per replicate, replicate r drawn with ``rngs[r]``."""
        X = self.truth.sample(n, rng=rngs)
        return Batch(X, np.full(X.shape[:2], REAL, dtype=np.int64))

    def heldout(self, run: Any, needs: frozenset[str], rngs: list[np.random.Generator]) -> np.ndarray | None:
        """Real held-out examples per replicate: drawn only if a metric reads them (20,000 replicates
        x 1,000 points adds up)."""
        size = run.heldout_size if "heldout" in needs else 0
        return self.truth.sample(size, rng=rngs)

    def sample_kwargs(self, real: Batch, n: int) -> dict[str, Any]:
        """Extra arguments of the model's ``sample`` when it makes the next synthetic set of ``n`` examples
        (prompts); ``n`` may differ from the real set's size when ``train_size`` is a schedule."""
        return {}

    def extras(self, ctx: Any, train: Batch) -> dict[str, np.ndarray]:
        """Arrays stored with each generation for the report (sample previews, class counts). ``train`` is
        the generation's training set, or only its real examples where :attr:`extras_need_pool` is False
        and the chain keeps running statistics instead of the pool."""
        return {}

    def preview_texts(self, extras: dict[str, np.ndarray]) -> list[str]:
        """Generated examples as text, from a generation's :meth:`extras` (a tracker's sample table);
        none for data that is not text."""
        return []


class DataSpec(Spec):
    """Base of every ``data:`` section. Subclasses declare the field ``kind: Literal["name"] = "name"``
    (declared there, not here, so that it keeps its place among their fields in a dumped spec),
    set the ``data_type`` the families fit, and define either ``truth()`` or ``load()``."""

    #: Which families can be fitted: those whose ``data_type`` is the same.
    data_type: ClassVar[str] = "continuous"
    #: Report sections of every run on this data (:class:`modelcollapse.report.Section`).
    report_sections: ClassVar[tuple[Any, ...]] = ()
    #: Keep loaded sources for the process (datasets read from files); closed forms are rebuilt.
    cached: ClassVar[bool] = False

    def truth(self) -> Any:
        """The original distribution as a fitted model (closed-form data kinds)."""
        raise NotImplementedError(f"data kind {self.kind!r} defines neither truth() nor load()")

    def load(self) -> Source:
        """The run-time source; dataset kinds override this to read their files."""
        return Source(self, self.truth())

    def model_params_hint(self) -> dict[str, Any]:
        """Hyperparameters a family takes from this data that are known without loading it (estimates)."""
        return {}

    def example_nbytes(self) -> int:
        """Bytes of one example in memory (for the resource estimate); datasets say it without loading."""
        return int(np.asarray(self.truth().sample(1, rng=np.random.default_rng(0))).nbytes)


DATA: Registry[type[DataSpec]] = Registry("data kind")


def register_data(name: str, cls: Any = None) -> Any:
    """Register a :class:`DataSpec` subclass as ``data: {kind: name}`` (call or class decorator)."""
    if cls is None:
        return lambda c: register_data(name, c)
    if not (isinstance(cls, type) and issubclass(cls, DataSpec)):
        raise TypeError(f"register_data({name!r}, ...) needs a DataSpec subclass, got {cls!r}")
    if "kind" not in cls.model_fields or cls.model_fields["kind"].default != name:
        raise TypeError(f"{cls.__qualname__}.kind must default to {name!r} (kind: Literal[{name!r}] = {name!r})")
    from ..models.family import same_class

    DATA.add(name, cls, replace=same_class(DATA._items.get(name), cls), module=cls.__module__)
    return cls


def _from_entry_point(name: str, obj: Any) -> None:
    """A ``modelcollapse.data`` entry point names a DataSpec subclass (or a module that registers its own)."""
    if isinstance(obj, type) and name not in DATA._items:
        register_data(name, obj)


entry_point_group("modelcollapse.data", "data kind", _from_entry_point, DATA.sources)

_CACHE: dict[str, Source] = {}  # loaded dataset sources, by spec: reading MNIST twice is waste


def load_source(spec: DataSpec) -> Source:
    """The source a validated ``data`` section describes (datasets are loaded once per process)."""
    if not spec.cached:
        return spec.load()
    key = spec.model_dump_json()
    if key not in _CACHE:
        _CACHE[key] = spec.load()
    return _CACHE[key]
