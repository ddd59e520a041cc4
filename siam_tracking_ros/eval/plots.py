"""Success and precision plots (PNG) of one evaluation, curves averaged over sequences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from siam_tracking_ros.eval.metrics import IOU_THRESHOLDS, PIXEL_THRESHOLDS


def _plot(curves: dict[str, np.ndarray], scores: dict[str, float], x: np.ndarray, title: str,
          xlabel: str, ylabel: str, path: Path) -> Path:
    fig = Figure(figsize=(6, 4.5), dpi=100)  # no pyplot: no global backend state
    ax = fig.subplots()
    for name in sorted(curves, key=lambda n: -np.nan_to_num(scores[n], nan=-1.0)):
        ax.plot(x, curves[name], label=f"{name} [{scores[name]:.3f}]")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(x[0], x[-1]), ylim=(0, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def success_plot(curves: dict[str, np.ndarray], aucs: dict[str, float], path: Path) -> Path:
    """Success rate against IoU threshold, one line per tracker, legend with its AUC."""
    return _plot(curves, aucs, IOU_THRESHOLDS, "Success plot (OPE)", "overlap threshold (IoU)",
                 "success rate", path)


def precision_plot(curves: dict[str, np.ndarray], precisions: dict[str, float], path: Path) -> Path:
    """Precision against centre-error threshold, legend with the precision at 20 px."""
    return _plot(curves, precisions, PIXEL_THRESHOLDS, "Precision plot (OPE)",
                 "centre error threshold (px)", "precision", path)


def reliability_plot(diagrams: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], path: Path) -> Path:
    """Reliability diagram: observed presence rate against the mean score of each score bin.

    ``diagrams[name] = (mean score, observed rate, count)`` per bin; a calibrated score lies on
    the diagonal. Marker area follows the bin's share of frames.
    """
    fig = Figure(figsize=(5.5, 5), dpi=100)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1, label="calibrated")
    for name, (mean_score, observed, counts) in diagrams.items():
        used = counts > 0
        share = counts[used] / max(counts.sum(), 1)
        line, = ax.plot(mean_score[used], observed[used], marker="", label=name)
        ax.scatter(mean_score[used], observed[used], s=20 + 400 * share, color=line.get_color(), alpha=0.7)
    ax.set(title="Score reliability (present = IoU >= 0.5)", xlabel="score", ylabel="observed presence",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
