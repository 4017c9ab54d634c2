"""Smoothed n-gram language model, counted and sampled with vectorised numpy.

Interpolated absolute discounting: for a context c seen in training,

    p(w | c) = max(n(c, w) - D, 0) / n(c) + D * N1(c) / n(c) * p(w | c')

where c' drops the oldest token, n(c) counts c, N1(c) counts its distinct successors,
and the recursion ends in the uniform distribution over the vocabulary. An unseen
context backs off to c' entirely. ``discount=0`` is maximum likelihood: a word missing
from one generation's training text has probability 0 in every later generation, the
paper's mechanism of tail loss in its purest form. Every conditional sums to one.

An n-gram (context, next) is one int64 key in base ``vocab_size + 1`` (the extra id pads
contexts at the start of a block), so counting is ``np.unique`` and a lookup is
``np.searchsorted``; sampling a token for all sequences at once is a few array
operations per order.

The fit is a function of the counts of the highest-order n-grams alone: an m-gram is the last m
tokens of the ``order``-gram at the same position (block-start padding included), so every lower
order's counts are sums of them. The counts are the model's additive statistics
(:meth:`NGramModel.statistics`): an accumulating chain adds each synthetic set's and keeps no pool,
and integers add exactly, so the fit from the sums is the refit on the pool, to the bit.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import Field

from ..params import FROM_DATA
from .base import RNG, BaseModel, draw
from .family import register_model

TEXT_METRICS = ("perplexity", "sample_perplexity", "vocab_size", "rare_token_mass", "distinct_1", "distinct_2",
                "repetition_rate", "self_bleu")


class NGramModel(BaseModel):
    """n-gram LM over token ids ``0 .. vocab_size-1``; examples are blocks of ids, shape (n, L).

    Parameters
    ----------
    vocab_size : int
        Number of token ids (set from the data by the engine).
    order : int
        n: the model conditions on the previous ``order - 1`` tokens.
    discount : float
        Absolute discount D in [0, 1); 0 is maximum likelihood (no smoothing).
    decoding : {"sample", "greedy"}
        ``greedy`` takes the most frequent continuation of the longest seen context.
    gen_tokens : int
        Tokens generated after each prompt (the paper: 64).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[2, 3, 4, 2, 3, 4], [2, 3, 5, 2, 3, 4]])
    >>> m = NGramModel(vocab_size=6, order=2, gen_tokens=4).fit(X)
    >>> float(np.exp(m.token_log_probs(np.array([[2, 3]]))[0, 1]))  # p(3 | 2)
    1.0
    """

    data_type = "text"
    default_metrics = TEXT_METRICS

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        return 2 * train_size * (example_nbytes // 8)  # the training blocks (as uint16 for most vocabularies)

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        return 3 * params["order"] * 16 * train_size * (example_nbytes // 8)  # n-gram keys and counts

    def __init__(self, *, vocab_size: Annotated[int, FROM_DATA] = 2, order: Annotated[int, Field(ge=1, le=6)] = 3,
                 discount: Annotated[float, Field(ge=0, lt=1)] = 0.0, decoding: Literal["sample", "greedy"] = "sample",
                 gen_tokens: Annotated[int, FROM_DATA] = 64) -> None:
        self.vocab_size = vocab_size
        self.order = order
        self.discount = discount
        self.decoding = decoding
        self.gen_tokens = gen_tokens

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: np.ndarray, *, rng: RNG | None = None) -> "NGramModel":
        X = self._check_blocks(X)
        self._check_order()
        self.data_ = X
        self._fit_tables(self._orders(*self._unique_keys(X)))
        return self

    def _check_blocks(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.int64)
        if X.ndim != 2 or X.size == 0:
            raise ValueError(f"X must be blocks of token ids, shape (n, L), got {X.shape}")
        if X.min() < 0 or X.max() >= self.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}), got [{X.min()}, {X.max()}]")
        return X

    def _check_order(self) -> None:
        if self.order < 1 or self.order * np.log2(self.vocab_size + 1) >= 62:
            raise ValueError(f"order={self.order} with vocab_size={self.vocab_size} overflows 64-bit n-gram keys")

    def _unique_keys(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct ``order``-gram keys of blocks ``X`` (sorted) and how often each occurs (int64)."""
        B, m = self.vocab_size + 1, self.order
        padded = np.concatenate([np.full((len(X), m - 1), self.vocab_size, dtype=np.int64), X], axis=1)
        keys = np.zeros(X.shape, dtype=np.int64)
        for j in range(m):  # oldest context token first, the predicted token last
            keys = keys * B + padded[:, j : j + X.shape[1]]
        keys, counts = np.unique(keys.ravel(), return_counts=True)
        return keys, counts.astype(np.int64)

    def _orders(self, keys: np.ndarray, counts: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every order's sorted keys and counts, 1 to ``order``, from the ``order``-grams'."""
        B = self.vocab_size + 1
        return [_marginal(keys, counts, B**m) for m in range(1, self.order)] + [(keys, counts)]

    def _fit_tables(self, orders: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.tables_ = [self._table(keys, counts) for keys, counts in orders]

    def _table(self, keys: np.ndarray, counts: np.ndarray) -> dict[str, np.ndarray]:
        """One order's lookup table from its sorted distinct keys and their counts, in linear time (an
        accumulating chain builds it every generation from a table that grows)."""
        B = self.vocab_size + 1
        contexts = keys // B
        lo = _run_starts(contexts)  # the first n-gram of each context
        ctx, n_succ = contexts[lo], np.diff(np.r_[lo, len(keys)])
        total = np.add.reduceat(counts, lo)
        # Within each context the most frequent continuation, the smallest key among equals.
        top = np.flatnonzero(counts == np.repeat(np.maximum.reduceat(counts, lo), n_succ))
        best = keys[top[_run_starts(np.searchsorted(lo, top, side="right"))]] % B
        return {"keys": keys, "counts": counts, "cum": np.cumsum(counts - self.discount),
                "ctx": ctx, "lo": lo, "total": total, "n1": n_succ, "best": best}

    # -- probabilities -------------------------------------------------------------------
    def token_log_probs(self, X: np.ndarray) -> np.ndarray:
        """log p(x_t | previous tokens in the block), shape (n, L); the block start is padded."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.int64)
        B, D = self.vocab_size + 1, self.discount
        padded = np.concatenate([np.full((len(X), self.order - 1), self.vocab_size, dtype=np.int64), X], axis=1)
        p = np.full(X.shape, 1.0 / self.vocab_size)
        for m, t in enumerate(self.tables_, start=1):
            start = self.order - m  # this order's context begins m - 1 tokens before the target
            ctx = np.zeros(X.shape, dtype=np.int64)
            for j in range(m - 1):
                ctx = ctx * B + padded[:, start + j : start + j + X.shape[1]]
            ci = np.minimum(np.searchsorted(t["ctx"], ctx), len(t["ctx"]) - 1)
            seen = t["ctx"][ci] == ctx
            key = ctx * B + X
            ki = np.minimum(np.searchsorted(t["keys"], key), len(t["keys"]) - 1)
            count = np.where(t["keys"][ki] == key, t["counts"][ki], 0)
            total, n1 = t["total"][ci], t["n1"][ci]
            mixed = np.maximum(count - D, 0) / total + D * n1 / total * p
            p = np.where(seen, mixed, p)
        with np.errstate(divide="ignore"):
            return np.log(p)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Total log probability of each block (nats)."""
        return self.token_log_probs(X).sum(axis=-1)

    # -- generation ----------------------------------------------------------------------
    def sample(self, n: int, *, rng: RNG, prompts: np.ndarray | None = None) -> np.ndarray:
        """``gen_tokens`` new tokens after each prompt (or after a block start), shape (n, gen_tokens)."""
        self._check_fitted()
        return draw(rng, lambda g: self._generate(n, g, prompts))

    def _generate(self, n: int, g: np.random.Generator, prompts: np.ndarray | None) -> np.ndarray:
        k = self.order - 1
        context = np.full((n, k), self.vocab_size, dtype=np.int64)
        if prompts is not None and k:
            prompts = np.asarray(prompts, dtype=np.int64)
            if len(prompts) != n:
                raise ValueError(f"need one prompt per sequence: {len(prompts)} prompts for n={n}")
            tail = prompts[:, -k:]
            context[:, k - tail.shape[1] :] = tail
        out = np.empty((n, self.gen_tokens), dtype=np.int64)
        for step in range(self.gen_tokens):
            out[:, step] = self._next(context, g)
            if k:
                context = np.concatenate([context[:, 1:], out[:, step : step + 1]], axis=1)
        return out

    def _next(self, context: np.ndarray, g: np.random.Generator) -> np.ndarray:
        B, D, n = self.vocab_size + 1, self.discount, len(context)
        u = g.random((n, self.order + 1))  # a fixed number of draws per step: reproducible
        token = np.full(n, -1, dtype=np.int64)
        for m in range(self.order, 0, -1):
            t = self.tables_[m - 1]
            ctx = np.zeros(n, dtype=np.int64)
            for j in range(self.order - m, self.order - 1):
                ctx = ctx * B + context[:, j]
            ci = np.minimum(np.searchsorted(t["ctx"], ctx), len(t["ctx"]) - 1)
            todo = (token < 0) & (t["ctx"][ci] == ctx)
            if self.decoding == "greedy":
                token = np.where(todo, t["best"][ci], token)
                continue
            total, n1, lo = t["total"][ci], t["n1"][ci], t["lo"][ci]
            own = todo & (u[:, m] * total >= D * n1)  # else: the interpolated lower order decides
            before = np.where(lo > 0, t["cum"][lo - 1], 0.0)
            target = before + u[:, 0] * (total - D * n1)
            j = np.minimum(np.searchsorted(t["cum"], target, side="right"), len(t["keys"]) - 1)
            token = np.where(own, t["keys"][j] % B, token)
        rest = token < 0  # only with D > 0: the uniform floor of the recursion
        return np.where(rest, np.minimum((u[:, 0] * self.vocab_size).astype(np.int64), self.vocab_size - 1), token)

    # -- additive sufficient statistics (an accumulating chain adds each set's, keeping no pool) -----
    def statistics(self, X: np.ndarray, shift: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Each order's distinct n-grams in blocks ``X`` (sorted int64 keys, ``keys_m``) and their counts
        (int64, ``counts_m``): exact integers, so a fit from summed statistics is the refit on all the
        blocks, to the bit. The lower orders are sums of the highest's; they are kept too so that a fit
        never sorts the growing table again. ``shift`` is not used (a Gaussian's centring point)."""
        self._check_order()
        return _as_statistics(self._orders(*self._unique_keys(self._check_blocks(X))))

    @staticmethod
    def add_statistics(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The counts of both sets of blocks: per order, the union of the keys, the counts of keys in both summed."""
        out = {}
        for name in a:
            if name.startswith("keys_"):
                m = name.removeprefix("keys_")
                out[name], out[f"counts_{m}"] = _merge_counts(a[name], a[f"counts_{m}"], b[name], b[f"counts_{m}"])
        return out

    def fit_statistics(self, stats: dict[str, np.ndarray]) -> "NGramModel":
        """The fit on all the blocks the statistics count: the same tables as :meth:`fit` on them. The model
        keeps no blocks, so its state is the counts (:meth:`state_dict`)."""
        self._check_order()
        orders = [(np.asarray(stats[f"keys_{m}"], dtype=np.int64), np.asarray(stats[f"counts_{m}"], dtype=np.int64))
                  for m in range(1, self.order + 1)]
        if not len(orders[-1][0]):
            raise ValueError("the statistics count no n-grams: nothing to fit")
        self.__dict__.pop("data_", None)
        self._fit_tables(orders)
        return self

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """The training blocks: counting them again is exact and fast, and the tables'
        sizes differ between replicates, which the run directory's stacked arrays cannot hold.
        A model fitted from statistics (an accumulating chain's: no blocks are kept) stores its
        ``order``-gram keys and counts instead, which determine every table."""
        self._check_fitted()
        if "data_" not in vars(self):
            top = self.tables_[-1]
            return {"ngram_keys": _smallest(top["keys"]), "ngram_counts": _smallest(top["counts"])}
        # The smallest integer type that holds every id: a 20,000-word vocabulary stores as uint16,
        # a quarter of the disk of int64 (load_state_dict counts from int64 again: numbers unchanged).
        return {"data": self.data_.astype(np.min_scalar_type(max(int(self.vocab_size) - 1, 0)))}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "NGramModel":
        if "ngram_keys" in state:  # fitted from statistics: the highest order's counts determine the others
            top = (np.asarray(state["ngram_keys"]).astype(np.int64), np.asarray(state["ngram_counts"]).astype(np.int64))
            return self.fit_statistics(_as_statistics(self._orders(*top)))
        return self.fit(np.asarray(state["data"]).astype(np.int64))


def _as_statistics(orders: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    """Each order's (keys, counts) as ``keys_m`` and ``counts_m``, m = 1 .. order."""
    return {f"{name}_{m}": a for m, pair in enumerate(orders, start=1) for name, a in zip(("keys", "counts"), pair)}


def _run_starts(a: np.ndarray) -> np.ndarray:
    """Where each run of equal values of ``a`` (sorted) begins."""
    return np.flatnonzero(np.r_[True, a[1:] != a[:-1]]) if len(a) else np.zeros(0, dtype=np.intp)


def _sum_runs(keys: np.ndarray, counts: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys of ``keys[order]`` (sorted) and the sum of the counts of each."""
    keys = keys[order]
    starts = _run_starts(keys)
    return keys[starts], (np.add.reduceat(counts[order], starts) if len(starts) else counts[:0])


def _marginal(keys: np.ndarray, counts: np.ndarray, base: int) -> tuple[np.ndarray, np.ndarray]:
    """The counts of the lower-order n-grams ``keys % base`` (their last tokens), sorted by key."""
    low = keys % base
    return _sum_runs(low, counts, np.argsort(low, kind="stable"))


def _merge_counts(ka: np.ndarray, ca: np.ndarray, kb: np.ndarray, cb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted count tables as one: a stable sort of the two runs laid end to end is a linear merge
    (timsort), so a chain's step costs the size of its table, not a full sort of it."""
    keys = np.concatenate([np.asarray(ka, dtype=np.int64), np.asarray(kb, dtype=np.int64)])
    counts = np.concatenate([np.asarray(ca, dtype=np.int64), np.asarray(cb, dtype=np.int64)])
    return _sum_runs(keys, counts, np.argsort(keys, kind="stable"))


def _smallest(a: np.ndarray) -> np.ndarray:
    """Non-negative integers in the smallest type that holds them (loads convert back to int64)."""
    return a.astype(np.min_scalar_type(int(a.max(initial=0))))


register_model("ngram", NGramModel)
