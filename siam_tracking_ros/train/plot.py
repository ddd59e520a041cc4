"""Loss and validation-AUC curves from the CSV logs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in rows])
            for key in rows[0]}


def smooth(values: np.ndarray, window: int = 20) -> np.ndarray:
    """Moving average (same length, shorter window at the start)."""
    out = np.empty_like(values, dtype=np.float64)
    for i in range(len(values)):
        out[i] = np.nanmean(values[max(0, i - window + 1):i + 1])
    return out


def plot_logs(train_csv: Path, val_csv: Path, out_png: Path) -> Path:
    """Two panels: training losses vs step, validation AUC vs step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, val = _read(Path(train_csv)), _read(Path(val_csv))
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        for key in [k for k in train if k in ("loss", "cls", "loc", "mask")]:
            ax_loss.plot(train["step"], smooth(train[key]), label=key)
        ax_loss.legend()
    ax_loss.set(xlabel="iteration", ylabel="loss (moving average)", title="training loss")
    if val:
        ax_auc.plot(val["step"], val["auc_mean"], "o-", label="mean")
        ax_auc.legend()
    ax_auc.set(xlabel="iteration", ylabel="success AUC", title="validation (held-out sequences)")
    fig.tight_layout()
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return Path(out_png)
