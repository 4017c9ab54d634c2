import importlib.metadata
import os
import sys
from pathlib import Path

# Tests never reach a model hub: fail fast instead of retrying for minutes.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

EXAMPLE_PLUGIN = Path(__file__).resolve().parent.parent / "examples" / "laplace-plugin"


def _example_plugin() -> None:
    """The example plug-in's family joins every parametrised suite (the conformance tests above all):
    through its entry points where it is installed (CI installs it), else registered from its source."""
    try:
        importlib.metadata.distribution("modelcollapse-laplace")
        return
    except importlib.metadata.PackageNotFoundError:
        if os.environ.get("MODELCOLLAPSE_EXPECT_EXAMPLE_PLUGIN"):  # CI installs it: its absence is a failure
            raise RuntimeError("the example plug-in should be installed here: pip install ./examples/laplace-plugin")
    sys.path.insert(0, str(EXAMPLE_PLUGIN / "src"))
    import mc_laplace
    import mc_laplace.metrics  # noqa: F401  (registers its metric)

    from modelcollapse import register_model

    register_model("laplace", mc_laplace.LaplaceModel)


_example_plugin()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
