"""A study directory: ``study.yaml`` (the study as given), ``study.json`` (its index) and ``cells/``.

::

    runs/grid/
      study.yaml        the study definition, command-line additions included (what --resume reruns)
      study.json        every cell: name, setting, grid values, seed, resolved spec, status, timings
      cells/<name>/     one ordinary run directory per cell (report, resume, repair all work on it)
      tables/<name>.parquet  each finished cell's rows, written by its worker (a cache of cells/<name>)
      tables/mitigations.json  with report.mitigations: the relative changes, answers and sentences
      results.parquet   one row per (cell, replicate, generation) - see results.py
      aggregate.parquet mean, median and a 95% bootstrap interval per setting, generation and metric
      report.html       the study report

Only the process that runs the study writes ``study.json`` (atomically, as every file of a run
directory); cells report back to it. A cell's status there is one of pending, running,
completed, failed (with its error) or interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ..store import RunDirError, RunStore, atomic_write, describe_path, now, versions
from .spec import Cell, Study

INDEX, DEFINITION, CELLS = "study.json", "study.yaml", "cells"
FORMAT = 1
STATUSES = ("pending", "running", "completed", "failed", "interrupted")


def is_study_dir(path: Path) -> bool:
    return (Path(path) / INDEX).is_file()


class StudyDir:
    """The files of one study directory; a lock (``.lock``, as a run's) keeps a second sweep out."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = RunStore(self.path)  # the same one-writer lock as a run directory

    # -- creating and opening --------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path | str, study: Study) -> "StudyDir":
        """A new study directory, or the same study's existing one (a relaunch continues it)."""
        path = Path(path)
        if is_study_dir(path):
            existing = cls.open(path)
            existing.lock()
            index = existing.read()
            if {c["name"] for c in index["cells"]} != {c.name for c in study.cells}:
                existing.unlock()
                raise RunDirError(f"{str(path)!r} holds a different study ({index['name']}: "
                                  f"{len(index['cells'])} cells); continue it with `modelcollapse sweep --resume "
                                  f"--out {path}`, or choose another --out")
            return existing
        RunStore.make_new(path)
        out = cls(path)
        out.lock()
        atomic_write(path / DEFINITION, yaml.safe_dump(study.definition, sort_keys=False).encode())
        out.write({
            "format": FORMAT, "name": study.name, "description": study.description, "created": now(),
            "status": "pending", "versions": versions(), "axes": study.axes,
            "seeds": sorted({c.seed for c in study.cells}),
            "cells": [cell_entry(c) for c in study.cells],
        })
        return out

    @classmethod
    def open(cls, path: Path | str) -> "StudyDir":
        path = Path(path)
        what = describe_path(path)
        if what == "does not exist":
            raise RunDirError(f"{str(path)!r} does not exist")
        if not is_study_dir(path):
            hint = " (it is a run directory: use `modelcollapse run --resume`)" if (path / "config.yaml").is_file() else ""
            raise RunDirError(f"{str(path)!r} is not a study directory (no {INDEX}){hint}")
        return cls(path)

    def lock(self) -> None:
        try:
            self._lock.lock()
        except RunDirError as exc:
            raise RunDirError(str(exc).replace("another process", "another sweep")) from None

    def unlock(self) -> None:
        self._lock.unlock()

    # -- the index ---------------------------------------------------------------------------------
    def read(self) -> dict:
        try:
            index = json.loads((self.path / INDEX).read_text())
        except (OSError, ValueError) as exc:
            raise RunDirError(f"{self.path / INDEX} cannot be read: {exc}") from None
        if not isinstance(index, dict) or not isinstance(index.get("cells"), list):
            raise RunDirError(f"{self.path / INDEX} is not a study index")
        return index

    def write(self, index: dict) -> None:
        index["updated"] = now()
        atomic_write(self.path / INDEX, (json.dumps(index, indent=1) + "\n").encode())

    def definition(self) -> dict:
        return yaml.safe_load((self.path / DEFINITION).read_text())

    def cell_path(self, name: str) -> Path:
        return self.path / CELLS / name


def cell_entry(cell: Cell) -> dict[str, Any]:
    return {"name": cell.name, "setting": cell.setting, "variant": cell.variant, "values": cell.values,
            "seed": cell.seed, "hash": cell.hash, "path": f"{CELLS}/{cell.name}",
            "spec": cell.spec.model_dump(mode="json"), "status": "pending", "error": None,
            "started": None, "finished": None, "seconds": None, "generations_completed": None}
