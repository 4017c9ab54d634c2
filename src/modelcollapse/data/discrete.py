"""Discrete data given in closed form: a categorical distribution, or a Zipf law over K categories.

The truth is a fitted :class:`~modelcollapse.models.CategoricalModel`; families take the
number of categories from it. The report section follows the rarest original categories over
generations and draws replicate 0's probabilities as a heat map (absorption shows as one row).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from ..models import CategoricalModel
from ..report.section import DETAIL, Section
from .base import DataSpec, Source, register_data
from .continuous import check_probs

MAX_GENERATIONS = 200  # parameter files read for the figures
RARE = 10  # rarest original categories followed over generations


def zipf_probs(categories: int, exponent: float) -> np.ndarray:
    """p_k proportional to k^-exponent for k = 1..categories (most to least likely)."""
    w = np.arange(1, categories + 1, dtype=float) ** -float(exponent)
    return w / w.sum()


class CategoricalSource(Source):
    def model_params(self) -> dict[str, Any]:
        return {"n_categories": int(self.truth.n_categories)}


def categorical_section(run: Any, page: Any) -> None:
    if not run.saved:
        return
    q = run.source.truth.probs_
    # Read every generation up to a limit, else half evenly spaced and half geometrically
    # (categorical chains change fastest early, and the figures stretch the early generations).
    n, half = len(run.saved), MAX_GENERATIONS // 2
    pick = np.arange(n) if n <= 2 * half else np.unique(np.r_[
        np.round(np.geomspace(1, n, half)).astype(int) - 1, np.linspace(0, n - 1, half).round().astype(int)])
    gens = np.array(run.saved)[pick]
    every = np.broadcast_to(np.arange(len(q)), (run.spec.replicates, len(q)))
    probs = np.full((len(gens), run.spec.replicates, len(q)), np.nan)
    for i, g in enumerate(gens):
        with np.errstate(all="ignore"):  # log 0 for vanished categories: exp gives 0 back
            probs[i] = np.exp(run.model_at(int(g)).log_prob(every))
    rare = np.argsort(q, kind="stable")[: min(RARE, len(q))]
    page.add("<h2>Categories over generations</h2>")
    thinned = f" ({len(gens)} of {n} generations, denser early)" if len(gens) < n else ""
    page.figure("categorical_rare", rare_categories(gens, probs, q, rare), page.esc(
        f"The {len(rare)} least likely original categories{thinned}: their median fitted probability over "
        "replicates, replicate 0's, and the share of replicates in which each is still possible. "
        "Rare categories are lost first and, without smoothing, never come back."))
    page.figure("categorical_heatmap", category_heatmap(gens, probs[:, 0], q), page.esc(
        f"Replicate 0's fitted probabilities{thinned}, one row per category, the original's most likely on "
        "top. White cells are categories that have vanished; a single dark row at the end is absorption."))


CATEGORIES = Section("categories", DETAIL, categorical_section)


@register_data("categorical")
class CategoricalData(DataSpec):
    """Any categorical distribution: ``probs`` (sum 1)."""

    kind: Literal["categorical"] = "categorical"
    data_type = "discrete"
    report_sections = (CATEGORIES,)
    probs: list[float] = Field(default_factory=lambda: [0.5, 0.3, 0.15, 0.05])

    @field_validator("probs")
    @classmethod
    def _probs(cls, v: list[float]) -> list[float]:
        if len(v) < 2:
            raise ValueError(f"need at least 2 categories, got {len(v)}")
        check_probs(v, "probs")
        return v

    def model_params_hint(self) -> dict[str, Any]:
        return {"n_categories": len(self.probs)}

    def truth(self) -> CategoricalModel:
        probs = np.array(self.probs, dtype=float)
        return CategoricalModel(n_categories=len(probs)).load_state_dict({"probs": probs / probs.sum()})

    def load(self) -> Source:
        return CategoricalSource(self, self.truth())


@register_data("zipf")
class ZipfData(DataSpec):
    """A Zipf law: ``p_k`` proportional to ``k^-exponent`` over ``categories`` categories."""

    kind: Literal["zipf"] = "zipf"
    data_type = "discrete"
    report_sections = (CATEGORIES,)
    categories: int = Field(100, ge=2)
    exponent: float = Field(1.1, gt=0)

    def model_params_hint(self) -> dict[str, Any]:
        return {"n_categories": self.categories}

    def truth(self) -> CategoricalModel:
        probs = zipf_probs(self.categories, self.exponent)
        return CategoricalModel(n_categories=self.categories).load_state_dict({"probs": probs})

    def load(self) -> Source:
        return CategoricalSource(self, self.truth())


# -- figures -------------------------------------------------------------------------------
def _generation_axis(ax, last: int) -> None:
    """Categorical chains change fastest early: past 100 generations, stretch the start
    with a scale that is linear up to 10 and logarithmic beyond."""
    if last > 100:
        ax.set_xscale("symlog", linthresh=10, linscale=0.6)
        ax.set_xlabel("generation (log scale beyond 10)")
    else:
        ax.set_xlabel("generation")
    ax.set_xlim(0, max(1, last))


def rare_categories(gens: np.ndarray, probs: np.ndarray, q: np.ndarray, rare: np.ndarray) -> Any:
    """The rarest original categories over generations ``gens``, from ``probs`` (G, R, K):
    the mean over replicates beside the original value (each probability is a martingale
    under maximum likelihood, so the mean stays put while individual chains lose the
    category), replicate 0, and the share of replicates in which each is still present."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

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


def category_heatmap(gens: np.ndarray, probs0: np.ndarray, q: np.ndarray) -> Any:
    """Replicate 0's probabilities (category by generation), most likely original category on top;
    vanished categories (p = 0) are white."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

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
