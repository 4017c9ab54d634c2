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
REAL, LAST, TWO_BACK, OLDER = "#2e7d32", "#ef8a3c", "#f6c28b", "#a8927c"
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


def integer_generations(ax, last: int, nbins: int | str = 10) -> None:
    """Generation axis with integer ticks (at most ``nbins`` intervals: fewer on a small panel); a single
    generation gets a little room around it."""
    if last == 0:
        ax.set_xticks([0])
        ax.set_xlim(-0.5, 0.5)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=nbins, integer=True))
        ax.set_xlim(0, last)
    ax.set_xlabel("generation")


def metric_curve(values: np.ndarray, name: str, description: str, theory: dict | None, shown: int) -> Figure:
    """Median and 5-95% band over replicates of one scalar metric, ``values`` (G, R), with the closed-form
    curves of ``theory`` (see :func:`modelcollapse.theory.curves`) in red where they apply."""
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
        curves += _theory_curves(ax, values, name, theory, mark)
    if _wants_log(*curves):
        ax.set_yscale("log")
    fig.suptitle(name, x=0.01, ha="left", fontsize=10, fontweight="bold")
    ax.set_title(description, loc="left", fontsize=8, fontweight="normal", color="#555")
    integer_generations(ax, len(gens) - 1)
    ax.legend(loc="best", ncol=2)
    return fig


def _theory_curves(ax, values: np.ndarray, name: str, theory: dict, mark: str | None) -> list[np.ndarray]:
    """Draw the theory's mean or root mean square (with the replicates' own, dotted), median and band."""
    gens = np.arange(len(values))
    n = min(len(gens), len(next(v for k, v in theory.items() if k in ("mean", "rms", "median"))))
    kind = "bound: " if theory.get("label") == "bound" else "theory: "
    drawn = []
    if "q05" in theory and "q95" in theory:
        for key in ("q05", "q95"):
            ax.plot(gens[:n], theory[key][:n], color=THEORY, lw=1.0, ls=(0, (1, 1.5)), marker=mark and "v",
                    label=f"{kind}5–95%" if key == "q05" else None)
            drawn.append(theory[key][:n])
    if "median" in theory:
        ax.plot(gens[:n], theory["median"][:n], color=THEORY, lw=1.4, ls="-.", marker=mark and "D",
                label=f"{kind}median")
        drawn.append(theory["median"][:n])
    if "upper" in theory:
        ax.plot(gens[:n], theory["upper"][:n], color=THEORY, lw=1.0, ls=(0, (4, 2, 1, 2)), label="bound: upper")
        drawn.append(theory["upper"][:n])
    for key, stat, own in (("mean", f"E[{name}]", nanmean), ("rms", f"root of E[{name}²]", _rms)):
        if key in theory:
            sim = own(values)
            ax.plot(gens, sim, color=MEAN, lw=1.4, ls=":", marker=mark and "s",
                    label="replicate mean" if key == "mean" else "replicate root mean square")
            ax.plot(gens[:n], theory[key][:n], color=THEORY, lw=1.4, ls="--", marker=mark and "D",
                    label=kind + stat)
            drawn += [sim, theory[key][:n]]
    return drawn


def _rms(values: np.ndarray) -> np.ndarray:
    return np.sqrt(nanmean(values**2))


def collapse_probability(theory: np.ndarray, share: np.ndarray) -> Figure:
    """P(collapsed by generation g): the closed form against the share of replicates."""
    fig = Figure(figsize=(8, 3.0), layout="constrained")
    ax = fig.add_subplot()
    gens = np.arange(len(share))
    ax.plot(np.arange(len(theory)), theory, color=THEORY, lw=1.6, ls="--", label="theory")
    idx = _thin(len(gens))
    ax.plot(gens[idx], share[idx], "o", color=MEDIAN, ms=3, label="share of replicates")
    ax.set_ylim(-0.02, 1.02)
    integer_generations(ax, len(gens) - 1)
    ax.set_ylabel("probability")
    ax.set_title("probability of collapse by generation g", loc="left")
    ax.legend(loc="best")
    return fig


def schedule_regimes(curves: dict[str, np.ndarray], generations: int) -> Figure:
    """The root of E[w2^2] under several sample-size schedules (one bounded, one not)."""
    fig = Figure(figsize=(8, 3.0), layout="constrained")
    ax = fig.add_subplot()
    styles = ["-", "--", ":"]
    for i, (label, curve) in enumerate(curves.items()):
        ax.plot(np.arange(len(curve)), curve, color=THEORY if i == 0 else SINGLE, lw=1.8 if i == 0 else 1.3,
                ls=styles[i % 3], label=label)
    integer_generations(ax, generations)
    ax.set_ylabel("root of E[w2²]")
    ax.set_title("expected W2 distance to the original under sample-size schedules", loc="left")
    ax.legend(loc="upper left")
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
    """Stacked mean share of each training set by source (real data, the previous generation, two back,
    older), as an area of one cell per generation."""
    fig = Figure(figsize=(8, 2.9), layout="constrained")
    ax = fig.add_subplot()
    colours = {"real data": REAL, "previous generation": LAST, "2 generations back": TWO_BACK,
               "older generations": OLDER}
    edges = np.r_[gens - 0.5, gens[-1] + 0.5]  # each generation fills [g - 0.5, g + 0.5]
    bottom = np.zeros(len(gens))
    for label, share in shares.items():
        top = bottom + share
        ax.fill_between(edges, np.r_[bottom, bottom[-1]], np.r_[top, top[-1]], step="post",
                        color=colours.get(label), label=label, lw=0)
        bottom = top
    ax.set_ylim(0, 1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("generation")
    ax.set_ylabel("share of training set")
    ax.set_title("where each generation's training data came from (mean over replicates)", loc="left")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center")
    return fig


DETECTOR_CURVES = {"detector_accuracy": ("accuracy", "#1f4e79"), "detector_precision": ("precision", "#2e7d32"),
                   "detector_recall": ("recall", "#ef8a3c"),
                   "detector_false_positive_rate": ("false-positive rate", "#c0392b")}


def detector(values: dict[str, np.ndarray]) -> Figure:
    """A filter's detector by generation: accuracy, precision, recall and false-positive rate (left), and
    the synthetic share and effective size of the final training set (right); ``values`` name -> (G, R),
    each a median over replicates with its 5-95% band. Generation 0 (no detector) is left out."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=(3, 2))
    gens = np.arange(len(next(iter(values.values()))))
    shown = gens >= 1 if len(gens) > 1 else gens >= 0
    mark = "o" if shown.sum() <= 1 else None

    def band(ax, v: np.ndarray, colour: str, label: str) -> None:
        lo, med, hi = quantiles(v[shown])
        ax.fill_between(gens[shown], lo, hi, color=colour, alpha=0.18, lw=0)
        ax.plot(gens[shown], med, color=colour, lw=1.7, label=label, marker=mark, ms=3)

    for name, (label, colour) in DETECTOR_CURVES.items():
        if name in values:
            band(left, values[name], colour, label)
    left.set_ylim(-0.02, 1.02)
    left.set_ylabel("rate")
    left.set_title("detector on each generation's candidates", loc="left")
    left.legend(loc="best", ncol=2)
    twin = right
    if "synthetic_passed" in values:
        band(right, values["synthetic_passed"], MEDIAN, "synthetic share of the training set")
        right.set_ylim(-0.02, 1.02)
        right.set_ylabel("synthetic share")
    if "train_kept" in values:
        twin = right.twinx() if "synthetic_passed" in values else right
        band(twin, values["train_kept"], OLDER, "effective training size")
        twin.set_ylabel("examples (sum of weights)")
        twin.set_ylim(bottom=0)
        twin.grid(False)
    handles = right.get_legend_handles_labels()[0] + (twin.get_legend_handles_labels()[0] if twin is not right else [])
    right.legend(handles=handles, loc="lower left")
    right.set_title("what passed into training", loc="left")
    first, last = int(gens[shown][0]), int(gens[shown][-1])
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(nbins=8, integer=True, min_n_ticks=1))
        ax.set_xlim(*((first - 0.5, last + 0.5) if first == last else (first, last)))
        ax.set_xlabel("generation")
    fig.suptitle("filter: the detector and what it let through (median over replicates, 5–95% band)", x=0.01,
                 ha="left", fontsize=10, fontweight="bold")
    return fig
