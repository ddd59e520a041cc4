"""Random subsampling of label positions (at most N positives / negatives per sample)."""

from __future__ import annotations

import numpy as np


def keep_at_most(mask: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of boolean ``mask`` with at most ``limit`` True entries, chosen uniformly."""
    flat = np.flatnonzero(mask)
    out = np.zeros(mask.size, dtype=bool)
    if flat.size > limit:
        flat = rng.choice(flat, size=max(limit, 0), replace=False)
    out[flat] = True
    return out.reshape(mask.shape)


def labels_from(positive: np.ndarray, negative: np.ndarray, pos_num: int, total_num: int,
                rng: np.random.Generator) -> np.ndarray:
    """Labels ``1 / 0 / -1`` with at most ``pos_num`` positives and ``total_num`` in all."""
    pos = keep_at_most(positive, pos_num, rng)
    neg = keep_at_most(negative & ~pos, total_num - int(pos.sum()), rng)
    labels = np.full(positive.shape, -1, dtype=np.int8)
    labels[neg] = 0
    labels[pos] = 1
    return labels
