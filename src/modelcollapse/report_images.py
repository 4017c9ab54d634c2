"""The image part of a report: sample grids over generations and the drifting class mix."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .store import RunStore

MAX_ROWS = 10  # generations shown in the sample grid
PER_ROW = 16  # images per generation
VANISHED = 0.01  # a class "has vanished" once its mean share of samples drops below this


def grid_generations(saved: list[int], chosen: list[int]) -> list[int]:
    """Every generation when few, else the chosen ones plus evenly spaced, first and last included."""
    if len(saved) <= MAX_ROWS:
        return list(saved)
    even = np.linspace(0, len(saved) - 1, MAX_ROWS).round().astype(int)
    picked = sorted(set(np.array(saved)[even]) | (set(chosen) & set(saved)))
    while len(picked) > MAX_ROWS:  # drop from the middle, keep the ends
        picked.pop(len(picked) // 2)
    return picked


def sample_grid(real: np.ndarray, previews: dict[int, np.ndarray]) -> Figure:
    """One row of images per generation (replicate 0), real training images on top."""
    rows = [("real data", real)] + [(f"generation {g}", imgs) for g, imgs in previews.items()]
    h, w = real.shape[1:]
    fig = Figure(figsize=(PER_ROW * 0.55 + 1.4, len(rows) * 0.55 * h / w + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), PER_ROW, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    for i, (label, imgs) in enumerate(rows):
        for j in range(PER_ROW):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(imgs) and np.all(np.isfinite(imgs[j])):
                ax.imshow(imgs[j], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def class_mix(histograms: np.ndarray, original: np.ndarray) -> Figure:
    """Stacked bars of the mean class share of samples per generation, the real mix first."""
    gens = np.arange(len(histograms))
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(histograms, axis=1)  # (G, K)
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    colours = colormaps["tab10"](np.arange(len(original)) % 10)
    xs = np.r_[-1.5, gens]
    bottom = np.zeros(len(xs))
    for k in range(len(original)):
        share = np.r_[original[k], mean[:, k]]
        ax.bar(xs, share, bottom=bottom, color=colours[k], width=0.8, label=str(k))
        bottom += np.nan_to_num(share)
    ax.set_xticks(xs, ["real"] + [str(g) for g in gens])
    ax.set_ylim(0, 1)
    ax.set_xlabel("generation")
    ax.set_ylabel("share of samples")
    ax.set_title("class mix of the samples, as labelled by the digit classifier (mean over replicates)", loc="left")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", title="digit")
    return fig


def vanishing_order(histograms: np.ndarray) -> list[tuple[int, int]]:
    """(class, first generation its mean share fell below VANISHED), in order of vanishing."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(histograms, axis=1)
    out = []
    for k in range(mean.shape[1]):
        below = np.flatnonzero(mean[:, k] < VANISHED)
        if len(below):
            out.append((k, int(below[0])))
    return sorted(out, key=lambda kg: (kg[1], kg[0]))


def image_section(run: Any, page: Any) -> None:
    """Sample grids, the class mix and which digits vanish first (image runs only)."""
    from .data import DATA_TYPES, build_truth

    if DATA_TYPES[run.spec.data.kind] != "image" or not run.saved:
        return
    esc = html.escape
    store = RunStore(run.path)
    info = run.manifest.get("info", {})
    page.add("<h2>Samples over generations</h2>")
    gens = grid_generations(run.saved, run.spec.report.density_generations)
    previews = {g: store.read_tensors(store.generation_file(g), "preview").get("preview") for g in gens}
    previews = {g: p[0] for g, p in previews.items() if p is not None}
    real = store.read_npz("real.npz")["X"][0][:PER_ROW]
    if previews:
        page.figure("samples", sample_grid(real, previews), esc(
            "Replicate 0: real training images (top) and images decoded from prior samples of each generation's "
            "model. Collapse shows as blur, then as every image turning into the same average digit."))
    histograms = run.vectors.get("class_histogram")
    if histograms is not None:
        original = np.asarray(info.get("data", {}).get("class_probs") or build_truth(run.spec.data).class_probs)
        order = vanishing_order(histograms)
        gone = "; ".join(f"digit {k} at generation {g}" for k, g in order) or "none"
        accuracy = info.get("classifier_accuracy")
        acc = f" The classifier's accuracy on real held-out digits is {accuracy:.3f}." if accuracy else ""
        page.add("<h2>Class mix</h2>")
        page.figure("class_mix", class_mix(histograms, original), esc(
            f"Share of samples in each class (first bar: the real training data).{acc} Classes whose mean "
            f"share fell below {VANISHED:.0%}, in the order they vanished: {gone}."))
