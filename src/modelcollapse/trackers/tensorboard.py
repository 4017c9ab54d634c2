"""TensorBoard: event files, written with tensorboardX (no deep-learning framework needed).

One folder per run (``<dir>/tensorboard/<group>/<name>``: a study's cells side by side), so that
``tensorboard --logdir <dir>/tensorboard`` compares them. Summaries are scalars, vector metrics
histograms, generated texts a markdown table, the spec hyperparameters (the HParams tab), and the
report's figures images at the last step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .base import Tracker, TrackerRun
from .records import GenerationLog


def _hparam(value: Any) -> Any:
    # HParams takes numbers, strings and booleans only
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardTracker(Tracker):
    name = "tensorboard"
    requires = ("tensorboardX", "tensorboard")
    extra = "tensorboard"

    def __init__(self, folder: Path, run: TrackerRun, config: dict[str, Any], options: Any) -> None:
        super().__init__(folder, run, config, options)
        from tensorboardX import SummaryWriter
        from tensorboardX.summary import hparams

        self.logdir = self.folder / run.group / run.name if run.group else self.folder / run.name
        # The hyperparameters go to a run's first event file: a resumed run's folder has them already, unless
        # this tracker was added on resume or the folder is an export's (which resumes from step 0).
        first = not run.resume or not any(self.logdir.glob("*tfevents*"))
        # purge_step: a resumed run redoes the generations after its checkpoint; TensorBoard drops the
        # events the interrupted session had logged for them instead of showing both.
        # The file's name says when it was started to the nanosecond: tensorboardX's own name has the second only,
        # so a session started in the same second (a quick resume, an export) would overwrite the earlier file;
        # and TensorBoard reads a folder's files in name order, which must be the order they were written in.
        self.writer = SummaryWriter(str(self.logdir), purge_step=run.start if run.resume else None, flush_secs=10,
                                    filename_suffix=f".{time.time_ns()}")
        self.last = run.start
        if first:
            for summary in hparams({k: _hparam(v) for k, v in config.items()}, {}):
                self.writer.file_writer.add_summary(summary)

    def log(self, record: GenerationLog) -> None:
        from tensorboardX.proto.summary_pb2 import Summary
        from tensorboardX.summary import scalar

        g = record.generation
        # One event for all of a generation's scalars: an add_scalar call each (a queue hand-off each) cost more
        # than a fast chain's whole generation.
        values = [v for key, value in record.scalars.items() for v in scalar(key, value).value]
        if values:
            self.writer.file_writer.add_summary(Summary(value=values), g)
        for key, values in record.histograms.items():
            self.writer.add_histogram(key, values, g)
        if record.texts:
            rows = "\n".join(f"| {i} | {t.replace('|', '&#124;').replace(chr(10), ' ')} |"
                             for i, t in enumerate(record.texts))
            self.writer.add_text("samples", f"| # | generated text |\n|---|---|\n{rows}", g)
        self.last = g

    def artifacts(self, files: list[Path], root: Path) -> None:
        from matplotlib.image import imread

        for path in files:
            if path.suffix == ".png":
                image = imread(path)[..., :3]  # RGBA floats in [0, 1]; TensorBoard takes RGB
                self.writer.add_image(f"report/{path.stem}", image, self.last, dataformats="HWC")
            else:
                self.writer.add_text("report", f"report: `{path.resolve()}`", self.last)

    def close(self, status: str) -> None:
        self.writer.close()
