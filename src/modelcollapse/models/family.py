"""Model families: a class that follows the model contract (see :mod:`.base`), under a name.

:func:`register_model` is all a family needs: the spec section ``model: {kind: NAME, ...}``
is derived from the class's ``__init__`` signature (see :mod:`modelcollapse.params`), the data
it fits and its default metrics are class attributes, and its optional hooks
(``check_spec``, ``check_source``, ``supports``) are class methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, TypeVar, overload

from ..params import Spec, data_parameters, derive, model_fields
from ..registry import Registry, entry_point_group
from .base import ReplicatedModel

C = TypeVar("C", bound=type)


class ModelSpec(Spec):
    """Base of every ``model:`` section; each family's own is derived from its class."""

    kind: str


@dataclass(frozen=True)
class Family:
    """A registered model family: its name, class and derived spec."""

    name: str
    cls: type
    spec: type[ModelSpec]

    @property
    def data_type(self) -> str:
        return str(self.cls.data_type)

    @property
    def default_metrics(self) -> tuple[str, ...]:
        return tuple(getattr(self.cls, "default_metrics", ()))

    def supports(self, capability: str, params: dict[str, Any] | None = None) -> bool:
        hook = getattr(self.cls, "supports", None)
        if callable(hook):
            return bool(hook(capability, params or {}))
        return callable(getattr(self.cls, capability, None))

    def hook(self, name: str) -> Callable[..., Any]:
        """An optional class hook (``check_spec``, ``check_source``), or a no-op."""
        return getattr(self.cls, name, None) or (lambda *args, **kwargs: None)

    def params(self, model_spec: Spec, data_params: dict[str, Any]) -> dict[str, Any]:
        """The class's keyword arguments: the spec's hyperparameters, plus those marked ``FROM_DATA``
        that the data provides (``data_params``, from ``Source.model_params()``)."""
        params = model_spec.model_dump(exclude={"kind"})
        params.update({k: data_params[k] for k in data_parameters(self.cls) if k in data_params})
        return params

    def make(self, model_spec: Spec, data_params: dict[str, Any], replicates: int) -> Any:
        """A model for all replicates: the class itself when batched, else one per replicate."""
        params = self.params(model_spec, data_params)
        if getattr(self.cls, "batched", False):
            return self.cls(**params)
        replicated = getattr(self.cls, "replicated", None)  # a family's own way to fit all replicates
        if callable(replicated):
            return replicated(partial(self.cls, **params), replicates, params)
        return ReplicatedModel(partial(self.cls, **params), replicates)


MODELS: Registry[Family] = Registry("model kind")

_REQUIRED = ("fit", "sample", "log_prob", "state_dict", "load_state_dict")


@overload
def register_model(name: str, cls: C) -> C: ...
@overload
def register_model(name: str, cls: None = None) -> Callable[[C], C]: ...


def register_model(name: str, cls: Any = None) -> Any:
    """Register a model class as family ``name`` (``model: {kind: name}`` in a spec).

    Usable as a call, ``register_model("laplace", LaplaceModel)``, or as a class decorator.
    Registering a name again with a class of the same module and name (a notebook cell run
    twice) replaces the earlier class; any other clash is an error.

    >>> from modelcollapse.models import GaussianModel
    >>> register_model("my-gaussian", GaussianModel).__name__  # doctest: +SKIP
    'GaussianModel'
    """
    if cls is None:
        return lambda c: register_model(name, c)
    if not isinstance(cls, type):
        raise TypeError(f"register_model({name!r}, ...) needs a class, got {cls!r}")
    missing = [m for m in _REQUIRED if not callable(getattr(cls, m, None))]
    if missing:
        raise TypeError(f"{cls.__qualname__} cannot be model family {name!r}: it lacks {', '.join(missing)} "
                        "(see modelcollapse.models.base.BaseModel)")
    if not isinstance(getattr(cls, "data_type", None), str):
        raise TypeError(f"{cls.__qualname__} needs a class attribute data_type, e.g. 'continuous'")
    spec = derive(name, cls, model_fields(cls), ModelSpec)
    MODELS.add(name, Family(name, cls, spec), replace=same_class(MODELS._items.get(name), cls), module=cls.__module__)
    return cls


def same_class(entry: Any, cls: type) -> bool:
    """True when ``entry`` (a registered record or class) holds a redefinition of ``cls``."""
    old = getattr(entry, "cls", entry)
    return isinstance(old, type) and (old.__module__, old.__qualname__) == (cls.__module__, cls.__qualname__)


def _from_entry_point(name: str, obj: Any) -> None:
    """A ``modelcollapse.models`` entry point names a model class (or a module that registers its own)."""
    if isinstance(obj, type) and name not in MODELS._items:
        register_model(name, obj)


entry_point_group("modelcollapse.models", "model family", _from_entry_point, MODELS.sources)
