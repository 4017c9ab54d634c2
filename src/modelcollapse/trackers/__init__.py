"""Experiment trackers: a run mirrored, per generation, where researchers already look.

``logging: {trackers: [tensorboard, mlflow, wandb]}`` in a spec, or ``--log tensorboard,mlflow`` on
``modelcollapse run`` and ``sweep``, sends each generation (the tracker's step): every scalar
metric's median, mean and 5/95% quantiles over the replicates, the real share of the training
set and the generation's seconds (:mod:`.records`); the resolved spec as hyperparameters; vector
metrics as histograms where the tracker has them; a language model's generated texts; at the end
the report and figures. ``modelcollapse export DIR --to ...`` sends a finished run after the fact
(:mod:`.export`). Each tracker is an optional extra and works offline.
"""

from __future__ import annotations

from .base import Session, Tracker, TrackerWarning, check_installed, tracker_names
from .records import GenerationLog, summarize

#: name -> "module:class", imported only when asked for
TRACKERS = {
    "tensorboard": "modelcollapse.trackers.tensorboard:TensorBoardTracker",
    "mlflow": "modelcollapse.trackers.mlflow:MLflowTracker",
    "wandb": "modelcollapse.trackers.wandb:WandbTracker",
}

__all__ = ["TRACKERS", "GenerationLog", "Session", "Tracker", "TrackerWarning", "check_installed", "summarize", "tracker_names"]
