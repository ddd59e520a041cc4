"""Training end to end on real shared frames: a 2-iteration run of a registered variant,
checkpoint resume, export to project weights, CLI, and DDP through torchrun (gloo, CPU)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from siam_tracking_ros.train.cli import main
from siam_tracking_ros.train.config import config_from_dict, load_config
from siam_tracking_ros.train.trainer import Trainer
from siam_tracking_ros.weights.io import read_metadata

ROOT = Path(__file__).resolve().parents[2]


def _config(sequences_dir: Path, out: Path, **extra) -> dict:
    data = {
        "variant": "nanotrack",
        "variant_options": {"version": "v1"},
        "output_dir": str(out),
        "device": "cpu",
        "threads": 1,
        "progress": False,
        "log_every": 1,
        "datasets": [{"type": "sequences", "root": str(sequences_dir),
                      "names": ["otb_Dudek_first20", "davis_bmx_trees_propainter"], "frame_gap": 10}],
        "schedule": {"epochs": 1, "samples_per_epoch": 4, "batch_size": 2, "warmup_epochs": 0},
    }
    data.update(extra)
    return data


def test_two_iterations_then_resume(sequences_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = config_from_dict(_config(sequences_dir, out))
    summary = Trainer(config).run()
    assert summary["steps"] == 2 and summary["epochs_done"] == 1
    log = (out / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,epoch") and len(log) == 3
    losses = [float(line.split(",")[3]) for line in log[1:]]
    assert all(loss > 0 and torch.isfinite(torch.tensor(loss)) for loss in losses)
    checkpoint = out / "checkpoints" / "last.pt"
    saved = torch.load(checkpoint, weights_only=True)

    config.schedule.epochs = 2
    resumed = Trainer(config, resume=checkpoint)
    assert (resumed.step, resumed.epoch, resumed.step_in_epoch) == (2, 1, 0)
    for key, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    assert resumed.optimizer.state_dict()["state"]  # momentum buffers came back
    summary = resumed.run()
    assert summary["steps"] == 4 and summary["epochs_done"] == 2


#: validation frames of otb_Crossing: the walker moves (a box left in place scores AUC 0.243 here,
#: the official v1 weights 0.605)
VAL_SEQUENCE, VAL_FRAMES = "otb_Crossing", 20


def _success_auc_by_hand(boxes: np.ndarray, truth: np.ndarray) -> float:
    """OTB success AUC written out: mean over IoU thresholds 0, 0.05, .., 1 of the fraction of
    frames with IoU above it (every frame counted, the init frame too, as validation does)."""
    from siam_tracking_ros.core.geometry import iou_xywh

    ious = np.array([float(iou_xywh(b, t)) for b, t in zip(boxes, truth, strict=True)])
    return float(np.mean([(ious > threshold).mean() for threshold in np.linspace(0.0, 1.0, 21)]))


def test_validation_and_export_give_a_loadable_default(sequences_dir: Path, nanotrack_dir: Path,
                                                       tmp_path: Path) -> None:
    from siam_tracking_ros.data.sequences import find_sequences
    from siam_tracking_ros.trackers.registry import build_tracker

    out = tmp_path / "run"
    target = tmp_path / "shipped" / "nanotrack.safetensors"
    # fine-tune the official v1 checkpoint with a tiny learning rate: the validated AUC is then a
    # real tracker's (well away from 0 and 1), so a made-up number cannot match it by chance
    data = _config(sequences_dir, out, export_to=str(target),
                   init_weights=str(nanotrack_dir / "pretrained" / "nanotrackv1.pth"),
                   validation={"root": str(sequences_dir), "sequences": [VAL_SEQUENCE],
                               "max_frames": VAL_FRAMES, "every_minutes": 60})
    data["schedule"].update(lr=1e-6, end_lr=1e-7, warmup_lr=1e-6)
    summary = Trainer(config_from_dict(data)).run()
    rows = (out / "val_log.csv").read_text().splitlines()
    assert rows[0].startswith(f"step,epoch,elapsed_s,auc_{VAL_SEQUENCE}") and len(rows) == 2
    logged = dict(zip(rows[0].split(","), rows[1].split(","), strict=True))
    assert float(logged["auc_mean"]) == pytest.approx(summary["best_val_auc"], abs=1e-4)
    assert (out / "curves.png").stat().st_size > 0
    assert target.read_bytes() == (out / "export" / "best.safetensors").read_bytes()
    meta = read_metadata(target)
    assert meta["variant"] == "nanotrack" and json.loads(meta["config"])["version"] == "v1"

    # the AUC again, from the exported file, by a loop of its own
    sequence = find_sequences(sequences_dir, [VAL_SEQUENCE])[0]
    tracker = build_tracker("nanotrack", weights=str(target), device="cpu")
    assert tracker.config.version == "v1"
    truth = sequence.boxes[:VAL_FRAMES]
    tracker.init(sequence.frame(0), truth[0])
    boxes = [truth[0]] + [tracker.track(sequence.frame(i)).box for i in range(1, VAL_FRAMES)]
    recomputed = _success_auc_by_hand(np.asarray(boxes, dtype=np.float64), truth)
    frozen = _success_auc_by_hand(np.repeat(truth[:1], VAL_FRAMES, axis=0), truth)
    assert summary["best_val_auc"] == pytest.approx(recomputed, abs=1e-6)
    assert recomputed > frozen + 0.2, (recomputed, frozen)


def test_cli_cache_then_train_from_cache(sequences_dir: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(_config(sequences_dir, tmp_path / "run")))
    cache = tmp_path / "pairs.npz"
    assert main(["cache", str(cfg_path), str(cache), "--frames-per-track", "5"]) == 0
    assert cache.stat().st_size < 2 * 1024 * 1024
    data = _config(sequences_dir, tmp_path / "run2",
                   datasets=[{"type": "cache", "path": str(cache), "name": "cached"}])
    cfg_path.write_text(yaml.safe_dump(data))
    assert main([str(cfg_path), "--set", "schedule.samples_per_epoch=2"]) == 0
    assert (tmp_path / "run2" / "checkpoints" / "last.pt").exists()
    out = tmp_path / "exported.safetensors"
    assert main(["export", str(tmp_path / "run2" / "checkpoints" / "last.pt"), str(out)]) == 0
    assert read_metadata(out)["trained_steps"] == "1"


def test_config_errors_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("variant: nanotrack\ndatasets: []\nschedule: {epochz: 3}\n")
    with pytest.raises(ValueError, match="epochz"):
        load_config(bad)
    assert main([str(bad)]) == 2


@pytest.mark.slow
def test_torchrun_two_processes_gloo(sequences_dir: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    cfg_path = tmp_path / "ddp.yaml"
    data = _config(sequences_dir, tmp_path / "run")
    data["schedule"]["samples_per_epoch"] = 8  # 2 ranks x 2 iterations x batch 2
    cfg_path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    command = [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "scripts" / "siam-train"),
               str(cfg_path)]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["steps"] == 2
    rows = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    assert rows[-1].split(",")[0] == "2"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["siamfc", "siamrpn", "siammask"])
def test_other_head_kinds_train_one_step(variant: str, sequences_dir: Path, tmp_path: Path) -> None:
    data = _config(sequences_dir, tmp_path / "run", variant=variant, variant_options={})
    data["datasets"][0]["names"] = ["davis_bmx_trees_propainter"]  # has masks
    data["schedule"]["samples_per_epoch"] = 2
    summary = Trainer(config_from_dict(data)).run()
    assert summary["steps"] == 1
    row = (tmp_path / "run" / "train_log.csv").read_text().splitlines()
    header, values = row[0].split(","), row[1].split(",")
    parts = dict(zip(header, values, strict=True))
    assert float(parts["loss"]) > 0
    if variant == "siammask":
        assert float(parts["mask"]) > 0


def test_ema_weights_are_the_average_and_are_what_gets_exported(sequences_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    data = _config(sequences_dir, tmp_path / "run")
    data["schedule"]["ema_decay"] = 0.5
    trainer = Trainer(config_from_dict(data))
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    trained = trainer.model.state_dict()
    averaged = trainer.ema.module.state_dict()
    name = next(k for k, v in start.items() if v.is_floating_point() and not torch.equal(v, trained[k]))
    # after two steps at decay 0.5: avg = 0.5 * (0.5 * w0 + 0.5 * w1) + 0.5 * w2, so it lies between
    assert not torch.equal(averaged[name], trained[name])
    assert not torch.equal(averaged[name], start[name])
    exported = load_file(str(trainer.export(tmp_path / "ema.safetensors", half=False)))
    key = next(k for k in exported if k.endswith(name) or k == name)
    assert torch.equal(exported[key], averaged[name])
    resumed = Trainer(config_from_dict(data), resume=tmp_path / "run" / "checkpoints" / "last.pt")
    for key, value in averaged.items():
        assert torch.equal(resumed.ema.module.state_dict()[key], value), key
    from siam_tracking_ros.train.export import export_checkpoint

    from_checkpoint = load_file(str(export_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt",
                                                      tmp_path / "cli.safetensors", half=False)))
    assert from_checkpoint.keys() == exported.keys()  # siam-train export also takes the average
    assert all(torch.equal(from_checkpoint[k], exported[k]) for k in exported)


def test_ema_decay_out_of_range_is_refused(sequences_dir: Path, tmp_path: Path) -> None:
    data = _config(sequences_dir, tmp_path / "run")
    data["schedule"]["ema_decay"] = 1.5
    with pytest.raises(ValueError, match="ema_decay"):
        Trainer(config_from_dict(data))


def _variants_with_light_options() -> list[tuple[str, dict]]:
    from siam_tracking_ros.trackers.registry import list_trackers

    light = {"siamrpnpp": {"backbone": "alexnet"}, "nanotrack": {"version": "v1"}}
    return [(name, light.get(name, {})) for name in sorted(list_trackers())]


@pytest.mark.parametrize(("variant", "options"), _variants_with_light_options())
def test_from_scratch_outputs_are_calibrated_to_order_one(variant: str, options: dict, sequences_dir: Path,
                                                          tmp_path: Path) -> None:
    """Every registered variant trains a step from random init with a loss of order one."""
    from siam_tracking_ros.models.heads.fc import FCHead

    data = _config(sequences_dir, tmp_path / "run", variant=variant, variant_options=options)
    trainer = Trainer(config_from_dict(data))
    raw: dict[str, torch.Tensor] = {}
    heads = [(n, m) for n, m in trainer.model.named_modules() if isinstance(m, FCHead)]
    hooks = [m.register_forward_hook(lambda _m, _i, out, key=n: raw.__setitem__(key, out)) for n, m in heads]
    outputs = trainer._probe(hooks)  # the same probe batch the calibration used
    spreads = [float(out.std()) for out in raw.values()]
    for key, index, _ in trainer._output_scalers():
        value = outputs[key] if index is None else outputs[key][index]
        spreads.append(float(value.std()) / (0.5 if key.startswith("loc") else 1.0))
    assert all(abs(s - 1.0) < 1e-3 for s in spreads), spreads
    for _, head in heads:  # the score scale stays fixed during training
        assert not head.adjust.weight.requires_grad and head.adjust.bias.requires_grad
    first = Trainer(config_from_dict(data)).train_step(next(iter(trainer.loader())))
    # uncalibrated: 1e2 (RPN heads) to 1e3 (CIResNet-22 score map)
    assert math.isfinite(first["loss"]) and first["loss"] < 10.0


def test_calibration_can_be_switched_off(sequences_dir: Path, tmp_path: Path) -> None:
    data = _config(sequences_dir, tmp_path / "run", variant="siamfc", variant_options={})
    data["schedule"]["calibrate_output_scale"] = False
    trainer = Trainer(config_from_dict(data))
    assert float(trainer.model.head.adjust.weight.flatten()[0]) == pytest.approx(0.001)
