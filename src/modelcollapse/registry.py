"""A tiny name -> object registry that answers unknown names with "did you mean ...?"."""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


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


class Registry(Generic[T]):
    def __init__(self, what: str) -> None:
        self.what = what
        self._items: dict[str, T] = {}
        self._lazy: dict[str, tuple[str, str]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.what} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def register_lazy(self, name: str, target: str, hint: str) -> None:
        """Register ``"package.module:attr"``, imported on first use (for optional extras).

        ``hint`` tells the user what to install when the import fails.
        """
        self._lazy[name] = (target, hint)
        self._items[name] = None  # type: ignore[assignment]

    def get(self, name: str) -> T:
        if name in self._lazy and self._items.get(name) is None:
            target, hint = self._lazy[name]
            module, attr = target.split(":")
            try:
                self._items[name] = getattr(importlib.import_module(module), attr)
            except ImportError as exc:
                raise MissingDependencyError(f"{self.what} {name!r} needs {hint} ({exc})") from None
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.what} {name!r}{suggest(name, list(self._items))}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)
