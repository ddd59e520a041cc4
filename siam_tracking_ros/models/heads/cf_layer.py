"""CFNet correlation-filter layer: ridge regression solved in closed form in the Fourier domain.

Convention (circular cross-correlation, multi-channel): the response of a filter ``w`` to features
``x`` is ``r[u] = sum_c sum_t w_c[t] x_c[t + u]`` (indices mod the map size), i.e.
``r̂ = sum_c conj(ŵ_c) ⊙ x̂_c``. The layer solves (Valmadre et al., CVPR 2017, eq. 4-6)::

    w = argmin_w  1/(2n) ||r(w, x) - y||² + λ/2 ||w||²
    k̂ = 1/n sum_c conj(x̂_c) ⊙ x̂_c + λ,   α̂ = 1/n ŷ / k̂,   ŵ_c = conj(α̂) ⊙ x̂_c

with ``n = H W``. The single denominator is exact for many channels (Sherman-Morrison on the
rank-one per-frequency system). Everything is torch.fft, so gradients flow to ``x``.
"""

from __future__ import annotations

import torch
from torch import nn

from siam_tracking_ros.core.geometry import cosine_window


def wrapped_gaussian(height: int, width: int, sigma: float, device: torch.device | None = None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(H, W)`` Gaussian with its peak at index ``(0, 0)``, wrapped circularly (zero shift)."""
    ys = torch.arange(height, device=device, dtype=dtype)
    xs = torch.arange(width, device=device, dtype=dtype)
    dy = torch.minimum(ys, height - ys)
    dx = torch.minimum(xs, width - xs)
    return torch.exp(-(dy[:, None] ** 2 + dx[None, :] ** 2) / (2.0 * sigma ** 2))


def solve_correlation_filter(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Closed-form CF ``w`` for features ``x (B, C, H, W)`` and desired response ``y (H, W)``.

    Returns ``w (B, C, H, W)`` minimising ``1/(2n)||sum_c w_c ⋆ x_c - y||² + λ/2 ||w||²``
    (circular cross-correlation, see the module docstring).
    """
    height, width = x.shape[-2:]
    n = float(height * width)
    x_hat = torch.fft.rfft2(x)
    y_hat = torch.fft.rfft2(y)
    k_hat = (x_hat.real ** 2 + x_hat.imag ** 2).sum(dim=1, keepdim=True) / n + lam
    alpha_hat = y_hat / (n * k_hat)
    return torch.fft.irfft2(alpha_hat.conj() * x_hat, s=(height, width))


def circular_response(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``r[u] = sum_c sum_t w_c[t] x_c[t + u]`` for ``w, x (B, C, H, W)`` -> ``(B, H, W)``."""
    height, width = x.shape[-2:]
    r_hat = (torch.fft.rfft2(w).conj() * torch.fft.rfft2(x)).sum(dim=1)
    return torch.fft.irfft2(r_hat, s=(height, width))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Central ``size x size`` window of ``(..., H, W)``."""
    height, width = x.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return x[..., top:top + size, left:left + size]


class CorrelationFilterLayer(nn.Module):
    """CFNet's CF block: cosine window, closed-form filter, crop to the exemplar size.

    The filter is learned on the whole input map (any size ``>= crop_size``); the window and the
    Gaussian label are built once per input size and device.

    Args:
        crop_size: side of the filter kept for correlation with search features.
        lam: ridge regulariser λ.
        sigma_fraction: Gaussian label σ as a fraction of ``crop_size`` (in feature cells).
    """

    def __init__(self, crop_size: int, lam: float = 0.1, sigma_fraction: float = 0.125) -> None:
        super().__init__()
        self.crop_size = crop_size
        self.lam = lam
        self.sigma = max(sigma_fraction * crop_size, 0.5)
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def constants(self, size: int, device: torch.device, dtype: torch.dtype
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine window and wrapped Gaussian label for a ``size x size`` map (cached)."""
        key = (size, str(device), dtype)
        if key not in self._constants:
            window = torch.from_numpy(cosine_window(size)).to(device=device, dtype=dtype)
            self._constants[key] = (window, wrapped_gaussian(size, size, self.sigma, device, dtype))
        return self._constants[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features ``(B, C, S, S)`` with ``S >= crop_size`` -> cropped filter ``(B, C, crop, crop)``."""
        size = x.shape[-1]
        if x.shape[-2] != size or size < self.crop_size:
            raise ValueError(f"CF layer needs square features of side >= {self.crop_size}, "
                             f"got {tuple(x.shape)}")
        # torch.fft has no fp16 path for arbitrary sizes: solve in fp32 (or fp64) and cast back
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        window, label = self.constants(size, work.device, work.dtype)
        w = solve_correlation_filter(work * window, label, self.lam)
        return center_crop(w, self.crop_size).to(x.dtype)
