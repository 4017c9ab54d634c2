"""``modelcollapse export DIR --to tensorboard|mlflow|wandb``: send a run directory after the fact.

The records are rebuilt from the run's files (:func:`.records.replay`), so an export carries the
numbers a live run would have logged. Each export is a new tracker run (TensorBoard: the run's
event folder is rewritten, not appended to). A study directory exports every cell, grouped by the
study's name as a live study is.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Callable

from ..errors import SpecError
from ..store import RunDirError, RunStore
from .base import Session, run_key, tracker_names
from .records import replay


def export(path: Path | str, to: list[str], *, folder: Path | str | None = None, project: str | None = None,
           wandb_mode: str | None = None, warn: Callable[[str], None] | None = None,
           on_run: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Send run (or study) directory ``path`` to the trackers ``to``; return ``{"runs": [...], "failed":
    {tracker: error}}``. ``folder``: where tracker files go (default: ``DIR/trackers``).
    ``on_run(name, generations)`` is called after each run is sent."""
    from ..config import load_spec
    from ..study.index import is_study_dir

    path = Path(path)
    names = tracker_names(to, "--to")
    if not names:
        raise SpecError(["--to: name at least one tracker (tensorboard, mlflow, wandb)"])
    if is_study_dir(path):
        from ..study.index import StudyDir

        index = StudyDir.open(path).read()
        runs = [(path / cell["path"], cell["name"], index.get("name") or path.name) for cell in index["cells"]]
        runs = [(p, n, g) for p, n, g in runs if (p / "config.yaml").is_file()]
        if not runs:
            raise RunDirError(f"{str(path)!r}: no cell of this study has run yet")
    else:
        RunStore.open(path, writable=False)
        runs = [(path, None, None)]
    out: dict[str, Any] = {"runs": [], "failed": {}}
    for run_dir, name, group in runs:
        spec = load_spec(str(run_dir / "config.yaml"))
        options = spec.logging.model_copy(update={k: v for k, v in (("project", project), ("wandb_mode", wandb_mode))
                                                  if v is not None})
        session = Session(names, options, folder=folder or path / "trackers", group=group, name=name or spec.name,
                          warn=warn)
        manifest = RunStore.open(run_dir, writable=False).manifest()
        # A new key: an export is a new tracker run, never mixed into one logged live (resume=True only makes
        # TensorBoard rewrite the run's event folder from step 0).
        session.open(run_dir, spec, manifest, start=0, resume=True, key=f"{run_key(run_dir, manifest)[:16]}-"
                     f"{uuid.uuid4().hex[:8]}")
        count = 0
        for record in replay(run_dir, texts=options.text_samples):
            session.log(record)
            count += 1
        session.finish(run_dir, "completed" if manifest.get("status") == "completed" else str(manifest.get("status")))
        out["runs"].append({"path": str(run_dir), "name": name or spec.name, "generations": count})
        out["failed"].update(session.failed)
        if on_run is not None:
            on_run(name or spec.name, count)
    return out
