"""VAEModel: training, explicit randomness, state round trips (dict, safetensors, pickle), shapes.

Tolerances. Every equality below is exact (``assert_array_equal``): on the CPU with a fixed
intra-op thread count (``threads=1``, the default) the same weights and inputs go through the
same float operations in the same order, so results are bit-identical, and anything less than
identical would mean a leak of hidden state (torch's global RNG, a stored seed, a different
init). Loss decreases are checked with margins of several nats per image, far above the
epoch-to-epoch noise of minibatch training at these sizes (about 0.5 nats).
"""

from __future__ import annotations

import doctest
import json
import pickle
import struct
from functools import partial

import numpy as np
import pytest
import torch
from safetensors import safe_open
from sklearn.datasets import load_digits

from modelcollapse.models import ReplicatedModel
from modelcollapse.models import vae as vae_module
from modelcollapse.models.base import NotFittedError
from modelcollapse.models.vae import VAEModel

# Small and CPU-only so the whole file runs in seconds; the shapes match the engine's use.
SMALL = dict(hidden=64, latent_dim=4, batch_size=64, device="cpu")


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    return (load_digits().images / 16.0).astype(np.float32)  # (1797, 8, 8) in [0, 1]


@pytest.fixture(scope="module")
def fitted(digits) -> VAEModel:
    return VAEModel(epochs=3, **SMALL).fit(digits[:400], rng=np.random.default_rng(0))


def _weights_equal(a: VAEModel, b: VAEModel) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


def test_init_stores_only_and_unfitted_model_refuses():
    m = VAEModel(epochs=2, **SMALL)
    assert not [k for k in vars(m) if k.endswith("_")]
    assert VAEModel(**m.get_params()).get_params() == m.get_params()
    with pytest.raises(NotFittedError):
        m.sample(2, rng=np.random.default_rng(0))


def test_training_reduces_the_loss(digits):
    m = VAEModel(epochs=8, **SMALL).fit(digits[:500], rng=np.random.default_rng(1))
    assert m.n_iter_ == 8 and len(m.history_) == 8
    assert np.isfinite(m.history_).all()
    # First epoch ~44 nats/image, eighth ~28: demand 5 nats, well clear of minibatch noise.
    assert m.history_[-1] < m.history_[0] - 5.0


def test_samples_shape_range_dtype_and_bernoulli_decode(fitted):
    S = fitted.sample(50, rng=np.random.default_rng(2))
    assert S.shape == (50, 8, 8) and S.dtype == np.float32
    assert S.min() >= 0.0 and S.max() <= 1.0
    assert len(np.unique(S)) > 2  # mean decoding gives grey levels
    binary = VAEModel(**{**fitted.get_params(), "decode": "bernoulli"}).load_state_dict(fitted.state_dict())
    B = binary.sample(50, rng=np.random.default_rng(2))
    assert B.shape == (50, 8, 8) and B.dtype == np.float32
    assert set(np.unique(B)) <= {0.0, 1.0}
    assert fitted.sample(0, rng=np.random.default_rng(0)).shape == (0, 8, 8)
    with pytest.raises(TypeError):
        fitted.sample(3, rng=None)


def test_sampling_uses_the_given_generator_only(fitted):
    torch_state = torch.get_rng_state()
    a = fitted.sample(20, rng=np.random.default_rng(7))
    torch.manual_seed(123)  # torch's global RNG must play no part
    b = fitted.sample(20, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, fitted.sample(20, rng=np.random.default_rng(8)))
    torch.set_rng_state(torch_state)


def test_sample_with_a_list_of_generators_matches_each_generator_alone(fitted):
    S = fitted.sample(6, rng=[np.random.default_rng(s) for s in range(3)])
    assert S.shape == (3, 6, 8, 8)
    for r in range(3):
        np.testing.assert_array_equal(S[r], fitted.sample(6, rng=np.random.default_rng(r)))


def test_encode_and_log_prob(fitted, digits):
    X = digits[:30]
    assert fitted.encode(X).shape == (30, 4)
    lp = fitted.log_prob(X)
    assert lp.shape == (30,) and lp.dtype == np.float64
    assert np.isfinite(lp).all() and (lp < 0).all()  # Bernoulli cross-entropy + KL are positive
    np.testing.assert_array_equal(lp, fitted.log_prob(X))  # deterministic
    np.testing.assert_array_equal(lp[:7], fitted.log_prob(X[:7]))  # a prefix keeps its values
    # A trained model scores digits above uniform noise images.
    noise = np.random.default_rng(0).random((30, 8, 8))
    assert lp.mean() > fitted.log_prob(noise).mean()


def test_same_seed_same_weights_other_seed_differs(digits):
    X = digits[:200]
    torch_state = torch.get_rng_state()
    a = VAEModel(epochs=2, **SMALL).fit(X, rng=np.random.default_rng(5))
    b = VAEModel(epochs=2, **SMALL).fit(X, rng=np.random.default_rng(5))
    c = VAEModel(epochs=2, **SMALL).fit(X, rng=np.random.default_rng(6))
    assert _weights_equal(a, b) and a.history_ == b.history_
    assert not _weights_equal(a, c)
    assert torch.equal(torch.get_rng_state(), torch_state)  # fit leaves torch's global RNG alone
    # rng=None means seed 0, every time.
    assert _weights_equal(VAEModel(epochs=1, **SMALL).fit(X), VAEModel(epochs=1, **SMALL).fit(X))


def test_fixed_threads_make_results_independent_of_torchs_setting(digits):
    """The conv network's float sums depend on torch's thread count (with threads=None this
    very fit gives weights that differ by ~6e-6 between 1 and 2 threads); threads=1 pins it."""
    X = np.repeat(np.repeat(digits[:96], 2, axis=1), 2, axis=2)  # 16x16: conv needs multiples of 4
    before = torch.get_num_threads()
    fits = []
    try:
        for global_threads in (1, 2):
            torch.set_num_threads(global_threads)
            m = VAEModel(architecture="conv", image_shape=(16, 16), epochs=1, threads=1, **SMALL)
            fits.append(m.fit(X, rng=np.random.default_rng(0)))
            assert torch.get_num_threads() == global_threads  # restored after fit
    finally:
        torch.set_num_threads(before)
    assert _weights_equal(*fits)


def test_state_dict_round_trip(fitted, digits):
    state = fitted.state_dict()
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in state.values())
    # float64 copies, as ReplicatedModel stacks them: load must cast back without loss.
    clone = VAEModel(**fitted.get_params()).load_state_dict({k: v.astype(np.float64) for k, v in state.items()})
    assert _weights_equal(clone, fitted)
    np.testing.assert_array_equal(clone.sample(20, rng=np.random.default_rng(3)), fitted.sample(20, rng=np.random.default_rng(3)))
    np.testing.assert_array_equal(clone.log_prob(digits[:50]), fitted.log_prob(digits[:50]))
    state["mu.weight"][:] = 0  # a copy: editing it leaves the model alone
    assert not np.array_equal(fitted.state_dict()["mu.weight"], state["mu.weight"])
    with pytest.raises(RuntimeError):  # strict loading: another architecture's weights are refused
        VAEModel(**{**fitted.get_params(), "hidden": 32}).load_state_dict(fitted.state_dict())


def test_save_load_safetensors_without_pickle(fitted, digits, tmp_path):
    path = tmp_path / "vae.safetensors"
    fitted.save(path)
    raw = path.read_bytes()
    # safetensors layout: 8-byte little-endian header length, a JSON header, raw tensor bytes.
    # A pickle would start with the PROTO opcode 0x80 and could not parse this way.
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    assert raw[0] != 0x80
    assert 8 + header_len + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__") == len(raw)
    with safe_open(str(path), framework="numpy") as f:
        assert set(f.keys()) == set(fitted.state_dict())
        assert json.loads(f.metadata()["hyperparameters"])["latent_dim"] == 4
    loaded = VAEModel.load(path)
    assert loaded.get_params() == fitted.get_params()
    assert _weights_equal(loaded, fitted)
    np.testing.assert_array_equal(loaded.sample(20, rng=np.random.default_rng(4)), fitted.sample(20, rng=np.random.default_rng(4)))
    np.testing.assert_array_equal(loaded.log_prob(digits[:50]), fitted.log_prob(digits[:50]))


def test_pickle_round_trip(fitted, digits):
    clone = pickle.loads(pickle.dumps(fitted))
    assert _weights_equal(clone, fitted) and clone.history_ == fitted.history_
    np.testing.assert_array_equal(clone.sample(10, rng=np.random.default_rng(9)), fitted.sample(10, rng=np.random.default_rng(9)))
    np.testing.assert_array_equal(clone.log_prob(digits[:10]), fitted.log_prob(digits[:10]))
    pickle.dumps(VAEModel(**SMALL))  # unfitted too (joblib ships the factory)


def test_warm_start_continues_and_cold_start_restarts(digits):
    X = digits[:400]
    warm = VAEModel(epochs=3, warm_start=True, **SMALL).fit(X, rng=np.random.default_rng(0))
    first_epoch = warm.history_[0]
    warm.fit(X, rng=np.random.default_rng(1))
    # Continuing from trained weights: the second fit's first epoch beats a fresh first epoch
    # by far more than noise (~44 -> ~37 nats).
    assert warm.history_[0] < first_epoch - 3.0
    cold = VAEModel(epochs=3, **SMALL).fit(X, rng=np.random.default_rng(0))
    cold.fit(X, rng=np.random.default_rng(0))
    assert cold.history_[0] == first_epoch  # a fresh init: the same seed retraces the same path


def test_conv_architecture_on_28x28_and_bad_shapes():
    rng = np.random.default_rng(0)
    X = (rng.random((48, 28, 28)) < 0.3).astype(np.float32)
    m = VAEModel(architecture="conv", image_shape=(28, 28), epochs=1, **SMALL).fit(X, rng=rng)
    assert m.n_iter_ == 1 and np.isfinite(m.history_[0])
    assert m.sample(3, rng=rng).shape == (3, 28, 28)
    assert m.log_prob(X[:5]).shape == (5,) and m.encode(X[:5]).shape == (5, 4)
    with pytest.raises(ValueError, match=r"divisible by 4.*image_shape=\(30, 30\)"):
        VAEModel(architecture="conv", image_shape=(30, 30), **SMALL).fit(np.zeros((4, 30, 30)))
    with pytest.raises(ValueError, match="image_shape"):
        VAEModel(architecture="conv", image_shape=(30, 28), **SMALL).load_state_dict(m.state_dict())
    VAEModel(architecture="mlp", image_shape=(30, 30), epochs=1, **SMALL).fit(np.zeros((4, 30, 30)))  # any size
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):  # data that does not match image_shape
        m.fit(np.zeros((4, 8, 8)))


@pytest.mark.parametrize(
    "params, X, match",
    [
        (dict(architecture="resnet"), np.zeros((4, 8, 8)), "architecture"),
        (dict(decode="mode"), np.zeros((4, 8, 8)), "decode"),
        (dict(device="tpu"), np.zeros((4, 8, 8)), "device"),
        ({}, np.full((4, 8, 8), 2.0), r"\[0, 1\]"),
        ({}, np.zeros((4, 64)), "shape"),
    ],
)
def test_bad_input_is_refused_clearly(params, X, match):
    with pytest.raises(ValueError, match=match):
        VAEModel(**{**SMALL, **params}).fit(X)


def test_replicated_model_runs_vae_replicates_independently(digits):
    R = 2
    X = np.stack([digits[:100], digits[100:200]])
    rngs = lambda: [np.random.default_rng(s) for s in range(R)]  # noqa: E731
    batch = ReplicatedModel(partial(VAEModel, epochs=1, **SMALL), R).fit(X, rng=rngs())
    S = batch.sample(5, rng=rngs())
    assert S.shape == (R, 5, 8, 8)
    seeds = [g.integers(2**63) for g in rngs()]  # what ReplicatedModel draws for replicate r
    one = VAEModel(epochs=1, **SMALL).fit(X[1], rng=np.random.default_rng(int(seeds[1])))
    np.testing.assert_array_equal(S[1], one.sample(5, rng=np.random.default_rng(1)))
    clone = ReplicatedModel(partial(VAEModel, epochs=1, **SMALL), R).load_state_dict(batch.state_dict())
    np.testing.assert_array_equal(clone.log_prob(X), batch.log_prob(X))


def test_docstring_example_runs():
    result = doctest.testmod(vae_module, raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0


def test_worker_processes_give_identical_weights(digits):
    """The engine's promise: the numbers do not depend on ``workers``. joblib's loky workers
    run torch with fewer threads than the parent (cpu_count // n_jobs), which changes the conv
    network's float sums unless ``threads`` pins them (with threads=None this test fails on a
    multi-core machine: the weights differ by ~1e-8)."""
    X = np.stack([digits[:64], digits[64:128]])
    factory = partial(VAEModel, architecture="conv", epochs=1, **SMALL)
    fits = [
        ReplicatedModel(factory, 2).fit(X, rng=[np.random.default_rng(s) for s in range(2)], workers=w).state_dict()
        for w in (1, 2)
    ]
    for k in fits[0]:
        np.testing.assert_array_equal(fits[0][k], fits[1][k])
