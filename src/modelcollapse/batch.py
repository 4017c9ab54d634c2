"""Examples in flight: what a generation trains on, with where each example came from.

Every example carries its *origin*: ``REAL`` (-1) for real (human) data, ``j`` for a sample
of generation j's model. The provenance of every training set is counted from the origins
and stored with the generation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REAL = -1  # origin code of real (human) data
UNLABELLED = -1  # label of a synthetic example: the model did not say which class it drew


@dataclass
class Batch:
    """Examples for all replicates: ``X`` is (R, n, ...); ``origin`` and ``labels`` are (R, n) ints.

    ``labels`` holds the class of labelled real data (images) and ``UNLABELLED`` elsewhere;
    it is None for unlabelled data kinds. ``weight`` (R, n) floats, set by a filtering policy,
    is how much each example counts in the fit: 0 drops it, None counts every example once.
    """

    X: np.ndarray
    origin: np.ndarray
    labels: np.ndarray | None = None
    weight: np.ndarray | None = None

    def __len__(self) -> int:  # examples per replicate
        return self.X.shape[1]

    def take(self, idx: np.ndarray) -> "Batch":
        """Per-replicate selection: ``idx`` is (R, m) example indices."""
        X_idx = idx.reshape(idx.shape + (1,) * (self.X.ndim - 2))
        labels = None if self.labels is None else np.take_along_axis(self.labels, idx, axis=1)
        weight = None if self.weight is None else np.take_along_axis(self.weight, idx, axis=1)
        return Batch(np.take_along_axis(self.X, X_idx, axis=1), np.take_along_axis(self.origin, idx, axis=1), labels,
                     weight)

    def head(self, m: int) -> "Batch":
        return Batch(self.X[:, :m], self.origin[:, :m], None if self.labels is None else self.labels[:, :m],
                     None if self.weight is None else self.weight[:, :m])

    @staticmethod
    def concat(batches: list["Batch"]) -> "Batch":
        labels = None
        if any(b.labels is not None for b in batches):
            labels = np.concatenate(
                [b.labels if b.labels is not None else np.full(b.origin.shape, UNLABELLED) for b in batches], axis=1
            )
        weight = None
        if any(b.weight is not None for b in batches):
            weight = np.concatenate(
                [b.weight if b.weight is not None else np.ones(b.origin.shape) for b in batches], axis=1)
        return Batch(
            np.concatenate([b.X for b in batches], axis=1), np.concatenate([b.origin for b in batches], axis=1), labels,
            weight,
        )


def provenance_counts(origin: np.ndarray, generation: int, weight: np.ndarray | None = None) -> np.ndarray:
    """(R, generation + 1) counts: column 0 real, column j + 1 from generation j's model. Examples a
    filter dropped (``weight`` 0) are not in the training set and not counted."""
    R = origin.shape[0]
    cols = generation + 1
    flat = (origin + 1) + cols * np.arange(R)[:, None]
    if weight is not None:
        flat = flat[weight > 0]
    return np.bincount(flat.ravel(), minlength=R * cols).reshape(R, cols)


def take_from(batches: list[Batch], idx: np.ndarray) -> Batch:
    """``Batch.concat(batches).take(idx)`` without the concatenation: per replicate, examples ``idx``
    (R, m) of the sets laid end to end. A pool that grows every generation (a web that keeps all model
    output) would otherwise be copied whole each generation, O(G^2) over a run."""
    if len(batches) == 1:
        return batches[0].take(idx)
    lengths = np.array([len(b) for b in batches])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    which = np.searchsorted(starts, idx, side="right") - 1  # (R, m): the set of each chosen example
    offset = idx - starts[which]
    R, m = idx.shape
    first = batches[0]
    X = np.empty((R, m, *first.X.shape[2:]), dtype=np.result_type(*(b.X.dtype for b in batches)))
    origin = np.empty((R, m), dtype=first.origin.dtype)
    labelled = any(b.labels is not None for b in batches)
    labels = np.full((R, m), UNLABELLED, dtype=np.int64) if labelled else None
    weighted = any(b.weight is not None for b in batches)
    weight = np.ones((R, m)) if weighted else None
    order = np.argsort(which, axis=None, kind="stable")  # one pass over the chosen examples, grouped by set
    sets, bounds = np.unique(which.ravel()[order], return_index=True)
    for j, lo, hi in zip(sets, bounds, [*bounds[1:], order.size]):
        rr, cc = np.divmod(order[lo:hi], m)
        src, off = batches[j], offset[rr, cc]
        X[rr, cc] = src.X[rr, off]
        origin[rr, cc] = src.origin[rr, off]
        if labelled and src.labels is not None:
            labels[rr, cc] = src.labels[rr, off]
        if weighted and src.weight is not None:
            weight[rr, cc] = src.weight[rr, off]
    return Batch(X, origin, labels, weight)

