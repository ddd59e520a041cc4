"""Export a training checkpoint to the project weight format."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from siam_tracking_ros.train.config import config_from_dict


def averaged_weights(ema_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The network weights inside an ``AveragedModel`` state dict (``module.`` prefix dropped)."""
    prefix = "module."
    return {key[len(prefix):]: value for key, value in ema_state.items() if key.startswith(prefix)}


def export_checkpoint(checkpoint: str | Path, out: str | Path, half: bool = True) -> Path:
    """Write the checkpoint's weights as ``out`` (.safetensors) tagged with its variant and config:
    the moving average when the run kept one (``schedule.ema_decay``), as the trainer exports."""
    from siam_tracking_ros.trackers.registry import make_config
    from siam_tracking_ros.weights.io import save_weights

    state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
    train_config = config_from_dict(json.loads(state["config"]))
    tracker_config = make_config(train_config.variant, **train_config.variant_options)
    weights = averaged_weights(state["ema"]) if "ema" in state else state["model"]
    return save_weights(out, weights, train_config.variant, tracker_config, half=half,
                        extra={"trained_steps": str(state["step"]), "trained_by": "siam-train"})
