"""``siam-tune``: grid search of a variant's tracking hyper-parameters on labelled sequences.

    siam-tune --tracker nanotrack --weights my.safetensors --dataset ../shared/data/sequences \\
        --sequences otb_Car1 uav10_building4 --grid window_influence=0.3,0.46,0.6 \\
        penalty_k=0.05,0.15,0.3 --max-frames 300 --out runs/tune

Every combination runs one-pass evaluation (OPE) on every sequence; ``tune.csv`` lists the
combinations by mean success AUC and ``best.yaml`` holds the winner as ``tracker_params`` for the
node (``--params-file``) or ``--option`` values for ``siam-eval``. Tune on sequences you will not
report results on: a grid picked on the test sequences overstates what it does elsewhere.

``--mode presence`` runs the presence protocol instead (``siam-eval --mode presence``) and ranks
by the mean of the fraction of absent frames in LOST and of visible frames in TRACKING; grid keys
that are :class:`~siam_tracking_ros.core.presence.LostPolicy` fields (``score_threshold``,
``lost_frames``, ``found_frames``, ``found_threshold``, ``lost_search_scale``) set the state
machine, the others the tracker. ``--backgrounds`` names sequences used only as target-absent
frames (every tuned sequence returns after each of them)::

    siam-tune --mode presence --tracker nanotrack --dataset ../shared/data/sequences \
        --sequences otb_Human3_first199 uav10_building4 --grid score_threshold=0.4,0.5 lost_frames=5,10 \
        --max-frames 250 --out runs/tune_presence
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from siam_tracking_ros.data.sequences import Sequence, find_sequences
from siam_tracking_ros.eval.runner import run_ope, score_ope


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["a=1,2", "b=x"]`` -> ``{"a": [1, 2], "b": ["x"]}`` (values parsed as YAML scalars)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ValueError(f"grid entry '{spec}' is not key=v1,v2,...")
        grid[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
    return grid


def combinations(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, in a stable order."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def evaluate_combination(variant: str, weights: str | None, overrides: dict[str, Any],
                         sequences: list[Sequence], device: str = "cpu",
                         max_frames: int | None = None, backend: str = "torch",
                         threads: int = 1) -> dict[str, float]:
    """Success AUC per sequence and their mean (``"mean"``) with ``overrides`` applied."""
    from siam_tracking_ros.trackers.registry import build_tracker

    tracker = build_tracker(variant, weights=weights, device=device, **overrides)
    if backend != "torch":
        tracker.use_backend(backend, threads)
    scores: dict[str, float] = {}
    for sequence in sequences:
        scores[sequence.name] = score_ope(run_ope(tracker, sequence, max_frames), sequence).auc
        tracker.reset()
    scores["mean"] = float(np.mean([v for k, v in scores.items() if k != "mean"]))
    return scores


#: presence-mode columns of ``tune.csv`` (from :func:`~siam_tracking_ros.eval.presence.presence_summary`)
PRESENCE_COLUMNS = ("roc_auc", "absent_lost", "present_tracking", "reacquired", "reacquire_frames")


def evaluate_presence_combination(variant: str, weights: str | None, overrides: dict[str, Any],
                                  sequences: list[Sequence], device: str = "cpu",
                                  max_frames: int | None = None, backend: str = "torch",
                                  threads: int = 1, splice_frames: int = 60,
                                  backgrounds: list[Sequence] | None = None) -> dict[str, float]:
    """The presence protocol with ``overrides`` split between the state machine and the tracker;
    ``"mean"`` is the mean of ``absent_lost`` (0 where no absent frame is counted) and
    ``present_tracking``."""
    from dataclasses import fields

    from siam_tracking_ros.core.presence import LostPolicy
    from siam_tracking_ros.eval.presence import evaluate_presence
    from siam_tracking_ros.trackers.registry import build_tracker

    policy_keys = {f.name for f in fields(LostPolicy)}
    policy = LostPolicy(**{k: v for k, v in overrides.items() if k in policy_keys})
    tracker = build_tracker(variant, weights=weights, device=device,
                            **{k: v for k, v in overrides.items() if k not in policy_keys})
    if backend != "torch":
        tracker.use_backend(backend, threads)
    summary, _ = evaluate_presence(tracker, sequences, policy, splice_frames, max_frames,
                                   backgrounds=backgrounds)
    scores = {k: float(summary[k]) for k in PRESENCE_COLUMNS}
    # a policy so slow that no absent frame is counted (nan) earns nothing for them
    absent_lost = scores["absent_lost"] if np.isfinite(scores["absent_lost"]) else 0.0
    scores["mean"] = (absent_lost + scores["present_tracking"]) / 2.0
    return scores


def tune(variant: str, weights: str | None, sequences: list[Sequence], grid: dict[str, list[Any]],
         device: str = "cpu", max_frames: int | None = None, progress: bool = True,
         backend: str = "torch", threads: int = 1, mode: str = "ope",
         splice_frames: int = 60, backgrounds: list[Sequence] | None = None) -> list[dict[str, Any]]:
    """Rows ``{**combination, **scores}`` sorted best first by their ``auc_mean`` (OPE) or
    ``presence_mean`` (presence; ``backgrounds``: see
    :func:`~siam_tracking_ros.eval.presence.presence_segments`)."""
    evaluate = (partial(evaluate_presence_combination, splice_frames=splice_frames, backgrounds=backgrounds)
                if mode == "presence" else evaluate_combination)
    prefix = "presence" if mode == "presence" else "auc"
    combos = combinations(grid)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(combos), desc=f"siam-tune {variant}", dynamic_ncols=True)
    rows = []
    for combo in combos:
        scores = evaluate(variant, weights, combo, sequences, device, max_frames, backend, threads)
        rows.append({**combo, **{f"{prefix}_{k}": round(v, 4) for k, v in scores.items()}})
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best=f"{max(r[f'{prefix}_mean'] for r in rows):.3f}", refresh=False)
    if bar is not None:
        bar.close()
    return sorted(rows, key=lambda row: row[f"{prefix}_mean"], reverse=True)


def write_outputs(out: Path, rows: list[dict[str, Any]], grid: dict[str, list[Any]], argv: list[str]) -> None:
    """``tune.csv`` (best first) and ``best.yaml`` (the winner as node parameters)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / "tune.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    best = {key: rows[0][key] for key in grid}
    score_key, name = ("auc_mean", "mean_auc") if "auc_mean" in rows[0] else ("presence_mean",) * 2
    doc = {"command": "siam-tune " + " ".join(argv), name: rows[0][score_key], "tracker_params": best}
    (out / "best.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-tune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracker", required=True, help="registry variant")
    parser.add_argument("--weights", help="weights file (default: the packaged default)")
    parser.add_argument("--dataset", type=Path, required=True, help="folder of labelled sequences")
    parser.add_argument("--sequences", nargs="+", help="only these sequence folders")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2,...")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames of each sequence")
    parser.add_argument("--threads", type=int, default=1, help="torch / ONNX Runtime threads")
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "auto"),
                        help="inference backend (results agree with torch; onnxruntime is faster on CPU)")
    parser.add_argument("--mode", choices=("ope", "presence"), default="ope",
                        help="rank by OPE success AUC or by the presence protocol's LOST/TRACKING fractions")
    parser.add_argument("--splice-frames", type=int, default=60,
                        help="presence: frames of each sequence in a spliced segment")
    parser.add_argument("--backgrounds", nargs="+", metavar="S",
                        help="presence: sequence folders of the dataset used only as target-absent "
                             "frames (each sequence returns after every one of them)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    try:
        grid = parse_grid(args.grid)
        sequences = find_sequences(args.dataset, args.sequences)
        if not sequences:
            raise ValueError(f"no sequences found under {args.dataset}")
        backgrounds = find_sequences(args.dataset, args.backgrounds) if args.backgrounds else None
        rows = tune(args.tracker, args.weights, sequences, grid, args.device, args.max_frames,
                    not args.no_progress, args.backend, args.threads, args.mode, args.splice_frames,
                    backgrounds)
    except (ValueError, KeyError, OSError, TypeError) as exc:
        print(f"siam-tune: error: {exc}", file=sys.stderr)
        return 2
    write_outputs(args.out, rows, grid, argv)
    keys = list(grid)
    if args.mode == "presence":
        columns = [f"presence_{k}" for k in (*PRESENCE_COLUMNS, "mean")]
    else:
        columns = ["auc_mean"]
    print(" | ".join([*keys, *columns]))
    for row in rows[:10]:
        print(" | ".join([*(str(row[k]) for k in keys), *(f"{row[c]:.4f}" for c in columns)]))
    print(f"best: {args.out / 'best.yaml'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
