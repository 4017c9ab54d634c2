"""Data policies: what each generation trains on.

A policy is a small frozen dataclass whose :meth:`build` makes generation g's training
set from the real pool and the synthetic sets drawn so far. Every example carries its
*origin* (-1 for real data, j for a sample of generation j's model) so the provenance of
every training set can be counted and stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .registry import Registry

REAL = -1  # origin code of real (human) data


UNLABELLED = -1  # label of a synthetic example: the model did not say which class it drew


@dataclass
class Batch:
    """Examples for all replicates: ``X`` is (R, n, ...); ``origin`` and ``labels`` are (R, n) ints.

    ``labels`` holds the class of labelled real data (images) and ``UNLABELLED`` elsewhere;
    it is None for unlabelled data kinds.
    """

    X: np.ndarray
    origin: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:  # examples per replicate
        return self.X.shape[1]

    def take(self, idx: np.ndarray) -> "Batch":
        """Per-replicate selection: ``idx`` is (R, m) example indices."""
        X_idx = idx.reshape(idx.shape + (1,) * (self.X.ndim - 2))
        labels = None if self.labels is None else np.take_along_axis(self.labels, idx, axis=1)
        return Batch(np.take_along_axis(self.X, X_idx, axis=1), np.take_along_axis(self.origin, idx, axis=1), labels)

    def head(self, m: int) -> "Batch":
        return Batch(self.X[:, :m], self.origin[:, :m], None if self.labels is None else self.labels[:, :m])

    @staticmethod
    def concat(batches: list["Batch"]) -> "Batch":
        labels = None
        if any(b.labels is not None for b in batches):
            labels = np.concatenate(
                [b.labels if b.labels is not None else np.full(b.origin.shape, UNLABELLED) for b in batches], axis=1
            )
        return Batch(
            np.concatenate([b.X for b in batches], axis=1), np.concatenate([b.origin for b in batches], axis=1), labels
        )


def provenance_counts(origin: np.ndarray, generation: int) -> np.ndarray:
    """(R, generation + 1) counts: column 0 real, column j + 1 from generation j's model."""
    R = origin.shape[0]
    cols = generation + 1
    flat = (origin + 1) + cols * np.arange(R)[:, None]
    return np.bincount(flat.ravel(), minlength=R * cols).reshape(R, cols)


def _choose(rngs: list[np.random.Generator], pool: int, size: int) -> np.ndarray:
    """Per replicate, ``size`` distinct indices out of ``pool``, each from its own generator."""
    return np.stack([g.choice(pool, size=size, replace=False) for g in rngs])


DrawReal = Callable[[int], Batch]


@dataclass(frozen=True)
class Policy:
    needs_history: ClassVar[bool] = False  # keep every synthetic set (accumulating policies)

    def build(
        self,
        *,
        real: Batch,
        synthetic: list[Batch],
        train_size: int,
        rngs: list[np.random.Generator],
        draw_real: DrawReal,
    ) -> Batch:
        raise NotImplementedError


POLICIES: Registry[type[Policy]] = Registry("policy kind")


@POLICIES.register("replace")
@dataclass(frozen=True)
class Replace(Policy):
    """Train only on the previous generation's samples (the paper's main setting)."""

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        return synthetic[-1]


@POLICIES.register("mix")
@dataclass(frozen=True)
class Mix(Policy):
    """``real_fraction`` of each set drawn from generation 0's real training set (paper: 10%)."""

    real_fraction: float = 0.1

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        n_real = int(round(self.real_fraction * train_size))
        kept = real.take(_choose(rngs, len(real), n_real))
        return Batch.concat([kept, synthetic[-1].head(train_size - n_real)])


@POLICIES.register("fresh")
@dataclass(frozen=True)
class Fresh(Policy):
    """Like ``mix``, but the real part is newly drawn from the original distribution each generation."""

    real_fraction: float = 0.1

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        n_real = int(round(self.real_fraction * train_size))
        return Batch.concat([draw_real(n_real), synthetic[-1].head(train_size - n_real)])


@POLICIES.register("accumulate")
@dataclass(frozen=True)
class Accumulate(Policy):
    """The real set plus every synthetic set so far: the training set grows each generation."""

    needs_history: ClassVar[bool] = True

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        return Batch.concat([real, *synthetic])


@POLICIES.register("accumulate_subsample")
@dataclass(frozen=True)
class AccumulateSubsample(Policy):
    """``train_size`` examples drawn uniformly, without replacement, from the accumulated pool."""

    needs_history: ClassVar[bool] = True

    def build(self, *, real, synthetic, train_size, rngs, draw_real):
        pool = Batch.concat([real, *synthetic])
        return pool.take(_choose(rngs, len(pool), train_size))


def build_policy(kind: str, real_fraction: float = 0.0) -> Policy:
    cls = POLICIES.get(kind)
    return cls(real_fraction=real_fraction) if "real_fraction" in cls.__dataclass_fields__ else cls()
