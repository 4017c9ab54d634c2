"""Specs derived from the code they configure: hyperparameters are declared once.

A model family declares its hyperparameters as keyword-only ``__init__`` arguments (the
scikit-learn contract) and a policy as dataclass fields; the pydantic class that validates
the ``model:`` or ``policy:`` section of a spec is derived from those declarations here, so
a default or a bound is written in exactly one place. Bounds go in the annotation::

    def __init__(self, *, n_components: Annotated[int, Field(ge=1)] = 2,
                 covariance_type: Literal["full", "tied", "diag", "spherical"] = "full") -> None:

A parameter the engine sets from the data (a vocabulary size, an image shape) is marked
``Annotated[..., FROM_DATA]`` and never appears in a spec.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, create_model, model_validator


class Spec(BaseModel):
    """Base of every spec section: unknown keys are errors, assignments are validated, and types are
    strict (``true`` is not an integer, ``"3"`` is not a number; an integer is a valid float), and a
    number must be finite."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, strict=True, allow_inf_nan=False)


class FromData:
    """Marks a hyperparameter the engine fills in from the data; see :data:`FROM_DATA`."""

    def __repr__(self) -> str:
        return "FROM_DATA"


FROM_DATA = FromData()


def _is_from_data(annotation: Any) -> bool:
    return typing.get_origin(annotation) is typing.Annotated and any(
        isinstance(m, FromData) for m in typing.get_args(annotation)[1:])


def _hints(obj: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(obj, include_extras=True)
    except Exception as exc:  # an annotation that cannot be resolved: say which class
        raise TypeError(f"cannot read the type annotations of {getattr(obj, '__qualname__', obj)}: {exc}") from None


def init_parameters(cls: type) -> list[inspect.Parameter]:
    """The keyword-only ``__init__`` parameters of a model class, in order."""
    sig = inspect.signature(cls.__init__)
    return [p for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]


def data_parameters(cls: type) -> list[str]:
    """Names of the hyperparameters of ``cls`` that the engine fills in from the data."""
    hints = _hints(cls.__init__)
    return [p.name for p in init_parameters(cls) if _is_from_data(hints.get(p.name))]


def model_fields(cls: type) -> dict[str, tuple[Any, Any]]:
    """pydantic field definitions (annotation, default) for the settable hyperparameters of ``cls``."""
    hints = _hints(cls.__init__)
    fields = {}
    for p in init_parameters(cls):
        annotation = hints.get(p.name, Any)
        if _is_from_data(annotation):
            continue
        if p.default is p.empty:
            raise TypeError(f"{cls.__qualname__}: hyperparameter {p.name!r} needs a default "
                            "(a family must be constructible with no arguments)")
        fields[p.name] = (annotation, p.default)
    return fields


def dataclass_fields(cls: type) -> dict[str, tuple[Any, Any]]:
    """pydantic field definitions for the init fields of a dataclass (policies)."""
    hints = _hints(cls)
    fields = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{cls.__qualname__}: field {f.name!r} needs a default")
        fields[f.name] = (hints.get(f.name, Any), default)
    return fields


def derive(kind: str, owner: type, fields: dict[str, tuple[Any, Any]], base: type[Spec],
           extra_check: Callable[[dict[str, Any]], None] | None = None) -> type[Spec]:
    """A spec class ``{kind: Literal[kind], **fields}`` for ``owner``, checked by ``owner.check_params``.

    ``check_params(params: dict)``, when ``owner`` defines it, raises ``ValueError("key: message")``
    for combinations of values that no single field can reject; ``extra_check`` likewise, for
    checks the registry adds (a key the base spec has but ``owner`` does not use, say).
    """
    validators = {}
    checks = [c for c in (getattr(owner, "check_params", None), extra_check) if callable(c)]
    if checks:
        def _check(self: Any) -> Any:
            params = self.model_dump(exclude={"kind"})
            for check in checks:
                check(params)
            return self

        validators["_check_params"] = model_validator(mode="after")(_check)
    spec = create_model(f"{owner.__name__}Spec", __base__=base, __module__=owner.__module__,
                        __validators__=validators or None, kind=(Literal[kind], kind), **fields)  # type: ignore[call-overload]
    spec.__doc__ = f"The ``{kind}`` section of a spec, derived from :class:`{owner.__module__}.{owner.__qualname__}`."
    return spec
