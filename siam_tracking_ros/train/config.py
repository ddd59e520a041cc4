"""Training configuration: typed dataclasses read from YAML, unknown keys rejected."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from siam_tracking_ros.train.augment import AugmentSpec
from siam_tracking_ros.train.pairs import PairSpec


@dataclass
class DatasetConfig:
    """One data source. ``type``: ``sequences`` (root; OTB/VOT/GOT-10k/LaSOT layouts detected per
    folder), ``yolo`` (images + labels), ``coco`` (annotations json + images) or ``cache`` (path of
    a ``siam-train cache`` file)."""

    type: str
    name: str = ""
    root: str | None = None
    names: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    images: str | None = None
    labels: str | None = None
    annotations: str | None = None
    path: str | None = None
    weight: float = 1.0
    frame_gap: int = 100
    min_size: float = 8.0


@dataclass
class ScheduleConfig:
    """Optimiser and learning-rate schedule (warm-up, then log-linear decay per iteration)."""

    epochs: int = 20
    samples_per_epoch: int = 4000
    batch_size: int = 32
    lr: float = 0.005
    end_lr: float = 0.0005
    warmup_epochs: float = 1.0
    warmup_lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 1e-4
    #: parameters whose name starts with this prefix get ``backbone_lr_mult`` x the lr
    backbone_prefix: str = "backbone"
    backbone_lr_mult: float = 0.1
    #: backbone frozen (lr 0) for this many epochs
    freeze_backbone_epochs: int = 0
    #: parameters whose name starts with one of these are never trained (no gradients computed)
    frozen: list[str] = field(default_factory=list)
    grad_clip: float = 10.0
    #: auto: fp16 autocast + GradScaler on CUDA, off on CPU
    amp: str = "auto"
    #: stop cleanly (checkpoint, validate, export) after this many minutes
    time_budget_minutes: float | None = None
    #: with a time budget: decay the lr by elapsed time instead of by step (slow shared machines)
    decay_by_time: bool = False
    #: keep BatchNorm layers in eval mode (running statistics fixed), for fine-tuning small batches
    freeze_bn: bool = False
    #: score-map heads (``FCHead``): keep their correlation scale fixed (as siamfc-pytorch's
    #: ``out_scale``); a learnt scale takes steps far larger than its value (its gradient is the
    #: raw correlation) and blows the logits up in the first iterations
    fix_fc_scale: bool = True
    #: from random init (no ``init_weights``): set each such scale, and the last layers of RPN
    #: heads, from one batch so that the first logits are of order one (raw correlations of a
    #: fresh network are 1e2 to 1e5 and the first losses 1e2 to 1e3 without it)
    calibrate_output_scale: bool = True
    #: keep an exponential moving average of the weights (and BN statistics) with this decay per
    #: step; validation and export then use the average (smoother than any single step); None = off
    ema_decay: float | None = None


@dataclass
class ValidationConfig:
    """OTB success AUC of the real tracker on held-out sequences."""

    root: str | None = None
    sequences: list[str] = field(default_factory=list)
    every_minutes: float = 15.0
    max_frames: int | None = None
    #: also validate the initial weights before the first step (baseline for fine-tuning)
    at_start: bool = False


@dataclass
class TrainConfig:
    """Everything a run needs."""

    variant: str
    datasets: list[DatasetConfig]
    variant_options: dict[str, Any] = field(default_factory=dict)
    #: start from these weights (project .safetensors or an official checkpoint); None = random
    init_weights: str | None = None
    output_dir: str = "runs/train"
    #: where the best validated weights are exported at the end (project format)
    export_to: str | None = None
    export_half: bool = True
    device: str = "auto"
    seed: int = 0
    workers: int = 0
    threads: int | None = None
    log_every: int = 10
    checkpoint_minutes: float = 5.0
    tensorboard: bool = False
    progress: bool = True
    pairs: PairSpec = field(default_factory=PairSpec)
    objective: dict[str, Any] = field(default_factory=dict)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from nested dicts, rejecting unknown keys."""
    if not dataclasses.is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - fields
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; valid: {sorted(fields)}")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if hint is AugmentSpec or dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{where}.{key}")
        elif typing.get_origin(hint) is list and typing.get_args(hint) and \
                dataclasses.is_dataclass(typing.get_args(hint)[0]):
            values[key] = [_build(typing.get_args(hint)[0], v, f"{where}.{key}[{i}]")
                           for i, v in enumerate(value)]
        else:
            values[key] = value
    return cls(**values)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a plain dict (as read from YAML)."""
    return _build(TrainConfig, data, "config")


def set_dotted(data: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to nested dict ``data``."""
    key, _, raw = assignment.partition("=")
    if not _:
        raise ValueError(f"override '{assignment}' is not key=value")
    node = data
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML training config and apply ``key.path=value`` overrides."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for assignment in overrides or []:
        set_dotted(data, assignment)
    return config_from_dict(data)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Plain-dict form (for checkpoints and logs)."""
    return dataclasses.asdict(config)
