"""Registry of tracker variants: a name maps to a config dataclass and a builder.

A variant registers itself from its own module inside :mod:`siam_tracking_ros.trackers`
(every module there is imported on first use), so adding a variant is adding a file.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from siam_tracking_ros.core.config_check import check_config
from siam_tracking_ros.core.device import resolve_device
from siam_tracking_ros.trackers.base import SiameseTracker
from siam_tracking_ros.weights.io import (
    WeightsError,
    load_checkpoint_safely,
    load_project_file,
    load_state_into,
)

#: folder of the trained default weights that ship with the package
PACKAGED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights" / "data"

Builder = Callable[[Any, torch.device], SiameseTracker]
Importer = Callable[[Mapping[str, torch.Tensor], Any], dict[str, torch.Tensor]]
OptionDetector = Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]


@dataclass(frozen=True)
class TrackerSpec:
    """What the registry knows about one variant."""

    name: str
    config_cls: type
    builder: Builder
    description: str = ""
    #: converts an official checkpoint's state dict (already unwrapped) to ours; None if none
    importer: Importer | None = None
    #: reads architecture options (e.g. the backbone) off an official state dict; None if none
    detect_options: OptionDetector | None = None

    @property
    def default_weights(self) -> Path:
        """Where the packaged trained weights of this variant live (may not exist)."""
        return PACKAGED_WEIGHTS_DIR / f"{self.name}.safetensors"


_REGISTRY: dict[str, TrackerSpec] = {}
_DISCOVERED = False


def register_tracker(name: str, config_cls: type, description: str = "",
                     importer: Importer | None = None,
                     detect_options: OptionDetector | None = None) -> Callable[[Builder], Builder]:
    """Decorator for a variant's builder ``(config, device) -> SiameseTracker``.

    ``importer(state, config)`` maps an official checkpoint's state dict to the network's names;
    ``detect_options(state)`` tells the architecture options that checkpoint needs.
    """

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ValueError(f"tracker '{name}' is registered twice")
        _REGISTRY[name] = TrackerSpec(name, config_cls, builder, description, importer, detect_options)
        return builder

    return decorate


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module("siam_tracking_ros.trackers")
    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in {"base", "registry"}:
            importlib.import_module(f"siam_tracking_ros.trackers.{info.name}")
    _DISCOVERED = True


def list_trackers() -> list[str]:
    """Names of all registered variants, sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_spec(name: str) -> TrackerSpec:
    """The :class:`TrackerSpec` of ``name``; raises ``KeyError`` listing the known names."""
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"unknown tracker '{name}'; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_presets() -> dict[str, Mapping[str, Any]]:
    """Every variant's named presets, ``{"<variant>/<preset>": field values}`` (e.g. ``dasiamrpn/otb``).

    A preset fills the config fields left at ``None``; pass ``preset=`` or the ``<variant>/<preset>``
    name to :func:`make_config` / :func:`build_tracker`.
    """
    _discover()
    return {f"{name}/{preset}": values for name, spec in sorted(_REGISTRY.items())
            for preset, values in getattr(spec.config_cls, "PRESETS", {}).items()}


def refuse_other_keys(state: Mapping[str, Any], prefixes: tuple[str, ...], message: str) -> None:
    """``KeyError(f"{message}: [first keys]")`` when ``state`` has keys outside ``prefixes``
    (what an importer says about a checkpoint of another network)."""
    other = sorted(k for k in state if not k.startswith(prefixes))
    if other:
        raise KeyError(f"{message}: {other[:5]}")


def split_preset(name: str, overrides: dict[str, Any]) -> str:
    """``"variant/preset"`` -> ``"variant"`` with the fields that select the preset set in
    ``overrides`` (``preset``, or the config's own selecting fields); other names as they are."""
    variant, _, preset = name.partition("/")
    if preset:
        selecting = getattr(get_spec(variant).config_cls, "selecting", None)
        if selecting is None:
            raise ValueError(f"'{variant}' has no presets (asked for '{name}')")
        for key, value in selecting(preset).items():
            overrides.setdefault(key, value)
    return variant


def make_config(name: str, stored: Mapping[str, Any] | None = None, **overrides: Any) -> Any:
    """The variant's default config, updated by a weights file's stored config, then overrides.

    ``name`` may be ``<variant>/<preset>`` (see :func:`list_presets`).

    Unknown override keys raise ``ValueError`` naming the valid ones; so does a field outside
    its range (:mod:`siam_tracking_ros.core.config_check`).
    """
    name = split_preset(name, overrides)
    spec = get_spec(name)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown option(s) for '{name}': {sorted(unknown)}; valid: {sorted(fields)}")
    values = {k: v for k, v in (stored or {}).items() if k in fields}
    values.update(overrides)
    return check_config(spec.config_cls(**values), name)


def load_for_variant(spec: TrackerSpec, weights: str | Path | None,
                     overrides: Mapping[str, Any] | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Resolve ``weights`` for ``spec`` and return ``(state_dict, stored_config)``.

    ``None`` means the packaged default. For an official checkpoint the stored config is what the
    variant's ``detect_options`` reads off it, and its importer sees the config that results
    (with ``overrides``). A project file made for another variant, or an official checkpoint whose
    keys do not fit the variant's importer, raises :class:`WeightsError`.
    """
    if weights is None or str(weights) == "":
        path = spec.default_weights
        if not path.exists():
            raise WeightsError(
                f"no trained default weights ship for '{spec.name}': train them with siam-train, "
                f"pass a weights file, or weights='random' for an untrained network")
    else:
        path = Path(weights).expanduser()
    if not path.exists():
        raise WeightsError(f"weights file not found: '{path}'")
    if path.suffix == ".safetensors":
        state, metadata = load_project_file(path)
        variant = metadata.get("variant", "")
        if variant != spec.name:
            raise WeightsError(
                f"weights '{path}' were made for variant '{variant or 'unknown'}', "
                f"not for '{spec.name}'")
        return state, json.loads(metadata.get("config", "{}"))
    if spec.importer is None:
        raise WeightsError(f"'{spec.name}' has no importer for official checkpoints; "
                           f"use a project .safetensors file")
    raw = load_checkpoint_safely(path)
    try:
        detected = spec.detect_options(raw) if spec.detect_options else {}
    except (KeyError, ValueError) as exc:
        raise WeightsError(f"'{path}' does not look like a '{spec.name}' checkpoint: {exc}") from exc
    config = make_config(spec.name, detected, **(overrides or {}))
    try:
        return spec.importer(raw, config), detected
    except (KeyError, ValueError) as exc:
        raise WeightsError(
            f"'{path}' does not look like a '{spec.name}' checkpoint: {exc}") from exc


def build_tracker(name: str, weights: str | Path | None = None, device: str | torch.device = "auto",
                  **overrides: Any) -> SiameseTracker:
    """Build a ready tracker.

    Args:
        name: registry name (see :func:`list_trackers`), or ``<variant>/<preset>``.
        weights: ``None`` for the packaged trained default, a path to a project ``.safetensors``
            file or an official checkpoint, or ``"random"`` for an untrained network (tests only).
        device: ``auto|cpu|cuda|cuda:N``.
        **overrides: config fields (hyper-parameters or architecture options).
    """
    name = split_preset(name, overrides)
    spec = get_spec(name)
    torch_device = resolve_device(device)
    if weights == "random":
        config = make_config(name, **overrides)
        state = None
    else:
        state, stored = load_for_variant(spec, weights, overrides)
        config = make_config(name, stored, **overrides)
    tracker = spec.builder(config, torch_device)
    tracker.name = name
    if state is not None:
        load_state_into(tracker.model, state, name)
        tracker.model.to(torch_device).eval()
    return tracker
