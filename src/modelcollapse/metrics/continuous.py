"""Metrics for continuous data: Gaussian, mixture and KDE generations against the original."""

from __future__ import annotations

import numpy as np

from .. import mixtures
from ..models import ReplicatedModel
from ..models.gaussian import psd_sqrt
from .registry import CONTINUOUS_DATA, MetricContext, register

ANY = None  # any family of the data's type
CONTINUOUS = frozenset({"continuous"})  # any continuous data kind: metrics that only sample the truth
MIXTURE = frozenset({"as_mixture"})  # the family can give its fit as a Gaussian mixture
GAUSSIAN_TRUTH = frozenset({"gaussian"})


def _mixtures(ctx: MetricContext) -> list[mixtures.Mixture | None]:
    """Each replicate's fitted density as a Gaussian mixture (None for a stopped replicate)."""
    return mixtures.replicate_mixtures(ctx.model)


def _per_replicate(ctx: MetricContext, fn, batched=None) -> np.ndarray:
    """``fn`` of each replicate's mixture (NaN where stopped); ``batched`` computes the same for the
    stacked mixtures at once when they have the same small number of components (a GMM chain)."""
    mixes = _mixtures(ctx)
    both = mixtures.stacked(mixes) if batched is not None else None
    if both is not None:
        out = np.full(len(mixes), np.nan)
        out[both[0]] = batched(both[1])
        return out
    return np.array([fn(mix) if mix is not None else np.nan for mix in mixes], dtype=float)


def _moments(ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    """Mean (R, d) and covariance (R, d, d) of every replicate's fitted density."""
    if not isinstance(ctx.model, ReplicatedModel):  # a batched family: all replicates in one call
        return mixtures.batched_moments(ctx.model.as_mixture())
    d = ctx.truth.as_mixture()[1].shape[-1]
    means, covs = [], []
    for mix in _mixtures(ctx):
        mean, cov = mixtures.moments(mix) if mix is not None else (np.full(d, np.nan), np.full((d, d), np.nan))
        means.append(mean)
        covs.append(cov)
    return np.array(means), np.array(covs)


def _truth_moments(ctx: MetricContext) -> tuple[np.ndarray, np.ndarray]:
    if "moments" not in ctx.cache:
        ctx.cache["moments"] = mixtures.moments(ctx.truth.as_mixture())
    return ctx.cache["moments"]


@register("mean_error", models=ANY, data=CONTINUOUS_DATA, requires=MIXTURE, higher_is_better=False,
          description="squared distance between the fitted and the original mean")
def mean_error(ctx: MetricContext) -> np.ndarray:
    mean, _ = _moments(ctx)
    mu0, _ = _truth_moments(ctx)
    return np.sum((mean - mu0) ** 2, axis=-1)


@register("variance_ratio", models=ANY, data=CONTINUOUS_DATA, requires=MIXTURE, higher_is_better=None,
          description="trace of the fitted covariance over trace of the original (1 = no collapse)")
def variance_ratio(ctx: MetricContext) -> np.ndarray:
    _, cov = _moments(ctx)
    _, cov0 = _truth_moments(ctx)
    return np.trace(cov, axis1=-2, axis2=-1) / np.trace(cov0)


@register("log_det_ratio", models=ANY, data=CONTINUOUS_DATA, requires=MIXTURE, higher_is_better=None,
          description="log det of the fitted covariance over det of the original (0 = no collapse; -inf = singular)")
def log_det_ratio(ctx: MetricContext) -> np.ndarray:
    # The generalised variance: in d > 1 the Gaussian chain's exact law is known for it, not for the trace.
    _, cov = _moments(ctx)
    _, cov0 = _truth_moments(ctx)
    with np.errstate(invalid="ignore"):  # a stopped replicate's NaN covariance gives NaN, as it should
        sign, logdet = np.linalg.slogdet(cov)
    logdet = np.where(sign > 0, logdet, np.where(np.isnan(logdet), np.nan, -np.inf))
    return logdet - np.linalg.slogdet(cov0)[1]


@register("w2", models={"gaussian"}, data=GAUSSIAN_TRUTH, higher_is_better=False,
          description="Wasserstein-2 distance to the original, closed form between Gaussians")
def w2_gaussian(ctx: MetricContext) -> np.ndarray:
    mu, cov = ctx.model.mean_, ctx.model.covariance_
    mu0, cov0 = _truth_moments(ctx)
    root0 = psd_sqrt(cov0)
    cross = np.linalg.eigvalsh(root0 @ cov @ root0)
    bures = np.trace(cov, axis1=-2, axis2=-1) + np.trace(cov0) - 2 * np.sum(np.sqrt(np.clip(cross, 0, None)), axis=-1)
    return np.sqrt(np.clip(np.sum((mu - mu0) ** 2, axis=-1) + bures, 0.0, None))


@register("kl", models={"gaussian"}, data=GAUSSIAN_TRUTH, higher_is_better=False,
          description="KL(fitted || original) in nats, closed form between Gaussians (inf once variance collapses)")
def kl_gaussian(ctx: MetricContext) -> np.ndarray:
    mu, cov = ctx.model.mean_, ctx.model.covariance_
    mu0, cov0 = _truth_moments(ctx)
    prec0 = np.linalg.inv(cov0)
    d = len(mu0)
    diff = mu - mu0
    sign, logdet = np.linalg.slogdet(cov)
    logdet = np.where(sign > 0, logdet, -np.inf)
    with np.errstate(invalid="ignore"):
        val = 0.5 * (
            np.einsum("ij,rji->r", prec0, cov)
            + np.einsum("ri,ij,rj->r", diff, prec0, diff)
            - d
            + np.linalg.slogdet(cov0)[1]
            - logdet
        )
    return val


@register("l2_distance", models=ANY, data=CONTINUOUS_DATA, requires=MIXTURE, higher_is_better=False,
          description="closed-form L2 distance between fitted and original densities (the paper's GMM metric)")
def l2_distance(ctx: MetricContext) -> np.ndarray:
    truth = ctx.truth.as_mixture()

    def one(mix: mixtures.Mixture) -> float:
        try:
            return mixtures.l2_distance(mix, truth)
        except np.linalg.LinAlgError:  # a point mass has infinite L2 norm
            return np.inf

    return _per_replicate(ctx, one, lambda stack: mixtures.batched_l2_distance(stack, truth))


@register("nll", models=ANY, data=CONTINUOUS, higher_is_better=False, needs={"heldout"},
          description="mean negative log-likelihood of real held-out data under the fitted density")
def nll(ctx: MetricContext) -> np.ndarray:
    with np.errstate(all="ignore"):
        return -np.mean(ctx.model.log_prob(ctx.heldout), axis=-1)


@register("tail_mass", models=ANY, data=CONTINUOUS_DATA, requires=MIXTURE, higher_is_better=None,
          description="fitted mass beyond the original's 1% and 99% quantiles (mean over axes) / 0.02; 1 at the start")
def tail_mass(ctx: MetricContext) -> np.ndarray:
    if "quantiles" not in ctx.cache:
        mix0 = ctx.truth.as_mixture()
        d = mix0[1].shape[1]
        ctx.cache["quantiles"] = (
            np.array([mixtures.marginal_quantile(mix0, 0.01, j) for j in range(d)]),
            np.array([mixtures.marginal_quantile(mix0, 0.99, j) for j in range(d)]),
        )
    lower, upper = ctx.cache["quantiles"]
    # Exact mass from the fitted density: the expectation of the sample share, without its noise.
    return _per_replicate(ctx, lambda mix: mixtures.tail_mass(mix, lower, upper) / 0.02,
                          lambda stack: mixtures.batched_tail_mass(stack, lower, upper) / 0.02)


@register("component_weights", models={"gmm"}, data=CONTINUOUS_DATA, higher_is_better=None,
          description="mixture weights, largest first (a vector per replicate)", vector=True)
def component_weights(ctx: MetricContext) -> np.ndarray:
    k = ctx.model.factory().n_components
    rows = [np.sort(m.weights_)[::-1] if m is not None else np.full(k, np.nan) for m in ctx.model.models]
    return np.array(rows)


def _empirical_wasserstein(ctx: MetricContext, p: int) -> np.ndarray:
    """W_p between ``n_samples`` fresh draws from each replicate's model and from the original.

    Exact for the two empirical measures: sorted samples in 1-D, an optimal-transport
    solve (POT) otherwise. It has a positive noise floor of order n^-1/2 even for a
    perfect model, so compare generations against generation 0, not against zero.
    """
    x = ctx.model.sample(ctx.n_samples, rng=ctx.rngs)
    y = ctx.truth.sample(ctx.n_samples, rng=ctx.rngs)
    out = np.full(len(x), np.nan)
    for r in range(len(x)):
        if not np.all(np.isfinite(x[r])):
            continue
        if x.shape[-1] == 1:
            out[r] = np.mean(np.abs(np.sort(x[r, :, 0]) - np.sort(y[r, :, 0])) ** p) ** (1 / p)
        else:
            import ot  # POT imports every array backend it finds (torch among them): load it on first use

            cost = ot.dist(x[r], y[r], metric="sqeuclidean" if p == 2 else "euclidean")
            out[r] = ot.emd2(np.array([]), np.array([]), cost) ** (1 / p)
    return out


@register("w2", models=ANY, data=CONTINUOUS, higher_is_better=False,
          description="Wasserstein-2 between model and original samples (exact for the samples; noise floor ~ n^-1/2)")
def w2_empirical(ctx: MetricContext) -> np.ndarray:
    return _empirical_wasserstein(ctx, 2)


@register("w1", models=ANY, data=CONTINUOUS, higher_is_better=False,
          description="Wasserstein-1 between model and original samples (exact for the samples; noise floor ~ n^-1/2)")
def w1_empirical(ctx: MetricContext) -> np.ndarray:
    return _empirical_wasserstein(ctx, 1)
