"""Name -> object registries that answer unknown names with "did you mean ...?" and remember
where each entry came from (built in, a plug-in's entry point, or a call from a notebook).

Every registry is open: built-in families, data kinds, policies and metrics register exactly
as a plug-in does (see :mod:`.plugins`). The first lookup in any registry loads the installed
plug-ins once, so a family installed with pip is known to every part of the engine.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

BUILT_IN = "built-in"
#: Where registrations made right now come from; :func:`source` changes it while a plug-in loads.
_current_source = ["registered in Python"]


def suggest(name: str, choices: list[str]) -> str:
    """A human hint for an unknown ``name``: the closest choice, then all of them."""
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (choices: {', '.join(sorted(choices))})"


class UnknownNameError(KeyError, ValueError):
    """Raised for a name that is not registered; the message carries the suggestion."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class MissingDependencyError(ImportError):
    """A registered entry whose optional dependency is not installed; the message says what to install."""


@contextmanager
def source(label: str) -> Iterator[None]:
    """Attribute every registration made inside the block to ``label`` (e.g. a plug-in's name)."""
    _current_source.append(label)
    try:
        yield
    finally:
        _current_source.pop()


def origin(module: str | None) -> str:
    """Where a registration made now comes from: a loading plug-in, this package, or user code."""
    if len(_current_source) > 1:
        return _current_source[-1]
    if module and (module == "modelcollapse" or module.startswith("modelcollapse.")):
        return BUILT_IN
    return _current_source[-1]


@dataclass(frozen=True)
class Group:
    """An entry-point group: what it adds, how one entry point is registered, and what is registered."""

    name: str  # e.g. "modelcollapse.models"
    what: str  # e.g. "model family"
    register: Callable[[str, Any], None]  # (entry point name, loaded object) -> None
    sources: Callable[[], dict[str, str]]  # name -> where it came from


#: Entry-point groups by name, declared by the modules that own the registries.
GROUPS: dict[str, Group] = {}


def entry_point_group(name: str, what: str, register: Callable[[str, Any], None],
                      sources: Callable[[], dict[str, str]]) -> None:
    GROUPS[name] = Group(name, what, register, sources)


class Registry(Generic[T]):
    """Entries by name, each with the place it came from (``sources()``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._lazy: dict[str, tuple[str, str]] = {}
        self._sources: dict[str, str] = {}

    def add(self, name: str, obj: T, *, replace: bool = False, module: str | None = None) -> T:
        """Register ``obj`` under ``name``; a second registration of a name is an error unless ``replace``.

        ``module`` is where ``obj`` is defined: this package's own modules register as "built-in".
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.what} needs a non-empty string name, got {name!r}")
        if name in self._items and not replace:
            raise ValueError(f"{self.what} {name!r} is already registered ({self._sources.get(name, '?')})")
        self._items[name] = obj
        self._lazy.pop(name, None)
        self._sources[name] = origin(module)
        return obj

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of :meth:`add`."""

        def deco(obj: T) -> T:
            return self.add(name, obj)

        return deco

    def register_lazy(self, name: str, target: str, hint: str) -> None:
        """Register ``"package.module:attr"``, imported on first use (for optional extras).

        ``hint`` tells the user what to install when the import fails.
        """
        self._lazy[name] = (target, hint)
        self._items[name] = None  # type: ignore[assignment]
        self._sources[name] = origin(target)

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests and notebooks that re-register an edited class)."""
        self._items.pop(name, None)
        self._lazy.pop(name, None)
        self._sources.pop(name, None)

    def get(self, name: str) -> T:
        _load_plugins()
        if name in self._lazy and self._items.get(name) is None:
            target, hint = self._lazy[name]
            module, attr = target.split(":")
            try:
                self._items[name] = getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                raise MissingDependencyError(f"{self.what} {name!r} needs {hint} ({exc})") from None
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.what} {name!r}{suggest(str(name), list(self._items))}") from None

    def names(self) -> list[str]:
        _load_plugins()
        return list(self._items)

    def sources(self) -> dict[str, str]:
        """name -> where it came from: "built-in", "plug-in DIST VERSION (entry point ...)", ..."""
        _load_plugins()
        return dict(self._sources)

    def __contains__(self, name: object) -> bool:
        _load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def _load_plugins() -> None:
    from . import plugins  # a function-level import: plugins imports the registries

    plugins.load()
