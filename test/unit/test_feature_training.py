"""``siam-train features``: cache, train, resume, calibrate and export on a tiny real run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from siam_tracking_ros.trackers import build_tracker
from siam_tracking_ros.train import pretrained
from siam_tracking_ros.train.feature_training import (
    AbsentPairSampler,
    AbsentSpec,
    FeatureCache,
    FeatureTrainer,
    _batch,
    load_feature_config,
)
from siam_tracking_ros.train.students import search_boxes
from siam_tracking_ros.weights.io import read_metadata

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "config" / "train" / "nanotrack_mnv2.yaml"


@pytest.fixture(scope="module")
def shared_dir(sequences_dir: Path) -> Path:
    return sequences_dir.parent.parent


@pytest.fixture(scope="module")
def have_pretrained() -> None:
    try:
        pretrained.fetch("mobilenetv2_torchvision")
    except OSError as exc:
        pytest.skip(f"pretrained MobileNetV2 not available: {exc}")


def _tiny_config(tmp_path: Path, shared_dir: Path, epochs: int) -> object:
    sequences = shared_dir / "data" / "sequences"
    teacher = shared_dir / "data" / "weights" / "nanotrack" / "pretrained" / "nanotrackv2.pth"
    overrides = [f"work_dir={tmp_path / 'runs'}", "name=tiny", "pairs=64", f"epochs={epochs}",
                 "batch_size=32", "validate_every=1", "validation_max_frames=8",
                 "calibration_splice_frames=10", f"export_to={tmp_path / 'tiny.safetensors'}",
                 f"validation_root={sequences}", "validation_sequences=[otb_Dudek_first20]",
                 f"teacher={teacher}"]
    cfg = load_feature_config(CONFIG, overrides)
    for dataset in cfg.datasets:  # the config's relative paths are relative to the repository
        for key in ("root", "images", "labels"):
            value = getattr(dataset, key)
            if value and value.startswith("../shared"):
                setattr(dataset, key, str(shared_dir / value[len("../shared/"):]))
    return cfg


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        load_feature_config(CONFIG, ["epoch=3"])


def test_absent_pairs_hide_the_target(shared_dir: Path, have_pretrained: None, tmp_path: Path) -> None:
    from siam_tracking_ros.train.pairs import PairSampler, PairSpec
    from siam_tracking_ros.train.trainer import build_sources

    cfg = _tiny_config(tmp_path, shared_dir, 1)
    sampler = AbsentPairSampler(PairSampler(build_sources(cfg.datasets), PairSpec(negative=0.0)),
                                AbsentSpec(blank=0.5, occluded=0.5))
    rng = np.random.default_rng(3)
    pairs = [sampler.sample(rng) for _ in range(20)]
    assert all(p.negative for p in pairs)  # every draw is blank or occluded
    blank = [p for p in pairs if p.search.image.std() < 25]
    assert blank and len(blank) < len(pairs)


def test_tiny_run_trains_resumes_calibrates_and_exports(shared_dir: Path, have_pretrained: None,
                                                        tmp_path: Path) -> None:
    cfg = _tiny_config(tmp_path, shared_dir, epochs=1)
    trainer = FeatureTrainer(cfg)
    backbone_before = {k: v.clone() for k, v in trainer.net.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in trainer.net.ban_head.state_dict().items()}
    summary = trainer.run()
    cache = FeatureCache(cfg.run_dir / "cache_from14")
    assert cache.count == 64 and cache.arrays["zf"].shape[1:] == (96, 8, 8)
    assert cache.arrays["negative"][:].any() and not cache.arrays["negative"][:].all()
    boxes = cache.arrays["search_box"][:]
    centres = boxes[:, :2] + boxes[:, 2:] / 2
    assert boxes.shape == (64, 4) and abs(float(centres[~cache.arrays["negative"][:]].mean()) - 127) < 40
    batch = _batch(cache, np.arange(64))
    positive = ~batch["negative"].numpy()
    del batch["search_box"]  # a cache made before the field existed: boxes read off the point targets
    np.testing.assert_allclose(search_boxes(batch)[positive], boxes[positive], atol=0.5)
    teacher = cache.arrays["teacher"][:].astype("float32")
    assert teacher.min() >= 0.0 and teacher.max() <= 1.0 and teacher.max() > 0.5
    for key, value in trainer.net.backbone.state_dict().items():
        torch.testing.assert_close(value, backbone_before[key])  # frozen stays frozen
    assert any(not torch.equal(v, head_before[k]) for k, v in trainer.net.ban_head.state_dict().items())

    exported = Path(summary["exported"])
    config = json.loads(read_metadata(exported)["config"])
    assert config["backbone"] == "mobilenetv2" and len(config["score_calibration"]) == 2
    tracker = build_tracker("nanotrack", weights=str(exported), device="cpu")
    assert tracker.config.score_calibration == pytest.approx(summary["calibration"])

    resumed = FeatureTrainer(_tiny_config(tmp_path, shared_dir, epochs=2)).run()
    history = json.loads(read_metadata(Path(resumed["exported"]))["training"])["history"]
    assert [h["epoch"] for h in history] == [1, 2]  # epoch 1 from the checkpoint, epoch 2 trained


def test_teacher_boxes_are_cached_and_distilled(shared_dir: Path, have_pretrained: None,
                                                tmp_path: Path) -> None:
    cfg = _tiny_config(tmp_path, shared_dir, epochs=1)
    cfg.teacher_boxes, cfg.box_distill_weight = True, 1.0
    summary = FeatureTrainer(cfg).run()
    cache = FeatureCache(cfg.run_dir / "cache_from14")
    boxes = cache.arrays["teacher_loc"][:].astype("float32")
    assert boxes.shape == (64, 4, 16, 16) and boxes.min() > 0.0  # ltrb distances in search pixels
    history = json.loads(read_metadata(Path(summary["exported"]))["training"])["history"]
    assert history[0]["box_distill"] > 0.0


def test_box_distillation_only_where_the_teacher_sees_the_target() -> None:
    from siam_tracking_ros.train.feature_training import pair_loss

    size = 4
    loc = torch.full((1, 4, size, size), 10.0)
    teacher_loc = loc.clone()
    teacher_loc[0, :, 0, 0] = 40.0  # disagrees at one point only
    batch = {"labels": torch.zeros(1, size, size, dtype=torch.int8),
             "loc_target": torch.zeros(1, 4, size, size), "negative": torch.zeros(1, dtype=torch.bool),
             "teacher": torch.zeros(1, size, size), "teacher_loc": teacher_loc}
    out = {"cls": torch.zeros(1, 2, size, size), "loc": loc}
    _, parts = pair_loss(out, batch, 0.0, box_weight=1.0)
    assert parts["box_distill"] == 0.0  # the teacher is confident nowhere
    batch["teacher"][0, 0, 0] = 0.9
    _, parts = pair_loss(out, batch, 0.0, box_weight=1.0)
    assert parts["box_distill"] == pytest.approx(-torch.log(torch.tensor(1 / 16)).item(), rel=1e-2)
    batch["negative"][0] = True
    _, parts = pair_loss(out, batch, 0.0, box_weight=1.0)
    assert parts["box_distill"] == 0.0


def test_an_assembled_variant_trains_on_the_shared_cache(shared_dir: Path, have_pretrained: None,
                                                         tmp_path: Path) -> None:
    FeatureTrainer(_tiny_config(tmp_path, shared_dir, epochs=1)).run(cache_only=True)
    cfg = _tiny_config(tmp_path, shared_dir, epochs=1)
    cfg.name, cfg.variant, cfg.cache_run = "tiny_fc", "siamfc", "tiny"
    cfg.variant_options, cfg.teacher, cfg.tracker_options = {"backbone": "mobilenetv2"}, None, {}
    cfg.export_to = str(tmp_path / "fc.safetensors")
    trainer = FeatureTrainer(cfg)
    neck_before = {k: v.clone() for k, v in trainer.net.neck.state_dict().items()}
    summary = trainer.run()
    assert not (cfg.run_dir / "cache_from14").exists()  # it read run 'tiny''s cache
    assert any(not torch.equal(v, neck_before[k]) for k, v in trainer.net.neck.state_dict().items())
    tracker = build_tracker("siamfc", weights=summary["exported"], device="cpu")
    assert tracker.config.backbone == "mobilenetv2" and tracker.config.total_stride == 16
    if summary["calibration"] is not None:  # a 1-epoch model may not rank presence at all
        a, b = summary["calibration"]
        assert tracker.config.score_temperature == pytest.approx(1 / a)
        assert tracker.config.score_bias == pytest.approx(-b / a)


def test_a_shared_cache_must_exist_and_be_finished(shared_dir: Path, have_pretrained: None,
                                                   tmp_path: Path) -> None:
    cfg = _tiny_config(tmp_path, shared_dir, epochs=1)
    cfg.name, cfg.variant, cfg.cache_run = "tiny_fc", "siamfc", "missing"
    cfg.variant_options = {"backbone": "mobilenetv2"}
    with pytest.raises(FileNotFoundError, match="--cache-only"):
        FeatureTrainer(cfg).run()


def test_init_weights_may_come_from_another_variant_on_the_same_network(tmp_path: Path) -> None:
    from siam_tracking_ros.train.feature_training import load_init_weights
    from siam_tracking_ros.weights.io import WeightsError, save_weights

    siamfc = build_tracker("siamfc", weights="random", device="cpu", backbone="mobilenetv2")
    path = save_weights(tmp_path / "fc.safetensors", siamfc.model.state_dict(), "siamfc", siamfc.config)
    rasnet = build_tracker("rasnet", weights="random", device="cpu", backbone="mobilenetv2").model
    missing = load_init_weights(rasnet, str(path), "rasnet")
    assert missing and all(key.startswith("attention.") for key in missing)  # only RASNet's own part
    torch.testing.assert_close(rasnet.neck.state_dict(), siamfc.model.neck.state_dict())
    alexnet = build_tracker("siamfc", weights="random", device="cpu").model  # another backbone
    with pytest.raises(WeightsError, match="does not fit"):
        load_init_weights(alexnet, str(path), "siamfc")


@pytest.mark.parametrize(("variant", "backbone"), [("siamfc", "mobilenetv2"),
                                                 ("siamrpnpp", "mobilenetv2_imagenet")])
def test_an_unfrozen_stage_continues_the_cached_map_to_the_full_backbone(variant: str, backbone: str
                                                                          ) -> None:
    from siam_tracking_ros.trackers.registry import make_config
    from siam_tracking_ros.train.students import SiameseStudent

    torch.manual_seed(0)
    tracker = build_tracker(variant, weights="random", device="cpu", backbone=backbone)
    net = tracker.model.eval()
    student = SiameseStudent(variant, net, make_config(variant, backbone=backbone), {}, 11)
    crops = torch.rand(2, 3, 127, 127) * 255
    with torch.no_grad():
        cached = student.frozen_features(crops)
        assert cached.shape[1] == 64  # features[:11] ends in the 64-channel stage
        whole = net.backbone(crops)
        continued = student.maps(cached)
    for got, want in zip(continued if isinstance(whole, list) else [continued],
                         whole if isinstance(whole, list) else [whole], strict=True):
        torch.testing.assert_close(got, want)
    head, upper = student.parameter_groups()
    assert {id(p) for p in upper} == {id(p) for p in net.backbone.features[11:14].parameters()}
    assert not {id(p) for p in upper} & {id(p) for p in head}
    with pytest.raises(ValueError, match="trainable_from"):
        SiameseStudent(variant, net, make_config(variant, backbone=backbone), {}, 15)


def test_an_assembled_variant_trains_its_last_stage(shared_dir: Path, have_pretrained: None,
                                                    tmp_path: Path) -> None:
    cfg = _tiny_config(tmp_path, shared_dir, epochs=1)
    cfg.name, cfg.variant, cfg.trainable_from = "tiny_fc11", "siamfc", 11
    cfg.variant_options, cfg.teacher, cfg.tracker_options = {"backbone": "mobilenetv2"}, None, {}
    cfg.export_to = str(tmp_path / "fc11.safetensors")
    start = build_tracker("siamfc", weights="random", device="cpu", backbone="mobilenetv2")
    from siam_tracking_ros.weights.io import save_weights

    cfg.init_weights = str(save_weights(tmp_path / "start.safetensors", start.model.state_dict(),
                                        "siamfc", start.config))
    trainer = FeatureTrainer(cfg)
    features = trainer.net.backbone.features
    frozen_before = {k: v.clone() for k, v in features[:11].state_dict().items()}
    upper_before = {k: v.clone() for k, v in features[11:].state_dict().items()}
    summary = trainer.run()
    history = json.loads(read_metadata(Path(summary["exported"]))["training"])["history"]
    assert [h["epoch"] for h in history] == [0, 1]  # the start is validated as it is, then trained
    assert FeatureCache(cfg.run_dir / "cache_from11").arrays["zf"].shape[1:] == (64, 8, 8)
    for key, value in features[:11].state_dict().items():
        torch.testing.assert_close(value, frozen_before[key])
    changed = [k for k, v in features[11:].state_dict().items() if not torch.equal(v, upper_before[k])]
    assert changed and all("running" not in k for k in changed)  # weights train, BN statistics stay
