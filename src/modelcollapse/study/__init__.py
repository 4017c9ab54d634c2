"""Studies: one base spec varied over a grid, zipped keys, named variants and seeds; run on a local
process pool or Ray; read back as one table (:func:`load_results`) and one report.

>>> from modelcollapse.study import build, sweep                                  # doctest: +SKIP
>>> study = build("gaussian", grid=["train_size=10,100"], seeds="0-2")          # doctest: +SKIP
>>> sweep(study, "runs/grid", workers=2)                                          # doctest: +SKIP
"""

from .spec import Cell, Study, build, expand, is_study

__all__ = ["Cell", "Study", "build", "expand", "is_study", "load_results", "sweep"]


def __getattr__(name: str):  # the runner and the table reader load on use: `modelcollapse show` stays quick
    if name == "sweep":
        from .runner import sweep

        return sweep
    if name == "load_results":
        from .results import load_results

        return load_results
    raise AttributeError(f"module 'modelcollapse.study' has no attribute {name!r}")
