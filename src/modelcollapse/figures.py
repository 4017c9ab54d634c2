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
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import mixtures
from .mixtures import Mixture
from .models import MODELS

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


def _integer_generations(ax, last: int) -> None:
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
    _integer_generations(ax, len(gens) - 1)
    ax.legend(loc="best", ncol=2)
    return fig


# -- densities ------------------------------------------------------------------------
def fitted_mixture(kind: str, state: dict[str, np.ndarray], r: int) -> Mixture | None:
    """Replicate r's fitted density as a Gaussian mixture, or None when it has no finite fit.

    Built from the parameters directly rather than through the model classes, because a
    collapsed fit has a singular covariance that e.g. scikit-learn's mixture cannot load.
    """
    if not state:
        return None
    s = {k: np.asarray(v[r], dtype=float) for k, v in state.items()}
    if kind == "gaussian":
        mix = (np.ones(1), s["mean"][None], s["covariance"][None])
    elif kind == "gmm":
        mix = (s["weights"], s["means"], s["covariances"])
    elif kind == "kde":
        n, d = s["data"].shape
        mix = (np.full(n, 1.0 / n), s["data"], np.broadcast_to(np.eye(d) * float(s["bandwidth"]) ** 2, (n, d, d)))
    else:  # a family added later: trust its own conversion
        mix = MODELS.get(kind)().load_state_dict(s).as_mixture()
    return mix if all(np.all(np.isfinite(a)) for a in mix) else None


def marginal(mix: Mixture, axes: list[int]) -> Mixture:
    w, m, c = mix
    return w, m[:, axes], c[:, axes][:, :, axes]


def span(truth: Mixture, fits: list[Mixture], axis: int) -> tuple[float, float]:
    """The original's 0.1-99.9% range widened to the fits' main mass (mean ± 3.3 sd of each
    component), but at most two original widths either side, so a runaway chain cannot
    squash the original into a sliver."""
    t_lo, t_hi = (mixtures.marginal_quantile(truth, q, axis) for q in (0.001, 0.999))
    lo, hi = t_lo, t_hi
    width = t_hi - t_lo
    for w, m, c in fits:
        big = w >= 1e-3 * w.max()
        sd = np.sqrt(np.clip(c[big, axis, axis], 0, None))
        lo, hi = min(lo, float(np.min(m[big, axis] - 3.3 * sd))), max(hi, float(np.max(m[big, axis] + 3.3 * sd)))
    lo, hi = max(lo, t_lo - 2 * width), min(hi, t_hi + 2 * width)
    pad = 0.03 * (hi - lo)
    return lo - pad, hi + pad


def _sequential(i: int, n: int) -> tuple:
    """Colour of the i-th of n generations: dark (early) to light green (late); viridis' last
    yellow is too pale on white."""
    return colormaps["viridis"](0.85 * i / max(1, n - 1))


def _pdf_1d(mix: Mixture, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density of a 1-D mixture on ``x``, and the locations of point-mass components."""
    w, m, c = mix
    sd = np.sqrt(np.clip(c[:, 0, 0], 0, None))
    ok = sd > 0
    z = (x[:, None] - m[None, ok, 0]) / sd[ok]
    pdf = (np.exp(-0.5 * z**2) / (sd[ok] * np.sqrt(2 * np.pi))) @ (w[ok] / w.sum())
    return pdf, m[~ok, 0]


def _grid_1d(mixes: list[Mixture], lo: float, hi: float) -> np.ndarray:
    """An even grid plus extra points inside components narrower than its step (no aliasing)."""
    x = np.linspace(lo, hi, 800)
    step = x[1] - x[0]
    extra = []
    for w, m, c in mixes:
        sd = np.sqrt(np.clip(c[:, 0, 0], 0, None))
        narrow = np.flatnonzero((sd > 0) & (sd < 4 * step))[:50]
        extra += [m[k, 0] + sd[k] * np.linspace(-5, 5, 61) for k in narrow]
    return np.unique(np.concatenate([x, *extra])) if extra else x


def density_1d(truth: Mixture, fits: dict[int, list[Mixture | None]], span: tuple[float, float]) -> Figure:
    """The original density and the fitted ones at chosen generations (replicate 0 bold)."""
    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.add_subplot()
    all_mixes = [truth, *(m for ms in fits.values() for m in ms if m is not None)]
    x = _grid_1d(all_mixes, *span)
    p0, _ = _pdf_1d(truth, x)
    ax.fill_between(x, p0, color="#d9d9d9", lw=0)
    ax.plot(x, p0, color="black", lw=1.6, label="original")
    top, clipped = 3.0 * p0.max(), False
    for i, (g, mixes) in enumerate(fits.items()):
        colour = _sequential(i, len(fits))
        for r, mix in enumerate(mixes):
            if mix is None:
                continue
            pdf, points = _pdf_1d(mix, x)
            label = f"generation {g}" if r == 0 else None
            ax.plot(x, pdf, color=colour, lw=1.6 if r == 0 else 0.8, alpha=1 if r == 0 else 0.4, label=label)
            for pt in points:  # a zero-variance fit: all its mass at one point
                ax.axvline(pt, color=colour, lw=1.2, ls="--", alpha=1 if r == 0 else 0.4)
            clipped |= bool(pdf.max() > top) or bool(len(points))
    ax.set_xlim(*span)
    ax.set_ylim(0, top if clipped else None)
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.set_title("original and fitted densities" + ("  (taller peaks clipped)" if clipped else ""), loc="left")
    ax.legend(loc="upper right")
    return fig


def _pdf_2d(mix: Mixture, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density of a 2-D mixture at ``pts`` (n, 2); components with a singular covariance are
    returned separately as points (they have no density to contour)."""
    w, m, c = mix
    ev = np.linalg.eigvalsh(c)
    ok = ev[:, 0] > 1e-12 * np.maximum(ev[:, 1], 1e-300)
    keep = np.flatnonzero(ok)
    prec, norm = np.linalg.inv(c[keep]), w[keep] / w.sum() / (2 * np.pi * np.sqrt(np.linalg.det(c[keep])))
    out = np.zeros(len(pts))
    for s in range(0, len(keep), 128):  # chunks: a 1000-point KDE on the grid stays small in memory
        k = slice(s, s + 128)
        dx, dy = pts[:, :1] - m[keep[k], 0], pts[:, 1:] - m[keep[k], 1]
        maha = prec[k, 0, 0] * dx**2 + 2 * prec[k, 0, 1] * dx * dy + prec[k, 1, 1] * dy**2
        out += np.exp(-0.5 * maha) @ norm[k]
    return out, m[~ok]


def density_2d(truth: Mixture, fits: dict[int, list[Mixture | None]],
               limits: tuple[tuple[float, float], tuple[float, float]]) -> Figure:
    """One panel per generation: original contours (grey) and replicate 0's fit (colour)."""
    n = len(fits)
    rows = -(-n // 4)  # at most 4 a row, the rows balanced
    cols = -(-n // rows)
    ratio = np.clip(np.ptp(limits[1]) / np.ptp(limits[0]), 0.5, 1.5)  # panels drawn to equal scale
    fig = Figure(figsize=(2.6 * cols + 0.4, 2.6 * ratio * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    xs, ys = np.linspace(*limits[0], 120), np.linspace(*limits[1], 120)
    X, Y = np.meshgrid(xs, ys)
    pts = np.column_stack([X.ravel(), Y.ravel()])
    p0, _ = _pdf_2d(truth, pts)
    levels = p0.max() * np.array([0.05, 0.2, 0.5, 0.8])  # the same levels for every panel
    for i, (g, mixes) in enumerate(fits.items()):
        ax = axes.flat[i]
        colour = _sequential(i, n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no contour levels": a fit far narrower than the grid
            ax.contour(X, Y, p0.reshape(X.shape), levels=levels, colors="#9e9e9e", linewidths=0.9)
            mix = mixes[0] if mixes else None
            if mix is not None:
                pdf, points = _pdf_2d(mix, pts)
                if pdf.max() > levels[0]:
                    ax.contour(X, Y, pdf.reshape(X.shape), levels=levels, colors=[colour], linewidths=1.2)
                narrow = pdf.max() > 1e3 * p0.max() or not pdf.any()
                centres = np.vstack([points, mix[1]]) if narrow else points
                ax.scatter(centres[:, 0], centres[:, 1], color=colour, marker="x", s=30, zorder=3)
        ax.set_title(f"generation {g}" + ("" if mixes and mixes[0] is not None else " (stopped)"), fontsize=9)
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
        ax.set_aspect("equal", adjustable="box")  # true shapes: collapse shows as shrinking ellipses
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    fig.supxlabel("x₁", fontsize=9)
    fig.supylabel("x₂", fontsize=9)
    return fig


# -- categorical ------------------------------------------------------------------------
def _generation_axis(ax, last: int) -> None:
    """Categorical chains change fastest early: past 100 generations, stretch the start
    with a scale that is linear up to 10 and logarithmic beyond."""
    if last > 100:
        ax.set_xscale("symlog", linthresh=10, linscale=0.6)
        ax.set_xlabel("generation (log scale beyond 10)")
    else:
        ax.set_xlabel("generation")
    ax.set_xlim(0, max(1, last))


def rare_categories(gens: np.ndarray, probs: np.ndarray, q: np.ndarray, rare: np.ndarray) -> Figure:
    """The rarest original categories over generations ``gens``, from ``probs`` (G, R, K):
    the mean over replicates beside the original value (each probability is a martingale
    under maximum likelihood, so the mean stays put while individual chains lose the
    category), replicate 0, and the share of replicates in which each is still present."""
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 3)
    colours = colormaps["plasma"](np.linspace(0, 0.85, len(rare)))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(probs[:, :, rare], axis=1)
        alive = np.nanmean(probs[:, :, rare] > 0, axis=1)
    for j, k in enumerate(rare):
        axes[0].plot(gens, mean[:, j], color=colours[j], lw=1.2, label=f"#{k} (p₀={q[k]:.2g})")
        axes[0].axhline(q[k], color=colours[j], lw=0.8, ls="--", alpha=0.6)
        axes[1].plot(gens, probs[:, 0, k], color=colours[j], lw=1.0)
        axes[2].plot(gens, alive[:, j], color=colours[j], lw=1.2)
    titles = ["mean over replicates (dashed: p₀)", "replicate 0", "share of replicates with p > 0"]
    for ax, title in zip(axes, titles):
        ax.set_title(title, loc="left")
        _generation_axis(ax, int(gens[-1]))
    axes[0].set_ylabel("fitted probability")
    axes[0].set_ylim(0, 3 * q[rare].max())
    axes[2].set_ylim(-0.02, 1.02)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", title="category")
    return fig


def category_heatmap(gens: np.ndarray, probs0: np.ndarray, q: np.ndarray) -> Figure:
    """Replicate 0's probabilities (category by generation), most likely original category on top;
    vanished categories (p = 0) are white."""
    order = np.argsort(-q, kind="stable")
    K = len(q)
    fig = Figure(figsize=(8, float(np.clip(1.6 + 0.07 * K, 2.6, 4.8))), layout="constrained")
    ax = fig.add_subplot()
    with np.errstate(divide="ignore"):
        logp = np.log10(probs0[:, order].T)
    data = np.ma.masked_invalid(np.where(np.isneginf(logp), np.nan, logp))
    cmap = colormaps["magma_r"].with_extremes(bad="white")
    positive = probs0[probs0 > 0]
    lo = float(np.log10(max(min(q.min(), positive.min(initial=1.0)), 1e-12))) - 0.1
    edges = np.r_[gens - 0.5, gens[-1] + 0.5] if len(gens) < 2 else np.r_[gens[0], (gens[1:] + gens[:-1]) / 2, gens[-1]]
    mesh = ax.pcolormesh(edges, np.arange(K + 1) - 0.5, data, cmap=cmap, norm=Normalize(lo, 0), shading="flat")
    ax.set_ylim(K - 0.5, -0.5)
    ticks = np.unique(np.linspace(0, K - 1, min(K, 10)).round().astype(int))
    ax.set_yticks(ticks, [str(order[t]) for t in ticks])
    ax.set_ylabel("category\n(most likely original first)")
    _generation_axis(ax, int(gens[-1]))
    ax.set_title("replicate 0: log₁₀ probability per category (white = vanished)", loc="left")
    ax.grid(False)
    fig.colorbar(mesh, ax=ax, label="log₁₀ p", shrink=0.9)
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
    _integer_generations(ax, len(gens) - 1)
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
