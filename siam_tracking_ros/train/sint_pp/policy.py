"""SINT++ hard-positive transformation: occlude positives where a learned policy says.

The policy sees a positive sample and outputs a categorical distribution over a ``grid x grid``
set of positions; a background patch is pasted there. Trained with REINFORCE: the reward is
SINT's matching loss between the target and the occluded sample, so the policy learns to
occlude where the matcher suffers most, i.e. it produces hard positives.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class OcclusionPolicy(nn.Module):
    """Small conv net: positive ``(B, 3, 64, 64)`` in 0..1 -> logits ``(B, grid * grid)``."""

    def __init__(self, grid: int = 6, width: int = 16) -> None:
        super().__init__()
        self.grid = grid
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(grid),
        )
        self.logits = nn.Conv2d(width * 2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x)).flatten(1)

    def act(self, x: torch.Tensor, generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample actions; return ``(actions (B,), log_probs (B,))`` (differentiable log-probs)."""
        log_probs = F.log_softmax(self(x), dim=1)
        actions = torch.multinomial(log_probs.exp().detach(), 1, generator=generator).squeeze(1)
        return actions, log_probs.gather(1, actions[:, None]).squeeze(1)


def occluder_corner(action: int, grid: int, image_size: int, patch_size: int) -> tuple[int, int]:
    """Top-left ``(row, col)`` of the patch for ``action = row_cell * grid + col_cell``."""
    row_cell, col_cell = divmod(int(action), grid)
    span = image_size - patch_size
    step = span / (grid - 1) if grid > 1 else 0.0
    return round(row_cell * step), round(col_cell * step)


def occlude(samples: torch.Tensor, patches: torch.Tensor, actions: torch.Tensor, grid: int) -> torch.Tensor:
    """Copies of ``samples (B, 3, S, S)`` with ``patches (B, 3, p, p)`` pasted where ``actions`` say."""
    out = samples.clone()
    size, patch = samples.shape[-1], patches.shape[-1]
    for index, action in enumerate(actions.tolist()):
        top, left = occluder_corner(action, grid, size, patch)
        out[index, :, top:top + patch, left:left + patch] = patches[index]
    return out


def reinforce_loss(log_probs: torch.Tensor, rewards: torch.Tensor, baseline: float | torch.Tensor = 0.0
                   ) -> torch.Tensor:
    """REINFORCE surrogate ``-mean((r - b) log π(a))``; descending it raises π of high-reward actions."""
    advantage = (rewards - baseline).detach()
    return -(advantage * log_probs).mean()


def matching_loss(embed: Callable[[torch.Tensor], torch.Tensor], targets: torch.Tensor,
                  positives: torch.Tensor) -> torch.Tensor:
    """SINT's loss on positive pairs, per pair: ``0.5 * ||f(target) - f(positive)||^2``."""
    return 0.5 * (embed(targets) - embed(positives)).pow(2).sum(dim=1)


def train_policy(policy: OcclusionPolicy, positives: torch.Tensor, patches: torch.Tensor,
                 reward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int,
                 lr: float = 1e-3, seed: int = 0) -> list[float]:
    """REINFORCE with a moving-average baseline; ``reward(positives, occluded) -> (B,)``.

    Returns the mean reward of every step.
    """
    generator = torch.Generator(device=positives.device).manual_seed(seed)
    optimizer = torch.optim.Adam(policy.parameters(), lr=lr)
    baseline: float | None = None
    history = []
    for _ in range(steps):
        actions, log_probs = policy.act(positives, generator)
        occluded = occlude(positives, patches, actions, policy.grid)
        with torch.no_grad():
            rewards = reward(positives, occluded)
        mean = float(rewards.mean())
        baseline = mean if baseline is None else 0.9 * baseline + 0.1 * mean
        loss = reinforce_loss(log_probs, rewards, baseline)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(mean)
    return history
