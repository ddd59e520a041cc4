"""NanoTrack v2 (our PyTorch network + official weights) against OpenCV's cv2.TrackerNano.

OpenCV runs the official ONNX export of the same v2 weights. With ``opencv_compat=True`` our
tracker reproduces OpenCV's loop, so both must give (nearly) the same box on every frame.
Run as a script to print the per-sequence table of docs/NANOTRACK.md for all sequences:

    python test/unit/test_trackers_nanotrack_opencv.py [--frames N]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.data.sequences import Sequence, find_sequences
from siam_tracking_ros.trackers.registry import build_tracker

ROOT = Path(__file__).resolve().parents[2]
NANOTRACK = ROOT.parent / "shared" / "data" / "weights" / "nanotrack"

#: short sequences (about 400 frames in all) so the check stays near a minute on 2 CPU cores
AGREEMENT_SEQUENCES = ["otb_Dudek_first20", "uav10_wakeboard7", "davis_tennis_propainter",
                       "davis_bmx_trees_propainter", "otb_Crossing"]


def opencv_nano(weights_dir: Path) -> cv2.Tracker:
    """cv2.TrackerNano on the official v2 ONNX pair."""
    params = cv2.TrackerNano_Params()
    params.backbone = str(weights_dir / "nanotrackv2" / "nanotrack_backbone_sim.onnx")
    params.neckhead = str(weights_dir / "nanotrackv2" / "nanotrack_head_sim.onnx")
    return cv2.TrackerNano_create(params)


def compare_with_opencv(sequence: Sequence, weights_dir: Path, frames: int | None = None,
                        **options) -> dict[str, float]:
    """Track ``sequence`` with ours and OpenCV from the same integer init box.

    Returns the mean/min IoU between the two trackers' boxes, each one's mean IoU with the
    ground truth (frames where it is present) and that of the init box left in place (``frozen_gt``).
    """
    ours = build_tracker("nanotrack", weights=weights_dir / "pretrained" / "nanotrackv2.pth",
                         device="cpu", version="v2", **options)
    theirs = opencv_nano(weights_dir)
    start = sequence.first_valid()
    stop = len(sequence) if frames is None else min(len(sequence), start + frames)
    first = sequence.frame(start)
    box = tuple(round(float(v)) for v in sequence.boxes[start])  # OpenCV takes an integer Rect
    ours.init(first, box)
    theirs.init(first, box)
    agree, ours_gt, theirs_gt, frozen_gt = [], [], [], []
    for index in range(start + 1, stop):
        frame = sequence.frame(index)
        mine = np.asarray(ours.track(frame).box)
        _, other = theirs.update(frame)
        other = np.asarray(other, dtype=np.float64)
        agree.append(float(iou_xywh(mine, other)))
        truth = sequence.boxes[index]
        if np.isfinite(truth).all():
            ours_gt.append(float(iou_xywh(mine, truth)))
            theirs_gt.append(float(iou_xywh(other, truth)))
            frozen_gt.append(float(iou_xywh(np.asarray(box, np.float64), truth)))
    return {"frames": len(agree), "agree_mean": float(np.mean(agree)), "agree_min": float(np.min(agree)),
            "ours_gt": float(np.mean(ours_gt)), "opencv_gt": float(np.mean(theirs_gt)),
            "frozen_gt": float(np.mean(frozen_gt))}


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", AGREEMENT_SEQUENCES)
def test_nanotrack_v2_agrees_with_opencv_tracker_nano(name: str, sequences_dir: Path,
                                                      nanotrack_dir: Path) -> None:
    cv2.setNumThreads(1)
    sequence = find_sequences(sequences_dir, [name])[0]
    result = compare_with_opencv(sequence, nanotrack_dir, opencv_compat=True)
    assert result["agree_mean"] >= 0.95, result
    # agreement is not achieved by both failing: the pair still follows the target, better than the
    # init box left in place (frozen box / ours, measured: Dudek 0.886 / 0.915, wakeboard7 0.053 /
    # 0.718, tennis 0.728 / 0.748, bmx_trees 0.227 / 0.530, Crossing 0.032 / 0.762)
    assert abs(result["ours_gt"] - result["opencv_gt"]) < 0.05, result
    assert result["ours_gt"] > max(0.5, result["frozen_gt"]), result


def main(argv: list[str] | None = None) -> int:
    """Print the agreement table (markdown) for every shared sequence, both tracking modes."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=None, help="limit frames per sequence")
    parser.add_argument("--sequences", default=str(ROOT.parent / "shared" / "data" / "sequences"))
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    print("| sequence | frames | compat: IoU ours-vs-OpenCV mean (min) | compat: ours/OpenCV vs GT "
          "| official loop: IoU vs OpenCV | official loop: ours vs GT |")
    print("|---|---|---|---|---|---|")
    for sequence in find_sequences(args.sequences):
        began = time.perf_counter()
        compat = compare_with_opencv(sequence, NANOTRACK, args.frames, opencv_compat=True)
        official = compare_with_opencv(sequence, NANOTRACK, args.frames)
        print(f"| {sequence.name} | {compat['frames']} | {compat['agree_mean']:.3f} "
              f"({compat['agree_min']:.3f}) | {compat['ours_gt']:.3f} / {compat['opencv_gt']:.3f} | "
              f"{official['agree_mean']:.3f} | {official['ours_gt']:.3f} |", flush=True)
        print(f"  ({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
