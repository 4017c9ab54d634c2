"""MLflow: a run per experiment run, in ``MLFLOW_TRACKING_URI`` when set, else a local file store.

The local store is ``<dir>/mlflow`` (``mlflow ui --backend-store-uri <dir>/mlflow`` shows it).
MLflow 3 keeps file stores in maintenance mode and refuses them unless ``MLFLOW_ALLOW_FILE_STORE``
is set: when the tracker uses its own file store it sets that variable for the process (unless it
is set already), since a file store is what works offline with no server and no database. A
resumed run's redone generations are logged again: MLflow keeps both values of such a step (the
later one is the run's), and the samples table lists their texts twice. A single run goes to the
experiment named ``logging.project``; a study's cells go to an experiment named after the study.
A resumed run continues its MLflow run (found by the tag ``modelcollapse.key``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from .base import Tracker, TrackerRun
from .records import GenerationLog

KEY_TAG = "modelcollapse.key"
MAX_PARAM = 6000  # characters MLflow keeps of a parameter's value
BATCH = 1000  # metrics per log_batch call (MLflow's limit)
FLUSH_SECONDS = 2.0  # metrics wait at most this long before they are sent


class MLflowTracker(Tracker):
    name = "mlflow"
    requires = ("mlflow",)
    extra = "mlflow"

    def __init__(self, folder: Path, run: TrackerRun, config: dict[str, Any], options: Any) -> None:
        super().__init__(folder, run, config, options)
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            self.folder.mkdir(parents=True, exist_ok=True)
            uri = self.folder.resolve().as_uri()
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment = run.group or run.project
        self.experiment_id = self._experiment(experiment)
        found = None
        if run.resume:
            hits = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{KEY_TAG}` = '{run.key}'",
                                           max_results=1)
            found = hits[0] if hits else None
        if found is not None:
            self.run_id = found.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            tags = {KEY_TAG: run.key, **({"modelcollapse.group": run.group} if run.group else {})}
            self.run_id = self.client.create_run(self.experiment_id, run_name=run.name, tags=tags).info.run_id
            params = [Param(k, str(v)[:MAX_PARAM]) for k, v in config.items()]
            for i in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
                self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.texts: list[dict[str, Any]] = []
        self.pending: list[Any] = []
        self.sent = time.perf_counter()

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except Exception:  # noqa: BLE001 - another cell of the study created it first
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log(self, record: GenerationLog) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.pending += [Metric(k, v, stamp, record.generation) for k, v in record.scalars.items()]
        self.texts += [{"generation": record.generation, "index": i, "text": t} for i, t in enumerate(record.texts)]
        # Sent in batches: one call per generation of a fast chain cost more than the chain itself.
        if len(self.pending) >= BATCH or time.perf_counter() - self.sent >= FLUSH_SECONDS:
            self._flush()

    def _flush(self) -> None:
        for i in range(0, len(self.pending), BATCH):
            self.client.log_batch(self.run_id, metrics=self.pending[i:i + BATCH])
        self.pending, self.sent = [], time.perf_counter()

    def artifacts(self, files: list[Path], root: Path) -> None:
        for path in files:
            parent = path.parent.relative_to(root).as_posix()
            self.client.log_artifact(self.run_id, str(path), artifact_path=None if parent == "." else parent)

    def close(self, status: str) -> None:
        self._flush()
        if self.texts:  # one table of generated texts, every generation (MLflow has no per-step tables)
            self.client.log_table(self.run_id, data={k: [row[k] for row in self.texts] for k in self.texts[0]},
                                  artifact_file="samples.json")
        self.client.set_terminated(self.run_id, status={"completed": "FINISHED", "interrupted": "KILLED"}
                                   .get(status, "FAILED"))
