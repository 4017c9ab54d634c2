"""Experiment trackers: the interface each one implements, and the session a run logs through.

The run directory is the source of truth; a tracker is a mirror. So a :class:`Session` never lets
a tracker stop or change a run: the first exception a tracker raises (a full disk, bad
credentials, a server gone) is reported once as a :class:`TrackerWarning` and that tracker is
dropped for the rest of the run. Only a tracker that is not installed is an error, raised before
the run starts, with the command that installs it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

from ..errors import SpecError
from .records import GenerationLog


class TrackerWarning(UserWarning):
    """A tracker failed; the run goes on without it."""


@dataclass
class TrackerRun:
    """Who a tracker run is: its name and group as the tracker shows them, and a stable key that a
    resumed run finds its tracker run by."""

    name: str
    key: str
    project: str
    group: str | None = None
    resume: bool = False  # continue the tracker run of this key (a resumed run) rather than start one
    start: int = 0  # the first generation this session logs


class Tracker(ABC):
    """One tracker run: opened by the constructor, then :meth:`log` per generation, :meth:`artifacts`
    once at the end, :meth:`close`. ``folder`` is where this tracker keeps its files."""

    #: the name in ``logging.trackers`` / ``--log``
    name: ClassVar[str]
    #: modules that must import, and the extra that installs them
    requires: ClassVar[tuple[str, ...]]
    extra: ClassVar[str]

    def __init__(self, folder: Path, run: TrackerRun, config: dict[str, Any], options: Any) -> None:
        self.folder, self.run, self.options = Path(folder), run, options

    @abstractmethod
    def log(self, record: GenerationLog) -> None: ...

    def artifacts(self, files: list[Path], root: Path) -> None:
        """The report and its figures (paths relative to ``root`` are kept)."""

    @abstractmethod
    def close(self, status: str) -> None: ...


def tracker_class(name: str) -> type[Tracker]:
    from . import TRACKERS

    module, cls = TRACKERS[name].rsplit(":", 1)
    return getattr(importlib.import_module(module), cls)


def tracker_names(names: Any, flag: str) -> list[str]:
    """``names`` (a list, or "a,b" as a flag takes them) checked as ``logging.trackers`` checks them: an
    unknown one is a :class:`SpecError` naming ``flag`` with a did-you-mean."""
    from pydantic import ValidationError

    from ..config import LoggingSpec

    try:
        return LoggingSpec(trackers=names).trackers
    except ValidationError as exc:  # its message names the bad tracker
        raise SpecError([f"{flag}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}"]) from None


def check_installed(names: list[str]) -> None:
    """Refuse, before any work, trackers whose package is missing: say how to install each."""
    missing = []
    for name in names:
        cls = tracker_class(name)
        gone = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if gone:
            missing.append(f"logging.trackers: {name} needs {', '.join(gone)}, which is not installed; "
                           f"install it with: pip install \"modelcollapse[{cls.extra}]\"")
    if missing:
        raise SpecError(missing)


def run_key(path: Path, manifest: dict) -> str:
    """A key for the run in ``path`` that survives a resume: its id, or (older runs) a digest of when
    it started and its folder's name."""
    if manifest.get("run_id"):
        return str(manifest["run_id"])
    return hashlib.sha256(f"{manifest.get('started')}|{Path(path).name}".encode()).hexdigest()[:16]


class Session:
    """The trackers of one run: created before the run (which checks they are installed), opened by the
    run loop once its directory exists, fed each generation, finished with the report as artifacts.

    Every call into a tracker is guarded: its first exception warns once and drops it."""

    def __init__(self, names: list[str], options: Any, *, folder: Path | str | None = None,
                 group: str | None = None, name: str | None = None, warn: Callable[[str], None] | None = None) -> None:
        check_installed(names)
        self.names, self.options = list(names), options
        self.warn = warn or (lambda text: warnings.warn(text, TrackerWarning, stacklevel=4))
        self.folder = Path(folder) if folder is not None else (Path(options.dir) if options.dir else None)
        self.group, self.name = group, name
        self.active: dict[str, Tracker] = {}
        self.failed: dict[str, str] = {}
        self.finished = False

    def open(self, run_dir: Path, spec: Any, manifest: dict, *, start: int = 0, resume: bool = False,
             key: str | None = None) -> None:
        """Start (or, ``resume``, continue) one tracker run per tracker for the run in ``run_dir``."""
        from .records import hyperparameters

        folder = self.folder or Path(run_dir) / "trackers"
        run = TrackerRun(name=self.name or spec.name, key=key or run_key(run_dir, manifest),
                         project=self.options.project, group=self.group, resume=resume, start=start)
        config = hyperparameters(spec)
        for name in self.names:
            if name in self.active or name in self.failed:
                continue
            tracker = self._guard(name, lambda: tracker_class(name)(folder / name, run, config, self.options))
            if tracker is not None:
                self.active[name] = tracker

    def log(self, record: GenerationLog) -> None:
        for name, tracker in list(self.active.items()):
            self._guard(name, lambda: tracker.log(record))

    def finish(self, run_dir: Path | None, status: str) -> None:
        """Send the report and figures of ``run_dir`` (when written) and end every tracker run; once."""
        if self.finished:
            return
        self.finished = True
        files: list[Path] = []
        if run_dir is not None:
            root = Path(run_dir)
            files = [p for p in [root / "report.html", *sorted((root / "figures").glob("*.png"))] if p.is_file()]
        for name, tracker in list(self.active.items()):
            if files and status == "completed":
                self._guard(name, lambda: tracker.artifacts(files, Path(run_dir)))
            if name in self.active:
                self._guard(name, lambda: tracker.close(status))
        self.active.clear()

    def _guard(self, name: str, call: Any) -> Any:
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - a tracker never stops the run: it is dropped, once
            self.failed[name] = f"{type(exc).__name__}: {exc}"
            tracker = self.active.pop(name, None)
            self.warn(f"tracker {name} failed ({self.failed[name]}); the run goes on without it, and its "
                      f"directory has everything (modelcollapse export DIR --to {name} sends it later)")
            if tracker is not None:
                try:
                    tracker.close("failed")
                except Exception:  # noqa: BLE001 - already reported
                    pass
            return None
