"""Pair sampling (frame gap, negatives, semantic negatives), the dataset and the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from siam_tracking_ros.train.augment import AugmentSpec
from siam_tracking_ros.train.cache import build_cache, cached_sources
from siam_tracking_ros.train.objectives import HeadGeometry, make_objective
from siam_tracking_ros.train.pairs import PairDataset, PairSampler, PairSpec
from siam_tracking_ros.train.sources import Source, Track, yolo_tracks


def _frame(index: int, colour: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A frame whose pixel (0, 0) encodes the frame index; the target is a coloured square."""
    image = np.full((200, 200, 3), 80, np.uint8)
    image[0, 0] = (index % 256, index // 256, 0)
    image[80:120, 60 + index % 40:100 + index % 40] = colour
    return image, np.array([60.0 + index % 40, 80.0, 40.0, 40.0])


def _track(name: str, length: int, colour: tuple[int, int, int], category: str | None = None) -> Track:
    boxes = np.stack([_frame(i, colour)[1] for i in range(length)])
    return Track(name, boxes, lambda i: (_frame(i, colour)[0], None), category)


def _plain_spec(**kwargs) -> PairSpec:
    return PairSpec(template=AugmentSpec(), search=AugmentSpec(), **kwargs)


def test_frame_gap_is_respected() -> None:
    track = _track("a", 300, (0, 0, 255))
    sampler = PairSampler([Source("s", [track], frame_gap=5)], _plain_spec(negative=0.0))
    rng = np.random.default_rng(0)
    for _ in range(200):
        first, second = sampler.frame_indices(track, 5, rng)
        assert abs(first - second) <= 5
        assert first in track.valid and second in track.valid


def test_absent_frames_are_never_sampled() -> None:
    track = _track("a", 50, (0, 0, 255))
    track.boxes[10:40] = np.nan
    track.__post_init__()
    sampler = PairSampler([Source("s", [track], frame_gap=100)], _plain_spec())
    rng = np.random.default_rng(1)
    picks = {i for _ in range(100) for i in sampler.frame_indices(track, 100, rng)}
    assert picks.isdisjoint(range(10, 40))


def test_negative_pairs_come_from_another_object() -> None:
    red, green = _track("red", 20, (0, 0, 255)), _track("green", 20, (0, 255, 0))
    sampler = PairSampler([Source("s", [red, green])], _plain_spec(negative=1.0, semantic_negative=0.0))
    rng = np.random.default_rng(2)
    for _ in range(20):
        pair = sampler.sample(rng)
        assert pair.negative
        t_centre = pair.template.image[63, 63]
        x, y, w, h = pair.search.box
        s_centre = pair.search.image[int(y + h / 2), int(x + w / 2)]
        assert not np.array_equal(t_centre, s_centre)


def test_semantic_negatives_share_the_category() -> None:
    tracks = [_track("cat1", 5, (0, 0, 255), "cat"), _track("cat2", 5, (0, 0, 250), "cat"),
              _track("dog", 5, (0, 255, 0), "dog")]
    sampler = PairSampler([Source("s", tracks)], _plain_spec(negative=1.0, semantic_negative=1.0))
    rng = np.random.default_rng(3)
    for _ in range(20):
        other, _index = sampler.distractor(0, 0, rng)
        assert other.name == "cat2"


def test_positive_pair_box_matches_the_search_patch() -> None:
    sampler = PairSampler([Source("s", [_track("a", 30, (0, 0, 255))])],
                          PairSpec(negative=0.0, search=AugmentSpec(shift=30, scale=0.1)))
    pair = sampler.sample(np.random.default_rng(4))
    x, y, w, h = pair.search.box
    assert pair.search.image[int(y + h / 2), int(x + w / 2), 2] > 200
    assert pair.search.image.shape == (255, 255, 3) and pair.template.image.shape == (127, 127, 3)


def test_dataset_items_are_reproducible_and_batchable() -> None:
    sampler = PairSampler([Source("s", [_track("a", 30, (0, 0, 255)), _track("b", 30, (0, 255, 0))])],
                          PairSpec())
    objective = make_objective("ban", HeadGeometry(score_size=16, stride=16))
    dataset = PairDataset(sampler, objective, length=4, seed=7)
    first, again = dataset[1], dataset[1]
    assert torch.equal(first["search"], again["search"])
    dataset.set_epoch(1)
    assert not torch.equal(dataset[1]["search"], first["search"])
    batch = torch.utils.data.default_collate([dataset[i] for i in range(4)])
    assert batch["template"].shape == (4, 3, 127, 127) and batch["cls_label"].shape == (4, 16, 16)


def test_cache_round_trip(tmp_path) -> None:
    sources = [Source("videos", [_track("a", 30, (0, 0, 255), "x")], weight=2.0, frame_gap=9),
               Source("stills", [_track("b", 1, (0, 255, 0))], weight=1.0)]
    counts = build_cache(sources, tmp_path / "cache.npz", frames_per_track=10)
    assert counts["frames"] == 11 and counts["tracks"] == 2
    loaded = cached_sources(tmp_path / "cache.npz")
    assert [s.name for s in loaded] == ["videos", "stills"]
    assert [s.weight for s in loaded] == [2.0, 1.0]
    assert loaded[0].frame_gap == 3  # 9 frames of the original ~ 3 cached frames (every 3rd kept)
    track = loaded[0].tracks[0]
    assert len(track) == 10 and track.category == "x"
    for index in (0, 9):
        image, _mask = track.load(index)
        x, y, w, h = track.boxes[index]
        assert image.shape == (381, 381, 3)
        assert image[int(y + h / 2), int(x + w / 2), 2] > 200
        assert image[int(y + 3):int(y + h - 3), int(x + 3):int(x + w - 3), 2].min() > 200
    # a pair drawn from the cache is as good as one drawn from the originals
    pair = PairSampler(loaded, PairSpec(negative=0.0)).sample(np.random.default_rng(0))
    px, py, pw, ph = pair.search.box
    assert pair.search.image[int(py + ph / 2), int(px + pw / 2)].tolist() != [80, 80, 80]


def test_yolo_reader(tmp_path) -> None:
    import cv2

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    cv2.imwrite(str(images / "a.jpg"), np.zeros((100, 200, 3), np.uint8))
    (labels / "a.txt").write_text("3 0.5 0.5 0.2 0.4\n7 0.1 0.1 0.01 0.01\n")
    tracks = yolo_tracks(images, labels, min_size=8)
    assert len(tracks) == 1
    np.testing.assert_allclose(tracks[0].boxes[0], [80, 30, 40, 40])
    assert tracks[0].category == "3"
    with pytest.raises(ValueError, match="no usable"):
        Source("empty", [])


def test_coco_reader(tmp_path) -> None:
    import json

    from siam_tracking_ros.train.sources import coco_tracks

    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100}],
            "annotations": [{"id": 5, "image_id": 1, "bbox": [10, 20, 30, 40], "category_id": 3},
                            {"id": 6, "image_id": 1, "bbox": [0, 0, 50, 50], "category_id": 1, "iscrowd": 1},
                            {"id": 7, "image_id": 1, "bbox": [0, 0, 4, 50], "category_id": 1}]}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    tracks = coco_tracks(tmp_path / "ann.json", tmp_path, min_size=8)
    assert [t.name for t in tracks] == ["a#5"]
    np.testing.assert_allclose(tracks[0].boxes[0], [10, 20, 30, 40])
    assert tracks[0].category == "3"


def test_sources_are_mixed_by_weight() -> None:
    a = Source("a", [_track("a", 3, (0, 0, 255))], weight=3.0)
    b = Source("b", [_track("b", 3, (0, 255, 0))], weight=1.0)
    sampler = PairSampler([a, b], _plain_spec(negative=0.0))
    rng = np.random.default_rng(5)
    names = [sampler.sample(rng).source for _ in range(400)]
    share = names.count("a") / len(names)
    assert 0.68 < share < 0.82  # expected 0.75
    with pytest.raises(ValueError, match="weights"):
        PairSampler([Source("z", [_track("z", 3, (0, 0, 255))], weight=0.0)], _plain_spec())
