"""The language-model part of a report: generated text, Zipf plots, perplexity histograms."""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .store import RunStore

MAX_SHOWN = 6  # generations drawn in each figure
TEXTS = 3  # generated sequences quoted per generation


def chosen(saved: list[int], wanted: list[int]) -> list[int]:
    """The spec's report generations that exist, plus the first and last, at most MAX_SHOWN."""
    picked = sorted((set(wanted) & set(saved)) | {saved[0], saved[-1]})
    while len(picked) > MAX_SHOWN:
        picked.pop(len(picked) // 2)
    return picked


def zipf(real_counts: np.ndarray, counts: dict[int, np.ndarray]) -> Figure:
    """Rank-frequency of tokens in generated text (replicate 0) against the real test text."""
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    real = np.sort(real_counts[real_counts > 0])[::-1]
    ax.loglog(np.arange(1, len(real) + 1), real / real.sum(), color="black", lw=2, label="real test text")
    colours = colormaps["viridis"](np.linspace(0.1, 0.9, len(counts)))
    for colour, (g, c) in zip(colours, counts.items()):
        c = np.sort(c[c > 0])[::-1]
        ax.loglog(np.arange(1, len(c) + 1), c / c.sum(), color=colour, lw=1.3, label=f"generation {g}")
    ax.set_xlabel("token rank")
    ax.set_ylabel("frequency")
    ax.set_title("Zipf plot: the tail of the vocabulary in generated text (replicate 0)", loc="left")
    ax.legend(fontsize=8)
    return fig


def perplexity_histograms(values: dict[int, np.ndarray]) -> Figure:
    """Generation 0's perplexity of each generated sequence, one histogram per generation (log bins)."""
    fig = Figure(figsize=(8, 3.4), layout="constrained")
    ax = fig.add_subplot()
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()] or [np.ones(1)])
    bins = np.geomspace(max(finite.min(), 1.0), max(finite.max(), 2.0), 40)
    colours = colormaps["viridis"](np.linspace(0.1, 0.9, len(values)))
    for colour, (g, v) in zip(colours, values.items()):
        ax.hist(v[np.isfinite(v)], bins=bins, histtype="step", lw=1.5, color=colour, density=True,
                label=f"generation {g}")
    ax.set_xscale("log")
    ax.set_xlabel("perplexity under generation 0's model")
    ax.set_ylabel("density")
    ax.set_title("how likely generation 0 finds each generated sequence", loc="left")
    ax.legend(fontsize=8)
    return fig


def text_section(run: Any, page: Any) -> None:
    from .data import DATA_TYPES, build_truth

    if DATA_TYPES[run.spec.data.kind] != "text" or not run.saved:
        return
    esc = html.escape
    store = RunStore(run.path)
    truth = build_truth(run.spec.data)
    gens = chosen(run.saved, run.spec.report.density_generations)
    extras = {g: store.read_tensors(store.generation_file(g), "") for g in gens}
    page.add("<h2>Generated text</h2>")
    quotes = []
    for g in gens:
        preview = extras[g].get("preview_tokens")
        if preview is None:
            continue
        lines = "".join(f"<li>{esc(truth.tokenizer.decode(seq))}</li>" for seq in preview[0][:TEXTS])
        quotes.append(f"<h3>generation {g}</h3><ol class='texts'>{lines}</ol>")
    if quotes:
        page.add("<p>Replicate 0 continuing the first real test blocks (the same prompts every generation).</p>"
                 + "".join(quotes))
    counts = {g: e["token_counts"][0] for g, e in extras.items() if "token_counts" in e}
    if counts:
        real = np.bincount(truth.test_blocks.ravel(), minlength=truth.vocab_size)
        page.figure("zipf", zipf(real, counts), esc(
            "Token frequency against rank. Collapse cuts the tail (the curves end at fewer distinct tokens) "
            "and steepens the head."))
    per_seq = {g: e["sequence_perplexity"].ravel() for g, e in extras.items() if "sequence_perplexity" in e}
    if per_seq:
        page.figure("sample_perplexity_hist", perplexity_histograms(per_seq), esc(
            "The paper's histograms: later generations produce more sequences that generation 0 finds likely "
            "(low perplexity) and, where smoothing lets them, a tail of sequences it finds improbable."))
