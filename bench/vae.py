"""Benchmark: VAEModel training speed against a plain PyTorch loop, generation cycles, peak memory.

(a) Training images/s of ``VAEModel.fit`` against a hand-written training loop of the same
    network (defined below, independently of the package), on the same data, epochs and batch
    size, at the same torch thread count (torch's default, and 1); and the cost of
    ``threads=1`` (the default, which makes results independent of the worker's thread count).
(b) Generation-cycle seconds (fit + sample ``train_size`` images): the MLP VAE on 8x8 digits
    and the conv VAE on 28x28 digits (scikit-learn's digits upscaled to MNIST size).
(c) Peak memory: ``ru_maxrss`` of a fresh process that ran only that measurement (a process's
    maxrss never goes down, so measurements run in separate spawned processes), and
    ``torch.cuda.max_memory_allocated`` on CUDA.

    python bench/vae.py [--device auto] [--repeats 3] [--epochs 20] [--conv-size 2000] [--conv-epochs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modelcollapse.models.vae import VAEModel


# -- the reference: a plain PyTorch VAE and training loop, as one would write it by hand ---------
class PlainMLPVAE(nn.Module):
    def __init__(self, d: int, latent: int, hidden: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.dec(z), mu, logvar


class PlainConvVAE(nn.Module):
    def __init__(self, side: int, latent: int, hidden: int) -> None:
        super().__init__()
        s = side // 4
        self.enc = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * s * s, hidden), nn.ReLU(),
        )  # fmt: skip
        self.mu, self.logvar = nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec = nn.Sequential(
            nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, 64 * s * s), nn.ReLU(), nn.Unflatten(1, (64, s, s)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.enc(x)
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        return self.dec(z), mu, logvar


def plain_fit(X: np.ndarray, arch: str, latent: int, hidden: int, epochs: int, batch: int, lr: float, device: str) -> nn.Module:
    torch.manual_seed(0)
    n, side = len(X), X.shape[1]
    net = (PlainMLPVAE(side * side, latent, hidden) if arch == "mlp" else PlainConvVAE(side, latent, hidden)).to(device)
    data = torch.as_tensor(X, dtype=torch.float32, device=device)
    data = data.reshape(n, -1) if arch == "mlp" else data.unsqueeze(1)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(n, device=device)
        for s in range(0, n, batch):
            xb = data[perm[s : s + batch]]
            logits, mu, logvar = net(xb)
            rec = F.binary_cross_entropy_with_logits(logits, xb, reduction="none").flatten(1).sum(1)
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
            loss = (rec + kl).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net


# -- data ------------------------------------------------------------------------------------
def digits(n: int, side: int) -> np.ndarray:
    """scikit-learn's 8x8 digits in [0, 1], upscaled (bilinear) to side x side, n of them."""
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits

    X = load_digits().images / 16.0
    if side != 8:
        X = zoom(X, (1, side / 8, side / 8), order=1)
    X = np.clip(X, 0, 1).astype(np.float32)
    return X[np.random.default_rng(0).integers(len(X), size=n)] if n > len(X) else X[:n]


# -- measurements, each in a fresh process -------------------------------------------------------
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn: Any, device: str) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _memory(device: str, baseline_kb: int) -> dict:
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda_mb = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else float("nan")
    return {"rss_mb": peak_kb / 1024, "rss_delta_mb": (peak_kb - baseline_kb) / 1024, "cuda_mb": cuda_mb}


def _model(case: dict, threads: int | None) -> VAEModel:
    side = case["side"]
    return VAEModel(image_shape=(side, side), architecture=case["arch"], latent_dim=case["latent"], hidden=case["hidden"],
                    epochs=case["epochs"], batch_size=256, lr=1e-3, device=case["device"], threads=threads)  # fmt: skip


def throughput(case: dict) -> dict:
    """(a) in one process: the trainers take turns, round after round, and each keeps its best
    time, so a burst of load from elsewhere on the machine hits them all alike."""
    device, X = case["device"], digits(case["n"], case["side"])
    default_threads = torch.get_num_threads()
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    hp = dict(latent=case["latent"], hidden=case["hidden"], epochs=case["epochs"], batch=256, lr=1e-3)

    def plain(threads: int) -> None:
        torch.set_num_threads(threads)
        try:
            plain_fit(X, case["arch"], device=device, **hp)
        finally:
            torch.set_num_threads(default_threads)

    trainers = {
        f"plain loop, {default_threads} thr": lambda: plain(default_threads),
        "VAEModel threads=None": lambda: _model(case, None).fit(X, rng=np.random.default_rng(0)),
        "plain loop, 1 thr": lambda: plain(1),
        "VAEModel threads=1": lambda: _model(case, 1).fit(X, rng=np.random.default_rng(0)),
    }
    for fn in trainers.values():
        fn()  # warm-up: the first fit in a process pays one-off kernel and allocator set-up (~1 s)
    best = {name: np.inf for name in trainers}
    for _ in range(case["repeats"]):
        for name, fn in trainers.items():
            best[name] = min(best[name], _timed(fn, device))
    rate = {name: case["n"] * case["epochs"] / t for name, t in best.items()}
    return {"rate": rate, "default_threads": default_threads, **_memory(device, baseline_kb)}


def cycle(case: dict) -> dict:
    """(b) one generation: fit on train_size images, then sample the next train_size images."""
    device, X = case["device"], digits(case["n"], case["side"])
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # after imports and data
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model = _model(case, 1)
    fn = lambda: model.fit(X, rng=np.random.default_rng(0)).sample(len(X), rng=np.random.default_rng(1))  # noqa: E731
    fn()  # warm-up, as above
    seconds = min(_timed(fn, device) for _ in range(case["repeats"]))
    return {"seconds": seconds, **_memory(device, baseline_kb)}


def in_fresh_process(fn: Any, case: dict) -> dict:
    # spawn: a new interpreter, so ru_maxrss (which never decreases) is this measurement's own
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, (case,))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=20, help="epochs of the 8x8 throughput comparison (a)")
    p.add_argument("--mlp-size", type=int, default=1000, help="train_size of the 8x8 MLP cycle (b)")
    p.add_argument("--mlp-epochs", type=int, default=30)
    p.add_argument("--conv-size", type=int, default=2000, help="train_size of the 28x28 conv runs (a, b)")
    p.add_argument("--conv-epochs", type=int, default=3)
    a = p.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    t_start = time.perf_counter()
    base = dict(device=device, repeats=a.repeats, latent=20, hidden=256)
    mlp = dict(base, arch="mlp", side=8, n=1797, epochs=a.epochs)
    conv = dict(base, arch="conv", side=28, n=a.conv_size, epochs=a.conv_epochs)
    tput = {"mlp 8x8": in_fresh_process(throughput, mlp), "conv 28x28": in_fresh_process(throughput, conv)}
    cycles = {
        f"mlp 8x8, n={a.mlp_size}, {a.mlp_epochs} ep": in_fresh_process(
            cycle, dict(mlp, n=a.mlp_size, epochs=a.mlp_epochs, latent=8)),
        f"conv 28x28, n={a.conv_size}, {a.conv_epochs} ep": in_fresh_process(cycle, conv),
    }  # fmt: skip

    T = tput["mlp 8x8"]["default_threads"]
    dev = torch.cuda.get_device_name() if device == "cuda" else f"cpu ({T} torch threads by default)"
    print(f"VAE benchmark on {dev}; torch {torch.__version__}; best of {a.repeats} after a warm-up; batch 256, latent 20, hidden 256")
    print(f"\n(a) training throughput: {a.epochs} epochs on 1797 8x8 digits; {a.conv_epochs} epochs on {a.conv_size} 28x28 digits")
    print(f"  {'network':<11} {'trainer':<22} {'images/s':>9} {'vs plain, same thr':>18}")
    for net, r in tput.items():
        rate = r["rate"]
        for name, v in rate.items():
            ref = rate[f"plain loop, {r['default_threads']} thr"] if "None" in name else rate["plain loop, 1 thr"]
            print(f"  {net:<11} {name:<22} {v:>9,.0f} {'' if name.startswith('plain') else f'{v / ref:.2f}x':>18}")
        cost = rate["VAEModel threads=None"] / rate["VAEModel threads=1"]
        print(f"  {net:<11} threads=1 is {cost:.2f}x slower than threads=None ({r['default_threads']} threads)")
    print("\n(b) generation cycle: fit + sample train_size images (VAEModel defaults: threads=1)")
    print(f"  {'case':<28} {'seconds':>8}")
    for name, r in cycles.items():
        print(f"  {name:<28} {r['seconds']:>8.2f}")
    conv_rate = tput["conv 28x28"]["rate"]["VAEModel threads=1"]
    print(f"  paper scale (60,000 MNIST images x 30 epochs, threads=1): ~{60_000 * 30 / conv_rate / 60:.0f} min per generation per replicate")
    print("\n(c) peak memory of each measurement's own process (+: growth after imports and data)")
    print(f"  {'process':<34} {'RSS MB':>7} {'+MB':>6} {'CUDA MB':>8}")
    for name, r in [*((f"(a) {k}", v) for k, v in tput.items()), *((f"(b) {k}", v) for k, v in cycles.items())]:
        print(f"  {name:<34} {r['rss_mb']:>7.0f} {r['rss_delta_mb']:>+6.0f} {r['cuda_mb']:>8.1f}")
    print(f"\ntotal {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
