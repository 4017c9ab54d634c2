"""Real prose as a data kind: ``text``, blocks of token ids (the paper's 64-token wikitext-2 blocks).

The truth is a :class:`~.text_files.TextDataset`. What is specific to text lives here: the
families take their vocabulary, the block length and the end-of-text id from the data; every
generation is made by continuing each real training block of the replicate (the paper's
protocol); validation blocks go to families that keep their best epoch; each generation
stores generated token ids, token counts and per-sequence perplexities; and the report quotes
generated text, draws the Zipf plot and the paper's perplexity histograms.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from ..batch import Batch
from ..errors import DataError
from ..report.section import LEAD, Section
from .base import DataSpec, Prepared, Source, register_data
from .text_files import TextDataset, load_text
from .tokenizers import TokenizerSpec

PREVIEW_REPLICATES, PREVIEW_TEXTS = 4, 8  # generated sequences kept per generation for the report


class TextSource(Source):
    """Draws real blocks without replacement; the held-out blocks are the test split's first ``heldout_size``."""

    stores_heldout = False
    extras_need_pool = False  # extras store the metrics' samples (ctx.memo) and never read the training set
    truth: TextDataset

    def model_params(self) -> dict[str, Any]:
        return {"vocab_size": self.truth.vocab_size, "gen_tokens": self.truth.block_size,
                "bos_token_id": int(self.truth.tokenizer.EOS)}

    def prepare(self, run: Any, family: Any, needs: frozenset[str]) -> Prepared:
        pool = len(self.truth.train_blocks)
        if run.max_train_size > pool:
            raise DataError(f"train_size: {run.max_train_size} examples exceed the {pool} training blocks "
                            f"of {self.truth.name}")
        out = Prepared(info={"data": self.truth.describe()})
        if "X_val" in inspect.signature(family.cls.fit).parameters:
            # Validation costs a forward pass per block per epoch: as many blocks as are scored for perplexity.
            out.fit_kwargs["X_val"] = self.truth.val_blocks[: run.heldout_size]
        return out

    def heldout(self, run: Any, needs: frozenset[str], rngs: list[np.random.Generator]) -> np.ndarray:
        """The first ``heldout_size`` test blocks (scoring a large LM on every test block each generation
        can cost more than training it), one view per replicate."""
        held = self.truth.heldout[: run.heldout_size]
        return np.broadcast_to(held, (run.replicates, *held.shape))

    def sample_kwargs(self, real: Batch, n: int) -> dict[str, Any]:
        """Language models continue every real training block of the replicate (the paper's protocol); a
        scheduled size other than the real set's takes the blocks in turn, cycling when it is larger."""
        m = real.X.shape[1]
        return {"prompts": real.X if n == m else real.X[:, np.arange(n) % m]}

    def extras(self, ctx: Any, train: Batch) -> dict[str, np.ndarray]:
        """Generated token ids to read in the report, token counts for its Zipf plot, and each
        sequence's perplexity under generation 0 (the paper's histograms), when measured."""
        shown = min(ctx.replicates, PREVIEW_REPLICATES)
        samples = ctx.memo.get("samples")
        if samples is None:
            return {}
        # Token counts of replicate 0 only (the Zipf plot's), in the smallest type that holds them: a
        # 16,589-word vocabulary in int64 for four replicates was 400 KB a generation.
        counts = np.bincount(np.asarray(samples[0]).ravel(), minlength=self.truth.vocab_size)[None]
        out = {"preview_tokens": samples[:shown, :PREVIEW_TEXTS],
               "token_counts": counts.astype(np.min_scalar_type(int(counts.max())))}
        if "sequence_perplexity" in ctx.memo:
            out["sequence_perplexity"] = ctx.memo["sequence_perplexity"][:shown]
        return out

    def preview_texts(self, extras: dict[str, np.ndarray]) -> list[str]:
        """Replicate 0's generated sequences, decoded (the report quotes the same ones)."""
        tokens = extras.get("preview_tokens")
        return [] if tokens is None or not len(tokens) else [self.truth.tokenizer.decode(seq) for seq in tokens[0]]


MAX_SHOWN = 6  # generations drawn in each figure
TEXTS = 3  # generated sequences quoted per generation


def chosen(saved: list[int], wanted: list[int]) -> list[int]:
    """The spec's report generations that exist, plus the first and last, at most MAX_SHOWN."""
    picked = sorted((set(wanted) & set(saved)) | {saved[0], saved[-1]})
    while len(picked) > MAX_SHOWN:
        picked.pop(len(picked) // 2)
    return picked


def zipf(real_counts: np.ndarray, counts: dict[int, np.ndarray]) -> Any:
    """Rank-frequency of tokens in generated text (replicate 0) against the real test text."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

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


def perplexity_histograms(values: dict[int, np.ndarray]) -> Any:
    """Generation 0's perplexity of each generated sequence, one histogram per generation (log bins)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

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
    if not run.saved:
        return
    esc, store = page.esc, run.store
    truth = run.source.truth
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


TEXT = Section("text", LEAD, text_section)


@register_data("text")
class TextData(DataSpec):
    """Real prose, split by document, tokenised, cut into ``block_size``-token blocks."""

    kind: Literal["text"] = "text"
    data_type = "text"
    report_sections = (TEXT,)
    cached = True
    source: Literal["wiki", "lee", "pydoc", "path", "wikitext"] = "wiki"
    path: Optional[str] = None  # source 'path': a .txt file (blank lines between documents) or a folder
    block_size: int = Field(64, ge=2)  # tokens per example (the paper: 64)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    split_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _path(self) -> "TextData":
        if self.source == "path":
            if not self.path:
                raise ValueError("path: source 'path' needs data.path, a text file or a folder of .txt files")
            if not Path(self.path).exists():
                raise ValueError(f"path: {self.path!r} does not exist")
        return self

    def load(self) -> Source:
        return TextSource(self, load_text(self))

    def example_nbytes(self) -> int:
        return self.block_size * 8  # int64 token ids
