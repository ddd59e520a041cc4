"""``siam-convert``: official checkpoint -> project ``.safetensors`` (weights + config).

    siam-convert --tracker nanotrack nanotrackv3.pth nanotrack_v3.safetensors --half

Architecture options the variant can read off the checkpoint (``detect_options``, e.g. the
NanoTrack version) are filled in first, then ``--option`` overrides; the variant's importer
maps the checkpoint's names, the network is built from the resulting config to
check that every tensor fits (strict loading), and the file is written with
:func:`~siam_tracking_ros.weights.io.save_weights` so ``build_tracker(name, weights=OUTPUT)``
restores the same network and settings.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from siam_tracking_ros.trackers.registry import TrackerSpec, get_spec, load_for_variant, make_config
from siam_tracking_ros.weights.io import (
    WeightsError,
    load_checkpoint_safely,
    load_state_into,
    save_weights,
)


def parse_options(items: Sequence[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> dict; values are read as YAML scalars (``0.4``, ``true``, ``v3``)."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option expects key=value, got '{item}'")
        options[key.strip()] = yaml.safe_load(text)
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="siam-convert",
        description="Convert an official tracker checkpoint (.pth/.model, or a project .safetensors) "
                    "into the project .safetensors format with the variant's config.")
    parser.add_argument("--tracker", required=True, help="registry name, e.g. nanotrack")
    parser.add_argument("input", type=Path, help="official checkpoint (read with weights_only=True)")
    parser.add_argument("output", type=Path, help="output .safetensors file")
    parser.add_argument("--half", action="store_true", help="store floating tensors as fp16")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="config field override (repeatable), e.g. --option version=v3")
    return parser


def convert(tracker: str, source: Path, output: Path, half: bool = False,
            options: dict[str, Any] | None = None) -> Path:
    """Import ``source`` for ``tracker``, validate it against the network, write ``output``.

    Raises :class:`WeightsError` (unreadable file, wrong variant, tensors that do not fit),
    ``KeyError`` (unknown tracker) or ``ValueError`` (unknown or invalid option).
    """
    spec = get_spec(tracker)
    if output.suffix != ".safetensors":
        raise ValueError(f"output must end in .safetensors, got '{output}'")
    if source.suffix == ".safetensors":
        state, stored = load_for_variant(spec, source)
        config = make_config(tracker, stored, **(options or {}))
    else:
        state, config = _import_official(spec, source, options or {})
    network = spec.builder(config, torch.device("cpu")).model
    load_state_into(network, state, tracker)
    return save_weights(output, network.state_dict(), tracker, config, half=half,
                        extra={"source": source.name})


def _import_official(spec: TrackerSpec, source: Path, options: dict[str, Any]
                     ) -> tuple[dict[str, torch.Tensor], Any]:
    """State dict and config for an official checkpoint: detected options, then ``options``."""
    if spec.importer is None:
        raise WeightsError(f"'{spec.name}' has no importer for official checkpoints")
    raw = load_checkpoint_safely(source)
    detect, importer = spec.detect_options, spec.importer
    detected = _not_this_variant(spec, source, lambda: detect(raw) if detect else {})
    config = make_config(spec.name, detected, **options)
    return _not_this_variant(spec, source, lambda: importer(raw, config)), config


def _not_this_variant(spec: TrackerSpec, source: Path, step: Callable[[], Any]) -> Any:
    """Run ``step``; turn the importer's ``KeyError``/``ValueError`` into a :class:`WeightsError`."""
    try:
        return step()
    except (KeyError, ValueError) as exc:
        message = exc.args[0] if exc.args else str(exc)
        raise WeightsError(f"'{source}' does not look like a '{spec.name}' checkpoint: {message}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 2 bad arguments or weights)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        options = parse_options(args.option)
        path = convert(args.tracker, args.input, args.output, args.half, options)
    except KeyError as exc:
        print(f"siam-convert: error: {exc.args[0]}", file=sys.stderr)
        return 2
    except (WeightsError, ValueError, OSError) as exc:
        print(f"siam-convert: error: {exc}", file=sys.stderr)
        return 2
    size_mb = path.stat().st_size / 2**20
    print(f"wrote {path} ({size_mb:.2f} MiB) for '{args.tracker}'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
