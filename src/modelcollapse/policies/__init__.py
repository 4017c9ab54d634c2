"""Data policies: what each generation trains on. ``POLICIES`` maps ``policy.kind`` to its entry."""

from ..batch import REAL, UNLABELLED, Batch, provenance_counts
from .base import POLICIES, Policy, PolicyKind, PolicySpec, build_policy, choose, register_policy
from .basic import Accumulate, AccumulateSubsample, Fresh, Mix, Replace

__all__ = ["POLICIES", "REAL", "UNLABELLED", "Accumulate", "AccumulateSubsample", "Batch", "Fresh", "Mix", "Policy",
           "PolicyKind", "PolicySpec", "Replace", "build_policy", "choose", "provenance_counts", "register_policy"]
