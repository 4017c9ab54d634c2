"""The model contract, checked on every registered family (one conformance suite)."""

from functools import partial

import numpy as np
import pytest
from scipy import stats
from sklearn.datasets import load_digits
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KernelDensity

from modelcollapse import mixtures
from modelcollapse.models import MODELS, FitError, NotFittedError, ReplicatedModel
from modelcollapse.models.gmm import GMMModel
from modelcollapse.models.kde import KDEModel

#: The scikit-learn adapter is checked once per estimator it is documented for.
SKLEARN = {
    "sklearn:GaussianMixture": {"estimator": "sklearn.mixture.GaussianMixture", "params": {"n_components": 2}},
    "sklearn:BayesianGaussianMixture": {"estimator": "sklearn.mixture.BayesianGaussianMixture",
                                        "params": {"n_components": 2, "max_iter": 500}},
    "sklearn:KernelDensity": {"estimator": "sklearn.neighbors.KernelDensity", "params": {"bandwidth": 0.4}},
}


def _kind(case: str) -> str:
    return case.split(":")[0]


def _type(case: str) -> str:
    return MODELS.get(_kind(case)).data_type

# p-value threshold for goodness-of-fit checks: a correct sampler fails one of these
# with probability 1e-6, while the large samples used make any real mismatch (a wrong
# scale, a missing component) give p-values far below it.
ALPHA = 1e-6


def _data(kind: str, rng: np.random.Generator, n: int = 400, d: int = 1) -> np.ndarray:
    if _type(kind) == "discrete":
        return rng.choice(5, size=n, p=[0.4, 0.3, 0.15, 0.1, 0.05])
    if _type(kind) == "text":
        return rng.integers(0, 20, (n, 6))  # blocks of token ids
    if _type(kind) == "image":
        images = load_digits().images / 16.0
        return images[rng.choice(len(images), size=n, replace=False)]
    return np.concatenate([rng.normal(-2, 0.7, (n // 2, d)), rng.normal(1.5, 1.0, (n - n // 2, d))])


def _make(kind: str):
    if kind in SKLEARN:
        return MODELS.get("sklearn").cls(**SKLEARN[kind])
    cls = MODELS.get(kind).cls
    if kind == "categorical":
        return cls(n_categories=5)
    if kind == "ngram":
        return cls(vocab_size=20, order=2, discount=0.3, gen_tokens=6)
    if kind == "transformer":  # a one-layer GPT-2: the contract, not quality
        return cls(vocab_size=20, gen_tokens=6, n_layer=1, n_head=2, n_embd=16, context=16, epochs=1)
    if kind == "vae":
        return cls(image_shape=(8, 8), epochs=2, hidden=64, latent_dim=4)  # tiny: the contract, not quality
    return cls()


def _sample_shape(kind: str, n: int) -> tuple:
    return {"discrete": (n,), "continuous": (n, 1), "image": (n, 8, 8), "text": (n, 6)}[_type(kind)]


# Every registered family, built-in or plug-in (the example plug-in is installed in CI), and the
# scikit-learn adapter once per estimator.
KINDS = [k for k in MODELS.names() if k != "sklearn"] + list(SKLEARN)


@pytest.mark.parametrize("kind", KINDS)
def test_init_does_no_work_and_params_round_trip(kind):
    model = _make(kind)
    assert not [k for k in vars(model) if k.endswith("_")]
    params = model.get_params()
    assert type(model)(**params).get_params() == params
    assert type(model).__name__ in repr(model)
    with pytest.raises(NotFittedError):
        model.sample(3, rng=np.random.default_rng(0))


@pytest.mark.parametrize("kind", KINDS)
def test_fit_sample_log_prob_shapes(kind, rng):
    X = _data(kind, rng)
    model = _make(kind)
    assert model.fit(X, rng=rng) is model
    S = model.sample(7, rng=rng)
    assert S.shape == _sample_shape(kind, 7)
    assert model.log_prob(X[:11]).shape == (11,)
    with pytest.raises(TypeError):
        model.sample(3, rng=None)


@pytest.mark.parametrize("kind", KINDS)
def test_sampling_uses_the_given_generator_only(kind, rng):
    model = _make(kind).fit(_data(kind, rng), rng=np.random.default_rng(1))
    a = model.sample(50, rng=np.random.default_rng(7))
    b = model.sample(50, rng=np.random.default_rng(7))
    c = model.sample(50, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind, rng):
    X = _data(kind, rng)
    model = _make(kind).fit(X, rng=rng)
    state = {k: np.array(v) for k, v in model.state_dict().items()}
    clone = _make(kind).load_state_dict(state)
    np.testing.assert_allclose(clone.log_prob(X), model.log_prob(X), rtol=1e-12)
    np.testing.assert_array_equal(clone.sample(20, rng=np.random.default_rng(3)), model.sample(20, rng=np.random.default_rng(3)))


# The VAE's log_prob is an evidence lower bound, not a normalised density: no such test applies.
# The n-gram LM's conditionals get their own exact and goodness-of-fit tests in test_text.py.
@pytest.mark.parametrize("kind", [k for k in KINDS if _type(k) not in ("image", "text")])
def test_samples_agree_with_log_prob(kind, rng):
    """Goodness of fit: samples follow the density that log_prob describes."""
    model = _make(kind).fit(_data(kind, rng), rng=rng)
    S = model.sample(20_000, rng=rng)
    if _type(kind) == "discrete":
        probs = np.exp(model.log_prob(np.arange(5)))
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)
        observed = np.bincount(S, minlength=5)
        keep = probs > 0
        assert observed[~keep].sum() == 0
        assert stats.chisquare(observed[keep], probs[keep] * len(S)).pvalue > ALPHA
        return
    # Wide enough for heavy tails: half as far again as the farthest of 20,000 samples.
    reach = max(9.0, 1.5 * float(np.abs(S).max()))
    grid = np.linspace(-reach, reach, 40_001)
    dens = np.exp(model.log_prob(grid[:, None]))
    cdf = np.concatenate([[0], np.cumsum((dens[1:] + dens[:-1]) / 2 * np.diff(grid))])
    assert cdf[-1] == pytest.approx(1.0, abs=1e-4)  # log_prob is normalised
    assert stats.kstest(S[:, 0], lambda x: np.interp(x, grid, cdf)).pvalue > ALPHA


@pytest.mark.parametrize("kind", [k for k in KINDS if MODELS.get(_kind(k)).cls.batched])
def test_batched_fit_and_sample_equal_per_replicate(kind, rng):
    """Vectorised families: replicate r of a batch is exactly the model fitted on X[r] alone."""
    R = 4
    X = np.stack([_data(kind, rng, n=50) for _ in range(R)])
    batch = _make(kind).fit(X)
    draws = batch.sample(30, rng=[np.random.default_rng(s) for s in range(R)])
    for r in range(R):
        one = _make(kind).fit(X[r])
        for k, v in one.state_dict().items():
            np.testing.assert_allclose(batch.state_dict()[k][r], v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(draws[r], one.sample(30, rng=np.random.default_rng(r)), rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="generators"):
        batch.sample(3, rng=np.random.default_rng(0))


@pytest.mark.parametrize("kind", [k for k in KINDS if not MODELS.get(_kind(k)).cls.batched])
def test_replicated_model_matches_individual_models(kind, rng):
    R = 3
    X = np.stack([_data(kind, rng, n=120) for _ in range(R)])
    factory = partial(_make, kind)
    batch = ReplicatedModel(factory, R).fit(X, rng=[np.random.default_rng(s) for s in range(R)])
    assert batch.sample(10, rng=[np.random.default_rng(s) for s in range(R)]).shape == (R, *_sample_shape(kind, 10))
    assert batch.log_prob(X).shape == (R, 120)
    one = factory().fit(X[1], rng=np.random.default_rng(np.random.default_rng(1).integers(2**63)))
    np.testing.assert_allclose(batch.models[1].log_prob(X[1]), one.log_prob(X[1]))  # replicate r = its own fit
    clone = ReplicatedModel(factory, R).load_state_dict(batch.state_dict())
    np.testing.assert_allclose(clone.log_prob(X), batch.log_prob(X))


def test_replicated_model_stops_a_failing_replicate():
    class Fussy(GMMModel):
        def fit(self, X, *, rng=None):
            if X.mean() > 100:
                raise FitError("too far away")
            return super().fit(X, rng=rng)

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 60, 1))
    X[1] += 1000
    batch = ReplicatedModel(Fussy, 3).fit(X, rng=[np.random.default_rng(s) for s in range(3)])
    assert set(batch.stopped) == {1} and "too far away" in batch.stopped[1]
    S = batch.sample(5, rng=[np.random.default_rng(s) for s in range(3)])
    assert np.isnan(S[1]).all() and np.isfinite(S[[0, 2]]).all()


def test_gmm_matches_scikit_learn_reference(rng):
    X = _data("gmm", rng, n=600, d=2)
    ours = GMMModel(n_components=2).fit(X, rng=np.random.default_rng(5))
    ref = GaussianMixture(n_components=2, random_state=int(np.random.default_rng(5).integers(2**31 - 1))).fit(X)
    np.testing.assert_allclose(ours.weights_, ref.weights_, rtol=1e-10)  # the same fit as scikit-learn's
    # log_prob against a density computed independently (scipy's multivariate normal, summed by hand),
    # not against scikit-learn's own scoring, which log_prob uses.
    by_hand = np.log(sum(w * stats.multivariate_normal(m, c).pdf(X)
                         for w, m, c in zip(ours.weights_, ours.means_, ours.covariances_)))
    np.testing.assert_allclose(ours.log_prob(X), by_hand, rtol=1e-9)
    # Our sampler (own generator) and scikit-learn's draw from the same distribution.
    a = ours.sample(5000, rng=rng)[:, 0]
    b = ref.sample(5000)[0][:, 0]
    assert stats.ks_2samp(a, b).pvalue > ALPHA


def test_kde_matches_scikit_learn_reference(rng):
    X = _data("kde", rng, n=300)
    ours = KDEModel(bandwidth=0.4).fit(X)
    ref = KernelDensity(bandwidth=0.4).fit(X)
    np.testing.assert_allclose(ours.log_prob(X), ref.score_samples(X), rtol=1e-10)
    a = ours.sample(5000, rng=rng)[:, 0]
    b = ref.sample(5000, random_state=1)[:, 0]
    assert stats.ks_2samp(a, b).pvalue > ALPHA


def test_gaussian_estimators_and_collapse_do_not_crash():
    X = np.array([[0.0], [1.0], [2.0]])
    from modelcollapse.models import GaussianModel

    assert GaussianModel(estimator="mle").fit(X).covariance_[0, 0] == pytest.approx(2 / 3)
    assert GaussianModel(estimator="unbiased").fit(X).covariance_[0, 0] == pytest.approx(1.0)
    point = GaussianModel().fit(np.ones((5, 1)))
    np.testing.assert_array_equal(point.sample(4, rng=np.random.default_rng(0)), np.ones((4, 1)))


def test_mixture_l2_distance_matches_numerical_integration(rng):
    a = (np.array([0.3, 0.7]), np.array([[-1.0], [1.0]]), np.array([[[0.5]], [[1.0]]]))
    b = (np.array([1.0]), np.array([[0.2]]), np.array([[[1.5]]]))
    grid = np.linspace(-12, 12, 100_001)

    def dens(m):
        return sum(w * stats.norm.pdf(grid, mu[0], np.sqrt(c[0, 0])) for w, mu, c in zip(*m))

    numeric = np.sqrt(np.trapezoid((dens(a) - dens(b)) ** 2, grid))
    assert mixtures.l2_distance(a, b) == pytest.approx(numeric, rel=1e-6)
    assert mixtures.l2_distance(a, a) == pytest.approx(0.0, abs=1e-7)
    assert mixtures.marginal_quantile(b, 0.99, 0) == pytest.approx(stats.norm.ppf(0.99, 0.2, np.sqrt(1.5)), rel=1e-9)


def test_mixture_l2_distance_in_two_dimensions():
    cov = np.array([[1.0, 0.4], [0.4, 0.8]])
    a = (np.array([1.0]), np.zeros((1, 2)), cov[None])
    b = (np.array([1.0]), np.array([[0.5, -0.5]]), (cov * 1.3)[None])
    xs = np.linspace(-8, 8, 801)
    xx, yy = np.meshgrid(xs, xs)
    pts = np.stack([xx.ravel(), yy.ravel()], axis=1)
    fa = stats.multivariate_normal(np.zeros(2), cov).pdf(pts)
    fb = stats.multivariate_normal(b[1][0], b[2][0]).pdf(pts)
    numeric = np.sqrt(np.sum((fa - fb) ** 2) * (xs[1] - xs[0]) ** 2)
    assert mixtures.l2_distance(a, b) == pytest.approx(numeric, rel=1e-4)


@pytest.mark.parametrize("rule", ["scott", "silverman", 0.25])
@pytest.mark.parametrize("shape", [(50, 1), (400, 2), (1000, 5)])
def test_kde_bandwidth_rules_are_scikit_learns(rule, shape):
    X = np.random.default_rng(0).normal(size=shape)
    assert KDEModel(bandwidth=rule).fit(X).bandwidth_ == pytest.approx(KernelDensity(bandwidth=rule).fit(X).bandwidth_,
                                                                       rel=1e-15)
