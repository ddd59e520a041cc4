"""``siam-train features``: CPU-efficient training on cached pretrained features, with a teacher.

Three resumable steps, all under the run's ``work_dir`` (outside the repository):

1. **cache**: draw augmented template/search pairs (positives, other-object negatives, blank and
   occluded search crops that hold no target), run the *frozen* part of the ImageNet-pretrained
   backbone (``features[:trainable_from]``) once per crop and store the maps in fp16 memory-mapped
   arrays, with the teacher's score map of the same crops (official NanoTrack as a teacher: soft
   targets only; its weights never leave the cache) and the point labels of the ground truth.
2. **train**: epochs over the cache train only the unfrozen backbone stages and the head (cheap),
   loss = balanced CE + IoU at positives + ``distill_weight`` x BCE to the teacher's score map;
   every ``validate_every`` epochs the real tracker runs on the validation sequences and the best
   weights are kept. Checkpoints every ``checkpoint_minutes``.
3. **calibrate + export**: Platt scaling of the peak score on validation runs and spliced
   absent-target runs (:mod:`siam_tracking_ros.eval.presence`), stored in the weights' config.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from siam_tracking_ros.train.augment import AugmentSpec
from siam_tracking_ros.train.config import DatasetConfig
from siam_tracking_ros.train.objectives.ban import PointObjective
from siam_tracking_ros.train.pairs import Pair, PairSampler, PairSpec
from siam_tracking_ros.train.students import (
    CACHE_GEOMETRY,
    NanoTrackStudent,
    SiameseStudent,
    pair_loss,
)

__all__ = ["AbsentPairSampler", "AbsentSpec", "FeatureCache", "FeatureTrainer", "FeatureTrainingConfig",
           "load_feature_config", "pair_loss", "recalibrate"]


@dataclass
class AbsentSpec:
    """Shares of pairs whose search crop holds no target besides other-object negatives."""

    #: uniform colour plus noise
    blank: float = 0.04
    #: the target covered by a patch of another crop
    occluded: float = 0.06


@dataclass
class FeatureTrainingConfig:
    """Everything one ``siam-train features`` run needs (see ``config/train/nanotrack_mnv2.yaml``)."""

    name: str
    validation_root: str
    validation_sequences: list[str]
    export_to: str
    #: where the cache's pairs come from (not needed with ``cache_run``)
    datasets: list[DatasetConfig] = field(default_factory=list)
    #: the registered variant to train (``nanotrack`` or an assembled variant, see
    #: :mod:`siam_tracking_ros.train.students`)
    variant: str = "nanotrack"
    #: use the finished cache of another run (same pretrained backbone and crops) instead of one
    #: of this run's own
    cache_run: str = ""
    #: options of the variant's training objective (e.g. ``r_pos`` of SiamFC's)
    objective: dict[str, Any] = field(default_factory=dict)
    variant_options: dict[str, Any] = field(default_factory=lambda: {"version": "v2",
                                                                      "backbone": "mobilenetv2"})
    pretrained: str = "mobilenetv2_torchvision"
    teacher: str | None = None
    teacher_options: dict[str, Any] = field(default_factory=lambda: {"version": "v2"})
    trainable_from: int = 14
    #: start from one of our own exported runs (e.g. a head-only run) instead of a random head
    init_weights: str | None = None
    pairs: int = 30000
    negative: float = 0.2
    absent: AbsentSpec = field(default_factory=AbsentSpec)
    template_aug: AugmentSpec = field(default_factory=lambda: AugmentSpec(shift=4, scale=0.05, color=1.0))
    search_aug: AugmentSpec = field(default_factory=lambda: AugmentSpec(
        shift=64, scale=0.25, blur=0.2, color=1.0, gray=0.05, flip=0.0))
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    end_lr: float = 1e-4
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 0.1
    distill_weight: float = 1.0
    #: weight of the IoU loss to the teacher's boxes where the teacher sees the target
    #: (needs a cache made with ``teacher_boxes: true``)
    box_distill_weight: float = 0.0
    teacher_boxes: bool = False
    #: teacher foreground probability above which its box at that point is a target
    box_distill_threshold: float = 0.5
    validate_every: int = 2
    validation_max_frames: int = 300
    calibration_splice_frames: int = 60
    time_budget_minutes: float = 150.0
    checkpoint_minutes: float = 5.0
    tracker_options: dict[str, Any] = field(default_factory=dict)
    threads: int = 2
    seed: int = 1
    work_dir: str = ""

    @property
    def run_dir(self) -> Path:
        root = Path(self.work_dir).expanduser() if self.work_dir else (
            Path.home() / ".cache" / "siam_tracking_ros" / "runs")
        return root / self.name


def load_feature_config(path: str | Path, overrides: list[str] | None = None) -> FeatureTrainingConfig:
    """Read a YAML config; ``overrides`` are ``key=value`` (YAML values) for top-level keys."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides or []:
        key, _, value = item.partition("=")
        data[key.strip()] = yaml.safe_load(value)
    known = {f.name for f in dataclasses.fields(FeatureTrainingConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; valid: {sorted(known)}")
    data["datasets"] = [DatasetConfig(**d) for d in data.get("datasets", [])]
    if "absent" in data:
        data["absent"] = AbsentSpec(**data["absent"])
    for key in ("template_aug", "search_aug"):
        if key in data:
            data[key] = AugmentSpec(**data[key])
    return FeatureTrainingConfig(**data)


def progress(label: str, done: int, total: int, start: float, extra: str = "") -> None:
    """One self-overwriting progress line on stderr."""
    elapsed = time.monotonic() - start
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else float("nan")
    sys.stderr.write(f"\r{label}: {done}/{total} ({100.0 * done / max(total, 1):.0f} %) "
                     f"{rate:.1f}/s eta {eta / 60:.1f} min {extra}   ")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


# ---------------------------------------------------------------------------------------- pairs

def blank_search(size: int, rng: np.random.Generator) -> np.ndarray:
    """A search crop with nothing in it: a flat colour with sensor-like noise."""
    colour = rng.integers(0, 256, 3)
    noise = rng.normal(0.0, rng.uniform(2.0, 20.0), (size, size, 3))
    return np.clip(colour + noise, 0, 255).astype(np.uint8)


def occlude(search: np.ndarray, box: np.ndarray, filler: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cover ``box`` (grown by 20-60 %) with a piece of ``filler``: the target is not visible."""
    grow = rng.uniform(1.2, 1.6)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    w, h = box[2] * grow, box[3] * grow
    size = search.shape[0]
    x0, y0 = int(max(cx - w / 2, 0)), int(max(cy - h / 2, 0))
    x1, y1 = int(min(cx + w / 2, size)), int(min(cy + h / 2, size))
    out = search.copy()
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = filler[y0:y1, x0:x1]
    return out


class AbsentPairSampler:
    """Pairs for training: the usual positives/negatives plus blank and occluded searches."""

    def __init__(self, sampler: PairSampler, absent: AbsentSpec) -> None:
        self.sampler = sampler
        self.absent = absent

    def sample(self, rng: np.random.Generator) -> Pair:
        pair = self.sampler.sample(rng)
        draw = rng.random()
        if draw < self.absent.blank:
            pair.search.image = blank_search(pair.search.image.shape[0], rng)
            pair.negative = True
        elif draw < self.absent.blank + self.absent.occluded and not pair.negative:
            other = self.sampler.sample(rng).search.image
            pair.search.image = occlude(pair.search.image, pair.search.box, other, rng)
            pair.negative = True
        return pair


# ---------------------------------------------------------------------------------------- model

def build_network(cfg: FeatureTrainingConfig) -> nn.Module:
    """The variant's network with the pretrained backbone loaded (the rest random, or
    ``init_weights``)."""
    from siam_tracking_ros.train.pretrained import load_pretrained

    options = cfg.variant_options
    if cfg.variant == "nanotrack":
        from siam_tracking_ros.trackers.nanotrack import NanoTrackNet

        net = NanoTrackNet(options.get("version", "v2"), options.get("backbone", "mobilenetv2"))
    else:
        from siam_tracking_ros.trackers.registry import get_spec, make_config

        net = get_spec(cfg.variant).builder(make_config(cfg.variant, **options), torch.device("cpu")).model
    layers = len(net.backbone.features)
    net.backbone.load_state_dict(load_pretrained(cfg.pretrained, num_layers=layers), strict=True)
    if cfg.init_weights:
        load_init_weights(net, cfg.init_weights, cfg.variant)
    return net


def load_init_weights(net: nn.Module, path: str, variant: str) -> list[str]:
    """Start ``net`` from one of our exported files, possibly of another variant on the same
    network (e.g. Siam-BM from SiamFC, DaSiamRPN from SiamRPN). Every tensor of the file must fit
    the network; the network's parts the file lacks (e.g. RASNet's attention on SiamFC weights)
    keep their initialisation and are returned (and printed)."""
    from siam_tracking_ros.weights.io import WeightsError, load_project_file

    state, metadata = load_project_file(path)
    own = net.state_dict()
    unexpected = sorted(k for k in state if k not in own or own[k].shape != state[k].shape)
    if unexpected:
        raise WeightsError(f"init_weights {path} ('{metadata.get('variant')}') does not fit the "
                           f"'{variant}' network: {unexpected[:5]}")
    missing = sorted(set(own) - set(state))
    net.load_state_dict({**own, **{k: v.to(own[k].dtype) for k, v in state.items()}}, strict=True)
    if missing:
        print(f"init_weights: {len(missing)} tensors not in {Path(path).name} keep their "
              f"initialisation ({', '.join(missing[:3])}...)", file=sys.stderr)
    return missing


def build_student(cfg: FeatureTrainingConfig, net: nn.Module) -> NanoTrackStudent | SiameseStudent:
    """The student of ``cfg.variant`` around ``net`` (see :mod:`siam_tracking_ros.train.students`)."""
    if cfg.variant == "nanotrack":
        return NanoTrackStudent(net, cfg.trainable_from, cfg.distill_weight, cfg.box_distill_weight,
                                cfg.box_distill_threshold)
    if not hasattr(net, "search_from_maps") or not hasattr(net.backbone, "features"):
        raise ValueError(f"{cfg.variant}: feature training needs an assembled network on the "
                         "mobilenetv2 backbone")
    from siam_tracking_ros.trackers.registry import make_config

    return SiameseStudent(cfg.variant, net, make_config(cfg.variant, **cfg.variant_options), cfg.objective,
                          cfg.trainable_from)


def load_teacher(cfg: FeatureTrainingConfig) -> nn.Module | None:
    """The teacher network (an official NanoTrack checkpoint), or None."""
    if not cfg.teacher:
        return None
    from siam_tracking_ros.trackers.registry import build_tracker

    return build_tracker("nanotrack", weights=cfg.teacher, device="cpu", **cfg.teacher_options).model.eval()


# ---------------------------------------------------------------------------------------- cache

class FeatureCache:
    """fp16 memory-mapped arrays of frozen maps, teacher scores and labels; ``count`` filled."""

    FIELDS = ("zf", "xf", "teacher", "labels", "loc_target", "negative")
    #: fields a cache may hold besides ``FIELDS`` (made when the config asks for them)
    OPTIONAL = ("teacher_loc", "search_box")

    def __init__(self, folder: Path, shapes: dict[str, tuple[tuple[int, ...], Any]] | None = None) -> None:
        self.folder = folder
        meta_path = folder / "meta.json"
        if shapes is not None and not meta_path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            for key, (shape, dtype) in shapes.items():
                np.lib.format.open_memmap(folder / f"{key}.npy", "w+", dtype, shape).flush()
            meta_path.write_text(json.dumps({"count": 0}))
        keys = [*self.FIELDS, *(k for k in self.OPTIONAL if (folder / f"{k}.npy").exists())]
        self.arrays = {key: np.load(folder / f"{key}.npy", mmap_mode="r+") for key in keys}

    @property
    def count(self) -> int:
        return int(json.loads((self.folder / "meta.json").read_text())["count"])

    @property
    def capacity(self) -> int:
        return len(self.arrays["zf"])

    def write(self, start: int, values: dict[str, np.ndarray]) -> None:
        for key, array in self.arrays.items():  # a cache made before a field existed lacks it
            array[start:start + len(values[key])] = values[key]
        for array in self.arrays.values():
            array.flush()
        (self.folder / "meta.json").write_text(json.dumps({"count": start + len(values["zf"])}))


class _FrozenPart(nn.Module):
    """Normalisation + ``features[:trainable_from]`` as one module (for export)."""

    def __init__(self, student: NanoTrackStudent | SiameseStudent) -> None:
        super().__init__()
        self.student = student

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.student.frozen_features(crops)


class OnnxRunner:
    """A module exported once to ONNX (dynamic batch) and run by ONNX Runtime on the CPU.

    Feature extraction for the cache is inference only; ONNX Runtime runs these convolution
    stacks several times faster than eager PyTorch on this CPU.
    """

    def __init__(self, module: nn.Module, examples: tuple[torch.Tensor, ...], path: Path,
                 threads: int) -> None:
        import onnxruntime as ort

        names = [f"input{i}" for i in range(len(examples))]
        with torch.no_grad():
            outputs = module(*examples)
        count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
        out_names = [f"output{i}" for i in range(count)]
        axes = {name: {0: "batch", 2: f"{name}_h", 3: f"{name}_w"} for name in names}
        axes.update({name: {0: "batch"} for name in out_names})
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.onnx.export(module.eval(), examples, str(path), input_names=names, output_names=out_names,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = names

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, dict(zip(self.names, arrays, strict=True)))


class _TeacherScore(nn.Module):
    """Teacher's foreground probability map (and its ltrb box map) for crop batches."""

    def __init__(self, teacher: nn.Module, boxes: bool = False) -> None:
        super().__init__()
        self.teacher = teacher
        self.boxes = boxes

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        out = self.teacher(z, x)
        probability = torch.softmax(out["cls"], dim=1)[:, 1]
        return (probability, out["loc"]) if self.boxes else probability


def _stack(images: list[np.ndarray]) -> np.ndarray:
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2), dtype=np.float32)


def cache_folder(cfg: FeatureTrainingConfig) -> Path:
    """The run's cache, or the one of ``cfg.cache_run`` (a sibling run folder)."""
    run_dir = cfg.run_dir.parent / cfg.cache_run if cfg.cache_run else cfg.run_dir
    return run_dir / f"cache_from{cfg.trainable_from}"


def shared_cache(cfg: FeatureTrainingConfig, student: NanoTrackStudent | SiameseStudent) -> FeatureCache:
    """The finished cache of ``cfg.cache_run``, checked against the student's frozen maps."""
    folder = cache_folder(cfg)
    if not (folder / "meta.json").exists():
        raise FileNotFoundError(f"no cache at {folder}: run the config of run '{cfg.cache_run}' with "
                                "--cache-only first")
    cache = FeatureCache(folder)
    with torch.inference_mode():
        z = student.frozen_features(torch.zeros(1, 3, 127, 127))
    if tuple(cache.arrays["zf"].shape[1:]) != tuple(z.shape[1:]) or cache.count < cache.capacity:
        raise ValueError(f"cache {folder} ({cache.count}/{cache.capacity} pairs, maps "
                         f"{cache.arrays['zf'].shape[1:]}) does not fit this run (maps {tuple(z.shape[1:])})")
    return cache


def fill_cache(cfg: FeatureTrainingConfig, student: NanoTrackStudent | SiameseStudent,
               teacher: nn.Module | None, chunk: int = 64) -> FeatureCache:
    """Create or continue the run's feature cache until it holds ``cfg.pairs`` pairs."""
    from siam_tracking_ros.train.trainer import build_sources

    if not cfg.datasets:
        raise ValueError(f"{cfg.name}: no datasets to draw the cache's pairs from (or set cache_run)")
    objective = PointObjective(CACHE_GEOMETRY)
    spec = PairSpec(negative=cfg.negative, template=cfg.template_aug, search=cfg.search_aug)
    sampler = AbsentPairSampler(PairSampler(build_sources(cfg.datasets), spec), cfg.absent)
    with torch.inference_mode():
        z = student.frozen_features(torch.zeros(1, 3, 127, 127))
        x = student.frozen_features(torch.zeros(1, 3, 255, 255))
    size = objective.geometry.score_size
    n = cfg.pairs
    shapes = {"zf": ((n, *z.shape[1:]), np.float16), "xf": ((n, *x.shape[1:]), np.float16),
              "teacher": ((n, size, size), np.float16), "labels": ((n, size, size), np.int8),
              "loc_target": ((n, 4, size, size), np.float16), "negative": ((n,), np.bool_),
              "search_box": ((n, 4), np.float32)}
    if cfg.teacher_boxes:
        if teacher is None:
            raise ValueError("teacher_boxes: true needs a teacher")
        shapes["teacher_loc"] = ((n, 4, size, size), np.float16)
    cache = FeatureCache(cache_folder(cfg), shapes)
    if cfg.teacher_boxes and "teacher_loc" not in cache.arrays:
        raise ValueError(f"{cache.folder} was made without teacher boxes: use a new run name")
    if cache.count >= n:
        return cache
    z_example, x_example = torch.zeros(2, 3, 127, 127), torch.zeros(2, 3, 255, 255)
    frozen = OnnxRunner(_FrozenPart(student), (x_example,), cfg.run_dir / "onnx" / "frozen.onnx",
                        cfg.threads)
    teacher_score = None if teacher is None else OnnxRunner(
        _TeacherScore(teacher, cfg.teacher_boxes), (z_example, x_example),
        cfg.run_dir / "onnx" / "teacher.onnx", cfg.threads)
    start_time = time.monotonic()
    done = cache.count
    while done < n:
        rng = np.random.default_rng([cfg.seed, done])
        count = min(chunk, n - done)
        pairs = [sampler.sample(rng) for _ in range(count)]
        values = _encode_chunk(pairs, frozen, teacher_score, objective, rng)
        cache.write(done, values)
        done += count
        progress("feature cache", done, n, start_time)
    return cache


def _encode_chunk(pairs: list[Pair], frozen: OnnxRunner, teacher: OnnxRunner | None,
                  objective: PointObjective, rng: np.random.Generator) -> dict[str, np.ndarray]:
    templates = _stack([p.template.image for p in pairs])
    searches = _stack([p.search.image for p in pairs])
    size = objective.geometry.score_size
    zf, = frozen(templates)
    xf, = frozen(searches)
    extra: dict[str, np.ndarray] = {}
    if teacher is not None:
        soft, *boxes = teacher(templates, searches)
        if boxes:
            extra["teacher_loc"] = boxes[0].astype(np.float16)
    else:
        soft = np.full((len(pairs), size, size), -1.0)
    labels, targets = [], []
    for pair in pairs:
        assigned = objective.assign(pair.search.box, pair.negative, rng)
        label = assigned["cls_label"]
        if pair.negative:
            label = np.zeros_like(label)  # the target is nowhere: every point is background
        labels.append(label)
        targets.append(assigned["loc_target"])
    return {"zf": zf.astype(np.float16), "xf": xf.astype(np.float16),
            "teacher": soft.astype(np.float16), "labels": np.stack(labels),
            "loc_target": np.stack(targets).astype(np.float16),
            "negative": np.array([p.negative for p in pairs]),
            "search_box": np.stack([np.asarray(p.search.box, np.float32) for p in pairs]), **extra}


# ---------------------------------------------------------------------------------------- train

def _batch(cache: FeatureCache, indices: np.ndarray) -> dict[str, torch.Tensor]:
    order = np.sort(indices)
    return {key: torch.from_numpy(np.asarray(array[order])) for key, array in cache.arrays.items()}


def _learning_rate(cfg: FeatureTrainingConfig, progress_fraction: float) -> float:
    """Cosine from ``lr`` to ``end_lr``."""
    t = min(max(progress_fraction, 0.0), 1.0)
    return cfg.end_lr + 0.5 * (cfg.lr - cfg.end_lr) * (1.0 + math.cos(math.pi * t))


class FeatureTrainer:
    """Runs the three steps of one config; state lives in ``cfg.run_dir``."""

    def __init__(self, cfg: FeatureTrainingConfig) -> None:
        self.cfg = cfg
        torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.net = build_network(cfg).eval()
        self.student = build_student(cfg, self.net)
        head_params, upper_params = self.student.parameter_groups()
        for p in self.net.backbone.parameters():
            p.requires_grad_(False)
        for p in upper_params:
            p.requires_grad_(True)
        groups = [{"params": head_params, "lr_mult": 1.0}]
        if upper_params:
            groups.append({"params": upper_params, "lr_mult": cfg.backbone_lr_mult})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch = 0
        self.best_auc = -1.0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, Any]] = []

    # -- checkpoints ------------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.cfg.run_dir / f"checkpoint_from{self.cfg.trainable_from}.pt"

    def save_checkpoint(self) -> None:
        state = {"model": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "best_auc": self.best_auc,
                 "best": self.best_state or {}, "history": json.dumps(self.history)}
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def load_checkpoint(self) -> bool:
        if not self.checkpoint_path.exists():
            return False
        state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=True)
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.epoch = int(state["epoch"])
        self.best_auc = float(state["best_auc"])
        self.best_state = state["best"] or None
        self.history = json.loads(state["history"])
        return True

    # -- steps ------------------------------------------------------------------------------
    def run(self, cache_only: bool = False) -> dict[str, Any]:
        cfg = self.cfg
        cfg.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.cache_run:
            cache = shared_cache(cfg, self.student)
        else:
            teacher = load_teacher(cfg)
            cache = fill_cache(cfg, self.student, teacher)
            del teacher
        if cache_only:
            return {"cache": str(cache.folder), "pairs": cache.count}
        if self.load_checkpoint():
            print(f"resumed at epoch {self.epoch} (best validation AUC {self.best_auc:.3f})", file=sys.stderr)
        self.train(cache)
        return self.finish()

    def train(self, cache: FeatureCache) -> None:
        cfg = self.cfg
        start = time.monotonic()
        last_checkpoint = start
        steps_per_epoch = cache.count // cfg.batch_size
        total_steps = steps_per_epoch * cfg.epochs
        if cfg.init_weights and not self.history:
            self.validate_start()
        while self.epoch < cfg.epochs:
            rng = np.random.default_rng([cfg.seed, 7, self.epoch])
            order = rng.permutation(cache.count)
            self.student.train_mode()
            sums: dict[str, float] = {}
            epoch_start = time.monotonic()
            for step in range(steps_per_epoch):
                global_step = self.epoch * steps_per_epoch + step
                lr = _learning_rate(cfg, global_step / max(total_steps, 1))
                for group in self.optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
                batch = _batch(cache, order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
                loss, parts = self.student.loss(batch, np.random.default_rng([cfg.seed, 11, global_step]))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
                self.optimizer.step()
                for key, value in {"loss": float(loss.detach()), **parts}.items():
                    sums[key] = sums.get(key, 0.0) + value
                if step % 20 == 0 or step == steps_per_epoch - 1:
                    means = " ".join(f"{k} {v / (step + 1):.3f}" for k, v in sums.items())
                    progress(f"epoch {self.epoch + 1}/{cfg.epochs}", step + 1, steps_per_epoch,
                             epoch_start, means)
                if time.monotonic() - last_checkpoint > 60 * cfg.checkpoint_minutes:
                    self.save_checkpoint()
                    last_checkpoint = time.monotonic()
            self.epoch += 1
            record: dict[str, Any] = {"epoch": self.epoch, "lr": lr,
                                      **{k: v / steps_per_epoch for k, v in sums.items()}}
            if self.epoch % cfg.validate_every == 0 or self.epoch == cfg.epochs:
                record["val_auc"] = self.validate()
                if record["val_auc"] > self.best_auc:
                    self.best_auc = record["val_auc"]
                    self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            self.history.append(record)
            print(json.dumps(record), file=sys.stderr)
            self.save_checkpoint()
            last_checkpoint = time.monotonic()
            if time.monotonic() - start > 60 * cfg.time_budget_minutes:
                print("time budget reached", file=sys.stderr)
                break

    def validate_start(self) -> None:
        """Validate ``init_weights`` as they are (epoch 0): fine-tuning must beat its start to
        replace it."""
        self.best_auc = self.validate()
        self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        self.history.append({"epoch": 0, "val_auc": self.best_auc})
        print(json.dumps(self.history[-1]), file=sys.stderr)
        self.save_checkpoint()

    def tracker_config(self, calibration: tuple[float, float] | None = None) -> Any:
        from siam_tracking_ros.trackers.registry import make_config

        options = {**self.cfg.variant_options, **self.cfg.tracker_options}
        if calibration is not None:
            options.update(calibration_options(self.cfg.variant, calibration))
        return make_config(self.cfg.variant, **options)

    def tracker(self, state: dict[str, torch.Tensor] | None = None,
                calibration: tuple[float, float] | None = None) -> Any:
        """The variant's tracker on a copy of the network (holding ``state`` when given)."""
        return self.student.tracker(state, self.tracker_config(calibration))

    def validation_sequences(self) -> list[Any]:
        from siam_tracking_ros.data.sequences import find_sequences

        return find_sequences(self.cfg.validation_root, self.cfg.validation_sequences)

    def validate(self) -> float:
        """Mean OTB success AUC of the current weights on the validation sequences."""
        from siam_tracking_ros.train.validate import success_auc, track_sequence

        tracker = self.tracker()  # a copy of the current network
        scores = []
        for sequence in self.validation_sequences():
            boxes = track_sequence(tracker, sequence, self.cfg.validation_max_frames)
            scores.append(success_auc(boxes, sequence.boxes[:len(boxes)]))
            tracker.reset()
        return float(np.mean(scores))

    def finish(self) -> dict[str, Any]:
        """Calibrate the best weights and export them (fp16 safetensors)."""
        from siam_tracking_ros.eval.presence import collect_presence_samples, fit_platt
        from siam_tracking_ros.weights.io import save_weights

        state = self.best_state or self.net.state_dict()
        samples = collect_presence_samples(self.tracker(state), self.validation_sequences(),
                                           self.cfg.calibration_splice_frames,
                                           self.cfg.validation_max_frames)
        try:
            calibration: tuple[float, float] | None = fit_platt(
                probability_scores(self.cfg.variant, samples.raw_scores), samples.present)
            config = self.tracker_config(calibration)  # calibration_options refuses a slope <= 0
        except ValueError as exc:  # e.g. a model that never holds the target: publish raw peaks
            print(f"warning: no score calibration: {exc}", file=sys.stderr)
            calibration = None
            config = self.tracker_config(None)
        extra = {"training": json.dumps({"run": self.cfg.name, "best_val_auc": self.best_auc,
                                         "epochs": self.epoch, "pretrained": self.cfg.pretrained,
                                         "teacher": Path(self.cfg.teacher).name if self.cfg.teacher else "",
                                         "history": self.history})}
        path = save_weights(self.cfg.export_to, state, self.cfg.variant, config, half=True, extra=extra)
        (self.cfg.run_dir / "history.json").write_text(json.dumps(self.history, indent=1))
        return {"exported": str(path), "best_val_auc": self.best_auc, "epochs": self.epoch,
                "calibration": list(calibration) if calibration else None,
                "calibration_samples": len(samples.present)}


def _logit_scores(variant: str) -> bool:
    """Whether the variant's raw score is a logit (SiamFC family: a calibrated sigmoid of the raw
    peak) rather than a probability (NanoTrack, the RPN family)."""
    from siam_tracking_ros.trackers.config_fields import FCSearchFields
    from siam_tracking_ros.trackers.registry import get_spec

    return issubclass(get_spec(variant).config_cls, FCSearchFields)


def probability_scores(variant: str, raw: np.ndarray) -> np.ndarray:
    """Raw scores as the probabilities :func:`fit_platt` expects (a logit goes through a sigmoid)."""
    return 1.0 / (1.0 + np.exp(-np.asarray(raw, np.float64))) if _logit_scores(variant) else raw


def calibration_options(variant: str, calibration: tuple[float, float]) -> dict[str, Any]:
    """Config fields that apply a Platt fit ``sigmoid(a logit(p) + b)``: ``score_calibration``, or
    for a logit raw score ``score_temperature = 1/a``, ``score_bias = -b/a``."""
    a, b = calibration
    if a <= 0:
        raise ValueError(f"calibration slope {a:.3f} <= 0: the raw score does not rank presence")
    if not _logit_scores(variant):
        return {"score_calibration": (a, b)}
    return {"score_temperature": 1.0 / a, "score_bias": -b / a}


def recalibrate(weights: str | Path, out: str | Path, sequences: list[Any], splice_frames: int = 60,
                max_frames: int | None = 250, **tracker_options: Any) -> dict[str, Any]:
    """Refit the presence calibration of an exported NanoTrack file (with ``tracker_options``
    applied, e.g. tuned hyper-parameters) on ``sequences`` and write the result to ``out``."""
    from siam_tracking_ros.eval.presence import collect_presence_samples, fit_platt
    from siam_tracking_ros.trackers.registry import build_tracker
    from siam_tracking_ros.weights.io import load_project_file, save_weights

    tracker = build_tracker("nanotrack", weights=str(weights), device="cpu", score_calibration=None,
                            **tracker_options)
    tracker.use_backend("auto", 1)
    samples = collect_presence_samples(tracker, sequences, splice_frames, max_frames)
    calibration = fit_platt(samples.raw_scores, samples.present)
    state, metadata = load_project_file(weights)
    config = dataclasses.replace(tracker.config, **calibration_options("nanotrack", calibration))
    extra = {k: v for k, v in metadata.items() if k not in ("format", "variant", "config")}
    extra["calibration"] = json.dumps({"sequences": [s.name for s in sequences],
                                       "frames": len(samples.present),
                                       "present_share": float(samples.present.mean())})
    save_weights(out, state, "nanotrack", config, half=True, extra=extra)
    return {"out": str(out), "calibration": list(calibration), "frames": len(samples.present)}
