"""Learning-rate schedule: linear warm-up, then log-linear decay to ``end_lr``."""

from __future__ import annotations

import math

from siam_tracking_ros.train.config import ScheduleConfig


def learning_rate(step: int, total_steps: int, steps_per_epoch: int, schedule: ScheduleConfig,
                  elapsed_s: float = 0.0) -> float:
    """The base learning rate at global iteration ``step`` (``elapsed_s`` seconds into the run)."""
    warmup = int(schedule.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return schedule.warmup_lr + (schedule.lr - schedule.warmup_lr) * step / max(warmup, 1)
    if schedule.decay_by_time and schedule.time_budget_minutes:
        progress = elapsed_s / (60.0 * schedule.time_budget_minutes)
    else:
        progress = (step - warmup) / max(total_steps - warmup, 1)
    progress = min(max(progress, 0.0), 1.0)
    return math.exp(math.log(schedule.lr) + progress * (math.log(schedule.end_lr) - math.log(schedule.lr)))
