"""What a tracker receives for one generation, computed the same way live and from a run directory.

A run logs :func:`summarize` of the values it has just recorded; ``modelcollapse export`` rebuilds
the very same records from ``metrics.jsonl`` (or the Parquet parts), ``provenance.jsonl`` and
``timings.jsonl`` (:func:`replay`). The metric rows hold each value exactly (JSON floats round-trip,
Parquet keeps float64), so an exported run and a live-logged one carry the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

#: Per generation, for every scalar metric: these summaries over the replicates still running.
SUMMARIES = ("median", "mean", "q05", "q95")
TEXT_EXTRA = "preview_tokens"  # generated token ids a text data kind stores with each generation
TIMINGS = "timings.jsonl"  # seconds each generation took, appended by the run loop (see loop.py)


@dataclass
class GenerationLog:
    """One tracker step: the generation's summaries, histograms of vector metrics, generated texts."""

    generation: int
    scalars: dict[str, float] = field(default_factory=dict)
    histograms: dict[str, np.ndarray] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)


def summarize(g: int, values: dict[str, np.ndarray], *, real_share: float | None = None,
              seconds: float | None = None, texts: list[str] | None = None) -> GenerationLog:
    """The record of generation ``g`` from its metric values, NaN where a replicate has stopped or a
    value is missing: ``(R,)`` arrays give ``<metric>/median|mean|q05|q95``, ``(R, k)`` vector metrics
    a histogram of their entries. A summary that is not finite (a mean over an infinite KL) is left
    out rather than sent: trackers disagree on how to store infinities, and the run directory has it."""
    out = GenerationLog(g, texts=list(texts or []))
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in values.items()}
    # Replicates still running: those with a value that is not NaN (a stopped one has none, in every metric,
    # scalar or vector; once per generation, also when every replicate has stopped)
    rows = [v.reshape(v.shape[0], int(np.prod(v.shape[1:]))) for v in arrays.values() if v.ndim >= 1]
    if rows:
        running = np.zeros(rows[0].shape[0], dtype=bool)
        for v in rows:
            running |= ~np.isnan(v).all(axis=1)
        out.scalars["replicates/running"] = float(running.sum())
    for name, v in arrays.items():
        if v.ndim == 2:
            entries = v[np.isfinite(v)]
            if entries.size:
                out.histograms[name] = entries
            continue
        present = v[~np.isnan(v)]
        if not present.size:
            continue
        with np.errstate(invalid="ignore"):  # quantiles between two infinities are NaN: left out below
            stats = {"median": np.median(present), "mean": np.mean(present),
                     "q05": np.quantile(present, 0.05), "q95": np.quantile(present, 0.95)}
        out.scalars.update({f"{name}/{k}": float(x) for k, x in stats.items() if np.isfinite(x)})
    if real_share is not None:
        out.scalars["provenance/real_share"] = float(real_share)
    if seconds is not None:
        out.scalars["time/generation_seconds"] = float(seconds)
    return out


def real_share(line: dict) -> float | None:
    """The real share of a generation's training set from its provenance.jsonl line."""
    total = line.get("real", 0.0) + line.get("synthetic", 0.0)
    return float(line["real"]) / total if total else None


def hyperparameters(spec: Any) -> dict[str, Any]:
    """The resolved spec flattened to dotted keys (``model.kind``, ``policy.real_fraction``); lists and
    mappings inside a value are JSON text, so every tracker stores them as one parameter."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, (list, tuple, dict)):
            flat[prefix] = json.dumps(value)
        else:
            flat[prefix] = value

    walk("", spec.model_dump(mode="json", exclude={"logging"}))
    return flat


def read_timings(path: Path) -> dict[int, float]:
    """Seconds per generation from ``timings.jsonl`` (the last line wins: a resumed run redoes some)."""
    out: dict[int, float] = {}
    target = Path(path) / TIMINGS
    if target.is_file():
        for line in target.read_text(errors="ignore").splitlines():
            try:
                row = json.loads(line)
                out[int(row["generation"])] = float(row["seconds"])
            except (ValueError, KeyError, TypeError):  # a line cut by a crash
                continue
    return out


def replay(path: Path, texts: int = 0) -> Iterator[GenerationLog]:
    """The records a live run would have logged, rebuilt from run directory ``path``, in generation order.
    ``texts``: generated texts per generation for a language model (its data kind decodes them)."""
    from ..config import load_spec
    from ..data import load_source
    from ..results import read_metric_columns
    from ..store import RunStore

    path = Path(path)
    store = RunStore.open(path, writable=False)
    spec = load_spec(str(path / "config.yaml"))
    cols = read_metric_columns(path)
    provenance = {int(row["generation"]): row for row in store.read_jsonl("provenance.jsonl") if "generation" in row}
    timings = read_timings(path)
    source: list[Any] = []  # loaded on first use: only a data kind that keeps generated texts needs it
    saved = set(store.generations())
    order = np.lexsort((cols.replicate, cols.generation))
    gens = cols.generation[order]
    for g in np.unique(gens).tolist():
        rows = order[gens == g]
        values = {name: v[rows] for name, v in cols.values.items()}
        line = provenance.get(g)
        shown: list[str] = []
        if texts and g in saved:
            extras = store.read_tensors(store.generation_file(g), TEXT_EXTRA)
            if extras:
                source = source or [load_source(spec.data)]
                shown = source[0].preview_texts(extras)[:texts]
        yield summarize(g, values, real_share=real_share(line) if line else None, seconds=timings.get(g), texts=shown)
