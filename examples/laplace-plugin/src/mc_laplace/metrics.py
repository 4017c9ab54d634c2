"""The Laplace family's own implementation of ``variance_ratio``.

The built-in one needs a family that gives its fit as a Gaussian mixture; this one names the
Laplace family, so it is chosen for it (an implementation that names its families wins over
a generic one). A Laplace coordinate with scale b has variance 2 b^2.
"""

from __future__ import annotations

import numpy as np

from modelcollapse import mixtures, register_metric


@register_metric("variance_ratio", models={"laplace"}, data={"gaussian", "gmm"}, higher_is_better=None,
                 description="trace of the fitted covariance (2 scale^2 per coordinate) over the original's")
def variance_ratio(ctx) -> np.ndarray:
    _, cov0 = mixtures.moments(ctx.truth.as_mixture())
    return np.sum(2 * ctx.model.scale_**2, axis=-1) / np.trace(cov0)
