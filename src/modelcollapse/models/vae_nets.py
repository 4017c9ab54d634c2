"""The torch networks behind :class:`modelcollapse.models.vae.VAEModel`.

Both networks map images ``(B, H, W)`` to a diagonal Gaussian posterior (``encode`` gives
mean and log-variance) and latents ``(B, latent_dim)`` back to per-pixel Bernoulli logits
``(B, H, W)`` (``decode``). They hold no randomness: the caller seeds initialisation and
draws the reparameterisation noise, so that every random number is traceable to one seed.
"""

from __future__ import annotations

import torch
from torch import nn

class MLPVAE(nn.Module):
    """flatten -> hidden -> hidden -> (mu, logvar); the decoder mirrors it. Any image size."""

    def __init__(self, image_shape: tuple[int, int], latent_dim: int, hidden: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        d = image_shape[0] * image_shape[1]
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, d)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, *self.image_shape)


class ConvVAE(nn.Module):
    """The paper's convolutional VAE (two stride-2 convolutions each way).

    Each stride-2 layer halves (encoder) or doubles (decoder) height and width exactly, so
    the decoder reproduces the input size only when H and W are divisible by 4: 28x28 (MNIST)
    gives 7x7 feature maps, 8x8 gives 2x2.
    """

    def __init__(self, image_shape: tuple[int, int], latent_dim: int, hidden: int) -> None:
        super().__init__()
        h, w = image_shape[0] // 4, image_shape[1] // 4
        self.image_shape = tuple(image_shape)
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * h * w, hidden), nn.ReLU(),
        )  # fmt: skip
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, 64 * h * w), nn.ReLU(), nn.Unflatten(1, (64, h, w)),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x.unsqueeze(1))  # one grey channel
        return self.mu(h), self.logvar(h)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).squeeze(1)


def build_module(architecture: str, shape: tuple[int, int], latent_dim: int, hidden: int) -> nn.Module:
    """A freshly initialised network (from torch's global RNG: the caller seeds it) for images of
    ``shape``, already checked against the architecture (``vae.check_architecture``)."""
    cls = MLPVAE if architecture == "mlp" else ConvVAE
    return cls(shape, int(latent_dim), int(hidden))
