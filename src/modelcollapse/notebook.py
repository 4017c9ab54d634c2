"""Runs in a notebook: :func:`open_run` and :class:`RunView` (progress bars in Jupyter: :mod:`.progress`).

>>> import modelcollapse as mc
>>> run = mc.open_run("runs/gaussian-20250101-120000")     # doctest: +SKIP
>>> run                                                    # doctest: +SKIP
(an HTML summary: name, status, replicates x generations, policy, model, data, final medians, report link)
>>> run.metrics.groupby("generation")["w2"].median()       # doctest: +SKIP
>>> run.plot("variance_ratio")                             # doctest: +SKIP
(the report's own figure: median, 5-95% band, single replicates, the theory curves in red)

A :class:`RunView` reads the run directory, nothing else: it works on a finished run, an interrupted
or failed one (whatever was recorded), one still running (a snapshot: :meth:`RunView.reload`), and a
study's cell (``STUDY/cells/<name>``). A study directory itself is read with
:func:`modelcollapse.load_results`.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = ["RunView", "open_run"]

#: The metrics the HTML summary gives the final median of (the spec's first few).
SUMMARY_METRICS = 4
#: Cell paths named in the error for a study directory.
CELLS_NAMED = 3
STATUS_COLOURS = {"completed": "#2e7d32", "running": "#1565c0", "interrupted": "#ef6c00", "failed": "#c62828",
                  "damaged": "#c62828"}


# -- opening a run ------------------------------------------------------------------------------------
def open_run(path: str | os.PathLike) -> "RunView":
    """A run directory (or a study's cell, ``STUDY/cells/<name>``) for a notebook: see :class:`RunView`.

    A study directory is refused with how to read it (:func:`modelcollapse.load_results`, or a cell);
    anything else that is not a run directory gets the same :class:`~modelcollapse.store.RunDirError`
    as the command line."""
    return RunView(path)


def _study_refusal(path: Path) -> str:
    from .study.index import StudyDir

    try:
        cells = [entry["path"] for entry in StudyDir.open(path).read()["cells"]]
    except Exception:  # noqa: BLE001 - an unreadable index: still say what the directory is
        cells = []
    named = ", ".join(repr(str(path / c)) for c in cells[:CELLS_NAMED]) + (", ..." if len(cells) > CELLS_NAMED else "")
    hint = f" ({len(cells)} cells: {named})" if cells else ""
    return (f"{str(path)!r} is a study directory, not a run: read every cell's metrics with "
            f"modelcollapse.load_results({str(path)!r}), or open one cell with "
            f"modelcollapse.open_run('{path}/cells/<name>'){hint}")


class RunView:
    """One run directory, read for a notebook.

    - ``spec``: the resolved :class:`~modelcollapse.config.ExperimentSpec` (``config.yaml``);
    - ``manifest`` (dict) and ``status`` (``completed``, ``interrupted``, ``running``, ``failed``,
      ``damaged``; ``unknown`` when the manifest has none);
    - ``metrics``: one row per (replicate, generation), what :func:`modelcollapse.load_results` gives;
    - ``provenance``: one row per generation: ``size``, mean ``real`` and ``synthetic`` counts,
      ``real_share``, ``synthetic_share`` and ``sources`` (mean count per source: ``"real"`` or the
      generation that made it, as in ``provenance.jsonl``);
    - ``plot(metric)``: the report's figure of one metric (a ``matplotlib.figure.Figure``);
    - ``cell`` and ``study``: for a study's cell, its entry in ``study.json`` and the study's directory
      (None otherwise); ``report_path``: ``report.html`` when written.

    Everything is read when first asked for and kept: :meth:`reload` reads the directory again (a run
    that is still going)."""

    def __init__(self, path: str | os.PathLike) -> None:
        from .store import RunDirError, RunStore
        from .study.index import is_study_dir

        self.path = Path(path)
        if is_study_dir(self.path):
            raise RunDirError(_study_refusal(self.path))
        self._store = RunStore.open(self.path, writable=False)  # the command line's error for a non-run
        self.spec  # noqa: B018 - a config.yaml that does not validate is refused here, not at first use

    # -- what the directory holds -------------------------------------------------------------------
    @cached_property
    def spec(self) -> Any:
        """The run's resolved spec, from ``config.yaml``."""
        from .config import SpecError, load_spec
        from .store import RunDirError

        try:
            return load_spec(self.path / "config.yaml", stored=True)
        except SpecError as exc:
            raise RunDirError(f"{str(self.path / 'config.yaml')!r} does not hold a valid spec: {exc}") from None

    @cached_property
    def manifest(self) -> dict:
        return self._store.manifest()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def status(self) -> str:
        """The manifest's status; ``unknown`` when it has none or cannot be read (``manifest`` says why)."""
        from .store import RunDirError

        try:
            return str(self.manifest.get("status", "unknown"))
        except RunDirError:
            return "unknown"

    @cached_property
    def metrics(self) -> Any:
        """One row per (replicate, generation): ``replicate``, ``generation``, every metric, ``stopped``
        (:func:`modelcollapse.load_results` on this directory)."""
        from .study.results import load_results

        return load_results(self.path)

    @cached_property
    def provenance(self) -> Any:
        """One row per generation from ``provenance.jsonl`` (the manifest's summary for a run without one)."""
        import numpy as np
        import pandas as pd

        lines = self._store.read_jsonl("provenance.jsonl") or self.manifest.get("provenance", [])
        rows = []
        for line in sorted(lines, key=lambda ln: ln["generation"]):
            real, synthetic = float(line.get("real", 0.0)), float(line.get("synthetic", 0.0))
            total = real + synthetic
            rows.append({"generation": int(line["generation"]), "size": line.get("size"), "real": real,
                         "synthetic": synthetic, "real_share": real / total if total else np.nan,
                         "synthetic_share": synthetic / total if total else np.nan,
                         "sources": line.get("sources")})  # absent from a manifest's summary
        columns = ["generation", "size", "real", "synthetic", "real_share", "synthetic_share", "sources"]
        return pd.DataFrame(rows, columns=columns)

    @property
    def report_path(self) -> Path | None:
        target = self.path / "report.html"
        return target if target.is_file() else None

    @cached_property
    def study(self) -> Path | None:
        """The study directory this run is a cell of (None for a run of its own)."""
        from .study.index import CELLS, is_study_dir

        parent = self.path.resolve().parent
        return parent.parent if parent.name == CELLS and is_study_dir(parent.parent) else None

    @cached_property
    def cell(self) -> dict | None:
        """This cell's entry in its study's ``study.json``: setting, grid values, seed, status (None for a run)."""
        if self.study is None:
            return None
        from .study.index import StudyDir

        try:
            cells = StudyDir.open(self.study).read()["cells"]
        except Exception:  # noqa: BLE001 - the index is the study's business; the cell is still a run
            return None
        name = self.path.resolve().name
        return next((dict(entry) for entry in cells if entry.get("name") == name), None)

    def reload(self) -> "RunView":
        """Forget what was read (the manifest, metrics, provenance, the plots' data): read it again on use."""
        for name in ("spec", "manifest", "metrics", "provenance", "cell", "_report_run"):
            self.__dict__.pop(name, None)
        return self

    # -- figures ------------------------------------------------------------------------------------
    @cached_property
    def _report_run(self) -> Any:
        """The run as the report reads it (:func:`modelcollapse.report.run.load_run`: checked against its
        last checkpoint; a damaged run is refused naming each damaged file)."""
        from .report.run import load_run

        return load_run(self.path)

    @property
    def metric_names(self) -> list[str]:
        """The metrics :meth:`plot` can draw: those with recorded values."""
        run = self._report_run
        return [*run.scalars, *run.vectors]

    def plot(self, metric: str) -> Any:
        """The report's figure of ``metric`` (a ``matplotlib.figure.Figure``): for a scalar metric the median
        over replicates, its 5-95% band, a few single replicates and, where a closed form applies, the
        theory curves; for a vector metric (mixture weights) one band per component."""
        from .registry import UnknownNameError, suggest
        from .report import figures
        from .report.sections import metric_figure

        run = self._report_run
        if metric not in run.scalars and metric not in run.vectors:
            where = f"{self.name} ({self.path})"
            if not self.metric_names:
                raise UnknownNameError(f"no metric values recorded yet in {where}")
            raise UnknownNameError(f"no metric {metric!r} in {where}{suggest(metric, self.metric_names)}")
        _inline_figures()
        with figures.style():  # the report's own figure and style
            return metric_figure(run, metric)

    # -- display ------------------------------------------------------------------------------------
    def _rows(self) -> Any:
        """The metric rows for the summaries, or None when they cannot be read (a summary never raises)."""
        try:
            return self.metrics
        except Exception:  # noqa: BLE001 - reading them again (run.metrics) shows the error
            return None

    def _progress(self) -> tuple[int | str, int, int]:
        """(generations with metric rows, generations planned, replicates)."""
        df = self._rows()
        done = "?" if df is None else int(df["generation"].max()) + 1 if len(df) else 0
        return done, self.spec.generations + 1, self.spec.replicates

    def _final_medians(self) -> tuple[int | None, list[tuple[str, float]]]:
        """The last generation with rows and the median over replicates there of the first few metrics."""
        import numpy as np

        df = self._rows()
        if df is None or not len(df):
            return None, []
        last = int(df["generation"].max())
        at = df[df["generation"] == last]
        out = []
        for name in self.spec.metrics:
            if name in at.columns and at[name].dtype.kind == "f":
                values = at[name].to_numpy(dtype=float)
                values = values[~np.isnan(values)]
                out.append((name, float(np.median(values)) if len(values) else float("nan")))
            if len(out) == SUMMARY_METRICS:
                break
        return last, out

    def __repr__(self) -> str:
        done, planned, replicates = self._progress()
        return (f"RunView({str(self.path)!r}: {self.name}, {self.status}, {replicates} replicates x "
                f"{done}/{planned} generations)")

    def _repr_html_(self) -> str:
        from . import schedules
        from .policies import POLICIES
        from .report.page import esc, num
        from .report.sections import spec_cell

        spec, status = self.spec, self.status
        done, planned, replicates = self._progress()
        colour = STATUS_COLOURS.get(status, "#616161")
        badge = (f"<span style='background:{colour};color:#fff;border-radius:3px;padding:0 6px;"
                 f"font-weight:600;text-transform:uppercase;font-size:.8em'>{esc(status)}</span>")
        policy = POLICIES.get(spec.policy.kind).describe(spec.policy) if spec.policy.kind in POLICIES else spec.policy.kind
        rows = [("directory", f"<code>{esc(str(self.path))}</code>"),
                ("replicates × generations", f"{replicates} × {done} of {planned} generations (0–{planned - 1}) "
                                             "recorded"),
                ("policy", esc(policy)), ("model", spec_cell(spec.model)), ("data", spec_cell(spec.data)),
                ("train size", esc(schedules.describe(spec.train_size, spec.generations)))]
        error = self.manifest.get("error") if status != "unknown" else None
        if error:
            rows.append(("error", f"<code>{esc(str(error))}</code>"))
        if self.cell is not None:
            rows.append(("study cell", esc(f"{self.cell.get('setting')}, seed {self.cell.get('seed')}, of the study in "
                                           f"{self.study}")))
        last, medians = self._final_medians()
        if medians:
            text = ", ".join(f"{esc(name)} {num(value)}" for name, value in medians)
            rows.append((f"median at generation {last}", text))
        report = self.report_path
        if report is not None:
            rows.append(("report", f"<a href='{esc(_href(report))}' target='_blank'>report.html</a> "
                                   f"<code>{esc(str(report))}</code>"))
        body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{k}</th>"
                       f"<td style='text-align:left'>{v}</td></tr>" for k, v in rows)
        return (f"<div><b>{esc(spec.name)}</b> {badge}"
                f"<table style='margin-top:.3em;font-size:.9em'>{body}</table></div>")


def _href(path: Path) -> str:
    """A link to ``path``: relative to the working directory (a notebook's own folder) where it lies below
    it, so that Jupyter serves it; else a file URI."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _inline_figures() -> None:
    """In IPython, show a returned ``Figure`` as an image even when pyplot was never imported (the report's
    figures never touch pyplot, whose import is what usually registers the inline formatter). A formatter
    already registered (``%matplotlib inline``, a user's own) is left alone."""
    import sys

    if "IPython" not in sys.modules:
        return
    try:
        from IPython import get_ipython
        from matplotlib.figure import Figure

        shell = get_ipython()
        if shell is None:
            return
        formatter = shell.display_formatter.formatters["image/png"]
        try:
            formatter.lookup_by_type(Figure)
        except KeyError:
            from .report.figures import png

            formatter.for_type(Figure, png)
    except Exception:  # noqa: BLE001 - a display nicety: never a reason to fail a plot
        pass
