"""modelcollapse: simulate, measure and report model collapse.

>>> from modelcollapse import load_spec, run
>>> spec = load_spec("gaussian", ["replicates=10", "generations=20"])  # doctest: +SKIP
>>> store = run(spec, "runs/demo")                                      # doctest: +SKIP
"""

from .config import ExperimentSpec, SpecError, load_spec
from .loop import run

__version__ = "0.1.0"
__all__ = ["ExperimentSpec", "SpecError", "load_spec", "run", "__version__"]
