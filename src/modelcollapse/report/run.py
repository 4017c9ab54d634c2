"""Reading a run directory for the report: everything it shows, read once, nothing re-run.

The report only *reads* (see ``store.py`` for the layout), so it works on a run that is still
going, was interrupted or failed, and shows whatever has been recorded. :class:`Run` also
gives sections what they need without knowing the family or the data kind: the loaded data
:attr:`~Run.source`, the :attr:`~Run.family`, and :meth:`~Run.model_at`, a generation's fitted
models rebuilt from their stored parameters.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..config import ExperimentSpec, validate
from ..data import load_source
from ..models import MODELS, ReplicatedModel
from ..store import RunStore

RESERVED = ("replicate", "generation", "stopped")  # metric rows' keys that are not metrics


@dataclass
class Run:
    """Everything the report shows, read once from the run directory."""

    path: Path
    spec: ExperimentSpec
    manifest: dict
    scalars: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (generation, replicate)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (generation, replicate, k)
    stopped: dict[int, tuple[int | None, str]] = field(default_factory=dict)  # replicate -> (generation, why)
    provenance: list[dict] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)  # generations with a parameters file
    drawn: set[str] = field(default_factory=set)  # metrics a section has already drawn in its own way

    @property
    def generations(self) -> int:
        """How many generations have metric rows (0 .. generations - 1)."""
        return max([len(v) for v in (*self.scalars.values(), *self.vectors.values())], default=0)

    @property
    def store(self) -> RunStore:
        return RunStore(self.path, writable=False)

    @cached_property
    def source(self) -> Any:
        """The run's data, loaded from its spec (datasets from their files, once per process)."""
        return load_source(self.spec.data)

    @property
    def family(self) -> Any:
        return MODELS.get(self.spec.model.kind)

    def chosen_generations(self) -> list[int]:
        """The spec's report generations that have a parameters file, always with the first and last."""
        if not self.saved:
            return []
        wanted = set(self.spec.report.density_generations) | {self.saved[0], self.saved[-1]}
        return sorted(wanted & set(self.saved))

    def states(self, g: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Generation g's fitted parameters (leading replicate axis) and stopped flags; only these are
        read (accumulating runs also store whole synthetic sets)."""
        store = self.store
        flags = store.read_tensors(store.generation_file(g), "stopped")
        return store.model_state(g), flags.get("stopped", np.zeros(self.spec.replicates, bool))

    def model_at(self, g: int, replicates: int | None = None) -> Any:
        """Generation g's models for the first ``replicates`` replicates (all by default), as the
        chain held them: a batched model, or one per replicate (None where a replicate stopped)."""
        state, stopped = self.states(g)
        n = self.spec.replicates if replicates is None else min(replicates, self.spec.replicates)
        state = {k: v[:n] for k, v in state.items()}
        model = self.family.make(self.spec.model, self.source.model_params(), n)
        if isinstance(model, ReplicatedModel):
            return model.load_state_dict(state, stopped={r: "stopped" for r in range(n) if stopped[r]})
        return model.load_state_dict(state)


# -- reading -----------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file, parsed in one call (fast for 200k rows); a partly written last
    line (a crash in the middle of an append) is skipped rather than fatal."""
    if not path.exists():
        return []
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    try:
        return json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        return [row for row in map(_loads, lines) if row is not None]


def _loads(line: str) -> dict | None:
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _metric_arrays(run: Run, rows: list[dict]) -> None:
    """Fill ``run.scalars``/``run.vectors`` with (generation, replicate[, k]) arrays, NaN where missing."""
    rows = [r for r in rows if isinstance(r.get("generation"), int) and isinstance(r.get("replicate"), int)]
    if not rows:
        return
    gen = np.fromiter((r["generation"] for r in rows), dtype=np.int64, count=len(rows))
    rep = np.fromiter((r["replicate"] for r in rows), dtype=np.int64, count=len(rows))
    shape = (int(gen.max()) + 1, max(run.spec.replicates, int(rep.max()) + 1))
    extra = [k for k in rows[0] if k not in RESERVED and k not in run.spec.metrics]
    for name in [*run.spec.metrics, *extra]:
        column = [r.get(name) for r in rows]
        first = next((v for v in column if v is not None), None)
        if first is None:
            continue
        if isinstance(first, list):  # a vector metric; JSON null stands for NaN inside it too
            blank = [None] * len(first)
            arr = np.full(shape + (len(first),), np.nan)
            arr[gen, rep] = np.array([v if v is not None else blank for v in column], dtype=float)
            run.vectors[name] = arr
        else:
            arr = np.full(shape, np.nan)
            arr[gen, rep] = np.array(column, dtype=float)
            run.scalars[name] = arr
    for r in rows:
        if "stopped" in r and r["replicate"] not in run.stopped:
            run.stopped[r["replicate"]] = (r["generation"], str(r["stopped"]))


def load_run(path: Path | str) -> Run:
    path = Path(path)
    store = RunStore.open(path)
    spec = validate(yaml.safe_load(store.config_text()))
    try:
        manifest = store.manifest()
    except (OSError, json.JSONDecodeError):
        manifest = {"status": "unknown"}
    run = Run(path, spec, manifest)
    _metric_arrays(run, read_jsonl(path / "metrics.jsonl"))
    for r, why in (manifest.get("stopped") or {}).items():
        run.stopped.setdefault(int(r), (None, str(why)))
    run.provenance = read_jsonl(path / "provenance.jsonl") or manifest.get("provenance", [])
    run.saved = store.generations()
    return run
