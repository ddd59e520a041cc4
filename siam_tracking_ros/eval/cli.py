"""``siam-eval``: evaluate trackers (ours and OpenCV baselines) side by side on labelled sequences.

Writes ``OUT/results.json``, ``OUT/results.md``, per-frame CSVs ``OUT/<tracker>/<mode>/<seq>.csv``
and ``OUT/success_plot.png`` / ``OUT/precision_plot.png``, and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from siam_tracking_ros.core.presence import LostPolicy
from siam_tracking_ros.core.report import json_safe, machine_info
from siam_tracking_ros.data.sequences import Sequence, find_sequences
from siam_tracking_ros.eval import factory
from siam_tracking_ros.eval.baselines import BASELINES, DEFAULT_NANO_BACKBONE, DEFAULT_NANO_NECKHEAD
from siam_tracking_ros.eval.metrics import (
    VOT_EAO_INTERVAL,
    SupervisedRun,
    eao,
    longterm_curves,
    longterm_summary,
    vot_accuracy,
)
from siam_tracking_ros.eval.plots import precision_plot, success_plot
from siam_tracking_ros.eval.runner import (
    SequenceRecord,
    run_ope,
    run_supervised,
    score_ope,
    supervised_overlaps,
)

OPE_KEYS = ("auc", "precision", "norm_precision", "mean_iou", "fps", "frames")

CONVENTIONS = {
    "ope": "init on the first annotated frame with its ground truth; that frame is not scored; "
           "frames without ground truth are skipped",
    "success_auc": "mean over 21 IoU thresholds 0:0.05:1 of the fraction of frames with IoU > t",
    "precision": "fraction of frames with centre error <= 20 px",
    "norm_precision": "fraction of frames with centre error / gt size (per axis, L2) <= 0.2",
    "fps": "tracked frames / seconds inside track() (frame decoding excluded; CUDA synchronised)",
    "summary": "unweighted mean over sequences; 'frames' is the total",
    "failed_update": "OpenCV ok=False: last good box repeated with score 0",
    "vot": "failure = IoU 0 with present gt; re-init 5 frames later; accuracy excludes 10 frames "
           "after each (re)init; EAO over the stated interval of sequence lengths",
    "longterm": "VOT-LT precision/recall/F over score thresholds 0:0.01:1 on the OPE run; "
                "reported at the threshold with the best F",
    "presence": "segments per sequence: as is (real nan frames), spliced with the next sequence "
                "(init on A, then frames of B), A-B-A (target returns; with --backgrounds: A-B-A for "
                "every background B instead), A then black frames; one "
                "IDLE/TRACKING/LOST state machine with wider search while LOST; roc_auc: score of "
                "visible vs absent frames; absent_lost: absent frames in LOST after the first "
                "lost_frames; present_tracking: visible frames in TRACKING; reacquire: frames from "
                "the return to TRACKING with IoU >= 0.5; reliability: present = IoU >= 0.5",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", nargs="+", metavar="NAME",
                        help=f"registry variants and/or baselines ({', '.join(BASELINES)})")
    parser.add_argument("--weights", nargs="+", metavar="[NAME=]PATH",
                        help="weights per variant (NAME=PATH; a plain PATH when one variant; 'random')")
    parser.add_argument("--option", nargs="+", metavar="[NAME:]KEY=VALUE", default=[],
                        help="config overrides for all variants, or for NAME only")
    parser.add_argument("--dataset", type=Path, help="dataset folder (OTB, VOT, GOT-10k or LaSOT layout)")
    parser.add_argument("--sequences", nargs="+", metavar="S", help="only these sequence folders")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (variants only)")
    parser.add_argument("--out", type=Path, help="output folder")
    parser.add_argument("--mode", nargs="+", choices=("ope", "vot", "longterm", "presence"), default=["ope"],
                        help="ope (always run), vot (supervised resets), longterm (P/R/F on the OPE run), "
                             "presence (is the score a presence probability: spliced/blank/absent frames)")
    parser.add_argument("--splice-frames", type=int, default=60,
                        help="presence: frames of each sequence in a spliced segment")
    policy = LostPolicy()
    parser.add_argument("--score-threshold", type=float, default=policy.score_threshold,
                        help="presence: LOST threshold")
    parser.add_argument("--lost-frames", type=int, default=policy.lost_frames,
                        help="presence: low frames before LOST")
    parser.add_argument("--found-frames", type=int, default=policy.found_frames,
                        help="presence: high frames before TRACKING")
    parser.add_argument("--lost-search-scale", type=float, default=policy.lost_search_scale,
                        help="presence: search-region scale while LOST")
    parser.add_argument("--found-threshold", type=float, default=policy.found_threshold,
                        help="presence: score a frame needs while LOST (and --score-threshold) to count "
                             "as seen")
    parser.add_argument("--backgrounds", nargs="+", metavar="S",
                        help="presence: sequence folders of --dataset used only as target-absent frames "
                             "(each sequence returns after every one of them, instead of after the next)")
    parser.add_argument("--eao-interval", nargs=2, type=int, default=list(VOT_EAO_INTERVAL),
                        metavar=("LO", "HI"), help="sequence lengths averaged by EAO (default VOT2018)")
    parser.add_argument("--skip", type=int, default=5, help="vot: frames skipped after a failure")
    parser.add_argument("--burn-in", type=int, default=10, help="vot: frames after init left out of accuracy")
    parser.add_argument("--max-frames", type=int, help="use only the first N frames of each sequence")
    parser.add_argument("--nano-backbone", default=str(DEFAULT_NANO_BACKBONE),
                        help="opencv-nano backbone ONNX")
    parser.add_argument("--nano-neckhead", default=str(DEFAULT_NANO_NECKHEAD),
                        help="opencv-nano neck/head ONNX")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV threads (default 1)")
    parser.add_argument("--backend", default="torch", choices=("auto", "torch", "onnxruntime"),
                        help="inference backend of the variants (auto = onnxruntime on CPU where it "
                             "applies; default torch, the reference)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--list", action="store_true", help="list tracker names and exit")
    parser.add_argument("--report", type=Path, nargs="+", metavar="RESULTS_JSON",
                        help="print the summary and per-sequence tables of earlier runs and exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join([*factory._variant_names(), *BASELINES]))
        return 0
    if args.report:
        print(report(args.report))
        return 0
    missing = [f"--{k}" for k in ("tracker", "dataset", "out") if not getattr(args, k)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    torch.set_num_threads(max(1, args.threads))
    cv2.setNumThreads(max(1, args.threads))
    try:
        requests = factory.build_requests(args.tracker, args.weights, args.option)
        sequences = find_sequences(args.dataset, args.sequences)
        backgrounds = find_sequences(args.dataset, args.backgrounds) if args.backgrounds else None
    except (KeyError, ValueError, FileNotFoundError) as exc:
        print(f"siam-eval: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    try:
        results = evaluate(args, requests, sequences, backgrounds)
    except Exception as exc:  # a tracker that cannot be built: say which and why
        print(f"siam-eval: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    write_outputs(args, results, argv)
    return 0


def evaluate(args: argparse.Namespace, requests: list[factory.TrackerRequest],
             sequences: list[Sequence], backgrounds: list[Sequence] | None = None) -> dict[str, Any]:
    """Run every tracker on every sequence; returns the ``trackers`` part of results.json
    (``backgrounds``: the presence protocol's target-absent sequences, ``--backgrounds``)."""
    results: dict[str, Any] = {}
    for request in requests:
        tracker = factory.build(request, args.device, args.nano_backbone, args.nano_neckhead)
        if hasattr(tracker, "use_backend"):
            tracker.use_backend(getattr(args, "backend", "torch"), max(1, args.threads))
        entry: dict[str, Any] = {"weights": request.weights, "options": request.options,
                                 "device": str(getattr(tracker, "device", "cpu")),
                                 "sequences": {}, "curves": {}}
        vot_runs: list[SupervisedRun] = []
        for sequence in sequences:
            entry["sequences"][sequence.name], curves = _evaluate_sequence(
                args, request.name, tracker, sequence, vot_runs)
            entry["curves"][sequence.name] = curves
        entry["summary"] = summarize(entry["sequences"])
        if "vot" in args.mode:
            entry["summary"]["eao"] = eao(vot_runs, tuple(args.eao_interval))
        if "presence" in args.mode:
            entry["presence"], entry["reliability"] = _evaluate_presence(args, request.name, tracker,
                                                                         sequences, backgrounds)
        results[request.name] = entry
    return results


def _evaluate_sequence(args: argparse.Namespace, name: str, tracker: Any, sequence: Sequence,
                       vot_runs: list[SupervisedRun]) -> tuple[dict[str, Any], dict[str, list]]:
    n = len(sequence) if args.max_frames is None else min(len(sequence), args.max_frames)
    with tqdm(total=n, desc=f"{name} {sequence.name}", leave=False, disable=args.no_progress,
              unit="fr") as bar:
        record = run_ope(tracker, sequence, args.max_frames, bar.update)
    _save(args.out, name, "ope", sequence.name, record)
    gt = sequence.boxes[:n]
    scores = score_ope(record, sequence)
    row: dict[str, Any] = {**scores.summary(), "fps": record.fps()}
    curves = {"success": scores.success_curve.tolist(), "precision": scores.precision_curve.tolist()}
    if "longterm" in args.mode:
        lt_gt, lt_boxes = gt.copy(), record.boxes.copy()
        lt_gt[record.inits] = np.nan  # the init frame is neither a prediction nor a target
        lt_boxes[record.inits] = np.nan
        row.update(longterm_summary(longterm_curves(lt_boxes, record.scores, lt_gt)))
    if "vot" in args.mode:
        with tqdm(total=n, desc=f"{name} {sequence.name} (vot)", leave=False,
                  disable=args.no_progress, unit="fr") as bar:
            supervised = run_supervised(tracker, sequence, args.skip, args.max_frames, bar.update)
        _save(args.out, name, "vot", sequence.name, supervised)
        run = supervised_overlaps(supervised, sequence.boxes)
        vot_runs.append(run)
        row.update({"accuracy": vot_accuracy(run, args.burn_in), "failures": len(run.failures)})
    return row, curves


def _evaluate_presence(args: argparse.Namespace, name: str, tracker: Any, sequences: list[Sequence],
                       backgrounds: list[Sequence] | None) -> tuple[dict[str, Any], dict[str, list]]:
    """The presence protocol (:func:`siam_tracking_ros.eval.presence.evaluate_presence`)."""
    from siam_tracking_ros.eval.presence import evaluate_presence, reliability_bins

    policy = LostPolicy(**{field.name: getattr(args, field.name) for field in dataclasses.fields(LostPolicy)})
    with tqdm(desc=f"{name} presence", leave=False, disable=args.no_progress, unit="fr") as bar:
        summary, pooled = evaluate_presence(tracker, sequences, policy, args.splice_frames,
                                            args.max_frames, bar.update, backgrounds)
    mean_score, observed, counts = reliability_bins(np.clip(pooled["scores"], 0.0, 1.0), pooled["present"])
    return summary, {"mean_score": mean_score.tolist(), "observed": observed.tolist(),
                     "count": counts.tolist()}


def _save(out: Path, tracker: str, mode: str, sequence: str, record: SequenceRecord) -> None:
    record.save_csv(out / tracker / mode / f"{sequence}.csv")


def summarize(per_sequence: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean over sequences of every numeric key (NaN ignored); ``frames``/``failures``
    are totals; the per-sequence long-term ``threshold`` is not averaged."""
    rows = list(per_sequence.values())
    keys = [k for k in rows[0] if isinstance(rows[0][k], int | float) and k != "threshold"] if rows else []
    summary: dict[str, Any] = {}
    for key in keys:
        values = np.asarray([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        if key in ("frames", "failures"):
            summary[key] = int(np.nansum(values))
        else:
            finite = values[np.isfinite(values)]
            summary[key] = float(np.mean(finite)) if finite.size else float("nan")
    return summary


def write_outputs(args: argparse.Namespace, trackers: dict[str, Any], argv: list[str] | None) -> None:
    """results.json, results.md, plots and the printed table."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    command = "siam-eval " + shlex.join(sys.argv[1:] if argv is None else argv)
    document = {"trackers": trackers, "command": command, "machine": machine_info(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "dataset": str(args.dataset), "modes": args.mode,
                "eao_interval": list(args.eao_interval), "conventions": CONVENTIONS}
    (out / "results.json").write_text(json.dumps(json_safe(document), indent=1))
    table = format_table(trackers, args.mode)
    if "presence" in args.mode:
        table += "\n\n" + presence_table(trackers)
    (out / "results.md").write_text(f"`{command}`\n\n{table}\n")
    if not args.no_plots:
        _write_plots(out, trackers)
        if "presence" in args.mode:
            from siam_tracking_ros.eval.plots import reliability_plot

            reliability_plot({n: tuple(np.asarray(e["reliability"][k], dtype=np.float64)
                                       for k in ("mean_score", "observed", "count"))
                              for n, e in trackers.items()}, out / "reliability_plot.png")
    print(table)


def _write_plots(out: Path, trackers: dict[str, Any]) -> None:
    succ, prec = {}, {}
    for name, entry in trackers.items():
        curves = [c for c in entry["curves"].values() if np.all(np.isfinite(c["success"]))]
        if curves:
            succ[name] = np.mean([c["success"] for c in curves], axis=0)
            prec[name] = np.mean([c["precision"] for c in curves], axis=0)
    if succ:
        success_plot(succ, {n: float(np.mean(c)) for n, c in succ.items()}, out / "success_plot.png")
        precision_plot(prec, {n: float(c[20]) for n, c in prec.items()}, out / "precision_plot.png")


def format_table(trackers: dict[str, Any], modes: list[str]) -> str:
    """Markdown table: one row per tracker (summary over sequences)."""
    keys = list(OPE_KEYS)
    if "vot" in modes:
        keys += ["accuracy", "failures", "eao"]
    if "longterm" in modes:
        keys += ["f_score", "lt_precision", "lt_recall"]
    lines = ["| tracker | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, entry in trackers.items():
        cells = [_cell(entry["summary"].get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PRESENCE_KEYS = ("roc_auc", "absent_lost", "present_tracking", "reacquired", "reacquire_frames",
                 "f_score", "lt_precision", "lt_recall", "absent_frames", "present_frames")


def presence_table(trackers: dict[str, Any]) -> str:
    """Markdown table of the presence protocol, one row per tracker."""
    lines = ["| tracker | " + " | ".join(PRESENCE_KEYS) + " |", "|---" * (len(PRESENCE_KEYS) + 1) + "|"]
    for name, entry in trackers.items():
        if "presence" in entry:
            cells = [_cell(entry["presence"].get(k)) for k in PRESENCE_KEYS]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sequence_table(trackers: dict[str, Any], key: str = "auc") -> str:
    """Markdown table of one metric: sequences as rows, trackers as columns."""
    names = list(trackers)
    sequences = list(dict.fromkeys(s for entry in trackers.values() for s in entry["sequences"]))
    lines = ["| sequence | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for seq in sequences:
        cells = [_cell(trackers[n]["sequences"].get(seq, {}).get(key)) for n in names]
        lines.append(f"| {seq} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(paths: list[Path], keys: tuple[str, ...] = ("auc", "precision", "mean_iou", "fps")) -> str:
    """Markdown of earlier runs merged: the summary table, then one per-sequence table per key."""
    trackers: dict[str, Any] = {}
    modes: set[str] = set()
    for path in paths:
        document = json.loads(Path(path).read_text())
        trackers.update(document["trackers"])
        modes.update(document.get("modes", ["ope"]))
    parts = [format_table(trackers, sorted(modes))]
    for key in keys:
        parts.append(f"**{key}** per sequence\n\n" + sequence_table(trackers, key))
    return "\n\n".join(parts)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
