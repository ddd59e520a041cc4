"""Template/search pair sampling over weighted sources, and the torch Dataset that turns pairs
into network inputs plus head targets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from siam_tracking_ros.train.augment import AugmentSpec, Patch, make_patch
from siam_tracking_ros.train.objectives.base import Objective
from siam_tracking_ros.train.sources import Source, Track


@dataclass
class PairSpec:
    """How pairs are drawn and augmented."""

    exemplar_size: int = 127
    instance_size: int = 255
    context: float = 0.5
    #: probability that a pair is negative (search from another object)
    negative: float = 0.2
    #: share of negatives that are semantic (same category, DaSiamRPN) when one exists
    semantic_negative: float = 0.5
    template: AugmentSpec = field(default_factory=lambda: AugmentSpec(shift=4, scale=0.05, color=1.0))
    search: AugmentSpec = field(default_factory=lambda: AugmentSpec(
        shift=64, scale=0.18, blur=0.2, color=1.0, gray=0.05))


@dataclass
class Pair:
    """One training pair: template and search patches, the box in the search patch."""

    template: Patch
    search: Patch
    negative: bool
    source: str


class PairSampler:
    """Draws pairs: source by weight, track uniformly, frames within the source's gap."""

    def __init__(self, sources: list[Source], spec: PairSpec) -> None:
        if not sources:
            raise ValueError("no data sources")
        self.sources = sources
        self.spec = spec
        weights = np.asarray([s.weight for s in sources], dtype=np.float64)
        if (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"source weights must be >= 0 with a positive sum, got {weights.tolist()}")
        self.probabilities = weights / weights.sum()

    def frame_indices(self, track: Track, gap: int, rng: np.random.Generator) -> tuple[int, int]:
        """A template frame and a search frame at most ``gap`` frames apart (both annotated)."""
        valid = track.valid
        first = int(rng.choice(valid))
        near = valid[np.abs(valid - first) <= gap]
        return first, int(rng.choice(near))

    def distractor(self, source_index: int, track_index: int, rng: np.random.Generator
                   ) -> tuple[Track, int]:
        """Another object for a negative pair: same category (semantic) or any other source."""
        source = self.sources[source_index]
        track = source.tracks[track_index]
        same = [i for i in source.by_category.get(track.category or "", []) if i != track_index]
        if same and rng.random() < self.spec.semantic_negative:
            other = source.tracks[int(rng.choice(same))]
        else:
            other_source = self.sources[int(rng.choice(len(self.sources), p=self.probabilities))]
            other = other_source.tracks[int(rng.integers(len(other_source.tracks)))]
            if other is track and len(source.tracks) > 1:
                other = source.tracks[(track_index + 1) % len(source.tracks)]
        return other, int(rng.choice(other.valid))

    def sample(self, rng: np.random.Generator) -> Pair:
        """One pair (positive or negative)."""
        source_index = int(rng.choice(len(self.sources), p=self.probabilities))
        source = self.sources[source_index]
        track_index = int(rng.integers(len(source.tracks)))
        track = source.tracks[track_index]
        t_index, s_index = self.frame_indices(track, source.frame_gap, rng)
        negative = self.spec.negative > 0 and rng.random() < self.spec.negative
        search_track = track
        if negative:
            search_track, s_index = self.distractor(source_index, track_index, rng)
        spec = self.spec
        image, mask = track.load(t_index)
        template = make_patch(image, track.boxes[t_index], spec.exemplar_size, 1.0, spec.template, rng,
                              context=spec.context)
        image, mask = search_track.load(s_index)
        search = make_patch(image, search_track.boxes[s_index], spec.instance_size,
                            spec.instance_size / spec.exemplar_size, spec.search, rng, mask, spec.context)
        return Pair(template, search, negative, source.name)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW uint8 tensor (float conversion happens on the device)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


class PairDataset(Dataset):
    """``length`` pairs per epoch; item ``i`` of epoch ``e`` is reproducible from the seed."""

    def __init__(self, sampler: PairSampler, objective: Objective, length: int, seed: int = 0) -> None:
        self.sampler = sampler
        self.objective = objective
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw a different set of pairs for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        pair = self.sampler.sample(rng)
        targets = self.objective.assign(pair.search.box, pair.negative, rng, pair.search.mask)
        item: dict[str, Any] = {"template": to_chw(pair.template.image),
                                "search": to_chw(pair.search.image),
                                "box": torch.as_tensor(pair.search.box, dtype=torch.float32),
                                "negative": torch.tensor(pair.negative)}
        item.update({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in targets.items()})
        return item
