"""Run one experiment into a run directory: resumable, atomic, with a progress bar."""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import distributed, integrity, resources
from .batch import REAL, Batch
from .chain import Chain, Generation
from .config import ExperimentSpec
from .results import MetricWriter, metrics_format, part_files
from .store import APPENDED, STATS, RunDirError, RunStore, now, sparse_provenance
from .trackers.records import TEXT_EXTRA, TIMINGS, GenerationLog, real_share, summarize

if TYPE_CHECKING:
    from .trackers import Session

#: Written into every generation file: 2 adds metric/*, sparse provenance and stop reasons.
GENERATION_FORMAT = "2"

#: With ``checkpoint_every: null`` (the default) a checkpoint is written when this many
#: seconds have passed since the last one: at most a few seconds of work are redone on
#: resume, and a fast chain does not spend its time rewriting checkpoints.
CHECKPOINT_SECONDS = 5.0


def run(spec: ExperimentSpec, out: Path | str, *, resume: bool = False, progress: bool = True,
        force: bool = False, on_generation: Callable[[int], None] | None = None,
        trackers: "Session | None" = None) -> RunStore:
    """Run ``spec`` into ``out`` (or continue it there with ``resume=True``) and return the store.

    Before anything is written the run's memory and disk needs are estimated (see
    :mod:`.resources`): a run that would not fit is refused unless ``force``. Under a
    multi-process launch (see :mod:`.distributed`) every process runs the chain and only the
    main one writes ``out`` or draws the progress bar. ``on_generation(g)`` is called after each
    generation is recorded (a study's progress display uses it).

    ``spec.logging.trackers`` are sent each generation (:mod:`.trackers`) and ended with the run. A
    caller that writes the report afterwards passes its own ``trackers`` session and finishes it
    (with the report as an artifact) once the run has completed; a failed or interrupted run
    finishes it here.
    """
    writable = distributed.is_main()
    own = trackers is None and spec is not None and bool(spec.logging.trackers) and writable
    if own:  # a tracker that is not installed is refused here, before anything is written
        from .trackers import Session

        trackers = Session(spec.logging.trackers, spec.logging)
    if resume:
        store, chain, start, writer = _resume(spec, Path(out), writable=writable, force=force)
        spec = chain.spec
    else:
        resources.check(spec, Path(out), force=force)
        chain = Chain(spec)  # before the directory exists: a failure here leaves nothing behind
        store = RunStore.create(out, spec.to_yaml(), writable=writable)
        fmt = metrics_format(spec.replicates, spec.generations)
        store.update_manifest(info=chain.info, metrics_format=fmt)
        start, writer = 0, MetricWriter(store, fmt)
    if not writable:
        trackers = None
    status = "failed"
    try:
        if trackers is not None:
            trackers.open(store.path, spec, store.manifest(), start=start, resume=resume)
        _generations(store, chain, start, writer, progress=progress and writable, on_generation=on_generation,
                     trackers=trackers)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        chain.close()
        store.unlock()
        if trackers is not None and (own or status != "completed"):
            trackers.finish(store.path, status)
    return store


def _generations(store: RunStore, chain: Chain, start: int, writer: MetricWriter, *, progress: bool,
                 on_generation: Callable[[int], None] | None = None, trackers: "Session | None" = None) -> None:
    spec, writable = chain.spec, store.writable
    manifest = store.manifest() if start and writable else {}
    summary = [p for p in manifest.get("provenance", []) if p["generation"] < start]
    # Fits that stopped at max_iter, per generation ("generation": count), as scikit-learn would warn.
    not_converged = {k: v for k, v in manifest.get("not_converged", {}).items() if int(k) < start}
    ledger = store.ledger if start else integrity.Ledger()
    t0 = last_checkpoint = time.perf_counter()
    elapsed0 = manifest.get("elapsed_seconds", 0.0)
    try:
        with _progress(progress, spec) as bar:
            task = bar.add_task(spec.name, total=spec.generations + 1, completed=start) if bar else None
            for g in range(start, spec.generations + 1):
                t_gen = time.perf_counter()
                gen = chain.first() if g == 0 else chain.step(g)
                if writable:  # the other processes skip reading out the parameters too
                    line = _record(store, chain, gen, writer, ledger)
                    summary.append({k: line[k] for k in ("generation", "size", "real", "synthetic")})
                    seconds = time.perf_counter() - t_gen
                    store.append_jsonl(TIMINGS, [{"generation": g, "seconds": seconds}], clean=True)
                    if trackers is not None:
                        trackers.log(_tracker_record(chain, gen, line, seconds))
                if gen.not_converged:
                    not_converged[str(g)] = gen.not_converged
                all_stopped = len(chain.stopped) == spec.replicates
                due = (
                    g % spec.checkpoint_every == 0
                    if spec.checkpoint_every
                    else time.perf_counter() - last_checkpoint >= CHECKPOINT_SECONDS
                )
                if due or g == spec.generations or all_stopped:
                    _checkpoint(store, chain, g, writer, ledger, summary, elapsed0 + time.perf_counter() - t0,
                                not_converged=not_converged)
                    last_checkpoint = time.perf_counter()
                if bar:
                    bar.update(task, advance=1)
                if on_generation is not None:
                    on_generation(g)
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


def _tracker_record(chain: Chain, gen: Generation, line: dict, seconds: float) -> GenerationLog:
    """What the trackers get for a generation: the values its metric rows hold (a stopped replicate's
    are missing), summarized as ``modelcollapse export`` summarizes them from the rows."""
    stopped = np.array([r in chain.stopped for r in range(chain.spec.replicates)])
    values = {}
    for name, v in gen.metrics.items():
        v = np.array(v, dtype=np.float64)
        v[stopped] = np.nan
        values[name] = v
    wanted, texts = chain.spec.logging.text_samples, []
    if wanted and TEXT_EXTRA in gen.extras:
        texts = chain.source.preview_texts({TEXT_EXTRA: gen.extras[TEXT_EXTRA]})[:wanted]
    return summarize(gen.index, values, real_share=real_share(line), seconds=seconds, texts=texts)


def _progress(enabled: bool, spec: ExperimentSpec) -> Any:
    if not enabled:
        return nullcontext(None)
    from .progress import progress_bar  # rich's Progress; in Jupyter drawn as HTML updated in place, no ANSI codes

    return progress_bar(
        TextColumn("[bold]{task.description}[/] generations"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(f"× {spec.replicates} replicates"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        transient=False,
    )


def _record(store: RunStore, chain: Chain, gen: Generation, writer: MetricWriter, ledger: integrity.Ledger) -> dict:
    """Write one generation: its file (parameters, metric values, provenance), metric rows, provenance line."""
    g, spec = gen.index, chain.spec
    arrays = {f"model/{k}": v for k, v in chain.model_state().items()}
    arrays.update(sparse_provenance(gen.provenance))
    arrays["stopped"] = np.array([r in chain.stopped for r in range(spec.replicates)])
    arrays.update({f"metric/{name}": np.asarray(values, dtype=np.float64) for name, values in gen.metrics.items()})
    # The pool a resume rebuilds (origin: g - 1); a chain that keeps statistics stores them in its checkpoints.
    if gen.synthetic is not None and chain.policy.needs_history and not chain.incremental:
        arrays["synthetic_X"] = gen.synthetic.X
    arrays.update(gen.extras)
    arrays.update(gen.lineage)
    meta = {"format": GENERATION_FORMAT, "stopped": json.dumps({str(r): why for r, why in gen.newly_stopped.items()})}
    store.write_tensors(store.generation_file(g), arrays, meta)
    ledger.record(g, *integrity.split_model(arrays), meta)
    if spec.keep_params == "ends":
        _drop_models(store, ledger)
    if g == 0:
        real = {"X": chain.real.X}
        if chain.real.labels is not None:
            real["labels"] = chain.real.labels
        if chain.source.stores_heldout:  # a dataset's fixed test split is rebuilt from the spec instead
            real["heldout"] = chain.heldout
        ledger.real = store.write_npz("real.npz", real)
    writer.add(g, gen.metrics, chain.stopped, spec.replicates)
    line = provenance_line(g, gen.provenance)
    store.append_jsonl("provenance.jsonl", [line])
    return line


def provenance_line(g: int, counts: np.ndarray) -> dict:
    """A generation's line in provenance.jsonl, from its (R, g + 1) counts."""
    mean_counts = counts[0].astype(float) if counts.strides[0] == 0 else counts.mean(axis=0)  # a broadcast row
    return {
        "generation": g,
        "size": int(round(float(counts.sum(axis=1).mean()))),  # a filter leaves replicates different sizes
        "real": float(mean_counts[0]),
        "synthetic": float(mean_counts[1:].sum()),
        "sources": {("real" if j == 0 else str(j - 1)): float(c) for j, c in enumerate(mean_counts) if c > 0},
    }


def _drop_models(store: RunStore, ledger: integrity.Ledger) -> None:
    """``keep_params: ends``: drop the parameters of generations no resume can need any more (the
    file's other contents, and so its digest, stay as they were)."""
    for k in sorted(set(ledger.models) - ledger.protected()):
        name = store.generation_file(k)
        kept = integrity.split_model(store.read_tensors(name))[0]
        store.write_tensors(name, kept, store.tensor_metadata(name))
        del ledger.models[k]


def _checkpoint(store: RunStore, chain: Chain, g: int, writer: MetricWriter, ledger: integrity.Ledger,
                summary: list[dict], elapsed: float, not_converged: dict[str, int] | None = None) -> None:
    writer.flush()
    arrays = chain.streams.state_arrays()
    arrays.update(integrity.covered(store, g, writer, ledger))
    stopped = sorted(chain.stopped.items())
    arrays["stopped_replicates"] = np.array([r for r, _ in stopped], dtype=np.int64)
    arrays["stopped_reasons"] = np.array([why for _, why in stopped], dtype=str)
    if chain.incremental:  # the running statistics stand in for the accumulated pool
        arrays.update({f"{STATS}{k}": np.asarray(v) for k, v in chain.stats.items()})
    store.write_checkpoint(arrays)
    ledger.checkpoints = [*ledger.checkpoints, g][-2:]  # the previous checkpoint is kept: a resume may fall back
    if chain.spec.keep_params == "ends":
        _drop_models(store, ledger)
    store.update_manifest(
        generations_completed=g,
        elapsed_seconds=elapsed,
        provenance=summary,
        stopped={str(r): why for r, why in sorted(chain.stopped.items())},
        **({"not_converged": not_converged} if not_converged else {}),
    )


def _resume(spec: ExperimentSpec | None, out: Path, *, writable: bool = True,
            force: bool = False) -> tuple[RunStore, Chain, int, MetricWriter]:
    store = RunStore.open(out, writable=writable)
    store.lock()
    try:
        return _resume_locked(store, spec, force=force)
    except BaseException:
        store.unlock()
        raise


def _resume_locked(store: RunStore, spec: ExperimentSpec | None, *, force: bool) -> tuple[RunStore, Chain, int, MetricWriter]:
    verdict = integrity.verify(store)
    if verdict.problems:
        raise RunDirError(verdict.refusal(store.path))
    stored = verdict.spec
    spec = _compatible(stored, spec)
    resources.check(spec, store.path, force=force, existing=True)
    fmt = verdict.metrics_format
    if verdict.checkpoint is None:  # stopped before its first checkpoint: nothing to keep
        for name in APPENDED:
            store.truncate(name, 0)
            store.start_digest(name)
        for part in part_files(store.path):
            part.unlink()
        store.write_text("config.yaml", spec.to_yaml())
        store.update_manifest(status="running", provenance=[], resumed=[*store.manifest().get("resumed", []), now()])
        return store, Chain(spec), 0, MetricWriter(store, fmt)
    ck = verdict.checkpoint
    g = int(ck["generation"])
    for name, off in integrity.offsets(ck).items():
        store.truncate(name, off)
        store.start_digest(name, off)
    covered = integrity.parts(ck)
    for part in part_files(store.path):  # a part written just before a crash, ahead of its checkpoint
        if f"{part.parent.name}/{part.name}" not in covered:
            part.unlink()
    chain = Chain(spec)
    real = store.read_npz("real.npz")
    stats = {k[len(STATS):]: v for k, v in ck.items() if k.startswith(STATS)} or None
    keeps_pool = chain.policy.needs_history and not (chain.incremental and stats)

    def history() -> Iterator[Batch]:  # one set at a time: a chain keeping statistics holds none
        for k in range(1, g + 1 if keeps_pool else 1):
            z = store.read_tensors(store.generation_file(k), "synthetic_")
            origin = z.get("synthetic_origin", np.full(z["synthetic_X"].shape[:2], k - 1, dtype=np.int64))
            yield Batch(z["synthetic_X"], origin)

    manifest = store.manifest()
    stopped = {int(r): str(why) for r, why in zip(ck["stopped_replicates"], ck["stopped_reasons"])}
    gen0_stopped = store.read_tensors(store.generation_file(0), "stopped").get("stopped", [])
    chain.restore(
        real=Batch(real["X"], np.full(real["X"].shape[:2], REAL, dtype=np.int64), real.get("labels")),
        heldout=real.get("heldout"),
        model_state=store.model_state(g),
        model0_state=store.model_state(0),
        history=history(),
        stats=stats,
        stopped=stopped,
        stopped0={int(r): stopped.get(int(r), "stopped at generation 0") for r in np.flatnonzero(gen0_stopped)},
        rng_state=ck,
    )
    try:
        previous = store.read_npz("checkpoint.prev.npz") if store.has("checkpoint.prev.npz") else None
    except RunDirError:  # only a fall-back: a damaged one is simply not used
        previous = None
    store.ledger = integrity.Ledger.from_checkpoint(ck, previous)
    if spec.keep_params == "ends":  # parameters an earlier session kept: dropped once no resume needs them
        store.ledger.models.update({k: "" for k in range(1, g) if store.tensor_names(store.generation_file(k), "model/")})
    store.write_text("config.yaml", spec.to_yaml())
    store.update_manifest(status="running", finished=None, resumed=[*manifest.get("resumed", []), now()])
    return store, chain, g + 1, MetricWriter(store, fmt, integrity.parts(ck))


def _compatible(stored: ExperimentSpec, given: ExperimentSpec | None) -> ExperimentSpec:
    """The spec to continue with: the stored one, or a given one that differs only by more generations."""
    if given is None:
        return stored
    a, b = stored.model_dump(), given.model_dump()
    for key in ("generations", "workers", "report", "logging"):  # may change on resume: none alters the numbers
        a.pop(key)
        b.pop(key)
    changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    if changed:
        raise RunDirError(f"cannot resume: the spec differs from the stored run in {', '.join(changed)}")
    if given.generations < stored.generations:
        raise RunDirError(
            f"cannot resume with generations={given.generations}: the run was started with {stored.generations}"
        )
    from .policies import build_policy

    problem = build_policy(given.policy).check_resume(given.generations, stored.generations)
    if problem:
        raise RunDirError(f"cannot resume with generations={given.generations}: {problem}")
    return given
