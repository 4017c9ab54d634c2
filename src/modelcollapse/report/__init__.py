"""The HTML report of a run directory: a core page plus the sections of the run's data kind and
family (see :mod:`.section`). Importing this package is cheap; plotting libraries load when a
report is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .section import DETAIL, FILES, HEADER, LEAD, METRICS, PROVENANCE, STOPPED, THEORY, VECTORS, Section

__all__ = ["DETAIL", "FILES", "HEADER", "LEAD", "METRICS", "PROVENANCE", "STOPPED", "THEORY", "VECTORS", "Section",
           "write_report"]


def write_report(run_dir: str | Path, *, progress: bool = False) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` into ``run_dir``; return the HTML path."""
    from .page import write_report as write

    return write(run_dir, progress=progress)


def __getattr__(name: str) -> Any:  # report.load_run, report.Run: the reader, imported on use
    if name in ("load_run", "Run"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
