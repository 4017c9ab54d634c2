"""Metrics for language models: real-text perplexity and the tails of generated text.

Generated-text metrics share one draw per replicate and generation: the model continues
the first ``metric_samples`` real held-out blocks (the same prompts every generation),
so a change between generations is the model's, not the prompts'.
"""

from __future__ import annotations

import numpy as np

from .registry import MetricContext, register

LM = None  # any text family: generated-text metrics only need sample(prompts=...)
SCORES = frozenset({"token_log_probs"})  # perplexity needs per-token log probabilities
TEXT = frozenset({"text"})
SELF_BLEU_SAMPLES = 30  # self-BLEU compares every pair (quadratic): 30 sequences cost ~0.2 s


def _samples(ctx: MetricContext) -> np.ndarray:
    if "samples" not in ctx.memo:
        prompts = ctx.truth.test_blocks[: ctx.n_samples]
        stacked = np.broadcast_to(prompts, (ctx.replicates, *prompts.shape))
        ctx.memo["samples"] = ctx.model.sample(len(prompts), rng=ctx.rngs, prompts=stacked)
    return ctx.memo["samples"]


def _alive(ctx: MetricContext) -> list[int]:
    S = _samples(ctx)
    return [r for r in range(len(S)) if np.all(np.isfinite(S[r]))]


def _mean_nll(model, X: np.ndarray) -> np.ndarray:
    """Mean negative log-likelihood per token of each block, ``(n,)``, over tokens ``1 .. L-1``.

    A transformer has no context for a block's first token and does not score it; the n-gram
    model scores it after padding. Both are judged on the same tokens, so their perplexities
    compare.
    """
    lp = model.token_log_probs(X)
    return -lp[:, lp.shape[1] - (X.shape[1] - 1) :].mean(axis=1)


def _per_replicate(ctx: MetricContext, fn) -> np.ndarray:
    S, out = _samples(ctx), np.full(ctx.replicates, np.nan)
    for r in _alive(ctx):
        out[r] = fn(np.asarray(S[r], dtype=np.int64))
    return out


@register("perplexity", models=LM, data=TEXT, requires=SCORES, higher_is_better=False, needs={"heldout"},
          description="perplexity of the real test text (exp of the mean negative log-likelihood per token, "
                      "every token of a block but its first; the first heldout_size test blocks)")
def perplexity(ctx: MetricContext) -> np.ndarray:
    out = np.full(ctx.replicates, np.nan)
    for r, model in enumerate(ctx.model.models):
        if model is not None:
            with np.errstate(over="ignore"):
                out[r] = np.exp(_mean_nll(model, np.asarray(ctx.heldout[r])).mean())
    return out


@register("sample_perplexity", models=LM, data=TEXT, requires=SCORES, higher_is_better=None, needs={"model0"},
          description="median perplexity of each generated sequence under generation 0's model "
                      "(per-sequence values are kept for the paper's histograms)")
def sample_perplexity(ctx: MetricContext) -> np.ndarray:
    S = _samples(ctx)
    per_sequence = np.full(S.shape[:2], np.nan)
    for r in _alive(ctx):
        judge = ctx.model0.models[r]
        if judge is not None:
            with np.errstate(over="ignore"):
                per_sequence[r] = np.exp(_mean_nll(judge, np.asarray(S[r], dtype=np.int64)))
    ctx.memo["sequence_perplexity"] = per_sequence
    with np.errstate(all="ignore"):
        return np.array([np.nan if np.isnan(row).all() else np.median(row) for row in per_sequence])


@register("vocab_size", models=LM, data=TEXT, higher_is_better=True,
          description="number of distinct tokens in the generated text")
def vocab_size(ctx: MetricContext) -> np.ndarray:
    return _per_replicate(ctx, lambda s: len(np.unique(s)))


@register("rare_token_mass", models=LM, data=TEXT, higher_is_better=True,
          description="share of generated tokens among the real training text's rarest words "
                      "(those holding its least frequent 10%; ~0.10 for a faithful model)")
def rare_token_mass(ctx: MetricContext) -> np.ndarray:
    if "rare" not in ctx.cache:
        rare = np.zeros(ctx.truth.vocab_size, dtype=bool)
        rare[ctx.truth.rare_tokens()] = True
        ctx.cache["rare"] = rare
    return _per_replicate(ctx, lambda s: ctx.cache["rare"][s].mean())


def distinct(tokens: np.ndarray, n: int) -> float:
    """Distinct n-grams over all n-grams of a set of sequences (within sequences only)."""
    grams = np.lib.stride_tricks.sliding_window_view(tokens, n, axis=1).reshape(-1, n)
    return len(np.unique(grams, axis=0)) / len(grams) if len(grams) else np.nan


def _distinct_metric(n: int) -> None:
    @register(f"distinct_{n}", models=LM, data=TEXT, higher_is_better=True,
              description=f"distinct {n}-grams / all {n}-grams in the generated text")
    def metric(ctx: MetricContext) -> np.ndarray:
        return _per_replicate(ctx, lambda s: distinct(s, n))


for _n in (1, 2, 3, 4):
    _distinct_metric(_n)


def repetition(tokens: np.ndarray, n: int = 4) -> float:
    """Share of n-grams in a sequence that repeat an earlier n-gram of the same sequence, averaged."""
    shares = []
    for seq in tokens:
        grams = [tuple(g) for g in np.lib.stride_tricks.sliding_window_view(seq, n)]
        shares.append(1 - len(set(grams)) / len(grams) if grams else 0.0)
    return float(np.mean(shares))


@register("repetition_rate", models=LM, data=TEXT, higher_is_better=False,
          description="share of 4-grams in a generated sequence that already occurred in it (loops, stutter)")
def repetition_rate(ctx: MetricContext) -> np.ndarray:
    return _per_replicate(ctx, repetition)


@register("self_bleu", models=LM, data=TEXT, higher_is_better=False,
          description=f"BLEU (sacrebleu, 0-100) of each of {SELF_BLEU_SAMPLES} generated sequences against the "
                      "others: high when generations all say the same thing")
def self_bleu(ctx: MetricContext) -> np.ndarray:
    import sacrebleu

    def one(tokens: np.ndarray) -> float:
        texts = [" ".join(map(str, seq)) for seq in tokens[:SELF_BLEU_SAMPLES]]
        scores = [sacrebleu.sentence_bleu(t, texts[:i] + texts[i + 1 :], tokenize="none").score
                  for i, t in enumerate(texts)]
        return float(np.mean(scores))

    return _per_replicate(ctx, one)
