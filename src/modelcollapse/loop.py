"""Run one experiment into a run directory: resumable, atomic, with a progress bar."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import distributed
from .chain import Chain, Generation
from .config import ExperimentSpec, validate
from .batch import REAL, Batch
from .store import RunDirError, RunStore, now

#: With ``checkpoint_every: null`` (the default) a checkpoint is written when this many
#: seconds have passed since the last one: at most a few seconds of work are redone on
#: resume, and a fast chain does not spend its time rewriting checkpoints.
CHECKPOINT_SECONDS = 5.0


def run(spec: ExperimentSpec, out: Path | str, *, resume: bool = False, progress: bool = True) -> RunStore:
    """Run ``spec`` into ``out`` (or continue it there with ``resume=True``) and return the store.

    Under a multi-process launch (see :mod:`.distributed`) every process runs the chain and
    only the main one writes ``out`` or draws the progress bar.
    """
    writable = distributed.is_main()
    if resume:
        store, chain, start, offsets = _resume(spec, Path(out), writable=writable)
        spec = chain.spec
    else:
        chain = Chain(spec)  # before the directory exists: a failure here leaves nothing behind
        store = RunStore.create(out, spec.to_yaml(), writable=writable)
        store.update_manifest(info=chain.info)
        start, offsets = 0, {"metrics.jsonl": 0, "provenance.jsonl": 0}
    manifest = store.manifest() if resume else {}
    summary = [p for p in manifest.get("provenance", []) if p["generation"] < start]
    t0 = last_checkpoint = time.perf_counter()
    elapsed0 = manifest.get("elapsed_seconds", 0.0)
    try:
        with _progress(progress and writable, spec) as bar:
            task = bar.add_task(spec.name, total=spec.generations + 1, completed=start) if bar else None
            for g in range(start, spec.generations + 1):
                gen = chain.first() if g == 0 else chain.step(g)
                if writable:  # the other processes skip reading out the parameters too
                    offsets, line = _record(store, chain, gen)
                    summary.append({k: line[k] for k in ("generation", "size", "real", "synthetic")})
                all_stopped = len(chain.stopped) == spec.replicates
                due = (
                    g % spec.checkpoint_every == 0
                    if spec.checkpoint_every
                    else time.perf_counter() - last_checkpoint >= CHECKPOINT_SECONDS
                )
                if due or g == spec.generations or all_stopped:
                    _checkpoint(store, chain, g, offsets, summary, elapsed0 + time.perf_counter() - t0)
                    last_checkpoint = time.perf_counter()
                if bar:
                    bar.update(task, advance=1)
                if all_stopped:
                    store.update_manifest(stopped_early=f"every replicate stopped by generation {g}")
                    break
    except KeyboardInterrupt:
        store.update_manifest(status="interrupted", finished=None)
        raise
    except Exception as exc:
        store.update_manifest(status="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    store.update_manifest(status="completed", finished=now(), elapsed_seconds=elapsed0 + time.perf_counter() - t0)
    return store


def _progress(enabled: bool, spec: ExperimentSpec) -> Any:
    if not enabled:
        return nullcontext(None)
    return Progress(
        TextColumn("[bold]{task.description}[/] generations"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"× {spec.replicates} replicates"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def _record(store: RunStore, chain: Chain, gen: Generation) -> tuple[dict[str, int], dict]:
    """Write one generation: parameters and provenance (npz), metric rows, provenance line."""
    g, spec = gen.index, chain.spec
    arrays = {f"model/{k}": v for k, v in chain.model_state().items()}
    arrays["provenance"] = gen.provenance
    arrays["stopped"] = np.array([r in chain.stopped for r in range(spec.replicates)])
    if gen.synthetic is not None and chain.policy.needs_history:
        arrays["synthetic_X"], arrays["synthetic_origin"] = gen.synthetic.X, gen.synthetic.origin
    arrays.update(gen.extras)
    store.write_tensors(store.generation_file(g), arrays)
    if spec.keep_params == "ends" and g >= 2:  # the previous generation is no longer the latest
        previous = store.generation_file(g - 1)
        store.write_tensors(previous, {k: v for k, v in store.read_tensors(previous).items() if not k.startswith("model/")})
    if g == 0:
        real = {"X": chain.real.X}
        if chain.real.labels is not None:
            real["labels"] = chain.real.labels
        if chain.source.stores_heldout:  # a dataset's fixed test split is rebuilt from the spec instead
            real["heldout"] = chain.heldout
        store.write_npz("real.npz", real)
    columns = {name: _json_column(values) for name, values in gen.metrics.items()}
    rows = []
    for r in range(spec.replicates):
        row: dict[str, Any] = {"replicate": r, "generation": g}
        stopped = chain.stopped.get(r)
        for name, column in columns.items():
            row[name] = column[r] if stopped is None else None
        if stopped is not None:
            row["stopped"] = stopped
        rows.append(row)
    mean_counts = gen.provenance.mean(axis=0)
    line = {
        "generation": g,
        "size": int(gen.provenance[0].sum()),
        "real": float(mean_counts[0]),
        "synthetic": float(mean_counts[1:].sum()),
        "sources": {("real" if j == 0 else str(j - 1)): float(c) for j, c in enumerate(mean_counts) if c > 0},
    }
    offsets = {
        "metrics.jsonl": store.append_jsonl("metrics.jsonl", rows, clean=True),
        "provenance.jsonl": store.append_jsonl("provenance.jsonl", [line]),
    }
    return offsets, line


def _json_column(values: np.ndarray) -> list:
    """A metric's per-replicate values as JSON-ready lists: NaN (missing) becomes None."""
    values = np.asarray(values, dtype=float)
    finite = ~np.isnan(values)
    out = values.tolist()
    if finite.all():
        return out
    if values.ndim == 1:
        return [v if ok else None for v, ok in zip(out, finite)]
    return [[v if ok else None for v, ok in zip(row, oks)] for row, oks in zip(out, finite)]


def _checkpoint(
    store: RunStore, chain: Chain, g: int, offsets: dict[str, int], summary: list[dict], elapsed: float
) -> None:
    arrays = chain.streams.state_arrays()
    arrays["generation"] = np.array(g)
    arrays["offsets"] = np.array([offsets["metrics.jsonl"], offsets["provenance.jsonl"]])
    stopped = sorted(chain.stopped.items())
    arrays["stopped_replicates"] = np.array([r for r, _ in stopped], dtype=np.int64)
    arrays["stopped_reasons"] = np.array([why for _, why in stopped], dtype=str)
    store.write_npz("checkpoint.npz", arrays)
    store.update_manifest(
        generations_completed=g,
        elapsed_seconds=elapsed,
        provenance=summary,
        stopped={str(r): why for r, why in sorted(chain.stopped.items())},
    )


def _resume(spec: ExperimentSpec | None, out: Path, *, writable: bool = True) -> tuple[RunStore, Chain, int, dict[str, int]]:
    store = RunStore.open(out, writable=writable)
    stored = validate(yaml.safe_load(store.config_text()))
    spec = _compatible(stored, spec)
    if not store.has("checkpoint.npz"):  # stopped before its first checkpoint: nothing to keep
        for name in ("metrics.jsonl", "provenance.jsonl"):
            store.truncate(name, 0)
        store.write_text("config.yaml", spec.to_yaml())
        store.update_manifest(status="running", provenance=[], resumed=[*store.manifest().get("resumed", []), now()])
        return store, Chain(spec), 0, {"metrics.jsonl": 0, "provenance.jsonl": 0}
    ck = store.read_npz("checkpoint.npz")
    g = int(ck["generation"])
    offsets = {"metrics.jsonl": int(ck["offsets"][0]), "provenance.jsonl": int(ck["offsets"][1])}
    for name, off in offsets.items():
        store.truncate(name, off)
    chain = Chain(spec)
    real = store.read_npz("real.npz")
    history = []
    if chain.policy.needs_history:
        for k in range(1, g + 1):
            z = store.generation(k)
            history.append(Batch(z["synthetic_X"], z["synthetic_origin"]))
    manifest = store.manifest()
    stopped = {int(r): str(why) for r, why in zip(ck["stopped_replicates"], ck["stopped_reasons"])}
    gen0_stopped = store.read_tensors(store.generation_file(0), "stopped").get("stopped", [])
    chain.restore(
        real=Batch(real["X"], np.full(real["X"].shape[:2], REAL, dtype=np.int64), real.get("labels")),
        heldout=real.get("heldout"),
        model_state=store.model_state(g),
        model0_state=store.model_state(0),
        history=history,
        stopped=stopped,
        stopped0={int(r): stopped.get(int(r), "stopped at generation 0") for r in np.flatnonzero(gen0_stopped)},
        rng_state=ck,
    )
    store.write_text("config.yaml", spec.to_yaml())
    store.update_manifest(status="running", finished=None, resumed=[*manifest.get("resumed", []), now()])
    return store, chain, g + 1, offsets


def _compatible(stored: ExperimentSpec, given: ExperimentSpec | None) -> ExperimentSpec:
    """The spec to continue with: the stored one, or a given one that differs only by more generations."""
    if given is None:
        return stored
    a, b = stored.model_dump(), given.model_dump()
    for key in ("generations", "workers", "report"):  # may change on resume: none alters the numbers
        a.pop(key)
        b.pop(key)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if changed:
        raise RunDirError(f"cannot resume: the spec differs from the stored run in {', '.join(changed)}")
    if given.generations < stored.generations:
        raise RunDirError(
            f"cannot resume with generations={given.generations}: the run was started with {stored.generations}"
        )
    return given
