"""modelcollapse: simulate, measure and report model collapse.

>>> from modelcollapse import load_spec, run
>>> spec = load_spec("gaussian", ["replicates=10", "generations=20"])  # doctest: +SKIP
>>> store = run(spec, "runs/demo")                                      # doctest: +SKIP

Extending it from a notebook (a package does the same through entry points, see
:mod:`modelcollapse.plugins`)::

    modelcollapse.register_model("laplace", LaplaceModel)    # a family: the BaseModel contract
    modelcollapse.register_data("student_t", StudentTData)   # a data kind: a DataSpec subclass
    modelcollapse.register_policy("halves", Halves)          # a policy: a Policy dataclass
    @modelcollapse.register_metric("iqr", models=None, data={"continuous"}, ...)   # a metric
    modelcollapse.register_estimator(MyDensity)              # allowed in model: {kind: sklearn}
"""

from typing import Any

from .config import ExperimentSpec, SpecError, load_spec
from .data import DataSpec, Source, register_data
from .metrics import register as register_metric
from .models import BaseModel, register_model
from .models.sklearn_adapter import register_estimator
from .params import FROM_DATA
from .detectors import Detector, register_detector
from .policies import Policy, register_policy

__version__ = "0.1.0"
__all__ = ["FROM_DATA", "BaseModel", "DataSpec", "Detector", "ExperimentSpec", "Policy", "Source", "SpecError", "__version__",
           "load_results", "load_spec", "open_run", "register_data", "register_detector", "register_estimator", "register_metric", "register_model",
           "register_policy", "run", "sweep"]


def __getattr__(name: str) -> Any:
    # The run loop (and the progress bar library) load when first used: `modelcollapse show` stays quick.
    if name == "run":
        from .loop import run

        return run
    if name == "load_results":  # a study's or a run's metric rows as a pandas DataFrame
        from .study.results import load_results

        return load_results
    if name == "sweep":
        from .study.runner import sweep

        return sweep
    if name == "open_run":  # a run directory (or a study's cell) for a notebook: spec, metrics, plots
        from .notebook import open_run

        return open_run
    raise AttributeError(f"module 'modelcollapse' has no attribute {name!r}")
