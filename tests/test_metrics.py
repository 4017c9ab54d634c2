"""Metrics against hand computations and reference libraries (scipy, POT)."""

import numpy as np
import ot
import pytest
from scipy import integrate, linalg, stats

from modelcollapse import metrics as M
from modelcollapse.chain import make_model
from modelcollapse.data import load_source
from modelcollapse.config import load_spec
from modelcollapse.data import build_truth
from modelcollapse.metrics.discrete import tail_set
from modelcollapse.models import GaussianModel


def _ctx(spec, model, n_samples=500, heldout=None, R=1):
    return M.MetricContext(
        model=model, truth=build_truth(spec.data), heldout=heldout, rngs=[np.random.default_rng(r) for r in range(R)],
        generation=0, n_samples=n_samples, model_kind=spec.model.kind,
    )


def _gaussian_batch(means, covs) -> GaussianModel:
    return GaussianModel().load_state_dict({"mean": np.array(means, float), "covariance": np.array(covs, float)})


def _metric(name, spec, ctx):
    return M.resolve(name, spec.model.kind, spec.data.kind).fn(ctx)


def test_gaussian_closed_forms_in_one_dimension():
    spec = load_spec({"data": {"kind": "gaussian", "mean": [0.5], "cov": [[2.0]]}})
    model = _gaussian_batch([[0.5], [1.5], [0.0]], [[[2.0]], [[0.5]], [[0.0]]])
    ctx = _ctx(spec, model, R=3)
    mu, var = np.array([0.5, 1.5, 0.0]), np.array([2.0, 0.5, 0.0])
    np.testing.assert_allclose(_metric("mean_error", spec, ctx), (mu - 0.5) ** 2)
    np.testing.assert_allclose(_metric("variance_ratio", spec, ctx), var / 2.0)
    # W2 between 1-D Gaussians: sqrt((mu - mu0)^2 + (sd - sd0)^2)
    np.testing.assert_allclose(_metric("w2", spec, ctx), np.sqrt((mu - 0.5) ** 2 + (np.sqrt(var) - np.sqrt(2)) ** 2))
    kl = _metric("kl", spec, ctx)
    assert kl[0] == pytest.approx(0.0, abs=1e-12) and np.isinf(kl[2])
    p, q = stats.norm(1.5, np.sqrt(0.5)), stats.norm(0.5, np.sqrt(2.0))
    numeric = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)), -20, 20)[0]
    assert kl[1] == pytest.approx(numeric, rel=1e-7)


def test_gaussian_w2_and_kl_in_two_dimensions():
    cov0 = np.array([[1.0, 0.3], [0.3, 0.5]])
    spec = load_spec({"data": {"kind": "gaussian", "mean": [0.0, 1.0], "cov": cov0.tolist()}})
    cov = np.array([[0.4, -0.1], [-0.1, 0.9]])
    mu = np.array([0.3, 0.2])
    ctx = _ctx(spec, _gaussian_batch([mu], [cov]))
    root0 = linalg.sqrtm(cov0)
    bures = np.trace(cov + cov0 - 2 * linalg.sqrtm(root0 @ cov @ root0)).real
    expected_w2 = np.sqrt(np.sum((mu - [0.0, 1.0]) ** 2) + bures)
    assert _metric("w2", spec, ctx)[0] == pytest.approx(expected_w2, rel=1e-9)
    inv0 = np.linalg.inv(cov0)
    diff = np.array([0.0, 1.0]) - mu
    expected_kl = 0.5 * (np.trace(inv0 @ cov) + diff @ inv0 @ diff - 2 + np.log(np.linalg.det(cov0) / np.linalg.det(cov)))
    assert _metric("kl", spec, ctx)[0] == pytest.approx(expected_kl, rel=1e-9)


def test_tail_mass_and_l2_are_neutral_at_the_truth():
    spec = load_spec("gmm")
    truth = build_truth(spec.data)
    model = make_model(spec.model_copy(update={"replicates": 2}), load_source(spec.data))
    model.load_state_dict({k: np.stack([v, v]) for k, v in truth.state_dict().items()})
    ctx = _ctx(spec, model, R=2)
    np.testing.assert_allclose(_metric("tail_mass", spec, ctx), 1.0, rtol=1e-9)
    np.testing.assert_allclose(_metric("l2_distance", spec, ctx), 0.0, atol=1e-7)
    np.testing.assert_allclose(_metric("mean_error", spec, ctx), 0.0, atol=1e-20)
    np.testing.assert_allclose(_metric("component_weights", spec, ctx), [[0.5, 0.5]] * 2)


def test_continuous_tail_mass_counts_both_tails():
    spec = load_spec({"data": {"kind": "gaussian"}})
    wide = _gaussian_batch([[0.0]], [[[4.0]]])
    z = stats.norm.ppf(0.99)
    expected = 2 * stats.norm.sf(z / 2.0) / 0.02  # sd 2: P(|X| > z)
    assert _metric("tail_mass", spec, _ctx(spec, wide))[0] == pytest.approx(expected, rel=1e-9)


def test_empirical_wasserstein_matches_scipy_and_pot():
    spec = load_spec({"data": {"kind": "gaussian"}, "model": {"kind": "kde", "bandwidth": 0.3}})
    truth = build_truth(spec.data)
    model = make_model(spec.model_copy(update={"replicates": 1}), load_source(spec.data))
    model.fit(np.random.default_rng(0).normal(1.0, 1.0, (1, 200, 1)))
    ctx = _ctx(spec, model, n_samples=300, R=1)
    w1 = _metric("w1", spec, ctx)[0]
    # Redraw the same samples with the same streams for the references.
    rngs = [np.random.default_rng(0)]
    x = model.sample(300, rng=rngs)[0, :, 0]
    y = truth.sample(300, rng=rngs)[0, :, 0]
    assert w1 == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-10)
    ctx = _ctx(spec, model, n_samples=300, R=1)
    w2 = _metric("w2", spec, ctx)[0]
    assert w2 == pytest.approx(np.sqrt(ot.wasserstein_1d(x, y, p=2)), rel=1e-8)


def test_empirical_wasserstein_in_two_dimensions_is_a_true_transport_cost():
    data = load_spec("gmm").data.model_dump()  # the 2-D mixture of the preset
    spec = load_spec({"data": data, "model": {"kind": "kde", "bandwidth": 0.2}, "metrics": ["w1", "w2"]})
    truth = build_truth(spec.data)
    model = make_model(spec.model_copy(update={"replicates": 1}), load_source(spec.data))
    model.fit(truth.sample(100, rng=[np.random.default_rng(1)]))
    w2 = _metric("w2", spec, _ctx(spec, model, n_samples=150, R=1))[0]
    rngs = [np.random.default_rng(0)]
    x, y = model.sample(150, rng=rngs)[0], truth.sample(150, rng=rngs)[0]
    assert w2 == pytest.approx(np.sqrt(ot.emd2([], [], ot.dist(x, y))), rel=1e-8)
    # Any other coupling (here the identity) costs at least as much.
    assert w2 <= np.sqrt(np.mean(np.sum((x - y) ** 2, axis=1))) + 1e-12


def test_categorical_metrics_by_hand():
    spec = load_spec({"data": {"kind": "categorical", "probs": [0.5, 0.3, 0.15, 0.05]}, "model": {"kind": "categorical"}})
    model = make_model(spec.model_copy(update={"replicates": 2}), load_source(spec.data))
    model.load_state_dict({"probs": np.array([[0.5, 0.3, 0.15, 0.05], [0.8, 0.2, 0.0, 0.0]])})
    ctx = _ctx(spec, model, R=2)
    q = np.array([0.5, 0.3, 0.15, 0.05])
    np.testing.assert_allclose(_metric("tv", spec, ctx), [0.0, 0.3])
    np.testing.assert_allclose(_metric("kl", spec, ctx), [0.0, 0.8 * np.log(0.8 / 0.5) + 0.2 * np.log(0.2 / 0.3)])
    np.testing.assert_allclose(_metric("entropy", spec, ctx), [stats.entropy(q), stats.entropy([0.8, 0.2])])
    np.testing.assert_allclose(_metric("support_size", spec, ctx), [4, 2])
    np.testing.assert_allclose(_metric("tail_mass", spec, ctx), [0.05, 0.0])  # smallest 10%: only the 0.05 category
    np.testing.assert_allclose(_metric("gini_simpson", spec, ctx), [1 - np.sum(q**2), 1 - 0.68])


def test_tail_set_holds_at_most_ten_percent():
    q = build_truth(load_spec({"data": {"kind": "zipf", "categories": 100}, "model": {"kind": "categorical"}}).data).probs_
    idx = tail_set(q)
    assert q[idx].sum() <= 0.10 + 1e-12
    assert q[idx].sum() + np.sort(np.delete(q, idx))[0] > 0.10  # the next category would overflow
    assert q[idx].max() <= np.delete(q, idx).min()


def test_metric_registry_metadata():
    assert "w2" in M.available("kde", "gmm") and "tv" not in M.available("gaussian", "gaussian")
    for name in M.all_metric_names():
        for impl in M.registry._METRICS[name]:
            assert impl.description and impl.higher_is_better in (True, False, None)
    with pytest.raises(KeyError, match="did you mean"):
        M.resolve("w22", "gaussian", "gaussian")
