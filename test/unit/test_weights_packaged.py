"""The trained weights that ship in siam_tracking_ros/weights/data (docs/MODELS.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.data.sequences import find_sequences
from siam_tracking_ros.trackers import build_tracker, list_trackers
from siam_tracking_ros.trackers.registry import PACKAGED_WEIGHTS_DIR
from siam_tracking_ros.weights.io import read_metadata

SHIPPED = sorted(PACKAGED_WEIGHTS_DIR.glob("*.safetensors"))
MAX_BYTES = 20 * 1024 * 1024
#: three sequences of the test split (never trained on, never used to select; docs/MODELS.md)
NANOTRACK_TEST = ("otb_Crossing", "vot_bag", "davis_bmx_trees_propainter")
#: mean IoU of the shipped file over them was 0.61 when committed (a box left at the init position
#: scores 0.10); the bar leaves room for float-level differences on short, hard sequences
NANOTRACK_MIN_MEAN_IOU = 0.45
FROZEN_MARGIN = 0.15
#: the same for each seed variant's file (a box left in place: 0.10)
SEED_MIN_MEAN_IOU = 0.35


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_file_is_small_tagged_and_loads(path: Path) -> None:
    assert path.stat().st_size <= MAX_BYTES
    variant = read_metadata(path)["variant"]
    assert variant == path.stem and variant in list_trackers()
    tracker = build_tracker(variant, device="cpu")  # weights=None: the packaged default
    assert tracker.model.training is False


def test_default_variant_ships_weights() -> None:
    assert (PACKAGED_WEIGHTS_DIR / "nanotrack.safetensors").exists()


def test_shipped_nanotrack_is_the_pretrained_backbone_with_a_calibrated_score() -> None:
    tracker = build_tracker("nanotrack", device="cpu")
    assert tracker.config.backbone == "mobilenetv2" and tracker.config.version == "v2"
    assert tracker.config.score_calibration is not None


def _test_split_ious(tracker: object, sequences_dir: Path) -> list[tuple[str, float, float]]:
    """``(sequence, mean IoU of the tracker, mean IoU of the init box left in place)`` on
    :data:`NANOTRACK_TEST`."""
    out = []
    for sequence in find_sequences(sequences_dir, list(NANOTRACK_TEST)):
        tracker.init(sequence.frame(0), sequence.boxes[0])
        boxes = np.array([tracker.track(sequence.frame(i)).box for i in range(1, len(sequence))])
        truth = sequence.boxes[1:]
        labelled = np.isfinite(truth).all(axis=1)
        iou = float(iou_xywh(boxes[labelled], truth[labelled]).mean())
        frozen = float(iou_xywh(np.repeat(sequence.boxes[:1], labelled.sum(), 0), truth[labelled]).mean())
        out.append((sequence.name, iou, frozen))
        tracker.reset()
    return out


def test_shipped_nanotrack_tracks_test_sequences(sequences_dir: Path) -> None:
    runs = _test_split_ious(build_tracker("nanotrack", device="cpu"), sequences_dir)
    for name, iou, frozen in runs:
        assert iou > frozen + FROZEN_MARGIN, (name, iou, frozen)
    assert float(np.mean([iou for _, iou, _ in runs])) >= NANOTRACK_MIN_MEAN_IOU, runs


def test_shipped_nanotrack_score_drops_when_the_target_is_gone(sequences_dir: Path) -> None:
    from siam_tracking_ros.eval.presence import run_segment, spliced_segment

    crossing, bag = find_sequences(sequences_dir, ["otb_Crossing", "vot_bag"])
    tracker = build_tracker("nanotrack", device="cpu")
    run = run_segment(tracker, spliced_segment(crossing, bag, 60))  # init on Crossing, then bag frames
    present, absent = run.scores[:60], run.scores[60:]
    # calibrated on validation runs, where a confident peak held the target ~60 % of the time
    assert present.mean() > 0.5 > absent.mean(), (present.mean(), absent.mean())
    assert present.mean() - absent.mean() > 0.2, (present.mean(), absent.mean())


def _training_config(path: Path) -> Path:
    """The config/train file whose run made a shipped file (its metadata names the run)."""
    import json

    run = json.loads(read_metadata(path)["training"])["run"]
    configs = [p for p in (PACKAGED_WEIGHTS_DIR.parents[2] / "config" / "train").glob("*.yaml")
               if f"name: {run}\n" in p.read_text()]
    assert len(configs) == 1, (path.name, run, configs)
    return configs[0]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_file_names_the_config_that_made_it(path: Path) -> None:
    config = _training_config(path).read_text()
    assert f"export_to: siam_tracking_ros/weights/data/{path.name}\n" in config


SEED_SHIPPED = [p for p in SHIPPED if p.stem != "nanotrack"]


@pytest.mark.parametrize("path", SEED_SHIPPED, ids=[p.stem for p in SEED_SHIPPED])
def test_every_shipped_variant_tracks_test_sequences(path: Path, sequences_dir: Path) -> None:
    """Each seed variant's file follows the target on test sequences far better than a box left
    where it started (the default has its own, stricter test above)."""
    runs = _test_split_ious(build_tracker(path.stem, device="cpu").use_backend("auto", 1), sequences_dir)
    assert float(np.mean([iou for _, iou, _ in runs])) >= SEED_MIN_MEAN_IOU, runs
