"""Weights & Biases: offline by default (``logging.wandb_mode``), files under ``<dir>/wandb``.

An offline run is written as W&B's own run files; ``wandb sync <dir>/wandb/offline-run-*`` uploads
it later. A study's cells are runs of one group, the study's name. Vector metrics are W&B
histograms; a language model's generated texts are one table at the end; the report and figures
are an artifact of type ``report``. A resumed run continues its W&B run (same id).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .base import Tracker, TrackerRun
from .records import GenerationLog


class WandbTracker(Tracker):
    name = "wandb"
    requires = ("wandb",)
    extra = "wandb"

    def __init__(self, folder: Path, run: TrackerRun, config: dict[str, Any], options: Any) -> None:
        super().__init__(folder, run, config, options)
        import wandb

        self.folder.mkdir(parents=True, exist_ok=True)
        self.wandb = wandb
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, disable_git=True,
                                  save_code=False)
        self.run_id = re.sub(r"[^A-Za-z0-9_-]", "-", run.key)[:64]
        self.handle = wandb.init(project=run.project, dir=str(self.folder), id=self.run_id, name=run.name,
                                 group=run.group, config=config, mode=options.wandb_mode,
                                 resume="allow" if run.resume else None, reinit="create_new", settings=settings)
        self.texts: list[list[Any]] = []
        self.last = run.start

    def log(self, record: GenerationLog) -> None:
        data: dict[str, Any] = dict(record.scalars)
        data.update({k: self.wandb.Histogram(v.tolist()) for k, v in record.histograms.items()})
        self.handle.log(data, step=record.generation)
        self.texts += [[record.generation, i, t] for i, t in enumerate(record.texts)]
        self.last = record.generation

    def artifacts(self, files: list[Path], root: Path) -> None:
        art = self.wandb.Artifact(f"report-{self.run_id}", type="report")
        for path in files:
            art.add_file(str(path), name=path.relative_to(root).as_posix())
        self.handle.log_artifact(art)

    def close(self, status: str) -> None:
        if self.texts:
            table = self.wandb.Table(columns=["generation", "index", "text"], data=self.texts)
            self.handle.log({"samples": table}, step=self.last)
        self.handle.finish(exit_code=0 if status == "completed" else 1)
