"""Data policies: what each generation trains on. ``POLICIES`` maps ``policy.kind`` to its entry."""

from ..batch import REAL, UNLABELLED, Batch, provenance_counts
from .base import POLICIES, Policy, PolicyKind, PolicySpec, build_policy, choose, register_policy
from .basic import Accumulate, AccumulateSubsample, Fresh, Mix, Replace
from .web import Web  # noqa: I001  (import order is registration order)
from .filter import Filter

__all__ = ["POLICIES", "REAL", "UNLABELLED", "Accumulate", "AccumulateSubsample", "Batch", "Fresh", "Filter", "Mix", "Policy",
           "PolicyKind", "PolicySpec", "Replace", "Web", "build_policy", "choose", "provenance_counts", "register_policy"]
