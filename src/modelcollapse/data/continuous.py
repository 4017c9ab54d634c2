"""Continuous data given in closed form: a Gaussian, or a Gaussian mixture (the paper's 2-D one).

The truth is a fitted model of the matching family, so it samples and scores like any
generation. The report section draws the fitted densities at chosen generations over the
original (the paper's mixture figure): exact mixture densities for families that give their
fit as a Gaussian mixture, the family's own ``log_prob`` on a grid for others (1-D).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .. import mixtures
from ..mixtures import Mixture
from ..models import GaussianModel, GMMModel
from ..report.section import DETAIL, Section
from .base import DataSpec, register_data

Density = Callable[[np.ndarray], np.ndarray]  # x (n,) -> density values, for families without as_mixture


def check_spd(cov: list[list[float]], d: int, what: str) -> None:
    arr = np.asarray(cov, dtype=float)
    if arr.shape != (d, d):
        raise ValueError(f"{what}: must be a {d}x{d} matrix to match the mean, got shape {arr.shape}")
    if not np.allclose(arr, arr.T, atol=1e-10):
        raise ValueError(f"{what}: must be symmetric, got {arr.tolist()}")
    if not np.all(np.isfinite(arr)) or np.min(np.linalg.eigvalsh(arr)) <= 0:
        raise ValueError(f"{what}: must be positive definite, got {arr.tolist()}")


def check_probs(p: list[float], what: str) -> None:
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 1 or len(arr) < 1 or np.any(arr < 0) or not np.isclose(arr.sum(), 1.0, atol=1e-6):
        raise ValueError(f"{what}: must be non-negative and sum to 1, got {list(p)} (sum {arr.sum():.6g})")


def density_section(run: Any, page: Any) -> None:
    """The paper's picture: the original density and replicate 0's (and a few others') fits."""
    from ..report import figures

    gens = run.chosen_generations()
    if not gens:
        return
    truth = run.source.truth.as_mixture()
    d = truth[1].shape[1]
    axes = [0] if d == 1 else [0, 1]
    shown = min(run.spec.report.replicates_shown, run.spec.replicates)
    as_mixture = run.family.supports("as_mixture", run.spec.model.model_dump())
    if not as_mixture and d > 1:
        page.add("<h2>Densities at chosen generations</h2><p>This family does not give its fit as a Gaussian "
                 "mixture, and its density is drawn in one dimension only.</p>")
        return
    fits: dict[int, list[Any]] = {}
    for g in gens:
        model = run.model_at(g, replicates=shown)
        if as_mixture:
            fits[g] = [None if m is None or not all(np.all(np.isfinite(a)) for a in m) else marginal(m, axes)
                       for m in mixtures.replicate_mixtures(model)]
        else:
            fits[g] = [_log_prob_density(model, r, shown) for r in range(shown)]
    truth = marginal(truth, axes)
    flat = [m for ms in fits.values() for m in ms if m is not None]
    spans = tuple(span(truth, flat, j) for j in range(len(axes)))
    page.add("<h2>Densities at chosen generations</h2>")
    note = "" if d <= 2 else f" Data have {d} dimensions: the first two coordinates' marginal is shown."
    listed = ", ".join(map(str, gens))
    if len(axes) == 1:
        fig = density_1d(truth, fits, spans[0])
        faint = f" (bold; replicates 1–{len(fits[gens[0]]) - 1} faint)" if len(fits[gens[0]]) > 1 else ""
        caption = (f"The original density (black, grey fill) and replicate 0's fitted density{faint} at "
                   f"generations {listed}. A dashed vertical line marks a zero-variance fit (a point mass).")
    else:
        fig = density_2d(truth, fits, spans)
        caption = (f"Generations {listed}: contours of the original density (grey) and of replicate 0's fit "
                   "(colour) at the same levels (5, 20, 50, 80% of the original's peak) in every panel; "
                   "× marks a component too narrow to contour.")
    page.figure("density", fig, page.esc(caption) + page.esc(note))


def _log_prob_density(model: Any, r: int, replicates: int) -> Density:
    """Replicate r's density from the family's ``log_prob`` (every replicate scored, row r kept)."""
    def pdf(x: np.ndarray) -> np.ndarray:
        grid = np.broadcast_to(np.asarray(x, dtype=float)[:, None], (replicates, len(x), 1))
        with np.errstate(all="ignore"):
            return np.nan_to_num(np.exp(np.asarray(model.log_prob(grid), dtype=float)[r]))

    return pdf


DENSITY = Section("density", DETAIL, density_section)


@register_data("gaussian")
class GaussianData(DataSpec):
    """A multivariate Gaussian ``N(mean, cov)``."""

    kind: Literal["gaussian"] = "gaussian"
    report_sections = (DENSITY,)
    mean: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    cov: list[list[float]] = Field(default_factory=lambda: [[1.0]])

    @model_validator(mode="after")
    def _cov(self) -> "GaussianData":
        check_spd(self.cov, len(self.mean), "cov")
        return self

    def truth(self) -> GaussianModel:
        return GaussianModel().load_state_dict({"mean": np.array(self.mean), "covariance": np.array(self.cov)})


@register_data("gmm")
class GMMData(DataSpec):
    """A Gaussian mixture: ``weights`` (sum 1), ``means`` (k x d), ``covs`` (k x d x d)."""

    kind: Literal["gmm"] = "gmm"
    report_sections = (DENSITY,)
    weights: list[float] = Field(default_factory=lambda: [0.5, 0.5])
    means: list[list[float]] = Field(default_factory=lambda: [[-2.0, 0.0], [2.0, 1.0]])
    covs: list[list[list[float]]] = Field(default_factory=lambda: [[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 1.0]]])

    @model_validator(mode="after")
    def _shapes(self) -> "GMMData":
        check_probs(self.weights, "weights")
        if not (len(self.weights) == len(self.means) == len(self.covs)):
            raise ValueError(
                f"weights: weights, means and covs need one entry per component, got {len(self.weights)}, "
                f"{len(self.means)} and {len(self.covs)}"
            )
        d = len(self.means[0])
        for i, (m, c) in enumerate(zip(self.means, self.covs)):
            if len(m) != d:
                raise ValueError(f"means[{i}]: has {len(m)} coordinates, means[0] has {d}")
            check_spd(c, d, f"covs[{i}]")
        return self

    def truth(self) -> GMMModel:
        state = {"weights": np.array(self.weights), "means": np.array(self.means), "covariances": np.array(self.covs)}
        return GMMModel(n_components=len(self.weights)).load_state_dict(state)


# -- figures -------------------------------------------------------------------------------
def _colour(i: int, n: int) -> tuple:
    from ..report.figures import sequential

    return sequential(i, n)


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
    for w, m, c in (f for f in fits if not callable(f)):
        big = w >= 1e-3 * w.max()
        sd = np.sqrt(np.clip(c[big, axis, axis], 0, None))
        lo, hi = min(lo, float(np.min(m[big, axis] - 3.3 * sd))), max(hi, float(np.max(m[big, axis] + 3.3 * sd)))
    lo, hi = max(lo, t_lo - 2 * width), min(hi, t_hi + 2 * width)
    pad = 0.03 * (hi - lo)
    return lo - pad, hi + pad


PDF_CHUNK = 1 << 22  # grid points x components evaluated at once (32 MB of float64)
MAX_NARROW = 100  # narrow components given extra grid points, over all the curves of a figure


def _pdf_1d(mix: Mixture | Density, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Density of a 1-D mixture on ``x``, and the locations of point-mass components."""
    if callable(mix):
        return mix(x), np.empty(0)
    w, m, c = mix
    sd = np.sqrt(np.clip(c[:, 0, 0], 0, None))
    ok = sd > 0
    mu, sd_ok, weights = m[ok, 0], sd[ok], w[ok] / w.sum()
    # In slices of the grid: a KDE of 10,000 points on a fine grid would otherwise be a matrix of GBs.
    rows = max(1, PDF_CHUNK // max(1, len(mu)))
    pdf = np.empty(len(x))
    for start in range(0, len(x), rows):
        z = (x[start:start + rows, None] - mu[None, :]) / sd_ok
        pdf[start:start + rows] = (np.exp(-0.5 * z**2) / (sd_ok * np.sqrt(2 * np.pi))) @ weights
    return pdf, m[~ok, 0]


def _grid_1d(mixes: list[Mixture], lo: float, hi: float) -> np.ndarray:
    """An even grid plus extra points inside components narrower than its step (no aliasing)."""
    x = np.linspace(lo, hi, 800)
    step = x[1] - x[0]
    extra: list[np.ndarray] = []
    for w, m, c in (f for f in mixes if not callable(f)):
        sd = np.sqrt(np.clip(c[:, 0, 0], 0, None))
        narrow = np.flatnonzero((sd > 0) & (sd < 4 * step))[:50]
        extra += [m[k, 0] + sd[k] * np.linspace(-5, 5, 61) for k in narrow]
        if len(extra) >= MAX_NARROW:  # narrow kernels by the thousand (a KDE): the first ones are enough
            break
    return np.unique(np.concatenate([x, *extra[:MAX_NARROW]])) if extra else x


def density_1d(truth: Mixture, fits: dict[int, list[Mixture | Density | None]], span: tuple[float, float]) -> Any:
    """The original density and the fitted ones at chosen generations (replicate 0 bold)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.8), layout="constrained")
    ax = fig.add_subplot()
    all_mixes = [truth, *(m for ms in fits.values() for m in ms if m is not None)]
    x = _grid_1d(all_mixes, *span)
    p0, _ = _pdf_1d(truth, x)
    ax.fill_between(x, p0, color="#d9d9d9", lw=0)
    ax.plot(x, p0, color="black", lw=1.6, label="original")
    top, clipped = 3.0 * p0.max(), False
    for i, (g, mixes) in enumerate(fits.items()):
        colour = _colour(i, len(fits))
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
               limits: tuple[tuple[float, float], tuple[float, float]]) -> Any:
    """One panel per generation: original contours (grey) and replicate 0's fit (colour)."""
    from matplotlib.figure import Figure

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
        colour = _colour(i, n)
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
