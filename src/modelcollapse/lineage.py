"""Where a generation's training data came from: its sources, and how far it is from real data.

``modelcollapse lineage DIR --generation G`` reads what the run stored (the sparse provenance
counts of every generation file and, where a training set mixes sources, its per-example
``lineage/source`` and a filter's ``lineage/weight``, for the first replicates) and never writes:
it works on a run that is still going or was interrupted. Where no per-example lineage is stored
the counts determine it: a set from one source (``replace``), or an additive policy's chain fitted
from running statistics (``accumulate``), numbered real set first, then each generation's samples.

**Synthetic depth.** Every model of a chain descends from real data (generation 0 is fitted on
it), so "the share that traces back to people" is 1 for every generation and says nothing.
What differs between policies is *how many models stand between* the data and the people who
made it. For one replicate, let ``r_G`` be the share of generation G's training set that is real
and ``s_G(j)`` the share sampled from generation j's model (shares of the examples the fit
used: a filter's dropped examples are not counted, down-weighted ones count once, as in the
stored provenance). A real example has depth 0; an example sampled from generation j's model
has depth ``1 + D(j)``, where ``D(j)`` is the mean depth of the data generation j was fitted on:

    D(0) = 0,    D(G) = sum_j s_G(j) * (1 + D(j)) = (1 - r_G) + sum_j s_G(j) * D(j).

``D(G)`` is the mean number of model generations between what generation G learned from and
real data. Closed forms: ``replace`` gives ``D(G) = G``; ``mix`` or ``fresh`` with real fraction
p gives ``D(G) = (1 - p) / p * (1 - (1 - p)^G)`` (so 1 - 2^-G at p = 0.5, bounded by
(1 - p) / p), p = 1 gives 0; ``accumulate`` with equal set sizes gives ``D(G) = H_{G+1} - 1``
(H the harmonic numbers: logarithmic growth). A replicate whose filter kept no example at
generation G keeps its previous model, so ``D(G) = D(G - 1)`` there. (One left with fewer examples
than its family's minimum keeps it too; the stored counts do not say so, and such a generation is
counted as fitted on what it kept.)

The *depth profile* splits the same recursion by depth: ``P_G(0) = r_G`` and
``P_G(k) = sum_j s_G(j) P_j(k - 1)``: the share of what generation G learned that is k models
removed from real data (depths of ``DEPTH_BINS`` or more are pooled in the last bin). Without a
replicate, the depth and its profile are the mean over replicates of each replicate's own (each
replicate is its own chain); the composition and the real share are those of the mean counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .store import RunDirError, RunStore

#: Depths 0 .. DEPTH_BINS - 1 get a bin each in the depth profile; deeper examples share the last one.
DEPTH_BINS = 6
#: Text output shows at most this many steps of an ancestry, and this many sources of a training set
#: (the largest; JSON gives everything).
SHOWN_STEPS, SHOWN_SOURCES = 12, 16


class LineageError(RunDirError):
    """A lineage question the run cannot answer as asked: a generation, replicate or example index out of
    range, or per-example lineage the run did not store (reported as a usage error, exit status 2)."""


# -- the recursion, on counts alone ------------------------------------------------------------
def synthetic_depth(counts: list[np.ndarray], bins: int = DEPTH_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Mean synthetic depth and depth profile of generations 0 .. len(counts) - 1, per replicate.

    ``counts[g]`` is generation g's (R, g + 1) provenance (column 0 real, column j + 1 generation j's
    model), or (1, g + 1) for counts shared by every replicate. Returns ``depth`` (G + 1, R) and
    ``profile`` (G + 1, R, bins): see the module docstring for the definitions.
    """
    R = max(c.shape[0] for c in counts)
    G = len(counts) - 1
    depth = np.zeros((G + 1, R))
    profile = np.zeros((G + 1, R, bins))
    profile[0, :, 0] = 1.0
    for g in range(1, G + 1):
        c = np.broadcast_to(np.asarray(counts[g], dtype=float), (R, g + 1))
        total = c.sum(axis=1)
        empty = total <= 0
        share = c / np.where(empty, 1.0, total)[:, None]
        used = np.flatnonzero(share[:, 1:].any(axis=0))  # source generations any replicate drew from
        s = share[:, 1 + used]  # (R, k)
        depth[g] = (s * (1.0 + depth[used].T)).sum(axis=1)
        profile[g, :, 0] = share[:, 0]
        from_models = np.einsum("rk,krb->rb", s, profile[used])  # each source's profile, one model further
        profile[g, :, 1:] = from_models[:, :-1]
        profile[g, :, -1] += from_models[:, -1]
        depth[g, empty] = depth[g - 1, empty]
        profile[g, empty] = profile[g - 1, empty]
    return depth, profile


# -- reading a run -----------------------------------------------------------------------------
@dataclass
class RunLineage:
    """The provenance a run stored, read one generation file at a time (never written to)."""

    store: RunStore
    generations: list[int]
    replicates: int
    policy: str
    _sparse: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path | str) -> "RunLineage":
        store = RunStore.open(path, writable=False)
        gens = store.generations()
        if not gens:
            raise LineageError(f"{str(store.path)!r} has no generations recorded yet")
        config = _config(store)
        stopped = store.read_tensors(store.generation_file(gens[0]), "stopped").get("stopped")
        replicates = len(stopped) if stopped is not None else int(config.get("replicates") or 1)
        policy = config.get("policy") or {}
        return cls(store, gens, replicates, str(policy.get("kind", "?")) if isinstance(policy, dict) else "?")

    @property
    def last(self) -> int:
        return self.generations[-1]

    def sparse(self, g: int) -> tuple[np.ndarray, np.ndarray]:
        """Generation g's provenance as stored: source columns (k,) and counts (R or 1, k)."""
        if g not in self._sparse:
            arrays = self.store.read_tensors(self.store.generation_file(g), "provenance")
            if "provenance" in arrays:  # a generation file of version 0.1: dense counts
                dense = np.asarray(arrays["provenance"])
                self._sparse[g] = (np.arange(dense.shape[1]), dense)
            elif "provenance/sources" in arrays:
                self._sparse[g] = (arrays["provenance/sources"].astype(np.int64), arrays["provenance/counts"])
            else:
                raise LineageError(f"generation {g}'s file holds no provenance counts")
        return self._sparse[g]

    def counts(self, g: int, rows: slice = slice(None)) -> np.ndarray:
        """Generation g's counts (rows of replicates, g + 1) as float, or (1, g + 1) when every replicate
        shares them: column 0 real, column j + 1 generation j's model."""
        sources, stored = self.sparse(g)
        stored = stored if stored.shape[0] == 1 else stored[rows]
        out = np.zeros((stored.shape[0], g + 1))
        out[:, sources] = stored
        return out

    def composition(self, g: int, replicate: int | None) -> np.ndarray:
        """(g + 1,) counts of generation g's training set: replicate ``replicate``'s, or the mean over replicates."""
        if replicate is not None:
            return self.counts(g, slice(replicate, replicate + 1))[0]
        return self.counts(g).mean(axis=0)

    def shared(self, g: int) -> bool:
        """Whether every replicate's generation g trained on the same counts (one stored row)."""
        return self.sparse(g)[1].shape[0] == 1

    def depth(self, g: int, replicate: int | None, chunk: int = 256) -> tuple[float, np.ndarray]:
        """Synthetic depth and depth profile (bins,) of generation g: replicate ``replicate``'s, or the mean
        of every replicate's (computed ``chunk`` replicates at a time: memory stays O(g * chunk))."""
        spans = [slice(replicate, replicate + 1)] if replicate is not None else \
            [slice(lo, lo + chunk) for lo in range(0, self.replicates, chunk)]
        total_depth, total_profile, n = 0.0, np.zeros(DEPTH_BINS), 0
        for rows in spans:
            depth, profile = synthetic_depth([self.counts(k, rows) for k in range(g + 1)])
            width = len(range(self.replicates)[rows])
            total_depth += float(np.broadcast_to(depth[g], (width,)).sum())
            total_profile += np.broadcast_to(profile[g], (width, DEPTH_BINS)).sum(axis=0)
            n += width
            if depth.shape[1] == 1 and replicate is None:  # every replicate the same: one pass says it all
                return float(depth[g, 0]), profile[g, 0]
        return total_depth / n, total_profile / n

    def check(self, generation: int, replicate: int | None) -> None:
        if generation not in self.generations:
            span = f"0-{self.last}" if self.generations == list(range(self.last + 1)) else \
                ", ".join(map(str, self.generations))
            raise LineageError(f"generation {generation} is out of range: the run has generations {span}")
        if replicate is not None and not 0 <= replicate < self.replicates:
            raise LineageError(f"replicate {replicate} is out of range: the run has replicates 0-{self.replicates - 1}")


def _config(store: RunStore) -> dict[str, Any]:
    """The stored spec as plain YAML (not validated: lineage needs only the policy kind and replicates)."""
    import yaml

    try:
        data = yaml.safe_load(store.config_text())
    except yaml.YAMLError as exc:
        raise RunDirError(f"{store.path / 'config.yaml'} is unreadable: {exc}") from None
    return data if isinstance(data, dict) else {}


# -- the answer, as one JSON-ready object ------------------------------------------------------
def lineage(path: Path | str, generation: int, replicate: int | None = None,
            index: int | None = None) -> dict[str, Any]:
    """Where generation ``generation``'s training data came from (see the module docstring), as a dict.

    Without ``index``: its composition (``replicate``'s counts, or the mean over replicates), real
    share, synthetic depth and depth profile, the ancestry along the largest synthetic source back
    to a generation fitted on real data only, and a filter's detector metrics. With ``index`` (of
    ``replicate``, default 0): the source, weight and synthetic depth (0 real, 1 + D(j) from generation
    j's model) of that example of the training set, then the ancestry of its source generation.
    Raises :class:`LineageError` for a question out of range.
    """
    run = RunLineage.open(path)
    if index is not None and replicate is None:
        replicate = 0
    run.check(generation, replicate)
    out: dict[str, Any] = {"run": str(run.store.path), "policy": run.policy, "generation": generation,
                           "replicate": replicate, "replicates": run.replicates,
                           "averaged": replicate is None and not run.shared(generation)}
    if index is not None:
        out["example"] = _example(run, generation, replicate, index)
        source = out["example"]["source_generation"]
        if source is None:
            out["example"]["depth"] = 0.0
            return out
        out["example"]["depth"] = 1.0 + run.depth(source, replicate)[0]
        start = source
    else:
        out.update(_summary(run, generation, replicate))
        start = generation
    out["ancestry"] = _ancestry(run, start, replicate)
    if index is None:
        detector = _detector(run, generation, replicate)
        if detector:
            out["detector"] = detector
    return out


def _parts(counts: np.ndarray) -> list[dict[str, Any]]:
    total = float(counts.sum())
    parts = []
    for col, c in enumerate(counts):
        if c > 0:
            parts.append({"source": "real" if col == 0 else f"generation {col - 1}",
                          "generation": None if col == 0 else col - 1, "count": float(c),
                          "share": float(c / total) if total else 0.0})
    return parts


def _depth_summary(run: RunLineage, g: int, replicate: int | None) -> dict[str, Any]:
    d, p = run.depth(g, replicate)
    return {"synthetic_depth": d, "depth_profile": [float(v) for v in p]}


def _summary(run: RunLineage, g: int, replicate: int | None) -> dict[str, Any]:
    counts = run.composition(g, replicate)
    total = float(counts.sum())
    return {"size": total, "composition": _parts(counts),
            "real_share": float(counts[0] / total) if total else None, **_depth_summary(run, g, replicate)}


def _ancestry(run: RunLineage, start: int, replicate: int | None) -> list[dict[str, Any]]:
    """From ``start`` back along the largest synthetic source (the most recent on a tie) to a generation
    fitted on real data only: each step's composition."""
    steps = []
    g = start
    while True:
        counts = run.composition(g, replicate)
        total = float(counts.sum())
        step: dict[str, Any] = {"generation": g, "size": total, "composition": _parts(counts),
                                "real_share": float(counts[0] / total) if total else None}
        if total <= 0 and g > 0:  # a filter kept nothing: the replicate kept generation g - 1's model
            steps.append({**step, "empty": True, "next": g - 1})
            g -= 1
            continue
        synthetic = counts[1:]
        if g == 0 or not synthetic.any():
            steps.append(step)
            return steps
        j = int(len(synthetic) - 1 - np.argmax(synthetic[::-1]))  # the largest; the most recent on a tie
        step["next"] = j
        step["next_share"] = float(synthetic[j] / total)
        steps.append(step)
        g = j


def _detector(run: RunLineage, g: int, replicate: int | None) -> dict[str, float | None]:
    from .policies.filter import FILTER_METRICS

    arrays = run.store.read_tensors(run.store.generation_file(g), "metric/")
    out: dict[str, float | None] = {}
    for name in FILTER_METRICS:
        values = arrays.get(f"metric/{name}")
        if values is None:
            continue
        values = np.asarray(values, dtype=float)
        v = values[replicate] if replicate is not None else (np.nan if np.isnan(values).all()
                                                             else np.nanmean(values))
        out[name] = None if math.isnan(v) else float(v)
    return out


def _example(run: RunLineage, g: int, replicate: int, index: int) -> dict[str, Any]:
    """Example ``index`` of replicate ``replicate``'s training set at generation g: its source and weight."""
    if g == 0:
        n = int(run.composition(0, replicate)[0])
        _check_index(index, n, g)
        return {"index": index, "source": "real", "source_generation": None, "weight": None, "dropped": False,
                "note": "generation 0 is fitted on real data only"}
    arrays = run.store.read_tensors(run.store.generation_file(g), "lineage/")
    source, weight, note = arrays.get("lineage/source"), arrays.get("lineage/weight"), None
    if source is None or not replicate < source.shape[0]:
        derived = _derived_source(run, g, replicate)
        if derived is None and source is not None:
            raise LineageError(f"replicate {replicate}: per-example lineage is stored for replicates "
                               f"0-{source.shape[0] - 1} only (the first {source.shape[0]} of {run.replicates}); "
                               "drop --index for its composition")
        if derived is None:
            raise LineageError(f"generation {g}'s file holds no per-example lineage (written by a version that "
                               "did not record it); drop --index for the composition of its training set")
        (row, note), weight = derived, None
    else:
        row = source[replicate]
    _check_index(index, len(row), g)
    col = int(row[index])
    w = None if weight is None else float(weight[replicate, index])
    out = {"index": index, "source": "real" if col == 0 else f"generation {col - 1}",
           "source_generation": None if col == 0 else col - 1, "weight": w, "dropped": w == 0.0}
    if note:
        out["note"] = note
    return out


def _derived_source(run: RunLineage, g: int, replicate: int) -> tuple[np.ndarray, str] | None:
    """A replicate's per-example sources where the provenance counts determine them (a run stores no
    lineage for these): a training set from one source (``replace``), or an additive policy's chain that
    kept running statistics (``accumulate``): the real set, then the set drawn from each generation."""
    row = run.composition(g, replicate).astype(np.int64)
    used = np.flatnonzero(row)
    if len(used) == 1:
        return np.full(int(row.sum()), used[0]), "every example of this training set has the same source"
    if run.shared(g) and _additive(run.policy):
        return np.repeat(np.arange(len(row)), row), (
            "this chain fitted running statistics of the real set and every synthetic set, storing no order: "
            "examples are numbered real set first, then each generation's samples in turn, the same in every "
            "replicate")
    return None


def _additive(kind: str) -> bool:
    """Whether policy ``kind`` trains on the real set and every synthetic set so far (``Policy.additive``)."""
    from .policies import POLICIES

    return kind in POLICIES and bool(getattr(POLICIES.get(kind).cls, "additive", False))


def _check_index(index: int, n: int, g: int) -> None:
    if not 0 <= index < n:
        raise LineageError(f"index {index} is out of range: generation {g}'s training set has {n} examples "
                           f"per replicate (indices 0-{n - 1})")


# -- the answer, in words ----------------------------------------------------------------------
def _pct(share: float | None) -> str:
    return "–" if share is None else f"{100 * share:.1f}%"


def _count(c: float) -> str:
    return f"{c:.0f}" if float(c).is_integer() else f"{c:.2f}"


def _source_name(part: dict[str, Any]) -> str:
    return "real data" if part["generation"] is None else f"generation {part['generation']}'s model"


def _largest(parts: list[dict[str, Any]], keep: int) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """At most ``keep`` sources: real data and the largest synthetic ones, in generation order; and the rest,
    pooled (None when nothing is left out)."""
    if len(parts) <= keep:
        return parts, None
    real = [p for p in parts if p["generation"] is None]
    synthetic = [p for p in parts if p["generation"] is not None]
    top = sorted(sorted(synthetic, key=lambda p: -p["count"])[: keep - 1 - len(real)], key=lambda p: p["generation"])
    rest = [p for p in synthetic if p not in top]
    pooled = {"others": len(rest), "count": sum(p["count"] for p in rest), "share": sum(p["share"] for p in rest)}
    return [*real, *top], pooled


def _inline(parts: list[dict[str, Any]], keep: int = 6) -> str:
    shown, rest = _largest(parts, keep)
    text = ", ".join(f"{_source_name(p)} {_pct(p['share'])}" for p in shown) or "nothing"
    return text + (f", {rest['others']} other generations' models {_pct(rest['share'])}" if rest else "")


def _profile(profile: list[float]) -> str:
    labels = [*map(str, range(len(profile) - 1)), f"{len(profile) - 1}+"]
    return ", ".join(f"{label}: {_pct(p)}" for label, p in zip(labels, profile) if p > 5e-4)


def describe(result: dict[str, Any]) -> str:
    """The result of :func:`lineage` as text for a terminal."""
    g, r = result["generation"], result["replicate"]
    who = (f"replicate {r}" if r is not None else
           f"mean over {result['replicates']} replicates" if result["averaged"] else
           f"the same in all {result['replicates']} replicates")
    lines = []
    if "example" in result:
        ex = result["example"]
        head = f"generation {g}, replicate {r}, example {ex['index']} (policy {result['policy']}): "
        if ex["source_generation"] is None:
            lines.append(head + "real data" + (f" ({ex['note']})" if ex.get("note") else ""))
        else:
            lines.append(head + f"sampled from generation {ex['source_generation']}'s model")
        if ex.get("dropped"):
            lines.append("  dropped by the filter: weight 0, not in the training set")
        elif ex.get("weight") is not None and ex["weight"] != 1.0:
            lines.append(f"  down-weighted by the filter: weight {ex['weight']:g}")
        if ex.get("note") and ex["source_generation"] is not None:
            lines.append(f"  ({ex['note']})")
        if ex["source_generation"] is not None:
            lines.append(f"  synthetic depth {ex['depth']:.4g}: 1 + the synthetic depth of generation "
                         f"{ex['source_generation']}'s training set ({ex['depth'] - 1:.4g})")
        if "ancestry" in result:
            first = result["ancestry"][0]
            lines.append(f"generation {first['generation']}'s model was trained on: {_inline(first['composition'])}")
            if len(result["ancestry"]) > 1:
                lines.append("its ancestry (along the largest synthetic source):")
                lines += _ancestry_lines(result["ancestry"], skip_first=True)
        return "\n".join(lines)
    lines.append(f"generation {g} of {result['run']} (policy {result['policy']}; {who}): "
                 f"{_count(result['size'])} training examples")
    shown, rest = _largest(result["composition"], SHOWN_SOURCES)
    rows = [(_source_name(p), p) for p in shown] + ([(f"{rest['others']} other generations' models", rest)]
                                                    if rest else [])
    width = max((len(name) for name, _ in rows), default=0)
    for name, p in rows:
        lines.append(f"  {name:<{width}}  {_count(p['count']):>8}  {_pct(p['share']):>6}")
    lines.append(f"real share: {_pct(result['real_share'])} of the training set is real data")
    lines.append(f"synthetic depth: {result['synthetic_depth']:.4g} (mean number of model generations between "
                 "this training set and real data; 0 = all real)")
    lines.append(f"  by depth{' (mean of each replicate’s)' if result['averaged'] else ''}: "
                 f"{_profile(result['depth_profile'])}")
    lines.append("ancestry (along the largest synthetic source):")
    lines += _ancestry_lines(result["ancestry"], skip_first=False)
    d = result.get("detector") or {}
    if d and all(v is None for v in d.values()):
        lines.append(f"detector: no values at generation {g} (generation 0 is fitted on unfiltered real data)")
    elif d:
        names = {"detector_accuracy": "accuracy", "detector_precision": "precision", "detector_recall": "recall",
                 "detector_false_positive_rate": "false-positive rate", "synthetic_passed": "synthetic share kept",
                 "train_kept": "examples kept"}
        text = ", ".join(f"{names.get(k, k)} {'–' if v is None else f'{v:.3g}'}" for k, v in d.items())
        lines.append(f"detector ({'replicate ' + str(r) if r is not None else 'mean over replicates'}): {text}")
    return "\n".join(lines)


def _ancestry_lines(steps: list[dict[str, Any]], *, skip_first: bool) -> list[str]:
    """One line per step after the first (the first is described by the caller), at most SHOWN_STEPS."""
    out = []
    if not skip_first and "next" not in steps[0]:
        out.append(f"  generation {steps[0]['generation']} was trained on real data only")
    elif not skip_first and steps[0].get("empty"):
        g = steps[0]["generation"]
        out.append(f"  generation {g}: the filter kept no example, so it kept generation {g - 1}'s model")
    for parent, step in zip(steps, steps[1:]):
        g = step["generation"]
        via = (f"whose model generation {parent['generation']} kept" if parent.get("empty") else
               f"{_pct(parent.get('next_share'))} of generation {parent['generation']}'s data")
        if step.get("empty"):
            out.append(f"  generation {g} ({via}): the filter kept no example, so it kept generation {g - 1}'s model")
        elif "next" not in step:
            out.append(f"  generation {g} ({via}) was trained on real data only")
        else:
            out.append(f"  generation {g} ({via}) was trained on: {_inline(step['composition'])}")
    if len(out) > SHOWN_STEPS:
        out = [*out[: SHOWN_STEPS - 1], f"  … {len(out) - SHOWN_STEPS} more steps …", out[-1]]
    return out
