"""The defining mechanisms of the SiamFC-derived seed trackers, each on its own."""

from __future__ import annotations

import pytest
import torch

from siam_tracking_ros.models.heads.attention import (
    ChannelAttention,
    RASNetAttention,
    grid_max_pool,
    weighted_xcorr,
)
from siam_tracking_ros.models.heads.cf_layer import (
    CorrelationFilterLayer,
    circular_response,
    solve_correlation_filter,
    wrapped_gaussian,
)
from siam_tracking_ros.models.heads.dsiam_transforms import (
    ElementwiseFusion,
    apply_transform,
    solve_transform,
)
from siam_tracking_ros.models.heads.xcorr import xcorr_plain


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- CFNet

def _correlation_matrix(x: torch.Tensor) -> torch.Tensor:
    """A with ``(A w)[u] = sum_c sum_t w_c[t] x_c[t + u]`` (circular) for one ``x (C, H, W)``."""
    _, height, width = x.shape
    rows = []
    for uy in range(height):
        for ux in range(width):
            shifted = torch.roll(x, shifts=(-uy, -ux), dims=(1, 2))  # shifted[c, t] = x[c, t + u]
            rows.append(shifted.reshape(-1))
    return torch.stack(rows)  # (n, C n)


def test_cf_closed_form_matches_linear_system() -> None:
    x = torch.randn(1, 3, 5, 4, generator=_gen(1), dtype=torch.float64)
    y = torch.randn(5, 4, generator=_gen(2), dtype=torch.float64)
    lam = 0.3
    w = solve_correlation_filter(x, y, lam)
    a = _correlation_matrix(x[0])
    n = a.shape[0]
    system = a.T @ a / n + lam * torch.eye(a.shape[1], dtype=torch.float64)
    direct = torch.linalg.solve(system, a.T @ y.reshape(-1) / n)
    torch.testing.assert_close(w[0].reshape(-1), direct, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(circular_response(w, x)[0].reshape(-1), a @ direct, rtol=1e-9, atol=1e-10)


def test_cf_layer_gradcheck() -> None:
    x = torch.randn(1, 2, 4, 4, generator=_gen(3), dtype=torch.float64, requires_grad=True)
    y = wrapped_gaussian(4, 4, 1.0, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda inp: solve_correlation_filter(inp, y, 0.1), (x,))
    layer = CorrelationFilterLayer(crop_size=4, lam=0.05)
    x6 = torch.randn(1, 2, 6, 6, generator=_gen(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x6,))


def test_cf_filter_peaks_on_the_learned_target() -> None:
    # with small λ the CF reproduces the Gaussian label on its own training features
    x = torch.randn(1, 8, 16, 16, generator=_gen(5))
    y = wrapped_gaussian(16, 16, 1.5)
    w = solve_correlation_filter(x, y, 1e-4)
    response = circular_response(w, x)[0]
    assert int(response.argmax()) == 0
    torch.testing.assert_close(response, y, rtol=0, atol=1e-2)


# ---------------------------------------------------------------- DSiam

def _convolution_matrix(s: torch.Tensor) -> torch.Tensor:
    """B with ``(B T)[u] = sum_t T[t] s[u - t]`` (circular) for one channel ``s (H, W)``."""
    height, width = s.shape
    columns = []
    for ty in range(height):
        for tx in range(width):
            columns.append(torch.roll(s, shifts=(ty, tx), dims=(0, 1)).reshape(-1))
    return torch.stack(columns, dim=1)


def test_dsiam_transform_matches_least_squares() -> None:
    source = torch.randn(1, 2, 4, 5, generator=_gen(6), dtype=torch.float64)
    target = torch.randn(1, 2, 4, 5, generator=_gen(7), dtype=torch.float64)
    lam = 0.2
    t_hat = solve_transform(source, target, lam)
    spatial = torch.fft.irfft2(t_hat, s=(4, 5))
    for c in range(2):
        b = _convolution_matrix(source[0, c])
        direct = torch.linalg.solve(b.T @ b + lam * torch.eye(20, dtype=torch.float64),
                                    b.T @ target[0, c].reshape(-1))
        torch.testing.assert_close(spatial[0, c].reshape(-1), direct, rtol=1e-9, atol=1e-10)
        mapped = apply_transform(t_hat, source)[0, c].reshape(-1)
        torch.testing.assert_close(mapped, b @ direct, rtol=1e-9, atol=1e-10)


def test_dsiam_identity_prior_matches_least_squares_towards_delta() -> None:
    """argmin ||T ⊛ s - t||² + λ ||T - δ||² solved directly, against the Fourier solution."""
    source = torch.randn(1, 2, 4, 5, generator=_gen(16), dtype=torch.float64)
    target = torch.randn(1, 2, 4, 5, generator=_gen(17), dtype=torch.float64)
    lam = 0.7
    spatial = torch.fft.irfft2(solve_transform(source, target, lam, prior="identity"), s=(4, 5))
    delta = torch.zeros(20, dtype=torch.float64)
    delta[0] = 1.0
    for c in range(2):
        b = _convolution_matrix(source[0, c])
        direct = torch.linalg.solve(b.T @ b + lam * torch.eye(20, dtype=torch.float64),
                                    b.T @ target[0, c].reshape(-1) + lam * delta)
        torch.testing.assert_close(spatial[0, c].reshape(-1), direct, rtol=1e-9, atol=1e-10)
    # a huge λ leaves the features unchanged (the zero prior would erase them)
    huge = solve_transform(source, target, 1e9, prior="identity")
    torch.testing.assert_close(apply_transform(huge, source), source, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="prior"):
        solve_transform(source, target, lam, prior="one")


def test_dsiam_transform_identity_and_none() -> None:
    source = torch.randn(1, 3, 6, 6, generator=_gen(8))
    assert apply_transform(None, source) is source
    t_hat = solve_transform(source, source, 1e-6)
    torch.testing.assert_close(apply_transform(t_hat, source), source, rtol=0, atol=1e-3)


def test_fusion_weights_sum_to_one() -> None:
    fusion = ElementwiseFusion(num_layers=3, size=5)
    with torch.no_grad():
        fusion.logits.copy_(torch.randn(3, 5, 5, generator=_gen(9)) * 3)
    weights = fusion.weights()
    torch.testing.assert_close(weights.sum(dim=0), torch.ones(5, 5))
    maps = [torch.full((2, 1, 5, 5), float(v)) for v in (1.0, 2.0, 3.0)]
    expected = sum(w * m for w, m in zip(weights, maps, strict=True))
    torch.testing.assert_close(fusion(maps), expected)


# ---------------------------------------------------------------- RASNet

def test_weighted_xcorr_matches_loop() -> None:
    g = _gen(10)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    z = torch.randn(2, 3, 3, 2, generator=g, dtype=torch.float64)
    gamma = torch.rand(2, 1, 3, 2, generator=g, dtype=torch.float64)
    beta = torch.rand(2, 3, generator=g, dtype=torch.float64)
    out = weighted_xcorr(x, z, gamma, beta)
    assert out.shape == (2, 1, 5, 5)
    for b in range(2):
        for u in range(5):
            for v in range(5):
                value = sum(beta[b, c] * gamma[b, 0, i, j] * z[b, c, i, j] * x[b, c, i + u, j + v]
                            for c in range(3) for i in range(3) for j in range(2))
                torch.testing.assert_close(out[b, 0, u, v], value)


def test_weighted_xcorr_uniform_is_plain() -> None:
    x = torch.randn(2, 4, 9, 9, generator=_gen(11))
    z = torch.randn(2, 4, 3, 3, generator=_gen(12))
    out = weighted_xcorr(x, z, torch.ones(2, 1, 3, 3), torch.ones(2, 4))
    torch.testing.assert_close(out, xcorr_plain(x, z))


def test_rasnet_attention_shapes_and_start() -> None:
    attention = RASNetAttention(channels=16, template_size=6)
    z = torch.randn(2, 16, 6, 6, generator=_gen(13))
    gamma, beta = attention(z)
    assert gamma.shape == (2, 1, 6, 6) and beta.shape == (2, 16)
    torch.testing.assert_close(gamma, torch.ones_like(gamma))  # residual starts at zero
    assert bool(((beta > 0) & (beta < 1)).all())


# ---------------------------------------------------------------- SA-Siam

def test_grid_max_pool_matches_loop() -> None:
    features = torch.randn(2, 3, 11, 10, generator=_gen(14))
    pooled = grid_max_pool(features, inner=4)
    rows, cols = [0, 3, 7, 11], [0, 3, 7, 10]
    for b in range(2):
        for c in range(3):
            for i in range(3):
                for j in range(3):
                    best = max(float(features[b, c, y, x])
                               for y in range(rows[i], rows[i + 1]) for x in range(cols[j], cols[j + 1]))
                    assert float(pooled[b, c, 3 * i + j]) == best


def test_channel_attention_shared_mlp() -> None:
    attention = ChannelAttention(inner=6)
    features = torch.randn(1, 5, 22, 22, generator=_gen(15))
    xi = attention(features)
    assert xi.shape == (1, 5)
    # the MLP is shared across channels: a channel's weight depends only on its own map
    swapped = features[:, [1, 0, 2, 3, 4]]
    torch.testing.assert_close(attention(swapped)[0, :2], xi[0, [1, 0]])
