"""DSiam online transforms and element-wise multi-layer fusion (Guo et al., ICCV 2017).

A transform ``T`` maps features ``s`` to ``t`` by per-channel circular convolution,
``t ≈ T ⊛ s``. It is the regularised linear regression (DSiam eq. 3 and 5)::

    T = argmin_T ||T ⊛ s - t||² + λ ||T||²   =>   T̂ = conj(ŝ) ⊙ t̂ / (conj(ŝ) ⊙ ŝ + λ)

solved per channel in the Fourier domain (unnormalised DFT; Parseval makes the per-frequency
problem the same as the spatial one). With ``prior="identity"`` the regulariser pulls ``T`` towards
the identity ``δ`` instead of zero, ``λ ||T - δ||²``, so ``T̂ = (conj(ŝ) ⊙ t̂ + λ) / (conj(ŝ) ⊙ ŝ + λ)``:
a large ``λ`` leaves the features as they are rather than erasing their weak frequencies.
The target appearance variation ``V`` maps the first frame's template features to those of frame
t-1; the background suppression ``W`` maps frame t-1's search features to their Gaussian-weighted
version. Transforms are kept in the Fourier domain.
"""

from __future__ import annotations

import torch
from torch import nn

#: what :func:`solve_transform`'s regulariser pulls the transform towards
TRANSFORM_PRIORS = ("zero", "identity")


def solve_transform(source: torch.Tensor, target: torch.Tensor, lam: float | torch.Tensor,
                    prior: str = "zero") -> torch.Tensor:
    """Fourier-domain transform ``T̂ (B, C, H, W//2+1)`` with ``T ⊛ source ≈ target``, per channel,
    regularised towards ``prior`` (``zero``: the paper's ``λ ||T||²``; ``identity``: ``λ ||T - δ||²``)."""
    if prior not in TRANSFORM_PRIORS:
        raise ValueError(f"prior must be one of {TRANSFORM_PRIORS}, got {prior!r}")
    if source.dtype not in (torch.float32, torch.float64):
        source, target = source.float(), target.float()
    s_hat = torch.fft.rfft2(source)
    t_hat = torch.fft.rfft2(target)
    power = s_hat.real ** 2 + s_hat.imag ** 2
    numerator = s_hat.conj() * t_hat
    return (numerator + lam if prior == "identity" else numerator) / (power + lam)


def relative_lambda(source: torch.Tensor, lam: float) -> torch.Tensor:
    """``λ`` scaled by the mean spectral power of ``source`` (``H W`` times its mean square, Parseval),
    so that the regulariser does not depend on the feature magnitude. A 0-d tensor (no host sync)."""
    height, width = source.shape[-2:]
    return lam * height * width * source.float().pow(2).mean().clamp_min(1e-12)


def apply_transform(transform_hat: torch.Tensor | None, features: torch.Tensor) -> torch.Tensor:
    """``T ⊛ features`` (circular, per channel); identity when ``transform_hat`` is None."""
    if transform_hat is None:
        return features
    height, width = features.shape[-2:]
    work = features if features.dtype in (torch.float32, torch.float64) else features.float()
    out = torch.fft.irfft2(transform_hat * torch.fft.rfft2(work), s=(height, width))
    return out.to(features.dtype)


def gaussian_map(height: int, width: int, center: tuple[float, float], sigma: tuple[float, float],
                 device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(H, W)`` Gaussian weight map, peak 1 at ``center = (cy, cx)`` with ``sigma = (sy, sx)``."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    gy = torch.exp(-((ys - center[0]) ** 2) / (2.0 * sigma[0] ** 2))
    gx = torch.exp(-((xs - center[1]) ** 2) / (2.0 * sigma[1] ** 2))
    return gy[:, None] * gx[None, :]


class ElementwiseFusion(nn.Module):
    """Fuse ``L`` response maps with learned per-position weights, softmax-normalised over layers.

    ``S = sum_l W_l ⊙ S_l`` with ``sum_l W_l = 1`` at every position (DSiam eq. 7).
    """

    def __init__(self, num_layers: int, size: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(num_layers, size, size))

    def weights(self) -> torch.Tensor:
        """``(L, H, W)`` fusion weights, each position summing to 1 over layers."""
        return torch.softmax(self.logits, dim=0)

    def forward(self, responses: list[torch.Tensor]) -> torch.Tensor:
        """``L`` maps of ``(B, 1, H, W)`` -> fused ``(B, 1, H, W)``."""
        stacked = torch.stack(responses, dim=0)
        weights = self.weights().to(stacked.dtype)[:, None, None]
        return (stacked * weights).sum(dim=0)
