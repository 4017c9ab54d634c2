"""Report figures: one function per figure, each returning a ``matplotlib.figure.Figure``.

Figures are built as ``Figure`` objects (never through ``pyplot``) so that making a
report touches no global plotting state and works without a display. Styling is applied
with :func:`style`, a ``rc_context`` around building *and* saving, for the same reason.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110
MEDIAN, BAND, SINGLE, THEORY, MEAN = "#1f4e79", "#7fa7d1", "#6b6b6b", "#c0392b", "#e67e22"
REAL, LAST, OLDER = "#2e7d32", "#ef8a3c", "#c9a27e"
STYLE = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.25,
    "legend.frameon": False,
    "legend.fontsize": 8,
    "savefig.dpi": DPI,
}
MAX_POINTS = 400  # individual replicate lines are thinned to about this many points


@contextmanager
def style() -> Iterator[None]:
    with rc_context(STYLE):
        yield


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def quantiles(values: np.ndarray, qs: Sequence[float] = (5, 50, 95)) -> np.ndarray:
    """Per-row percentiles over replicates (axis 1), NaN-aware; shape (len(qs), rows).

    ``inf`` is a real outcome (a KL once the variance is exactly zero), so it is kept
    when present (metrics.jsonl stores it as 1e999, which reads back as inf); "nearest" then
    avoids inf - inf interpolation, which would make NaN.
    """
    finite = np.isfinite(values) | np.isnan(values)
    method = "linear" if finite.all() else "nearest"
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: every replicate stopped
        return np.nanpercentile(values, qs, axis=1, method=method)


def nanmean(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


def _thin(n: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(0, n, max(1, n // MAX_POINTS)), n - 1]) if n else np.arange(0)


def _wants_log(*curves: np.ndarray) -> bool:
    """Log scale when the plotted values are positive and span more than two decades."""
    v = np.concatenate([c[np.isfinite(c)] for c in curves])
    return v.size > 1 and v.min() > 0 and v.max() / v.min() > 100


def sequential(i: int, n: int) -> tuple:
    """Colour of the i-th of n generations: dark (early) to light green (late); viridis' last
    yellow is too pale on white."""
    return colormaps["viridis"](0.85 * i / max(1, n - 1))


def integer_generations(ax, last: int) -> None:
    """Generation axis with integer ticks; a single generation gets a little room around it."""
    if last == 0:
        ax.set_xticks([0])
        ax.set_xlim(-0.5, 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, last)
    ax.set_xlabel("generation")


def metric_curve(values: np.ndarray, name: str, description: str, theory: np.ndarray | None,
                 shown: int) -> Figure:
    """Median and 5-95% band over replicates of one scalar metric, ``values`` (G, R)."""
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    gens = np.arange(len(values))
    lo, med, hi = quantiles(values)
    idx = _thin(len(gens))
    mark = "o" if len(gens) == 1 else None  # a single generation has no line to draw
    for r in range(min(shown, values.shape[1])):
        ax.plot(gens[idx], values[idx, r], color=SINGLE, lw=0.6, alpha=0.45, marker=mark, ms=3,
                label="single replicates" if r == 0 else None)
    if len(gens) == 1:
        ax.errorbar(gens, med, yerr=[med - lo, hi - med], color=BAND, lw=6, alpha=0.6, label="5–95% of replicates")
    else:
        ax.fill_between(gens, lo, hi, color=BAND, alpha=0.35, lw=0, label="5–95% of replicates")
    ax.plot(gens, med, color=MEDIAN, lw=1.8, label="median", marker=mark)
    curves = [med, hi]
    if theory is not None:
        theory = theory[: len(gens)]
        mean = nanmean(values)
        ax.plot(gens, mean, color=MEAN, lw=1.4, ls=":", label="replicate mean", marker=mark and "s")
        ax.plot(gens[: len(theory)], theory, color=THEORY, lw=1.4, ls="--", label=f"theory: E[{name}]",
                marker=mark and "D")
        curves += [mean, theory]
    if _wants_log(*curves):
        ax.set_yscale("log")
    fig.suptitle(name, x=0.01, ha="left", fontsize=10, fontweight="bold")
    ax.set_title(description, loc="left", fontsize=8, fontweight="normal", color="#555")
    integer_generations(ax, len(gens) - 1)
    ax.legend(loc="best", ncol=2)
    return fig


# -- mixture weights and provenance ------------------------------------------------------
def component_weights(values: np.ndarray) -> Figure:
    """Sorted mixture weights ``values`` (G, R, k): median and 5-95% band per component."""
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    gens = np.arange(len(values))
    colours = colormaps["tab10"](np.arange(values.shape[2]) % 10)
    for j in range(values.shape[2]):
        lo, med, hi = quantiles(values[:, :, j])
        ax.fill_between(gens, lo, hi, color=colours[j], alpha=0.2, lw=0)
        ax.plot(gens, med, color=colours[j], lw=1.6, label=f"component {j + 1} (by size)",
                marker="o" if len(gens) == 1 else None)
    ax.set_ylim(0, 1)
    integer_generations(ax, len(gens) - 1)
    ax.set_ylabel("weight")
    ax.set_title("component_weights: median and 5–95% band, largest component first", loc="left")
    ax.legend(loc="best")
    return fig


def provenance(gens: np.ndarray, shares: dict[str, np.ndarray]) -> Figure:
    """Stacked mean share of each training set by source; bars when there are few generations."""
    fig = Figure(figsize=(8, 2.9), layout="constrained")
    ax = fig.add_subplot()
    colours = {"real data": REAL, "previous generation": LAST, "older generations": OLDER}
    bottom = np.zeros(len(gens))
    for label, share in shares.items():
        if len(gens) <= 30:
            ax.bar(gens, share, bottom=bottom, color=colours.get(label), label=label, width=0.8)
        else:
            ax.fill_between(gens, bottom, bottom + share, color=colours.get(label), label=label, lw=0, step="mid")
        bottom = bottom + share
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(gens[0] - 0.5, gens[-1] + 0.5)
    ax.set_xlabel("generation")
    ax.set_ylabel("share of training set")
    ax.set_title("where each generation's training data came from (mean over replicates)", loc="left")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center")
    return fig
