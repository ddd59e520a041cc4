"""Sequence readers for OTB, VOT, GOT-10k and LaSOT layouts, built in tmp_path from real frames."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from siam_tracking_ros.data.sequences import (
    detect_layout,
    find_sequences,
    load_otb_sequence,
    load_sequence,
)

N = 6


@pytest.fixture(scope="module")
def real(sequences_dir: Path):
    """First frames and 0-based boxes of a real sequence."""
    seq = load_otb_sequence(sequences_dir / "otb_Crossing")
    return seq.frames[:N], seq.boxes[:N]


def _copy_frames(frames: list[Path], folder: Path, pattern: str = "{:08d}.jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, path in enumerate(frames, start=1):
        shutil.copy(path, folder / pattern.format(i))


def _write_rows(path: Path, rows: np.ndarray, sep: str = ",") -> None:
    path.write_text("\n".join(sep.join(f"{v:g}" for v in row) for row in rows) + "\n")


def make_otb(root: Path, frames, boxes) -> Path:
    folder = root / "Crossing"
    _copy_frames(frames, folder / "img", "{:04d}.jpg")
    one_based = boxes.copy()
    one_based[:, :2] += 1
    _write_rows(folder / "groundtruth_rect.txt", one_based, "\t")
    return folder


def make_vot(root: Path, frames, boxes, color_dir: bool = False) -> Path:
    folder = root / ("crossing_color" if color_dir else "crossing")
    _copy_frames(frames, folder / "color" if color_dir else folder)
    x, y, w, h = boxes.T  # polygons: the box corners, clockwise
    polygons = np.column_stack([x, y, x + w, y, x + w, y + h, x, y + h])
    _write_rows(folder / "groundtruth.txt", polygons)
    return folder


def make_got10k(root: Path, frames, boxes, absent_index: int = 2) -> Path:
    folder = root / "GOT-10k_Val_000001"
    _copy_frames(frames, folder)
    _write_rows(folder / "groundtruth.txt", boxes)
    flags = np.zeros(len(boxes), int)
    flags[absent_index] = 1
    (folder / "absence.label").write_text("\n".join(map(str, flags)) + "\n")
    (folder / "meta_info.ini").write_text("[METAINFO]\nobject_class: person\n")
    return folder


def make_lasot(root: Path, frames, boxes, occluded: int = 1, out_of_view: int = 3) -> Path:
    folder = root / "person" / "person-1"
    _copy_frames(frames, folder / "img")
    one_based = boxes.copy()
    one_based[:, :2] += 1
    _write_rows(folder / "groundtruth.txt", one_based)
    for name, index in (("full_occlusion.txt", occluded), ("out_of_view.txt", out_of_view)):
        flags = np.zeros(len(boxes), int)
        flags[index] = 1
        (folder / name).write_text(",".join(map(str, flags)) + "\n")
    (folder / "nlp.txt").write_text("a person crossing the road\n")
    return folder


def test_each_layout_reads_the_same_boxes(tmp_path: Path, real) -> None:
    frames, boxes = real
    cases = {
        "otb": make_otb(tmp_path / "otb", frames, boxes),
        "vot": make_vot(tmp_path / "vot", frames, boxes),
        "got10k": make_got10k(tmp_path / "got", frames, boxes),
        "lasot": make_lasot(tmp_path / "lasot", frames, boxes),
    }
    for layout, folder in cases.items():
        assert detect_layout(folder) == layout
        seq = load_sequence(folder)
        assert seq.meta["layout"] == layout
        assert len(seq) == N
        assert seq.frame(0).shape == (240, 360, 3)
        expected = boxes.copy()
        if layout == "got10k":
            expected[2] = np.nan
        if layout == "lasot":
            expected[[1, 3]] = np.nan
        np.testing.assert_allclose(seq.boxes, expected, atol=1e-6, err_msg=layout)
    assert load_sequence(cases["lasot"]).meta["language"] == "a person crossing the road"
    assert load_sequence(cases["vot"]).meta["polygons"].shape == (N, 4, 2)


def test_vot_color_folder_and_got10k_test_split(tmp_path: Path, real) -> None:
    frames, boxes = real
    seq = load_sequence(make_vot(tmp_path, frames, boxes, color_dir=True))
    assert seq.meta["layout"] == "vot" and len(seq) == N
    got = make_got10k(tmp_path / "test", frames, boxes)
    _write_rows(got / "groundtruth.txt", boxes[:1])  # the test split gives only the first box
    (got / "absence.label").unlink()
    seq = load_sequence(got)
    assert len(seq) == N and seq.first_valid() == 0
    assert np.isnan(seq.boxes[1:]).all()


def test_find_sequences_detects_mixed_layouts(tmp_path: Path, real) -> None:
    frames, boxes = real
    make_otb(tmp_path, frames, boxes)
    make_vot(tmp_path, frames, boxes)
    make_got10k(tmp_path, frames, boxes)
    make_lasot(tmp_path, frames, boxes)
    found = find_sequences(tmp_path)
    assert {s.name: s.meta["layout"] for s in found} == {
        "Crossing": "otb", "crossing": "vot", "GOT-10k_Val_000001": "got10k", "person-1": "lasot"}
    picked = find_sequences(tmp_path, ["person-1", "Crossing"])
    assert [s.name for s in picked] == ["person-1", "Crossing"]
    assert [s.name for s in find_sequences(tmp_path / "person" / "person-1")] == ["person-1"]
    with pytest.raises(KeyError, match="available"):
        find_sequences(tmp_path, ["nope"])


def test_find_sequences_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        find_sequences(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no sequence"):
        find_sequences(tmp_path / "empty")
    vot = tmp_path / "masks"
    vot.mkdir()
    (vot / "groundtruth.txt").write_text("m10,20,3,4\n")
    (vot / "00000001.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="mask"):
        load_sequence(vot)


def test_shared_sequences_all_found(sequences_dir: Path) -> None:
    found = find_sequences(sequences_dir)
    folders = [p for p in sequences_dir.iterdir() if (p / "groundtruth.txt").is_file()]
    assert len(found) == len(folders) >= 18  # every labelled folder of ../shared (18 on 2026-12-01)
    assert all(s.meta["layout"] == "otb" for s in found)
    assert all(len(s.frames) == len(s.boxes) for s in found)
