"""Run by test_distributed.py, as one process or as several under ``torchrun``.

``python dist_worker.py OUT [REFERENCE]``: fits a tiny transformer from a fixed seed and saves
its weights and loss history (OUT/fit.npz); then loads the weights in REFERENCE (or its own),
samples and scores with fixed seeds and saves the results (OUT/use.npz). Only the main
process writes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from modelcollapse import distributed
from modelcollapse.models.transformer import TransformerModel

V = 10
# 19 blocks in minibatches of 6: the last one has a single row, so one of two processes gets
# none; 10 prompts in chunks of 3: four chunks dealt unevenly to two processes.
PARAMS = dict(vocab_size=V, gen_tokens=5, n_layer=1, n_head=2, n_embd=16, context=32, batch_size=6, epochs=2,
              lr=3e-3, gen_batch_size=3, device="auto")


def data() -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(3)
    cycle = np.arange(2, V)
    train = cycle[(g.integers(len(cycle), size=19)[:, None] + np.arange(12)) % len(cycle)]
    prompts = g.integers(V, size=(10, 7))
    return train, prompts


def main(out: Path, reference: Path | None) -> None:
    train, prompts = data()
    m = TransformerModel(**PARAMS).fit(train, rng=np.random.default_rng(0), X_val=train[:7])
    state = m.state_dict()
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "fit.npz", train_loss=[h["train_loss"] for h in m.history_],
                 val_loss=[h["val_loss"] for h in m.history_], **{f"w/{k}": v for k, v in state.items()})  # fmt: skip
    if reference is not None:
        with np.load(reference / "fit.npz") as z:
            m = TransformerModel(**PARAMS).load_state_dict({k[2:]: z[k] for k in z.files if k.startswith("w/")})
    tokens = m.sample(len(prompts), rng=np.random.default_rng(5), prompts=prompts)
    scores = m.token_log_probs(np.concatenate([train, train[:3]]))
    if distributed.is_main():
        np.savez(out / "use.npz", tokens=tokens, scores=scores, world=distributed.world_size())


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else None)
