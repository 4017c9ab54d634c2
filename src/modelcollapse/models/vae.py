"""Variational autoencoder on grey-level images (the paper's second family), in PyTorch.

Every random number comes from the numpy generator passed to ``fit``/``sample``: ``fit`` draws
one seed from it, and initialisation, reparameterisation noise and minibatch order are all
derived from that seed, without touching torch's global RNG state.
"""

from __future__ import annotations

import contextlib
import copy
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import numpy as np
from pydantic import Field

from ..errors import DataError
from ..lazy import TORCH_HINT, F, torch
from ..params import FROM_DATA
from .base import RNG, BaseModel, draw
from .family import register_model
from .torch_common import DEVICES, Device, fixed_threads, load_weights, resolve_device, save_weights

ARCHITECTURES = ("mlp", "conv")
DECODES = ("mean", "bernoulli")
#: Images per forward pass outside training: bounds memory (5,000 28x28 images in one conv pass
#: would hold ~1 GB of activations) while keeping the per-call overhead negligible.
CHUNK = 1024
#: Seed of the reparameterisation noise in ``log_prob``: fixed, so the estimate is deterministic.
ELBO_SEED = 0


class VAEModel(BaseModel):
    """VAE with a standard-normal prior, a diagonal Gaussian posterior and a Bernoulli decoder.

    Trained by maximising the ELBO (binary cross-entropy with logits on grey values in [0, 1],
    summed over pixels, plus the analytic KL to N(0, I), averaged over the images of a batch)
    with Adam. Each ``fit`` trains a fresh network unless ``warm_start``.

    Parameters
    ----------
    image_shape : (int, int)
        Height and width of the images ``fit`` receives, ``(n, H, W)``.
    architecture : {"mlp", "conv"}
        ``"mlp"``: two hidden layers each way, any image size. ``"conv"``: the paper's
        convolutional VAE (two stride-2 convolutions each way); H and W must be divisible by
        4 (28x28 MNIST, 8x8 digits), otherwise ``fit`` raises ``ValueError`` naming the shape.
    latent_dim : int
        Size of the latent space (the paper uses 20 on MNIST).
    hidden : int
        Width of the hidden fully connected layers.
    epochs, batch_size, lr : int, int, float
        Passes over the data per fit, minibatch size, Adam learning rate (paper: 30, 256, 1e-3).
    decode : {"mean", "bernoulli"}
        What ``sample`` returns: the decoder's pixel probabilities (the paper's default, grey
        images) or a binary image drawn from them.
    warm_start : bool
        If True and the model is already fitted, ``fit`` continues from the current weights
        (with a fresh optimiser) instead of a new random initialisation.
    device : {"auto", "cpu", "cuda"}
        Where to train; "auto" picks CUDA when available. Results are returned on the CPU.
        Bit-for-bit reproducibility is promised on the CPU only.
    threads : int or None
        Intra-op threads torch uses during ``fit``/``sample``/``log_prob`` on the CPU (the
        previous setting is restored afterwards). Float sums are split differently for
        different thread counts, so the same seed gives different weights with 1 and 2
        threads; fixing the count keeps results independent of the worker process they run
        in. ``None`` leaves torch's setting alone (faster on a free machine, not reproducible
        across machines or worker counts).

    Attributes
    ----------
    module_ : torch.nn.Module
        The fitted network (``encode(x) -> (mu, logvar)``, ``decode(z) -> logits``).
    history_ : list of float
        Mean training loss (negative ELBO per image, nats) of each epoch of the last fit.
    n_iter_ : int
        Epochs run by the last fit.

    Notes
    -----
    ``log_prob`` is the ELBO, a lower bound on log p(x), estimated with one reparameterised
    sample per image from a fixed-seed stream (deterministic, unbiased for the ELBO). For grey
    (non-binary) pixels the Bernoulli "likelihood" is not a normalised density, so the values
    compare models on the same images rather than give calibrated log densities.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((64, 8, 8))
    >>> m = VAEModel(epochs=1, hidden=32, latent_dim=2, device="cpu").fit(X, rng=rng)
    >>> m.sample(3, rng=rng).shape
    (3, 8, 8)
    >>> m.log_prob(X[:5]).shape, m.encode(X[:5]).shape
    ((5,), (5, 2))
    """

    batched = False
    data_type = "image"
    default_metrics = ("latent_std", "nll", "class_kl", "class_histogram", "minority_share", "pixel_diversity",
                       "frechet_distance")
    requires = (("torch", TORCH_HINT),)

    def __init__(
        self,
        *,
        image_shape: Annotated[tuple[int, int], FROM_DATA] = (8, 8),
        architecture: Literal["mlp", "conv"] = "mlp",
        latent_dim: Annotated[int, Field(ge=1)] = 8,
        hidden: Annotated[int, Field(ge=1)] = 256,
        epochs: Annotated[int, Field(ge=1)] = 30,
        batch_size: Annotated[int, Field(ge=1)] = 256,
        lr: Annotated[float, Field(gt=0)] = 1e-3,
        decode: Literal["mean", "bernoulli"] = "mean",
        warm_start: bool = False,
        device: Device = "auto",
        # CPU threads per fit; a fixed count keeps results identical whatever the number of workers
        # (torch's CPU kernels round differently with different thread counts). None: torch's default.
        threads: Annotated[Optional[int], Field(ge=1)] = 1,
    ) -> None:
        self.image_shape = image_shape
        self.architecture = architecture
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.decode = decode
        self.warm_start = warm_start
        self.device = device
        self.threads = threads

    # -- fitting -------------------------------------------------------------------------
    def fit(self, X: np.ndarray, *, rng: Optional[np.random.Generator] = None) -> "VAEModel":
        self._validate()
        X = self._check_images(X)
        if len(X) == 0:
            raise ValueError("cannot fit a VAE on 0 images")
        seed = 0 if rng is None else int(rng.integers(2**63))
        # Three independent child seeds, so that initialisation, noise and minibatch order are
        # separate streams (reusing one seed would correlate init weights with the noise).
        init_seed, noise_seed, order_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(3, np.uint64))
        device = self._device()
        with self._threads():
            if not (self.warm_start and hasattr(self, "module_")):
                # fork_rng: seeding torch's global generator here must not change anyone else's draws.
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(init_seed)
                    # Built on the CPU, then moved: the same seed gives the same init on any device.
                    self.module_ = self._build()
            module = self.module_.to(device).train()
            noise = torch.Generator(device=device).manual_seed(noise_seed)
            order = np.random.default_rng(order_seed)
            opt = torch.optim.Adam(module.parameters(), lr=self.lr)
            data = torch.as_tensor(X, dtype=torch.float32, device=device)
            n, bs = len(data), int(self.batch_size)
            history = []
            for _ in range(int(self.epochs)):
                perm = torch.as_tensor(order.permutation(n), device=device)
                total = 0.0
                for s in range(0, n, bs):
                    xb = data[perm[s : s + bs]]
                    loss = _neg_elbo(module, xb, noise).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(xb)  # float() syncs once a batch; fine at these sizes
                history.append(total / n)
            module.eval()
        self.history_ = history
        self.n_iter_ = int(self.epochs)
        return self

    # -- using a fitted model ------------------------------------------------------------
    def sample(self, n: int, *, rng: RNG) -> np.ndarray:
        """``n`` images decoded from prior draws ``z ~ N(0, I)``, float32 in [0, 1], ``(n, H, W)``.

        ``z`` (and, for ``decode="bernoulli"``, the pixel draws) come from ``rng`` itself, so
        the samples depend on the generator's state only, not on torch's. A list of R
        generators gives ``(R, n, H, W)``, replicate r drawn with generator r alone.
        """
        self._check_fitted()
        n = int(n)

        def one(g: np.random.Generator) -> np.ndarray:
            z = g.standard_normal((n, int(self.latent_dim)))
            p = self._map(lambda zb: torch.sigmoid(self.module_.decode(zb)), z, (n, *self._shape()))
            if self.decode == "bernoulli":
                return (g.random(p.shape) < p).astype(np.float32)
            return p

        return draw(rng, one)

    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Per-image ELBO in nats (float64, ``(n,)``); a deterministic single-sample estimate.

        The noise comes from a fixed-seed numpy stream drawn for all of ``X`` at once, so
        ``log_prob(X)[:k] == log_prob(X[:k])`` and the result does not depend on chunking
        or device RNG.
        """
        self._check_fitted()
        X = self._check_images(X)
        eps = np.random.default_rng(ELBO_SEED).standard_normal((len(X), int(self.latent_dim)))
        both = np.concatenate([X.reshape(len(X), -1), eps], axis=1)  # chunk images and noise together
        d = int(np.prod(self._shape()))

        def elbo(b: torch.Tensor) -> torch.Tensor:
            xb, e = b[:, :d].view(-1, *self._shape()), b[:, d:]
            return -_neg_elbo(self.module_, xb, eps=e)

        return self._map(elbo, both, (len(X),)).astype(np.float64)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """Posterior means ``(n, latent_dim)`` (the paper's latent-spread metric reads these)."""
        self._check_fitted()
        X = self._check_images(X)
        return self._map(lambda xb: self.module_.encode(xb)[0], X, (len(X), int(self.latent_dim)))

    # -- state ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {k: v.detach().cpu().numpy().copy() for k, v in self.module_.state_dict().items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> "VAEModel":
        self._validate()
        module = self._build()
        # float32 cast: ReplicatedModel stacks replicate states as float64 arrays.
        tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32)) for k, v in state.items()}
        module.load_state_dict(tensors, strict=True)  # strict: a wrong architecture fails loudly
        self.module_ = module.eval()
        return self

    def save(self, path: Union[str, Path]) -> None:
        """Weights as a safetensors file, hyperparameters as JSON in its metadata (no pickle)."""
        params = {**self.get_params(), "image_shape": list(self._shape())}
        save_weights(path, self.state_dict(), {"class": type(self).__name__, "hyperparameters": json.dumps(params)})

    @classmethod
    def load(cls, path: Union[str, Path], *, device: Optional[str] = None) -> "VAEModel":
        """Rebuild a model written by :meth:`save`; ``device`` overrides the saved one."""
        state, meta = load_weights(path, cls.__name__)
        params: dict[str, Any] = json.loads(meta["hyperparameters"])
        params["image_shape"] = tuple(params["image_shape"])
        if device is not None:
            params["device"] = device
        return cls(**params).load_state_dict(state)

    def __getstate__(self) -> dict[str, Any]:
        # Pickles (joblib ships fitted models between processes) always hold CPU weights, so
        # they load in a process without CUDA; methods move the module to the device again.
        state = self.__dict__.copy()
        if "module_" in state and next(state["module_"].parameters()).device.type != "cpu":
            state["module_"] = copy.deepcopy(state["module_"]).cpu()
        return state

    @classmethod
    def state_nbytes(cls, params, example_nbytes, train_size):
        pixels, h, z = example_nbytes // 4, params["hidden"], params["latent_dim"]
        if params["architecture"] == "mlp":
            weights = 2 * (pixels * h + h * h + 2 * h * z)
        else:  # two 4x4 convolutions each way, and a dense layer between 64 x (H/4) x (W/4) features and h
            weights = 2 * 4 * pixels * h + 2 * 32 * 64 * 16 + 4 * h * z
        return 4 * weights  # float32 weights

    @classmethod
    def fit_nbytes(cls, params, example_nbytes, train_size):
        return 3 * cls.state_nbytes(params, example_nbytes, train_size) + 4 * train_size * example_nbytes  # grads, Adam

    @classmethod
    def check_source(cls, params: dict[str, Any], source: Any) -> None:
        shape = tuple(source.truth.image_shape)
        if params.get("architecture") == "conv" and any(s % 4 for s in shape):
            raise DataError(
                f"model.architecture='conv' needs image sides divisible by 4 (MNIST's 28x28); "
                f"data.kind={source.spec.kind!r} has {shape}: use architecture 'mlp'"
            )

    # -- helpers -------------------------------------------------------------------------
    def _shape(self) -> tuple[int, int]:
        return check_architecture(self.architecture, self.image_shape)

    def _build(self) -> torch.nn.Module:
        from .vae_nets import build_module  # defines torch modules: imported when a network is built

        return build_module(self.architecture, self._shape(), int(self.latent_dim), int(self.hidden))

    def _validate(self) -> None:
        check_architecture(self.architecture, self.image_shape)
        for name in ("latent_dim", "hidden", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.epochs) < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs!r}")
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {self.decode!r}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.threads is not None and int(self.threads) < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads!r}")

    def _check_images(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        shape = self._shape()
        if X.ndim != 3 or X.shape[1:] != shape:
            raise ValueError(f"X must have shape (n, {shape[0]}, {shape[1]}) to match image_shape={shape}, got {X.shape}")
        if X.size and not (np.isfinite(X).all() and X.min() >= 0 and X.max() <= 1):
            raise ValueError("image values must be finite and in [0, 1] (Bernoulli decoder on grey levels)")
        return X

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _threads(self) -> contextlib.AbstractContextManager:
        return fixed_threads(self.threads, self._device())

    def _map(self, fn: Any, inputs: np.ndarray, out_shape: tuple[int, ...]) -> np.ndarray:
        """Apply ``fn`` to ``inputs`` in chunks of CHUNK rows without autograd; numpy float32 out."""
        device = self._device()
        out = np.empty(out_shape, dtype=np.float32)
        with self._threads(), torch.no_grad():
            self.module_.to(device).eval()  # in place (nn.Module.to); fn reads self.module_
            for s in range(0, len(inputs), CHUNK):
                b = torch.as_tensor(np.asarray(inputs[s : s + CHUNK], dtype=np.float32), device=device)
                out[s : s + CHUNK] = fn(b).cpu().numpy()
        return out


def _neg_elbo(
    module: torch.nn.Module, x: torch.Tensor, noise: Optional[torch.Generator] = None, eps: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Per-image negative ELBO: Bernoulli reconstruction (summed over pixels) + KL(q(z|x) || N(0, I))."""
    mu, logvar = module.encode(x)
    if eps is None:
        eps = torch.randn(mu.shape, generator=noise, device=mu.device, dtype=mu.dtype)
    z = mu + torch.exp(0.5 * logvar) * eps  # reparameterisation: gradients flow through mu, logvar
    logits = module.decode(z)
    rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
    return rec + kl


def check_architecture(architecture: str, image_shape: tuple[int, ...]) -> tuple[int, int]:
    """Validate the (architecture, image_shape) pair; return the shape as a tuple of ints.

    Raises ``ValueError`` naming ``image_shape`` and the shape that is needed, so a bad spec
    fails before any training (the engine turns a ValueError in ``fit`` into a stopped replicate,
    which is why the message has to say what to change).
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"image_shape must be (height, width) with positive sizes, got image_shape={tuple(image_shape)}")
    if architecture == "conv" and (shape[0] % 4 or shape[1] % 4):
        raise ValueError(
            f"architecture='conv' needs image_shape with height and width divisible by 4 "
            f"(two stride-2 layers each way), e.g. (28, 28) for MNIST or (8, 8); got image_shape={shape}. "
            f"Pad or resize the images, or use architecture='mlp', which takes any size."
        )
    return shape  # type: ignore[return-value]


register_model("vae", VAEModel)
