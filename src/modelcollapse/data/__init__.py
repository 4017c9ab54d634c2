"""The original ("human") distributions a chain starts from. ``DATA`` maps ``data.kind`` to its spec class.

Each data kind is one module that registers itself on import (see :mod:`.base` for the
contract), exactly as a plug-in does: closed forms in :mod:`.continuous` and :mod:`.discrete`,
real digits in :mod:`.images`, real prose in :mod:`.text`.
"""

from __future__ import annotations

from typing import Any

from .base import DATA, DataSpec, Prepared, Source, load_source, register_data
from .continuous import GaussianData, GMMData  # noqa: I001  (import order is registration order)
from .discrete import CategoricalData, ZipfData, zipf_probs
from .images import DigitsData, ImbalancedData, MNISTData
from .text import TextData

__all__ = ["DATA", "CategoricalData", "DataSpec", "DigitsData", "GMMData", "GaussianData", "ImbalancedData",
           "MNISTData", "Prepared", "Source", "TextData", "ZipfData", "build_truth", "load_source", "register_data",
           "zipf_probs"]


def build_truth(spec: DataSpec) -> Any:
    """The original distribution a validated ``data`` section describes (a fitted model, or a dataset)."""
    return load_source(spec).truth
