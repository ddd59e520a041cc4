"""``python -m siam_tracking_ros.train.sint_pp.train``: train SINT++'s generator and occlusion policy.

Steps: read target crops (COCO-style images with YOLO boxes, resized to 64x64) and background
patches; fit the VAE; draw positives from each target's manifold; train the occlusion policy
with REINFORCE against the SINT matcher's loss; optionally train the matcher on
(target, hard positive) and (target, other target) pairs with its contrastive loss. Writes
``sint_pp_vae.safetensors``, ``sint_pp_policy.safetensors`` and, with ``--sint-steps``, a project
weights file for the ``sint_pp`` tracker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.torch import save_file

from siam_tracking_ros.models.heads.roi_embedding import SINTNet
from siam_tracking_ros.train.losses import contrastive_loss
from siam_tracking_ros.train.sint_pp.policy import (
    OcclusionPolicy,
    matching_loss,
    occlude,
    train_policy,
)
from siam_tracking_ros.train.sint_pp.vae import CROP_SIZE, CropVAE, train_vae


def default_coco() -> Path:
    """COCO128 in the shared folder: ``$SIAM_SHARED_DIR`` (as the tests read it), else ../shared."""
    shared = os.environ.get("SIAM_SHARED_DIR") or Path(__file__).resolve().parents[3].parent / "shared"
    return Path(shared) / "data" / "images" / "coco128"


DEFAULT_COCO = default_coco()


def read_yolo_boxes(label_file: Path, width: int, height: int) -> np.ndarray:
    """YOLO ``class cx cy w h`` (normalised) rows as pixel ``(x1, y1, x2, y2)``, ``(N, 4)``."""
    rows = [line.split() for line in label_file.read_text().splitlines() if line.strip()]
    if not rows:
        return np.zeros((0, 4))
    values = np.asarray([[float(v) for v in row[1:5]] for row in rows])
    cx, cy, w, h = values[:, 0] * width, values[:, 1] * height, values[:, 2] * width, values[:, 3] * height
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def load_crops(images: Path, labels: Path, count: int, patch_size: int = 24, min_side: float = 24.0,
               seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``count`` target crops ``(N, 3, 64, 64)`` and as many background patches, in 0..1.

    Targets are labelled boxes at least ``min_side`` pixels wide and high; each background patch is
    a random square of the same image, resized to ``patch_size``.
    """
    rng = np.random.default_rng(seed)
    targets, patches = [], []
    for image_path in sorted(Path(images).glob("*.jpg")):
        label = Path(labels) / f"{image_path.stem}.txt"
        if not label.is_file():
            continue
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        for x1, y1, x2, y2 in read_yolo_boxes(label, width, height):
            if x2 - x1 < min_side or y2 - y1 < min_side:
                continue
            crop = image[int(max(y1, 0)):int(y2), int(max(x1, 0)):int(x2)]
            targets.append(cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA))
            side = int(rng.integers(patch_size, max(patch_size + 1, min(height, width) // 3)))
            top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
            patches.append(cv2.resize(image[top:top + side, left:left + side], (patch_size, patch_size)))
            if len(targets) >= count:
                return _to_tensor(targets), _to_tensor(patches)
    if not targets:
        raise FileNotFoundError(f"no labelled boxes found under {images} / {labels}")
    return _to_tensor(targets), _to_tensor(patches)


def _to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0


def embedder(net: SINTNet):
    """Whole-crop SINT embeddings of 0..1 crops (the matcher sees BGR 0..255)."""
    return lambda crops: net.embed(crops * 255.0)


def train_matcher(net: SINTNet, targets: torch.Tensor, hard_positives: torch.Tensor, steps: int,
                  lr: float = 1e-4, margin: float = 1.0) -> list[float]:
    """Contrastive training of SINT on (target, hard positive) and (target, other target) pairs."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    embed = embedder(net)
    count = len(targets)
    same = torch.cat([torch.ones(count, dtype=torch.bool), torch.zeros(count, dtype=torch.bool)])
    same = same.to(targets.device)
    losses = []
    net.train()
    for step in range(steps):
        others = targets.roll(step % max(count - 1, 1) + 1, dims=0)
        first = embed(torch.cat([targets, targets]))
        second = embed(torch.cat([hard_positives, others]))
        loss = contrastive_loss(first, second, same, margin)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    net.eval()
    return losses


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sint_pp-train", description=__doc__.splitlines()[0])
    coco = default_coco()
    parser.add_argument("--images", type=Path, default=coco / "images" / "train2017")
    parser.add_argument("--labels", type=Path, default=coco / "object_detection" / "labels" / "train2017")
    parser.add_argument("--count", type=int, default=16, help="target crops to use")
    parser.add_argument("--vae-steps", type=int, default=20)
    parser.add_argument("--policy-steps", type=int, default=5)
    parser.add_argument("--sint-steps", type=int, default=0, help="matcher steps on hard positives")
    parser.add_argument("--per-target", type=int, default=1, help="generated positives per target")
    parser.add_argument("--out", type=Path, default=None, help="folder for the trained weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    """Run the SINT++ training steps; returns the loss/reward histories (also printed as JSON)."""
    from siam_tracking_ros.core.device import resolve_device
    from siam_tracking_ros.trackers.sint_pp import SINTPPConfig, build_sint_pp_net

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    targets, patches = load_crops(args.images, args.labels, args.count, seed=args.seed)
    targets, patches = targets.to(device), patches.to(device)
    vae = CropVAE().to(device)
    history = {"vae_loss": train_vae(vae, targets, args.vae_steps, seed=args.seed)}
    generator = torch.Generator(device=device).manual_seed(args.seed)
    positives = vae.positives_like(targets, args.per_target, generator)
    patches = patches.repeat_interleave(args.per_target, dim=0)
    anchors = targets.repeat_interleave(args.per_target, dim=0)
    config = SINTPPConfig()
    matcher = build_sint_pp_net(config).to(device).eval()
    embed = embedder(matcher)
    policy = OcclusionPolicy().to(device)

    def reward(_: torch.Tensor, occluded: torch.Tensor) -> torch.Tensor:
        return matching_loss(embed, anchors, occluded)

    history["policy_reward"] = train_policy(policy, positives, patches, reward, args.policy_steps,
                                            seed=args.seed)
    if args.sint_steps > 0:
        with torch.no_grad():
            actions, _ = policy.act(positives, generator)
            hard = occlude(positives, patches, actions, policy.grid)
        history["sint_loss"] = train_matcher(matcher, anchors, hard, args.sint_steps)
    if args.out is not None:
        _save(args.out, vae, policy, matcher if args.sint_steps > 0 else None, config)
    print(json.dumps({k: [round(v, 4) for v in vs] for k, vs in history.items()}))
    return history


def _save(out: Path, vae: CropVAE, policy: OcclusionPolicy, matcher: SINTNet | None, config) -> None:
    from siam_tracking_ros.weights.io import save_weights

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in vae.state_dict().items()},
              str(out / "sint_pp_vae.safetensors"), metadata={"latent_dim": str(vae.latent_dim)})
    save_file({k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()},
              str(out / "sint_pp_policy.safetensors"), metadata={"grid": str(policy.grid)})
    if matcher is not None:
        save_weights(out / "sint_pp.safetensors", matcher.state_dict(), "sint_pp", dataclasses.asdict(config))


if __name__ == "__main__":
    main()
