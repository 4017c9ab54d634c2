"""Metrics for image generations: spread, likelihood, class mix, diversity, feature distance.

Sample-based metrics share one draw of ``metric_samples`` images per replicate and
generation (``_samples``), so selecting more metrics costs no extra sampling and does
not change the numbers of the others.
"""

from __future__ import annotations

import warnings

import numpy as np

from .registry import IMAGE_DATA, MetricContext, register

VAE = {"vae"}


def _samples(ctx: MetricContext) -> np.ndarray:
    if "samples" not in ctx.memo:
        ctx.memo["samples"] = ctx.model.sample(ctx.n_samples, rng=ctx.rngs)
    return ctx.memo["samples"]


def _alive(ctx: MetricContext) -> list[int]:
    S = _samples(ctx)
    return [r for r in range(len(S)) if np.all(np.isfinite(S[r]))]


def _predicted(ctx: MetricContext) -> dict[int, np.ndarray]:
    if "predicted" not in ctx.memo:
        S, clf = _samples(ctx), ctx.aux["classifier"]
        ctx.memo["predicted"] = {r: clf.predict(S[r]) for r in _alive(ctx)}
    return ctx.memo["predicted"]


@register("latent_std", models=VAE, data=IMAGE_DATA, higher_is_better=None, needs={"model0"},
          description="spread of generation 0's encoder means over this generation's samples "
                      "(s.d. per latent dimension, averaged); the paper's VAE metric, shrinking as digits blur")
def latent_std(ctx: MetricContext) -> np.ndarray:
    S, out = _samples(ctx), np.full(ctx.replicates, np.nan)
    for r in _alive(ctx):
        encoder = ctx.model0.models[r]
        if encoder is not None:
            out[r] = encoder.encode(S[r]).std(axis=0).mean()
    return out


@register("nll", models=VAE, data=IMAGE_DATA, higher_is_better=False, needs={"heldout"},
          description="negative ELBO of real held-out images (nats per image; an upper bound on their NLL)")
def nll(ctx: MetricContext) -> np.ndarray:
    return -np.mean(ctx.model.log_prob(ctx.heldout), axis=-1)


@register("class_histogram", models=VAE, data=IMAGE_DATA, higher_is_better=None, needs={"classifier"}, vector=True,
          description="share of samples the digit classifier puts in each class (a vector per replicate)")
def class_histogram(ctx: MetricContext) -> np.ndarray:
    k = ctx.truth.n_classes
    out = np.full((ctx.replicates, k), np.nan)
    for r, labels in _predicted(ctx).items():
        out[r] = np.bincount(labels, minlength=k) / len(labels)
    return out


@register("class_kl", models=VAE, data=IMAGE_DATA, higher_is_better=False, needs={"classifier"},
          description="KL(class mix of samples || class mix of the real data), nats (finite when classes vanish)")
def class_kl(ctx: MetricContext) -> np.ndarray:
    p, q = class_histogram(ctx), ctx.truth.class_probs
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return np.where(np.isnan(p).any(axis=1), np.nan, terms.sum(axis=1))


@register("minority_share", models=VAE, data=frozenset({"imbalanced"}), higher_is_better=True, needs={"classifier"},
          description="share of samples classified as the minority class (compare with its share of the real data)")
def minority_share(ctx: MetricContext) -> np.ndarray:
    minority = int(np.argmin(ctx.truth.class_probs))
    out = np.full(ctx.replicates, np.nan)
    for r, labels in _predicted(ctx).items():
        out[r] = np.mean(labels == minority)
    return out


@register("pixel_diversity", models=VAE, data=IMAGE_DATA, higher_is_better=True,
          description="mean pairwise Euclidean distance between samples (up to 500), in pixel space")
def pixel_diversity(ctx: MetricContext) -> np.ndarray:
    from scipy.spatial.distance import pdist

    S, out = _samples(ctx), np.full(ctx.replicates, np.nan)
    for r in _alive(ctx):
        flat = S[r, :500].reshape(min(500, S.shape[1]), -1)
        out[r] = pdist(flat).mean()
    return out


@register("frechet_distance", models=VAE, data=IMAGE_DATA, higher_is_better=False, needs={"classifier"},
          description="Fréchet distance between Gaussians fitted to classifier features of samples and of "
                      "real held-out images (an FID computed in the digit classifier's hidden layer)")
def frechet_distance(ctx: MetricContext) -> np.ndarray:
    clf = ctx.aux["classifier"]
    if "real_features" not in ctx.cache:
        f = clf.features(ctx.truth.heldout)
        ctx.cache["real_features"] = (f.mean(axis=0), np.cov(f, rowvar=False))
    mu0, cov0 = ctx.cache["real_features"]
    S, out = _samples(ctx), np.full(ctx.replicates, np.nan)
    for r in _alive(ctx):
        f = clf.features(S[r])
        out[r] = frechet(f.mean(axis=0), np.cov(f, rowvar=False), mu0, cov0)
    return out


def frechet(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^1/2), with scipy's matrix square root."""
    from scipy import linalg

    with warnings.catch_warnings():
        # Collapsed samples have a singular covariance; the square root is still the right limit.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov1 @ cov2)
    root = root.real if np.iscomplexobj(root) else root  # round-off gives tiny imaginary parts
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * root))
