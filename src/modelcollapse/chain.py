"""One chain of generations for all replicates, in memory (no I/O: see ``loop.py``).

Generation 0 is fitted on ``train_size`` real examples. Generation g >= 1 is fitted on
the training set the policy builds from the real set and the synthetic sets drawn so
far; every synthetic set has ``train_size`` examples sampled from generation g-1.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from . import metrics as M
from .config import ExperimentSpec
from .data import build_truth
from .models import MODELS, FitError, ReplicatedModel
from .data.images import ImageDataset
from .data.text import TextDataset
from .errors import DataError
from .metrics.classifier import classifier_for
from .policies import REAL, UNLABELLED, Batch, Policy, build_policy, provenance_counts
from .rng import RandomStreams


PREVIEW_REPLICATES, PREVIEW_IMAGES, PREVIEW_TEXTS = 4, 32, 8  # samples kept per generation for the report


def make_model(spec: ExperimentSpec, truth: Any) -> Any:
    """A batched model for all replicates: vectorised families directly, others replicated."""
    cls = MODELS.get(spec.model.kind)
    params = spec.model.model_dump(exclude={"kind"})
    if "n_categories" in cls._param_names():
        params["n_categories"] = truth.n_categories
    if "image_shape" in cls._param_names():
        params["image_shape"] = tuple(truth.image_shape)
    if "vocab_size" in cls._param_names():  # language models: the data's vocabulary and block length
        params["vocab_size"] = truth.vocab_size
        params["gen_tokens"] = truth.block_size
    if cls.batched:
        return cls(**params)
    return ReplicatedModel(partial(cls, **params), spec.replicates)


@dataclass
class Generation:
    """What one generation produced: metric values, provenance, and the synthetic set it drew."""

    index: int
    metrics: dict[str, np.ndarray]
    provenance: np.ndarray  # (R, index + 1): real, then one column per source generation
    synthetic: Batch | None
    newly_stopped: dict[int, str] = field(default_factory=dict)
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # stored beside the parameters (image previews)


class Chain:
    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec
        self.truth = build_truth(spec.data)
        self.policy: Policy = build_policy(spec.policy.kind, spec.policy.real_fraction)
        self.streams = RandomStreams(spec.seed, range(spec.replicates))
        self.model = make_model(spec, self.truth)
        metrics = [M.resolve(name, spec.model.kind, spec.data.kind) for name in spec.metrics]
        self.metric_fns = {m.name: m.fn for m in metrics}
        self.needs = frozenset().union(*(m.needs for m in metrics))
        self.cache: dict[str, Any] = {}
        self.history: list[Batch] = []  # synthetic sets the policy may still need
        self.stopped: dict[int, str] = {}
        self.real: Batch | None = None
        self.heldout: np.ndarray | None = None
        self.model0: Any = None
        self.images = isinstance(self.truth, ImageDataset)
        self.text = isinstance(self.truth, TextDataset)
        self.aux: dict[str, Any] = {}
        self.info: dict[str, Any] = {}  # facts about the run for the manifest (data source, classifier accuracy)
        self.fit_kwargs: dict[str, Any] = {}  # e.g. validation blocks for language models that keep their best epoch
        if self.images or self.text:
            self._prepare_dataset()

    # -- the two kinds of generation --------------------------------------------------
    def first(self) -> Generation:
        self.real = self.draw_real(self.spec.train_size)
        # Held-out real data only when a metric reads it (20,000 replicates x 1,000 points adds up).
        if self.images or self.text:  # the dataset's own held-out split, the same for every replicate
            self.heldout = self._dataset_heldout()
        else:
            size = self.spec.heldout_size if "heldout" in self.needs else 0
            self.heldout = self.truth.sample(size, rng=self.streams["heldout"])
        gen = self._fit_and_measure(0, self.real, synthetic=None)
        return gen

    def step(self, g: int) -> Generation:
        # Language models continue every real training block of the replicate (the paper's protocol).
        prompts = {"prompts": self.real.X} if self.text else {}
        X = self.model.sample(self.spec.train_size, rng=self.streams["sample"], **prompts)
        labels = np.full(X.shape[:2], UNLABELLED, dtype=np.int64) if self.images else None
        synthetic = Batch(X, np.full(X.shape[:2], g - 1, dtype=np.int64), labels)
        self.history = [*self.history, synthetic] if self.policy.needs_history else [synthetic]
        train = self.policy.build(
            real=self.real,
            synthetic=self.history,
            train_size=self.spec.train_size,
            rngs=self.streams["policy"],
            draw_real=self.draw_real,
        )
        return self._fit_and_measure(g, train, synthetic)

    def _dataset_heldout(self) -> np.ndarray:
        """The dataset's test split (its first ``heldout_size`` blocks for text: scoring a large LM
        on every test block each generation can cost more than training it), one view per replicate."""
        held = self.truth.heldout[: self.spec.heldout_size] if self.text else self.truth.heldout
        return np.broadcast_to(held, (self.spec.replicates, *held.shape))

    def draw_real(self, n: int) -> Batch:
        if self.images:
            X, y = self.truth.sample_labeled(n, rng=self.streams["real"])
            return Batch(X, np.full(X.shape[:2], REAL, dtype=np.int64), y)
        X = self.truth.sample(n, rng=self.streams["real"])
        return Batch(X, np.full(X.shape[:2], REAL, dtype=np.int64))

    def _prepare_dataset(self) -> None:
        """Check the data against the spec and train the helpers image metrics need, before any fit."""
        pool, unit = (len(self.truth.train_X), "images") if self.images else (len(self.truth.train_blocks), "blocks")
        if self.spec.train_size > pool:
            raise DataError(f"train_size={self.spec.train_size} exceeds the {pool} training {unit} of {self.truth.name}")
        model = self.spec.model
        if getattr(model, "architecture", None) == "conv" and any(s % 4 for s in self.truth.image_shape):
            raise DataError(
                f"model.architecture='conv' needs image sides divisible by 4 (MNIST's 28x28); "
                f"data.kind={self.spec.data.kind!r} has {self.truth.image_shape}: use architecture 'mlp'"
            )
        self.info["data"] = self.truth.describe()
        if self.text:
            self._prepare_language_model()
        if "classifier" in self.needs:
            self.aux["classifier"] = classifier_for(self.truth)
            self.info["classifier_accuracy"] = self.aux["classifier"].accuracy_

    def _fit_and_measure(self, g: int, train: Batch, synthetic: Batch | None) -> Generation:
        if isinstance(self.model, ReplicatedModel):
            self.model.fit(train.X, rng=self.streams["fit"], workers=self.spec.workers, **self.fit_kwargs)
            newly = {r: why for r, why in self.model.stopped.items() if r not in self.stopped}
        else:
            self.model.fit(train.X)
            newly = {}
        self.stopped.update(newly)
        if g == 0 and len(self.stopped) == self.spec.replicates:
            # Every replicate failing on real data is a setting problem, not collapse: fail loudly.
            raise FitError(f"every replicate failed to fit generation 0: {next(iter(self.stopped.values()))}")
        if g == 0:
            self.model0 = self.model.snapshot() if isinstance(self.model, ReplicatedModel) else None
        ctx = M.MetricContext(
            model=self.model,
            truth=self.truth,
            heldout=self.heldout,
            rngs=self.streams["metric"],
            generation=g,
            n_samples=self.spec.metric_samples,
            model_kind=self.spec.model.kind,
            cache=self.cache,
            model0=self.model0,
            aux=self.aux,
        )
        if len(self.stopped) == self.spec.replicates:  # nothing left to measure
            values = {name: np.full(self.spec.replicates, np.nan) for name in self.metric_fns}
        else:
            values = {name: np.asarray(fn(ctx), dtype=float) for name, fn in self.metric_fns.items()}
        extras = self._image_extras(ctx, train) if self.images else self._text_extras(ctx) if self.text else {}
        return Generation(g, values, provenance_counts(train.origin, g), synthetic, newly, extras)

    def _image_extras(self, ctx: M.MetricContext, train: Batch) -> dict[str, np.ndarray]:
        """A preview grid of samples (the report's first picture) and the class counts of the real training data."""
        shown = min(self.spec.replicates, PREVIEW_REPLICATES)
        if "samples" in ctx.memo:
            preview = ctx.memo["samples"][:shown, :PREVIEW_IMAGES]
        else:  # no sample-based metric selected: draw the preview from the metric streams
            preview = self.model.sample(PREVIEW_IMAGES, rng=self.streams["metric"])[:shown]
        labels = np.where(train.origin == REAL, train.labels, UNLABELLED)
        counts = np.stack([np.bincount(row[row >= 0], minlength=self.truth.n_classes) for row in labels])
        return {"preview": preview.astype(np.float32), "real_class_counts": counts}

    def _prepare_language_model(self) -> None:
        cls = MODELS.get(self.spec.model.kind)
        if "X_val" in inspect.signature(cls.fit).parameters:
            # Validation costs a forward pass per block per epoch: as many blocks as are scored for perplexity.
            self.fit_kwargs["X_val"] = self.truth.val_blocks[: self.spec.heldout_size]
        if hasattr(cls, "max_context"):
            try:
                context = make_model(self.spec, self.truth).factory().max_context()
            except (OSError, ValueError) as exc:
                raise DataError(f"model: {exc}") from None
            if 2 * self.truth.block_size > context:
                raise DataError(f"data.block_size={self.truth.block_size}: a prompt and its continuation need "
                                f"{2 * self.truth.block_size} positions, the model has {context}")

    def _text_extras(self, ctx: M.MetricContext) -> dict[str, np.ndarray]:
        """Generated token ids to read in the report, token counts for its Zipf plot, and each
        sequence's perplexity under generation 0 (the paper's histograms), when measured."""
        shown = min(self.spec.replicates, PREVIEW_REPLICATES)
        samples = ctx.memo.get("samples")
        if samples is None:
            return {}
        out = {"preview_tokens": samples[:shown, :PREVIEW_TEXTS],
               "token_counts": np.stack([np.bincount(s.ravel(), minlength=self.truth.vocab_size) for s in samples[:shown]])}
        if "sequence_perplexity" in ctx.memo:
            out["sequence_perplexity"] = ctx.memo["sequence_perplexity"][:shown]
        return out

    # -- checkpoint support -----------------------------------------------------------
    def model_state(self) -> dict[str, np.ndarray]:
        return self.model.state_dict()

    def restore(self, *, real: Batch, heldout: np.ndarray | None, model_state: dict, model0_state: dict,
                history: list[Batch], stopped: dict[int, str], stopped0: dict[int, str],
                rng_state: dict[str, np.ndarray]) -> None:
        """Put the chain back where a checkpoint left it (the loop reads the files)."""
        self.real, self.history = real, history
        self.heldout = heldout
        if self.images or self.text:
            self.heldout = self._dataset_heldout()
        self.stopped = dict(stopped)
        if isinstance(self.model, ReplicatedModel):
            self.model.load_state_dict(model_state, stopped=self.stopped)
            self.model0 = make_model(self.spec, self.truth).load_state_dict(model0_state, stopped=stopped0)
        else:
            self.model.load_state_dict(model_state)
        self.streams.load_state_arrays(rng_state)
