"""Convolutional VAE over 64x64 target crops (SINT++'s positive-sample generator)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

CROP_SIZE = 64


class CropVAE(nn.Module):
    """Conv encoder (64 -> 4, stride-2 convs) to ``(mu, logvar)``; deconv decoder back to 64x64.

    Crops are ``(B, 3, 64, 64)`` floats in 0..1; decoded crops likewise (sigmoid output).
    """

    def __init__(self, latent_dim: int = 64, width: int = 32) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        channels = [3, width, width * 2, width * 4, width * 8]
        encoder: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise(channels):
            encoder += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.BatchNorm2d(c_out),
                        nn.LeakyReLU(0.2)]
        self.encoder = nn.Sequential(*encoder, nn.Flatten())
        flat = channels[-1] * 4 * 4
        self.to_mu = nn.Linear(flat, latent_dim)
        self.to_logvar = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)
        decoder: list[nn.Module] = [nn.Unflatten(1, (channels[-1], 4, 4))]
        reversed_channels = channels[::-1]
        for index, (c_in, c_out) in enumerate(itertools.pairwise(reversed_channels)):
            decoder.append(nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1))
            if index < len(reversed_channels) - 2:
                decoder += [nn.BatchNorm2d(c_out), nn.ReLU()]
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mu, logvar)`` of crops ``x``."""
        hidden = self.encoder(x)
        return self.to_mu(hidden), self.to_logvar(hidden).clamp(-10.0, 10.0)

    @staticmethod
    def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """``z = mu + exp(logvar / 2) * eps``, ``eps ~ N(0, I)`` (differentiable in mu, logvar)."""
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Crops ``(B, 3, 64, 64)`` in 0..1 from codes ``z``."""
        return torch.sigmoid(self.decoder(self.from_latent(z)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar

    @torch.no_grad()
    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` crops decoded from the prior."""
        device = self.to_mu.weight.device
        z = torch.randn((count, self.latent_dim), generator=generator, device=device)
        return self.decode(z)

    @torch.no_grad()
    def positives_like(self, targets: torch.Tensor, per_target: int,
                       generator: torch.Generator | None = None) -> torch.Tensor:
        """New positives from each target's manifold: decode codes drawn from its posterior.

        ``targets (B, 3, 64, 64)`` -> ``(B * per_target, 3, 64, 64)``, target-major.
        """
        mu, logvar = self.encode(targets)
        mu = mu.repeat_interleave(per_target, dim=0)
        logvar = logvar.repeat_interleave(per_target, dim=0)
        return self.decode(self.reparameterize(mu, logvar, generator))


def vae_loss(recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, reconstruction, kl)`` per image: summed BCE + ``beta`` x KL(q(z|x) || N(0, I))."""
    batch = target.shape[0]
    reconstruction = F.binary_cross_entropy(recon, target, reduction="sum") / batch
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / batch
    return reconstruction + beta * kl, reconstruction, kl


def train_vae(vae: CropVAE, crops: torch.Tensor, steps: int, lr: float = 1e-3, batch_size: int = 16,
              beta: float = 1.0, seed: int = 0) -> list[float]:
    """Adam on random mini-batches of ``crops (N, 3, 64, 64)`` in 0..1; the loss of every step."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(vae.parameters(), lr=lr)
    vae.train()
    losses = []
    for _ in range(steps):
        index = torch.randint(len(crops), (min(batch_size, len(crops)),), generator=generator)
        batch = crops[index.to(crops.device)]
        recon, mu, logvar = vae(batch)
        loss, _, _ = vae_loss(recon, batch, mu, logvar, beta)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    vae.eval()
    return losses
