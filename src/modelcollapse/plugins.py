"""Plug-ins: installed packages that add families, data kinds, policies, metrics or estimators.

A package declares Python entry points, one group per registry::

    [project.entry-points."modelcollapse.models"]
    laplace = "mc_laplace:LaplaceModel"          # a model class (the BaseModel contract)

    [project.entry-points."modelcollapse.data"]        # a DataSpec subclass
    [project.entry-points."modelcollapse.policies"]    # a Policy dataclass
    [project.entry-points."modelcollapse.metrics"]     # a module whose import registers metrics
    [project.entry-points."modelcollapse.estimators"]  # a scikit-learn-style density estimator class
                                                       # that `model: {kind: sklearn}` may name

Entry points are loaded once, at the first lookup in any registry. An entry point that names
a class registers it under the entry point's name; one that names a module registers what
the module registers on import. Everything registered while a plug-in loads is attributed to
it (``modelcollapse plugins`` lists where each entry came from). A plug-in that fails to
load is reported in one line (:data:`ERRORS`, and on stderr by the CLI) and skipped: the
built-in entries and the other plug-ins keep working. ``MODELCOLLAPSE_NO_PLUGINS=1`` turns
loading off.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib import metadata
from typing import Any

@dataclass(frozen=True)
class PluginError:
    group: str
    name: str
    value: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return (f"plug-in {self.name!r} ({self.group} = {self.value}, from {self.distribution}) failed to load "
                f"and was skipped: {self.error}")


#: Plug-ins that could not be loaded, in the order they were tried.
ERRORS: list[PluginError] = []
_state = {"loaded": False}
_lock = threading.RLock()


def load() -> None:
    """Load every installed plug-in once (cheap after the first call)."""
    if _state["loaded"]:
        return
    with _lock:
        if _state["loaded"]:
            return
        _state["loaded"] = True  # set first: a plug-in that looks things up while loading must not recurse
        _builtins()
        if os.environ.get("MODELCOLLAPSE_NO_PLUGINS"):
            return
        from .registry import GROUPS

        found = metadata.entry_points()  # one scan of the installed distributions for every group
        for group in GROUPS.values():
            for ep in sorted(found.select(group=group.name), key=lambda e: e.name):
                _load_one(group, ep)


def _builtins() -> None:
    """Import the modules that register the built-in entries (the engine's own "plug-ins") and
    declare the entry-point groups."""
    from . import data, metrics, models, policies  # noqa: F401


def _load_one(group: Any, ep: metadata.EntryPoint) -> None:
    from .registry import source

    dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist is not None else "an unknown distribution"
    label = f"plug-in {dist} ({group.name}: {ep.name} = {ep.value})"
    try:
        with source(label):
            group.register(ep.name, ep.load())
    except Exception as exc:  # noqa: BLE001 - any failure of third-party code is reported, never fatal
        ERRORS.append(PluginError(group.name, ep.name, ep.value, dist, f"{type(exc).__name__}: {exc}"))


def listing() -> dict[str, dict[str, str]]:
    """What each registry holds, {what: {name: where it came from}}, for ``modelcollapse plugins``."""
    from .registry import GROUPS

    load()
    return {group.what: group.sources() for group in GROUPS.values()}
