"""A learned detector: each generation, a scikit-learn classifier per replicate learns real data
against samples of the model that made the candidates, then judges the candidates.

Its training data are ``train_size`` fresh real examples and as many samples of generation
g - 1's model, both drawn from the detector stream (neither is a candidate). Features are the
raw values for continuous data and images, one-hot categories for discrete data, and hashed
unigram and bigram counts for text (a bag of n-grams, the usual baseline of machine-text
detection). ``classifier: auto`` picks quadratic discriminant analysis for continuous data
(a collapsing Gaussian differs from the real one first in its spread, which a linear boundary
cannot see), categorical naive Bayes for discrete data and logistic regression otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from .base import Detector, register_detector

HASH_BINS = 1024  # text features: hashed unigram and bigram counts
CLASSIFIERS = ("auto", "logistic", "qda", "naive_bayes", "gradient_boosting")


def features(X: np.ndarray, data_type: str) -> np.ndarray:
    """(n, features) for one replicate's examples ``X``."""
    X = np.asarray(X)
    if data_type == "discrete":
        return X.reshape(len(X), -1).astype(np.int64)
    if data_type == "text":
        return ngram_counts(X)
    return X.reshape(len(X), -1).astype(float)


def ngram_counts(blocks: np.ndarray, bins: int = HASH_BINS) -> np.ndarray:
    """Hashed unigram and bigram counts of token blocks (n, L), each row scaled to sum to one."""
    blocks = np.asarray(blocks, dtype=np.int64)
    n = len(blocks)
    uni = blocks % bins
    bi = (blocks[:, :-1] * 1_000_003 + blocks[:, 1:]) % bins
    keys = np.concatenate([uni, bi], axis=1) + bins * np.arange(n)[:, None]
    counts = np.bincount(keys.ravel(), minlength=n * bins).reshape(n, bins).astype(float)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def make_classifier(name: str, data_type: str, n_categories: int | None = None) -> Any:
    if name == "auto":
        name = {"continuous": "qda", "discrete": "naive_bayes"}.get(data_type, "logistic")
    if name == "qda":
        from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis

        return QuadraticDiscriminantAnalysis(reg_param=1e-6)
    if name == "naive_bayes":
        from sklearn.naive_bayes import CategoricalNB

        return CategoricalNB(alpha=1.0, min_categories=n_categories)
    if name == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(max_iter=50, random_state=0)
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=500)


def category_count(context: Any) -> int | None:
    probs = getattr(context.truth, "probs_", None)
    return None if probs is None else int(np.shape(probs)[-1])


def fit_and_flag(real: np.ndarray, fake: np.ndarray, candidates: np.ndarray, make: Any) -> np.ndarray:
    """Per replicate: a classifier of ``real[r]`` (label 0) against ``fake[r]`` (label 1); True where it
    gives candidate examples a probability of being synthetic above one half."""
    out = np.zeros(candidates.shape[:2], dtype=bool)
    for r in range(len(candidates)):
        if not (np.all(np.isfinite(fake[r])) and np.all(np.isfinite(candidates[r]))):
            continue  # a stopped replicate (NaN samples): nothing to learn or judge
        X = np.concatenate([real[r], fake[r]])
        y = np.r_[np.zeros(len(real[r])), np.ones(len(fake[r]))]
        clf = make()
        clf.fit(X, y)
        out[r] = clf.predict_proba(candidates[r])[:, 1] > 0.5
    return out


@register_detector("learned")
@dataclass(frozen=True)
class Learned(Detector):
    """A classifier of real data against the previous generation's samples, trained every generation."""

    classifier: Literal["auto", "logistic", "qda", "naive_bayes", "gradient_boosting"] = "auto"
    train_size: Annotated[int, Field(ge=10, le=100_000)] = 500

    def check_experiment(self, spec: Any) -> None:
        from ..models import MODELS

        data_type = MODELS.get(spec.model.kind).data_type
        if self.classifier == "naive_bayes" and data_type != "discrete":
            raise ValueError(f"policy.detector.classifier: 'naive_bayes' reads categories; {spec.model.kind} "
                             f"fits {data_type} data (use auto, logistic, qda or gradient_boosting)")
        if self.classifier == "qda" and data_type in ("discrete", "text"):
            raise ValueError(f"policy.detector.classifier: 'qda' needs continuous features; {spec.model.kind} "
                             f"fits {data_type} data (use auto or logistic)")

    def flag(self, candidates, context):
        k = category_count(context) if context.data_type == "discrete" else None
        real = context.draw_real(self.train_size).X
        fake = context.sample(self.train_size)
        feats = [np.stack([features(x, context.data_type) for x in a]) for a in (real, fake, candidates.X)]
        return fit_and_flag(*feats, lambda: make_classifier(self.classifier, context.data_type, k))
