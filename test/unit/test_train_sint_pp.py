"""SINT++: VAE generator, occlusion policy (REINFORCE) and the training entry point."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from siam_tracking_ros.train.sint_pp.policy import (
    OcclusionPolicy,
    occlude,
    occluder_corner,
    reinforce_loss,
)
from siam_tracking_ros.train.sint_pp.train import load_crops, main, parse_args
from siam_tracking_ros.train.sint_pp.vae import CropVAE, train_vae, vae_loss

ROOT = Path(__file__).resolve().parents[2]
#: the shared folder as every test reads it (test/conftest.py)
SHARED = Path(os.environ.get("SIAM_SHARED_DIR", ROOT.parent / "shared")).resolve()
COCO = SHARED / "data" / "images" / "coco128"
IMAGES = COCO / "images" / "train2017"
LABELS = COCO / "object_detection" / "labels" / "train2017"
requires_coco = pytest.mark.skipif(not IMAGES.is_dir(), reason=f"{IMAGES} not present")


@pytest.fixture(scope="module")
def coco_crops() -> tuple[torch.Tensor, torch.Tensor]:
    if not IMAGES.is_dir():
        pytest.skip(f"{IMAGES} not present")
    return load_crops(IMAGES, LABELS, count=8)


@requires_coco
@pytest.mark.shared_data
def test_real_crops_are_64x64_targets_and_patches(coco_crops) -> None:
    targets, patches = coco_crops
    assert targets.shape == (8, 3, 64, 64) and patches.shape == (8, 3, 24, 24)
    assert float(targets.min()) >= 0.0 and float(targets.max()) <= 1.0 and float(targets.std()) > 0.05


@requires_coco
@pytest.mark.shared_data
def test_vae_loss_decreases_on_real_crops(coco_crops) -> None:
    torch.manual_seed(0)
    targets, _ = coco_crops
    vae = CropVAE(latent_dim=16, width=8)
    with torch.no_grad():
        vae.eval()
        recon, mu, logvar = vae(targets)
        before = float(vae_loss(recon, targets, mu, logvar)[0])
    losses = train_vae(vae, targets, steps=12, lr=3e-3, batch_size=8)
    with torch.no_grad():
        recon, mu, logvar = vae(targets)
        after = float(vae_loss(recon, targets, mu, logvar)[0])
    assert len(losses) == 12
    assert after < before


def test_vae_sampling_shapes() -> None:
    torch.manual_seed(1)
    vae = CropVAE(latent_dim=8, width=8).eval()
    generator = torch.Generator().manual_seed(0)
    samples = vae.sample(5, generator)
    assert samples.shape == (5, 3, 64, 64)
    assert float(samples.min()) >= 0.0 and float(samples.max()) <= 1.0
    positives = vae.positives_like(torch.rand(2, 3, 64, 64), per_target=3, generator=generator)
    assert positives.shape == (6, 3, 64, 64)


def test_reparameterisation_is_differentiable_and_follows_the_posterior() -> None:
    mu = torch.zeros(20000, 2, requires_grad=True)
    logvar = torch.full((20000, 2), 2.0 * torch.log(torch.tensor(3.0)).item(), requires_grad=True)
    z = CropVAE.reparameterize(mu, logvar, torch.Generator().manual_seed(0))
    assert abs(float(z.detach().std()) - 3.0) < 0.1
    z.sum().backward()
    assert mu.grad is not None and logvar.grad is not None


def test_reinforce_gradient_favours_the_higher_reward_action() -> None:
    torch.manual_seed(2)
    policy = OcclusionPolicy(grid=3, width=4)
    x = torch.rand(1, 3, 64, 64).expand(256, -1, -1, -1)
    good = 4
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    with torch.no_grad():
        before = torch.softmax(policy(x[:1]), dim=1)[0, good].item()
    actions, log_probs = policy.act(x, torch.Generator().manual_seed(0))
    rewards = (actions == good).float()
    optimizer.zero_grad()
    reinforce_loss(log_probs, rewards, rewards.mean()).backward()
    optimizer.step()
    with torch.no_grad():
        after = torch.softmax(policy(x[:1]), dim=1)[0, good].item()
    assert after > before
    # the opposite reward pushes the other way
    optimizer.zero_grad()
    actions, log_probs = policy.act(x, torch.Generator().manual_seed(1))
    reinforce_loss(log_probs, -(actions == good).float(), 0.0).backward()
    optimizer.step()
    with torch.no_grad():
        assert torch.softmax(policy(x[:1]), dim=1)[0, good].item() < after


def test_occluder_is_pasted_where_the_policy_said() -> None:
    torch.manual_seed(3)
    policy = OcclusionPolicy(grid=4, width=4)
    samples = torch.zeros(6, 3, 64, 64)
    patches = torch.rand(6, 3, 16, 16) + 1.0
    actions, _ = policy.act(samples, torch.Generator().manual_seed(0))
    out = occlude(samples, patches, actions, grid=4)
    assert float(samples.abs().sum()) == 0.0  # the input is not modified
    for index, action in enumerate(actions.tolist()):
        top, left = occluder_corner(action, 4, 64, 16)
        assert torch.equal(out[index, :, top:top + 16, left:left + 16], patches[index])
        rest = out[index].clone()
        rest[:, top:top + 16, left:left + 16] = 0
        assert float(rest.abs().sum()) == 0.0
    assert occluder_corner(0, 4, 64, 16) == (0, 0)
    assert occluder_corner(15, 4, 64, 16) == (48, 48)
    assert occluder_corner(6, 4, 64, 16) == (16, 32)


@requires_coco
@pytest.mark.shared_data
@pytest.mark.slow
def test_main_trains_both_parts_on_a_few_real_crops(tmp_path: Path) -> None:
    history = main(["--images", str(IMAGES), "--labels", str(LABELS), "--count", "2",
                    "--vae-steps", "2", "--policy-steps", "1", "--sint-steps", "1",
                    "--out", str(tmp_path)])
    assert len(history["vae_loss"]) == 2 and len(history["policy_reward"]) == 1
    assert len(history["sint_loss"]) == 1
    for name in ("sint_pp_vae.safetensors", "sint_pp_policy.safetensors", "sint_pp.safetensors"):
        assert (tmp_path / name).is_file()


def test_default_data_follows_the_shared_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIAM_SHARED_DIR", str(tmp_path))
    args = parse_args([])
    coco = tmp_path / "data" / "images" / "coco128"
    assert args.images == coco / "images" / "train2017"
    assert args.labels == coco / "object_detection" / "labels" / "train2017"
    monkeypatch.delenv("SIAM_SHARED_DIR")
    beside = ROOT.parent / "shared" / "data" / "images" / "coco128" / "images" / "train2017"
    assert parse_args([]).images.resolve() == beside.resolve()
