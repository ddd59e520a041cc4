"""Objective registry and the head geometry that label assignment needs.

An *objective* turns a search-patch box into per-sample training targets for one head kind and
computes that head's loss. Each head kind lives in its own module of this package and registers
itself with :func:`register_objective`; every module here is imported on first use, so a new
head kind is a new file.
"""

from __future__ import annotations

import importlib
import pkgutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class HeadGeometry:
    """Sizes of the crops and of the output map, in search-patch pixels."""

    exemplar_size: int = 127
    instance_size: int = 255
    score_size: int = 17
    stride: int = 8
    ratios: tuple[float, ...] = (0.33, 0.5, 1.0, 2.0, 3.0)
    scales: tuple[float, ...] = (8.0,)
    #: pixel position of score cell 0 (None: cell ``S // 2`` on the patch centre, as the trackers
    #: decode: offset ``(i - S // 2) * stride`` from the centre)
    origin: float | None = None

    def positions(self) -> np.ndarray:
        """Pixel coordinate of each score-map column (same for rows), shape ``(score_size,)``."""
        start = self.origin
        if start is None:
            start = self.instance_size / 2.0 - (self.score_size // 2) * self.stride
        return start + self.stride * np.arange(self.score_size, dtype=np.float64)


Targets = dict[str, np.ndarray]


class Objective(ABC):
    """Label assigner + loss for one head kind."""

    #: keys of :meth:`assign`'s result that must be present for every sample in a batch
    kind: str = ""

    def __init__(self, geometry: HeadGeometry, **options: Any) -> None:
        self.geometry = geometry
        unknown = set(options) - set(self.defaults())
        if unknown:
            raise ValueError(f"objective '{self.kind}': unknown option(s) {sorted(unknown)}; "
                             f"valid: {sorted(self.defaults())}")
        self.options = {**self.defaults(), **options}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Tunable options and their defaults (overridden from the training config)."""
        return {}

    @abstractmethod
    def assign(self, box: np.ndarray, negative: bool, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> Targets:
        """Targets for one sample. ``box`` is ``(x, y, w, h)`` in search-patch pixels: the target,
        or for a negative pair (``negative=True``) the distractor the patch is centred on.
        ``mask`` is the search-patch object mask (float 0..1) where the data has one."""

    @abstractmethod
    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its named parts (detached use only) for a batch."""


_OBJECTIVES: dict[str, type[Objective]] = {}
_DISCOVERED = False


def register_objective(kind: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: make ``cls`` the objective of networks whose ``head_kind`` is ``kind``."""

    def decorate(cls: type[Objective]) -> type[Objective]:
        if kind in _OBJECTIVES and _OBJECTIVES[kind] is not cls:
            raise ValueError(f"objective '{kind}' is registered twice")
        cls.kind = kind
        _OBJECTIVES[kind] = cls
        return cls

    return decorate


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module("siam_tracking_ros.train.objectives")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name != "base":
            importlib.import_module(f"siam_tracking_ros.train.objectives.{info.name}")
    _DISCOVERED = True


def list_objectives() -> list[str]:
    """Head kinds that have an objective."""
    _discover()
    return sorted(_OBJECTIVES)


def make_objective(kind: str, geometry: HeadGeometry, **options: Any) -> Objective:
    """The objective for ``kind``; ``KeyError`` lists the known kinds."""
    _discover()
    if kind not in _OBJECTIVES:
        raise KeyError(f"no training objective for head kind '{kind}'; known: {', '.join(list_objectives())}")
    return _OBJECTIVES[kind](geometry, **options)


# --- geometry from a variant's config and network -------------------------------------------------

#: where networks that do not declare ``stride`` (NanoTrack, DSiam, SA-Siam, SINT) keep it in their config
_STRIDE_FIELDS = ("stride", "total_stride", "point_stride", "anchor_stride", "score_stride")
_SCORE_FIELDS = ("score_size", "output_size")
_RATIO_FIELDS = ("anchor_ratios", "ratios")
_SCALE_FIELDS = ("anchor_scales", "scales")


def _first_attr(config: Any, names: tuple[str, ...], default: Any) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


@torch.no_grad()
def probe_outputs(model: nn.Module, exemplar_size: int, instance_size: int,
                  device: torch.device | str = "cpu") -> dict[str, tuple[int, ...]]:
    """Shapes of ``model(z, x)``'s outputs for one pair of zero crops."""
    was_training = model.training
    model.eval()
    z = torch.zeros(1, 3, exemplar_size, exemplar_size, device=device)
    x = torch.zeros(1, 3, instance_size, instance_size, device=device)
    out = model(z, x)
    model.train(was_training)
    return {k: tuple(v.shape) for k, v in out.items() if isinstance(v, torch.Tensor)}


def network_stride(model: nn.Module | None, config: Any) -> int:
    """The score map's stride: the network's ``stride`` (assembled networks declare it), else the
    config's stride field for networks that do not."""
    stride = getattr(model, "stride", None)
    if isinstance(stride, int):
        return stride
    return int(_first_attr(config, _STRIDE_FIELDS, 8))


def geometry_from(config: Any, model: nn.Module | None = None, device: torch.device | str = "cpu",
                  **overrides: Any) -> HeadGeometry:
    """Head geometry from a variant's config dataclass, the score size checked on the network.

    Reads ``exemplar_size``, ``instance_size``, the stride (:func:`network_stride`),
    ``score_size``/``output_size`` and anchor ratios/scales when the config has them. With
    ``model`` the score size is taken from one forward pass (the authority); ``overrides`` win
    over both.
    """
    values: dict[str, Any] = {
        "exemplar_size": int(getattr(config, "exemplar_size", 127)),
        "instance_size": int(getattr(config, "instance_size", 255)),
        "stride": network_stride(model, config),
        "score_size": int(_first_attr(config, _SCORE_FIELDS, 17)),
        "ratios": tuple(float(r) for r in _first_attr(config, _RATIO_FIELDS, HeadGeometry.ratios)),
        "scales": tuple(float(s) for s in _first_attr(config, _SCALE_FIELDS, HeadGeometry.scales)),
    }
    if model is not None:
        shapes = probe_outputs(model, values["exemplar_size"], values["instance_size"], device)
        key = next((k for k in ("score", "cls") if k in shapes), next(iter(shapes)))
        values["score_size"] = int(shapes[key][-1])
    values.update(overrides)
    return HeadGeometry(**values)
