"""Reading a run directory for the report: everything it shows, read once, nothing re-run.

The report only *reads* (see ``store.py`` for the layout), so it works on a run that is still
going, was interrupted or failed, and shows whatever has been recorded. :class:`Run` also
gives sections what they need without knowing the family or the data kind: the loaded data
:attr:`~Run.source`, the :attr:`~Run.family`, and :meth:`~Run.model_at`, a generation's fitted
models rebuilt from their stored parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ExperimentSpec
from ..data import load_source
from ..integrity import verify
from ..models import MODELS, ReplicatedModel
from ..results import MetricColumns, read_metric_columns
from ..store import RunDirError, RunStore


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

    @cached_property
    def theory(self) -> tuple[dict[str, dict[str, Any]], list[str], str]:
        """(curves, what does not apply, error): the closed forms for this run's spec (:mod:`..theory`). An
        error is reported on the page, not raised: the rest of the report is still worth having."""
        from .. import theory

        try:
            found, notes = theory.collect(self.spec)
            return found, notes, ""
        except Exception as exc:  # noqa: BLE001 - shown in the report's theory section
            return {}, [], f"{type(exc).__name__}: {exc}"

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
def _metric_arrays(run: Run, columns: MetricColumns) -> None:
    """Fill ``run.scalars``/``run.vectors`` with (generation, replicate[, k]) arrays, NaN where missing."""
    if not len(columns.generation):
        return
    gen, rep = columns.generation, columns.replicate
    shape = (int(gen.max()) + 1, max(run.spec.replicates, int(rep.max()) + 1))
    names = [*[m for m in run.spec.metrics if m in columns.values], *[m for m in columns.values if m not in run.spec.metrics]]
    for name in names:
        values = columns.values[name]
        arr = np.full(shape + values.shape[1:], np.nan)
        arr[gen, rep] = values
        (run.vectors if values.ndim == 2 else run.scalars)[name] = arr
    for r, g, why in columns.stopped:
        run.stopped.setdefault(r, (g, why))


def load_run(path: Path | str) -> Run:
    """Read a run directory for the report, after checking what its last checkpoint covers (a damaged
    run is refused, naming each damaged file: see :mod:`modelcollapse.integrity`)."""
    path = Path(path)
    store = RunStore.open(path, writable=False)
    verdict = verify(store)
    if verdict.problems:
        raise RunDirError(verdict.refusal(path))
    manifest = store.manifest()
    run = Run(path, verdict.spec, manifest)
    _metric_arrays(run, read_metric_columns(path))
    for r, why in (manifest.get("stopped") or {}).items():
        run.stopped.setdefault(int(r), (None, str(why)))
    run.provenance = store.read_jsonl("provenance.jsonl") or manifest.get("provenance", [])
    run.saved = store.generations()
    if run.spec.keep_params == "ends":  # only generation 0's and the latest files keep their parameters
        run.saved = [g for g in run.saved if store.tensor_names(store.generation_file(g), "model/")]
    return run
