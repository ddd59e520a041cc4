"""The training loop: DDP (torchrun), mixed precision, resumable checkpoints, CSV/TensorBoard
logs, periodic validation (OTB success AUC of the real tracker) and export to project weights."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Sampler

from siam_tracking_ros.core.device import resolve_device
from siam_tracking_ros.train.config import DatasetConfig, TrainConfig, config_to_dict
from siam_tracking_ros.train.objectives import Objective, geometry_from, make_objective
from siam_tracking_ros.train.pairs import PairDataset, PairSampler
from siam_tracking_ros.train.schedule import learning_rate
from siam_tracking_ros.train.sources import Source, coco_tracks, sequence_tracks, yolo_tracks
from siam_tracking_ros.train.validate import load_validation_sequences, validate_weights


def build_source(cfg: DatasetConfig) -> Source:
    """One :class:`Source` from its config entry."""
    name = cfg.name or cfg.type
    if cfg.type == "sequences":
        tracks = sequence_tracks(_need(cfg.root, "root", name), cfg.names, cfg.exclude)
    elif cfg.type == "yolo":
        tracks = yolo_tracks(_need(cfg.images, "images", name), _need(cfg.labels, "labels", name),
                             cfg.min_size)
    elif cfg.type == "coco":
        tracks = coco_tracks(_need(cfg.annotations, "annotations", name), _need(cfg.images, "images", name),
                             cfg.min_size)
    elif cfg.type == "cache":
        from siam_tracking_ros.train.cache import cached_sources

        return _merge_cached(cached_sources(_need(cfg.path, "path", name)), cfg)
    else:
        raise ValueError(f"dataset '{name}': unknown type '{cfg.type}' (sequences, yolo, coco, cache)")
    return Source(name, tracks, cfg.weight, cfg.frame_gap)


def _merge_cached(sources: list[Source], cfg: DatasetConfig) -> Source:
    tracks = [t for s in sources for t in s.tracks]
    return Source(cfg.name or "cache", tracks, cfg.weight, cfg.frame_gap)


def _need(value: str | None, key: str, name: str) -> str:
    if not value:
        raise ValueError(f"dataset '{name}' needs '{key}'")
    return value


def build_sources(datasets: list[DatasetConfig]) -> list[Source]:
    """All sources of a config."""
    return [build_source(cfg) for cfg in datasets]


class RankSampler(Sampler[int]):
    """This rank's share of an epoch's indices (``rank, rank + world, ...``), from ``skip``."""

    def __init__(self, length: int, rank: int, world: int, skip: int = 0) -> None:
        self.indices = list(range(rank, length, world))[skip:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@dataclass
class Distributed:
    """Process-group facts of this process."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[Distributed, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    wanted = resolve_device(device)
    if wanted.type == "cuda":
        torch.cuda.set_device(local_rank)
        wanted = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wanted.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank), wanted


class CsvLog:
    """Append rows to a CSV whose columns are fixed by the first row written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.columns: list[str] | None = None
        if path.exists() and path.stat().st_size > 0:
            with path.open() as handle:
                self.columns = next(csv.reader(handle), None)

    def write(self, row: dict[str, Any]) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


class Trainer:
    """One training run of ``config`` (optionally resumed from a checkpoint)."""

    def __init__(self, config: TrainConfig, resume: str | Path | None = None) -> None:
        from siam_tracking_ros.trackers.registry import build_tracker

        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.dist, self.device = setup_distributed(config.device)
        torch.manual_seed(config.seed + self.dist.rank)
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        tracker = build_tracker(config.variant, weights=config.init_weights or "random",
                                device=self.device, **config.variant_options)
        self.tracker_config = tracker.config
        self.model: nn.Module = tracker.model
        self.geometry = geometry_from(self.tracker_config, self.model, self.device)
        self.objective: Objective = make_objective(self.model.head_kind, self.geometry, **config.objective)
        self._sync_pair_geometry()
        self._train_mode()
        self._freeze(config.schedule.frozen)
        if config.schedule.fix_fc_scale:
            self._freeze_fc_scales()
        self.net = self._wrap(self.model)
        self.ema = self._ema()
        self.optimizer = self._optimizer()
        self.amp_dtype, self.scaler = self._amp()
        sources = build_sources(config.datasets)
        self.dataset = PairDataset(PairSampler(sources, config.pairs), self.objective,
                                   config.schedule.samples_per_epoch, config.seed)
        if config.schedule.calibrate_output_scale and not config.init_weights and not resume:
            self.calibrate_output_scales()
        per_rank = config.schedule.samples_per_epoch // self.dist.world
        self.steps_per_epoch = max(per_rank // config.schedule.batch_size, 1)
        self.total_steps = self.steps_per_epoch * config.schedule.epochs
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.elapsed, self.best_auc = 0.0, float("-inf")
        if resume:
            self.load_checkpoint(resume)
        self.train_log = CsvLog(self.out / "train_log.csv")
        self.val_log = CsvLog(self.out / "val_log.csv")
        self.board = self._tensorboard()

    # --- setup --------------------------------------------------------------------------------

    def _sync_pair_geometry(self) -> None:
        pairs = self.config.pairs
        pairs.exemplar_size = self.geometry.exemplar_size
        pairs.instance_size = self.geometry.instance_size
        pairs.context = float(getattr(self.tracker_config, "context_amount", pairs.context))

    def _freeze(self, prefixes: list[str]) -> None:
        for name, param in self.model.named_parameters():
            if any(name.startswith(prefix) for prefix in prefixes):
                param.requires_grad_(False)

    def _fc_heads(self) -> dict[str, nn.Module]:
        """The network's score-map heads (``FCHead``), by module name."""
        from siam_tracking_ros.models.heads.fc import FCHead

        return {name: module for name, module in self.model.named_modules() if isinstance(module, FCHead)}

    def _freeze_fc_scales(self) -> None:
        for head in self._fc_heads().values():
            head.adjust.weight.requires_grad_(False)

    def _output_scalers(self) -> list[tuple[str, int | None, list[nn.Module]]]:
        """``output_scalers()`` of the outermost head modules that declare them."""
        scalers, owners = [], []
        for module in self.model.modules():
            if hasattr(module, "output_scalers") and not any(module in set(o.modules()) for o in owners):
                owners.append(module)
                scalers += module.output_scalers()
        return scalers

    def _probe(self, hooks: list[Any]) -> dict[str, Any]:
        """Forward one batch in training mode; BN statistics are left as they were."""
        batch_size = min(self.config.schedule.batch_size, 8)
        items = [self.dataset[i] for i in range(batch_size)]
        z = torch.stack([torch.as_tensor(item["template"]) for item in items]).float().to(self.device)
        x = torch.stack([torch.as_tensor(item["search"]) for item in items]).float().to(self.device)
        buffers = {name: value.clone() for name, value in self.model.named_buffers()}
        self._train_mode()  # the statistics the first steps will see (BN on batch statistics)
        try:
            with torch.no_grad():
                return self.model(z, x)
        finally:
            for hook in hooks:
                hook.remove()
            for name, value in self.model.named_buffers():
                value.copy_(buffers[name])

    @torch.no_grad()
    def calibrate_output_scales(self, cls_std: float = 1.0, loc_std: float = 0.5) -> dict[str, float]:
        """From random init, make the first outputs of order one: each ``FCHead``'s scale so its
        score map has std ``cls_std`` (bias zero); each declared RPN scaler so ``cls``-like outputs
        have std ``cls_std`` and ``loc``-like ones ``loc_std``. One probe batch; rank 0's values
        on every rank. Returns the factors applied, by name."""
        fc_heads = self._fc_heads()
        raw: dict[str, torch.Tensor] = {}
        hooks = [head.adjust.register_forward_hook(
            lambda _module, inputs, _output, key=name: raw.__setitem__(key, inputs[0].detach()))
            for name, head in fc_heads.items()]
        scalers = self._output_scalers()
        if not fc_heads and not scalers:
            return {}
        outputs = self._probe(hooks)
        applied: dict[str, float] = {}
        for name, head in fc_heads.items():
            spread = float(raw[name].std()) if name in raw else 0.0
            if spread > 0 and math.isfinite(spread):
                head.adjust.weight.fill_(cls_std / spread)
                head.adjust.bias.zero_()
            applied[name] = float(head.adjust.weight.flatten()[0])
        for key, index, layers in scalers:
            if not isinstance(outputs, dict) or key not in outputs:
                continue
            value = outputs[key] if index is None else outputs[key][index]
            spread = float(value.detach().float().std())
            factor = (loc_std if key.startswith("loc") else cls_std) / spread if spread > 0 else 1.0
            if not math.isfinite(factor):
                continue
            for layer in layers:
                layer.weight.mul_(factor)
                if layer.bias is not None:
                    layer.bias.mul_(factor)
            applied[key if index is None else f"{key}[{index}]"] = factor
        if self.dist.world > 1:
            for tensor in self.model.parameters():
                dist.broadcast(tensor.data, 0)
        if self.dist.main:
            print(f"[siam-train] output scales calibrated: {applied}")
        return applied

    def _wrap(self, model: nn.Module) -> nn.Module:
        if self.dist.world <= 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def _ema(self) -> torch.optim.swa_utils.AveragedModel | None:
        decay = self.config.schedule.ema_decay
        if decay is None:
            return None
        if not 0.0 < decay < 1.0:
            raise ValueError(f"schedule.ema_decay must be in (0, 1), got {decay}")
        from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

        return AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def exported_model(self) -> nn.Module:
        """The weights that validation and export use: the moving average when on, else the model."""
        return self.model if self.ema is None else self.ema.module

    def _optimizer(self) -> torch.optim.Optimizer:
        sched = self.config.schedule
        backbone, rest = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (backbone if name.startswith(sched.backbone_prefix) else rest).append(param)
        groups = [{"params": rest, "lr_mult": 1.0}]
        if backbone:
            groups.append({"params": backbone, "lr_mult": sched.backbone_lr_mult, "backbone": True})
        return torch.optim.SGD(groups, lr=sched.lr, momentum=sched.momentum,
                               weight_decay=sched.weight_decay)

    def _amp(self) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
        mode = self.config.schedule.amp
        if mode == "auto":
            mode = "fp16" if self.device.type == "cuda" else "off"
        if mode in ("off", "false", False, None):
            return None, None
        if mode == "bf16":
            return torch.bfloat16, None
        if mode in ("fp16", "true", True):
            return torch.float16, torch.amp.GradScaler(self.device.type)
        raise ValueError(f"schedule.amp must be auto, off, fp16 or bf16, got '{mode}'")

    def _tensorboard(self) -> Any:
        if not (self.config.tensorboard and self.dist.main):
            return None
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.out / "tensorboard"))

    # --- one step -----------------------------------------------------------------------------

    def _set_lr(self) -> float:
        sched = self.config.schedule
        base = learning_rate(self.step, self.total_steps, self.steps_per_epoch, sched, self.elapsed)
        frozen = self.epoch < sched.freeze_backbone_epochs
        for group in self.optimizer.param_groups:
            group["lr"] = 0.0 if (frozen and group.get("backbone")) else base * group["lr_mult"]
        return base

    def _train_mode(self) -> None:
        self.model.train()
        if self.config.schedule.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """Forward, loss, backward and optimiser step on one batch; returns logged numbers."""
        lr = self._set_lr()
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        z, x = batch["template"].float(), batch["search"].float()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.net(z, x)
        loss, parts = self.objective.loss(outputs, batch)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        trained = [p for p in self.model.parameters() if p.requires_grad]
        nn.utils.clip_grad_norm_(trained, self.config.schedule.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return {"loss": float(loss.detach()), "lr": lr, **{k: float(v) for k, v in parts.items()}}

    # --- loop ---------------------------------------------------------------------------------

    def loader(self) -> DataLoader:
        """This epoch's data loader (resumes mid-epoch after a checkpoint)."""
        self.dataset.set_epoch(self.epoch)
        skip = self.step_in_epoch * self.config.schedule.batch_size
        sampler = RankSampler(len(self.dataset), self.dist.rank, self.dist.world, skip)
        return DataLoader(self.dataset, batch_size=self.config.schedule.batch_size, sampler=sampler,
                          num_workers=self.config.workers, drop_last=True,
                          persistent_workers=False, pin_memory=self.device.type == "cuda")

    def run(self) -> dict[str, Any]:
        """Train to the end of the schedule (or the time budget); returns a summary."""
        budget = self.config.schedule.time_budget_minutes
        start = time.monotonic() - self.elapsed
        last_ckpt = last_val = time.monotonic()
        stopped = False
        if self.config.validation.sequences and self.config.validation.at_start and self.step == 0:
            self.validate()
            last_val = time.monotonic()
        while self.epoch < self.config.schedule.epochs and not stopped:
            bar = self._progress(self.steps_per_epoch - self.step_in_epoch)
            window = time.monotonic()
            for batch in self.loader():
                numbers = self.train_step(batch)
                self.step += 1
                self.step_in_epoch += 1
                self.elapsed = time.monotonic() - start
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{numbers['loss']:.3f}", refresh=False)
                if self.step % self.config.log_every == 0:
                    rate = self.config.log_every * self.config.schedule.batch_size * self.dist.world
                    self._log_train(numbers, rate / max(time.monotonic() - window, 1e-9))
                    window = time.monotonic()
                now = time.monotonic()
                if now - last_ckpt > 60 * self.config.checkpoint_minutes:
                    self.save_checkpoint()
                    last_ckpt = now
                val = self.config.validation
                if val.sequences and now - last_val > 60 * val.every_minutes:
                    self.validate()
                    last_val = time.monotonic()
                if budget is not None and self.elapsed > 60 * budget:
                    stopped = True
                    break
            if bar is not None:
                bar.close()
            if not stopped:
                self.epoch += 1
                self.step_in_epoch = 0
        self.save_checkpoint()
        if self.config.validation.sequences:
            self.validate()
        return self.finish(stopped)

    def _progress(self, total: int) -> Any:
        if not (self.config.progress and self.dist.main):
            return None
        from tqdm import tqdm

        return tqdm(total=total, desc=f"epoch {self.epoch + 1}/{self.config.schedule.epochs}",
                    mininterval=10.0, dynamic_ncols=True)

    def _log_train(self, numbers: dict[str, float], samples_per_s: float) -> None:
        if not self.dist.main:
            return
        row = {"step": self.step, "epoch": self.epoch, "elapsed_s": round(self.elapsed, 1),
               **{k: round(v, 6) for k, v in numbers.items()}, "samples_per_s": round(samples_per_s, 2)}
        self.train_log.write(row)
        if self.board is not None:
            for key, value in numbers.items():
                self.board.add_scalar(f"train/{key}", value, self.step)

    # --- checkpoints, export, validation --------------------------------------------------------

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/last.pt`` (atomically); main rank only."""
        if not self.dist.main:
            return None
        folder = self.out / "checkpoints"
        folder.mkdir(exist_ok=True)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "step": self.step,
                 "elapsed": self.elapsed, "best_auc": self.best_auc,
                 "config": json.dumps(config_to_dict(self.config), default=str)}
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        path = folder / "last.pt"
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore model, optimiser, scaler and position from a checkpoint (``weights_only``)."""
        state = torch.load(str(path), map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.step, self.elapsed = int(state["step"]), float(state["elapsed"])
        self.best_auc = float(state["best_auc"])

    def export(self, path: str | Path, half: bool | None = None) -> Path:
        """Current weights as a project ``.safetensors`` file for this variant."""
        from siam_tracking_ros.weights.io import save_weights

        half = self.config.export_half if half is None else half
        extra = {"trained_steps": str(self.step), "trained_by": "siam-train"}
        return save_weights(path, self.exported_model.state_dict(), self.config.variant, self.tracker_config,
                            half=half, extra=extra)

    def validate(self) -> dict[str, float] | None:
        """Export, run the tracker on the validation sequences, log AUC, keep the best file."""
        scores = None
        if self.dist.main:
            val = self.config.validation
            exported = self.export(self.out / "export" / "latest.safetensors")
            sequences = load_validation_sequences(_need(val.root, "root", "validation"), val.sequences)
            scores = validate_weights(self.config.variant, exported, sequences, str(self.device),
                                      val.max_frames)  # the training device (cuda:1 stays cuda:1)
            self.val_log.write({"step": self.step, "epoch": self.epoch, "elapsed_s": round(self.elapsed, 1),
                                **{f"auc_{k}": round(v, 4) for k, v in scores.items()}})
            if self.board is not None:
                self.board.add_scalar("val/auc", scores["mean"], self.step)
            if scores["mean"] > self.best_auc:
                self.best_auc = scores["mean"]
                shutil.copyfile(exported, self.out / "export" / "best.safetensors")
            self._plot()
        self._train_mode()
        if self.dist.world > 1:
            dist.barrier()
        return scores

    def _plot(self) -> None:
        from siam_tracking_ros.train.plot import plot_logs

        try:
            plot_logs(self.out / "train_log.csv", self.out / "val_log.csv", self.out / "curves.png")
        except (OSError, ValueError) as exc:  # a plot must never stop training
            print(f"[siam-train] plot failed: {exc}")

    def finish(self, stopped: bool) -> dict[str, Any]:
        """Copy the best (else latest) export to ``export_to`` and write ``summary.json``."""
        summary: dict[str, Any] = {"steps": self.step, "epochs_done": self.epoch,
                                   "stopped_by_time_budget": stopped, "elapsed_s": round(self.elapsed, 1),
                                   "best_val_auc": None if self.best_auc == float("-inf") else self.best_auc}
        if self.dist.main:
            best = self.out / "export" / "best.safetensors"
            if not best.exists():
                best = self.export(self.out / "export" / "latest.safetensors")
            if self.config.export_to:
                Path(self.config.export_to).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(best, self.config.export_to)
                summary["exported_to"] = self.config.export_to
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.board is not None:
            self.board.close()
        if self.dist.world > 1:
            dist.barrier()
        return summary
