"""What the drawings show: the node's debug overlay on a real frame, the evaluation's success and
precision plots and the training curves (the figure's own data, not only "a PNG exists")."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from matplotlib.figure import Figure

from siam_tracking_ros.data.sequences import Sequence
from siam_tracking_ros.eval.metrics import IOU_THRESHOLDS, PIXEL_THRESHOLDS
from siam_tracking_ros.eval.plots import precision_plot, success_plot
from siam_tracking_ros.ros.overlay import draw_tracking
from siam_tracking_ros.train.plot import plot_logs, smooth

IDLE, TRACKING, LOST = 0, 1, 2
COLOURS = {TRACKING: (0, 220, 0), LOST: (0, 0, 255)}  # BGR: green while tracking, red when lost
BOX = (200, 120, 60, 80)  # x, y, w, h: well away from the text in the top-left corner


@pytest.fixture(scope="module")
def frame(crossing: Sequence) -> np.ndarray:
    return crossing.frame(0)


def border_and_inside(box=BOX) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(row, col) points on the four sides of ``box`` and well inside it."""
    x, y, w, h = box
    border = [(y + h // 2, x), (y + h // 2, x + w), (y, x + w // 2), (y + h, x + w // 2)]
    inside = [(y + h // 2, x + w // 2), (y + 10, x + 10), (y + h - 10, x + w - 10)]
    return border, inside


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


@pytest.mark.parametrize("state", [TRACKING, LOST])
def test_box_is_drawn_in_the_state_colour(frame: np.ndarray, state: int) -> None:
    original = frame.copy()
    out = draw_tracking(frame, state, BOX, 0.87, fps=30.0)
    np.testing.assert_array_equal(frame, original)  # a copy is drawn on
    border, inside = border_and_inside()
    for row, col in border:
        assert tuple(out[row, col]) == COLOURS[state], (row, col)
    for row, col in inside:
        assert tuple(out[row, col]) == tuple(original[row, col]), (row, col)
    diff = changed(out, original)
    diff[:30, :] = False  # the status text
    x, y, w, h = BOX
    rows, cols = np.nonzero(diff)  # nothing drawn outside the box outline (2 px thick)
    assert rows.min() >= y - 2 and rows.max() <= y + h + 2 and cols.min() >= x - 2 and cols.max() <= x + w + 2


def test_idle_draws_no_box_and_text_follows_the_numbers(frame: np.ndarray) -> None:
    idle = draw_tracking(frame, IDLE, BOX, 0.0)
    diff = changed(idle, frame)
    assert diff[:30].any() and not diff[30:].any()  # only the status text
    a = draw_tracking(frame, TRACKING, BOX, 0.25)
    b = draw_tracking(frame, TRACKING, BOX, 0.75)
    assert changed(a[:30], b[:30]).any()  # the score is written
    assert not changed(a[30:], b[30:]).any()
    labelled = draw_tracking(frame, TRACKING, BOX, 0.25, label="nanotrack")
    assert changed(labelled[:30], a[:30]).any()


def test_mask_tint_polygon_and_truth(frame: np.ndarray) -> None:
    mask = np.zeros(frame.shape[:2], np.uint8)
    mask[130:190, 210:250] = 255
    out = draw_tracking(frame, TRACKING, BOX, 0.9, mask=mask)
    inside = out[140:180, 220:240].astype(int)
    expected = (0.5 * frame[140:180, 220:240] + np.array([0, 90, 0])).astype(np.uint8).astype(int)
    np.testing.assert_array_equal(inside, expected)
    np.testing.assert_array_equal(out[40:100, 20:100], frame[40:100, 20:100])  # outside: untouched
    polygon = np.array([[100, 150], [150, 140], [160, 200], [110, 210]], float)
    out = draw_tracking(frame, TRACKING, None, 0.9, polygon=polygon)
    assert tuple(out[145, 125]) == (255, 0, 255)  # on the edge (100,150)-(150,140)
    truth = (40, 60, 50, 50)
    out = draw_tracking(frame, LOST, None, 0.1, truth=truth)
    assert tuple(out[85, 40]) == (255, 160, 0) and tuple(out[60, 65]) == (255, 160, 0)
    assert tuple(out[85, 65]) == tuple(frame[85, 65])
    wrong_size = np.full((10, 10), 255, np.uint8)  # a mask of another size is ignored
    np.testing.assert_array_equal(draw_tracking(frame, TRACKING, BOX, 0.9, mask=wrong_size),
                                  draw_tracking(frame, TRACKING, BOX, 0.9))


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Figure]:
    """Every matplotlib figure saved during the test (saved as usual, and kept for reading)."""
    saved: list[Figure] = []
    original = Figure.savefig

    def savefig(self, *args, **kwargs):
        saved.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", savefig)
    return saved


def lines_of(ax) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [(line.get_label(), np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
            for line in ax.lines]


def test_success_plot_draws_each_curve_best_first(figures: list[Figure], tmp_path: Path) -> None:
    worse = np.linspace(1.0, 0.0, 21) ** 2
    better = np.linspace(1.0, 0.0, 21) ** 0.5
    aucs = {"worse": float(worse.mean()), "better": float(better.mean()), "broken": float("nan")}
    path = success_plot({"worse": worse, "better": better, "broken": np.zeros(21)}, aucs,
                        tmp_path / "plots" / "success.png")
    image = cv2.imread(str(path))
    assert image is not None and image.shape == (450, 600, 3)
    [figure] = figures
    [ax] = figure.axes
    (first, x1, y1), (second, _, y2), (third, _, _) = lines_of(ax)
    assert (first, second, third) == (f"better [{aucs['better']:.3f}]", f"worse [{aucs['worse']:.3f}]",
                                      "broken [nan]")
    np.testing.assert_allclose(x1, IOU_THRESHOLDS)
    np.testing.assert_allclose(y1, better)
    np.testing.assert_allclose(y2, worse)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [first, second, third]
    assert ax.get_title() == "Success plot (OPE)" and "IoU" in ax.get_xlabel()


def test_precision_plot_uses_pixel_thresholds(figures: list[Figure], tmp_path: Path) -> None:
    curve = np.clip(PIXEL_THRESHOLDS / 30.0, 0, 1)
    precision_plot({"t": curve}, {"t": float(curve[20])}, tmp_path / "precision.png")
    [ax] = figures[0].axes
    [(label, x, y)] = lines_of(ax)
    assert label == f"t [{curve[20]:.3f}]"
    np.testing.assert_allclose(x, PIXEL_THRESHOLDS)
    np.testing.assert_allclose(y, curve)
    assert ax.get_xlim() == (PIXEL_THRESHOLDS[0], PIXEL_THRESHOLDS[-1])


def test_smooth_is_a_trailing_moving_average() -> None:
    np.testing.assert_allclose(smooth(np.array([1.0, 2.0, 3.0, 4.0]), window=2), [1.0, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth(np.array([2.0, np.nan, 4.0]), window=3), [2.0, 2.0, 3.0])


def test_training_curves_show_the_logged_losses_and_auc(figures: list[Figure], tmp_path: Path) -> None:
    steps = np.arange(1, 31)
    loss, cls, loc = 3.0 / steps, 2.0 / steps, 1.0 / steps
    rows = ["step,epoch,elapsed_s,loss,cls,loc,lr,samples_per_s"]
    rows += [f"{s},0,{s},{a},{b},{c},0.01,5.0" for s, a, b, c in zip(steps, loss, cls, loc, strict=True)]
    (tmp_path / "train_log.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "val_log.csv").write_text("step,epoch,elapsed_s,auc_seq,auc_mean\n0,0,0,0.2,0.2\n"
                                          "15,0,15,0.4,0.4\n30,0,30,0.5,0.5\n")
    plot_logs(tmp_path / "train_log.csv", tmp_path / "val_log.csv", tmp_path / "curves.png")
    assert cv2.imread(str(tmp_path / "curves.png")) is not None
    ax_loss, ax_auc = figures[0].axes
    drawn = lines_of(ax_loss)
    assert [label for label, _, _ in drawn] == ["loss", "cls", "loc"]  # not lr or throughput
    for (_, x, y), values in zip(drawn, (loss, cls, loc), strict=True):
        np.testing.assert_allclose(x, steps)
        np.testing.assert_allclose(y, smooth(values))
    [(label, x, y)] = lines_of(ax_auc)
    assert label == "mean"
    np.testing.assert_allclose(x, [0, 15, 30])
    np.testing.assert_allclose(y, [0.2, 0.4, 0.5])
    plot_logs(tmp_path / "train_log.csv", tmp_path / "missing.csv", tmp_path / "no_val.png")
    assert not figures[1].axes[1].lines  # no validation yet: an empty panel
