"""What a run will need, stated before it starts: peak memory and disk, from the spec alone.

The estimate adds up what the engine holds for all replicates at once (training sets, the
synthetic set, the accumulated pool of an accumulating policy, held-out data, metric
samples, fitted parameters, random streams) and what it writes per generation (parameters,
metric values, provenance, accumulated synthetic sets, metric rows). Families say how large
their fitted state is (``state_nbytes``), data kinds how large one example is
(``example_nbytes``). It is an order of magnitude, not an accounting: it is meant to catch a
``replicates=1e9`` before the machine does.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SpecError

BASELINE = 300 * 2**20  # the interpreter with numpy, scipy and scikit-learn loaded
STREAM_BYTES = 1200  # one numpy Generator (PCG64 + SeedSequence), per replicate and role
ROLES = 6
LARGE = 2 * 2**30  # estimates above this are printed before a run starts


class ResourceError(SpecError):
    """A run that would need more memory or disk than the machine has (``--force`` runs it anyway)."""

    def __init__(self, message: str) -> None:
        self.problems = [message]
        ValueError.__init__(self, message)


@dataclass
class Estimate:
    memory: int  # peak bytes in memory
    disk: int  # bytes written by the end of the run
    parts: dict[str, int] = field(default_factory=dict)  # what dominates, for the message
    unknown: list[str] = field(default_factory=list)  # what could not be estimated

    def describe(self) -> str:
        def top(kind: str) -> str:
            parts = sorted(((k.removesuffix(f" ({kind})"), v) for k, v in self.parts.items() if k.endswith(f"({kind})")),
                           key=lambda kv: -kv[1])
            return ", ".join(f"{name} {human(n)}" for name, n in parts[:2] if n)

        note = f"; not counted: {', '.join(self.unknown)}" if self.unknown else ""
        return (f"memory about {human(self.memory)} ({top('memory')}), "
                f"disk about {human(self.disk)} ({top('disk')}){note}")


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def estimate(spec: Any) -> Estimate:
    from .metrics import resolve
    from .models import MODELS
    from .policies import POLICIES

    R, G = spec.replicates, spec.generations
    if isinstance(spec.train_size, int):  # never an array of a billion generations just to sum it
        n = spec.train_size
        total, synthetic = n * (G + 1), n * G
    else:
        sizes = spec.sizes()
        n, total, synthetic = int(sizes.max()), int(sizes.sum()), int(sizes[1:].sum())
    ex = int(spec.data.example_nbytes())
    family = MODELS.get(spec.model.kind)
    params = {**spec.data.model_params_hint(), **spec.model.model_dump()}
    metrics = [resolve(m, spec.model.kind, spec.data.kind, params) for m in spec.metrics]
    needs = set().union(*(m.needs for m in metrics))
    from .policies.base import uses_statistics

    built = POLICIES.get(spec.policy.kind).build(spec.policy)  # an instance: the web's needs depend on its source
    policy = type(built)
    accumulating = bool(built.needs_history)
    pooled = accumulating and not uses_statistics(policy, family.cls)  # else running statistics, no pool
    candidates = max(n, int(built.synthetic_size(n)))  # a filter crawling a web gathers more than it keeps
    hook = getattr(family.cls, "state_nbytes", None)
    state = hook(params, ex, n) if callable(hook) else None
    working = family.cls.fit_nbytes(params, ex, n) if callable(getattr(family.cls, "fit_nbytes", None)) else 0
    out = Estimate(0, 0)
    if state is None:
        out.unknown.append(f"the fitted {spec.model.kind} models")
        state = 0
    workers = spec.workers if not getattr(family.cls, "batched", False) else 1
    pool = total * ex if pooled else n * ex
    mem = {
        "training sets": R * (pool * candidates // n + 3 * candidates * ex),
        "held-out data": R * spec.heldout_size * ex if "heldout" in needs else 0,
        "metric samples": R * 2 * spec.metric_samples * ex,
        "fitted models": R * state * (2 if "model0" in needs else 1) + min(workers, R) * working,
        "random streams": R * ROLES * STREAM_BYTES,
    }
    out.memory = BASELINE + sum(mem.values())
    kept = (G + 1) if spec.keep_params == "all" else 2
    row = 40 + 25 * len(metrics)
    disk = {
        "parameters": R * state * kept,
        "metric values": R * (G + 1) * 8 * len(metrics) * 2 + R * (G + 1) * row,
        "provenance": R * (G + 1) * 8 * (min(G + 1, 64) if spec.policy.kind == "accumulate_subsample" else 2),
        "accumulated synthetic sets": R * synthetic * ex * candidates // n if pooled else 0,
        # per-example sources of the training sets (chain.LINEAGE_ENTRIES a generation at most), and a filter's weights
        "lineage": G * min(R * candidates, 1 << 12) * (5 if built.uses_context else 2) if built.mixes_sources else 0,
    }
    out.disk = sum(disk.values())
    out.parts = {**{f"{k} (memory)": v for k, v in mem.items()}, **{f"{k} (disk)": v for k, v in disk.items()}}
    return out


def total_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # psutil is a dependency; this is for odd installs
        import os

        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def free_disk(path: Path) -> int:
    target = Path(path).resolve()
    while not target.exists():
        target = target.parent
    return int(shutil.disk_usage(target).free)


def check(spec: Any, out: Path, *, force: bool = False, existing: bool = False) -> Estimate:
    """Refuse a run whose estimate exceeds the machine's memory or the free disk (unless ``force``)."""
    est = estimate(spec)
    if force:
        return est
    problems = []
    memory = total_memory()
    if est.memory > memory:
        problems.append(f"it needs {human(est.memory)} of memory and this machine has {human(memory)}")
    room = free_disk(out) + (_used(out) if existing else 0)
    if est.disk > room:
        problems.append(f"it would write {human(est.disk)} and {human(room)} of disk is free")
    if problems:
        key = _dominant_key(spec, est, est.memory > memory)
        raise ResourceError(f"{key}: this run is too large: {'; '.join(problems)} ({est.describe()}). "
                            f"Lower {key}, or pass --force to run it anyway")
    return est


def _used(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def _dominant_key(spec: Any, est: Estimate, memory_problem: bool) -> str:
    """The spec key most to blame: every part scales with the replicates, disk with the generations too."""
    if not memory_problem:
        return "generations" if spec.generations >= spec.replicates else "replicates"
    if spec.replicates >= 1000:
        return "replicates"
    memory = {k.removesuffix(" (memory)"): v for k, v in est.parts.items() if k.endswith("(memory)")}
    big = max(memory, key=memory.get)
    return {"training sets": "train_size", "held-out data": "heldout_size", "metric samples": "metric_samples"}.get(
        big, "replicates")
