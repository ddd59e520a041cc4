"""SINT / SINT++: margin contrastive loss on RoI embeddings of (template, candidate) box pairs.

Per pair the template box is the target in the template crop; the candidates are boxes sampled
in the search crop around the target: positives overlap it with IoU > ``pos_iou`` (0.7),
negatives with IoU < ``neg_iou`` (0.5); on a negative pair (the search crop is centred on
another object) every candidate is a negative, those around the distractor being hard ones.
Both are embedded with the network's own :class:`ROIEmbedding` on its backbone levels, and
SINT's loss :func:`~siam_tracking_ros.train.losses.contrastive_loss` pulls positives to
the template and pushes negatives beyond ``margin`` (positives and negatives weigh 0.5 each).

**Template box.** A template crop shows the target centred, at a size fixed by the context rule
(``sqrt((w+p)(h+p))`` -> ``exemplar_size``, ``p = context (w + h)``), which depends only on its
aspect ratio; that ratio is taken from the search box (the same object on a positive pair; the
distractor's ratio on a negative pair, an approximation). The template crop's ±4 px shift
augmentation is not corrected for.

**Getting at the features.** The trainer calls ``net(z, x)``, whose SINT outputs are whole-image
embeddings. The objective therefore keeps the backbone levels of the last ``SINTNet`` forward
(a process-wide forward hook that only looks at :class:`SINTBackbone` / :class:`SINTNet`
modules, removed when the objective is garbage collected) and pools the boxes from them in
:meth:`SINTObjective.loss`; the loss is thus differentiable through that forward (DDP included).
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from siam_tracking_ros.core.geometry import iou_xywh
from siam_tracking_ros.models.heads.roi_embedding import SINTBackbone, SINTNet
from siam_tracking_ros.train.losses import contrastive_loss
from siam_tracking_ros.train.objectives.base import HeadGeometry, Objective, Targets, register_objective

#: candidate draws per wanted candidate (rejection sampling by IoU)
OVERSAMPLE = 8


def template_box(aspect: float, exemplar_size: int, context: float) -> np.ndarray:
    """Corners of the target in a template crop of side ``exemplar_size``, for ``aspect = h / w``."""
    pad = context * (1.0 + aspect)
    width = exemplar_size / math.sqrt((1.0 + pad) * (aspect + pad))
    height = aspect * width
    centre = exemplar_size / 2.0
    return np.array([centre - width / 2, centre - height / 2, centre + width / 2, centre + height / 2])


def jitter_boxes(box: np.ndarray, count: int, shift: float, log_scale: float,
                 rng: np.random.Generator) -> np.ndarray:
    """``count`` xywh boxes around ``box``: centre moved by ``U(-shift, shift)`` of the size, each
    side scaled by ``exp(U(-log_scale, log_scale))``."""
    size = box[2:] * np.exp(rng.uniform(-log_scale, log_scale, (count, 2)))
    centre = box[:2] + box[2:] / 2 + rng.uniform(-shift, shift, (count, 2)) * box[2:]
    return np.concatenate([centre - size / 2, size], axis=1)


def scattered_boxes(box: np.ndarray, count: int, patch_size: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` xywh boxes of about ``box``'s size with centres uniform over the patch."""
    size = box[2:] * np.exp(rng.uniform(-0.5, 0.5, (count, 2)))
    centre = rng.uniform(0.0, patch_size, (count, 2))
    return np.concatenate([centre - size / 2, size], axis=1)


def to_corners(boxes: np.ndarray) -> np.ndarray:
    """xywh -> x1, y1, x2, y2."""
    return np.concatenate([boxes[..., :2], boxes[..., :2] + boxes[..., 2:]], axis=-1)


def _observer(owner: weakref.ref) -> Callable[[nn.Module, Any, Any], None]:
    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        objective = owner()
        if objective is not None:
            objective.observe(module, output)

    return hook


@register_objective("sint")
class SINTObjective(Objective):
    """Candidate boxes + labels per pair; contrastive loss on RoI embeddings (module docstring)."""

    def __init__(self, geometry: HeadGeometry, **options: Any) -> None:
        super().__init__(geometry, **options)
        self._levels: deque = deque(maxlen=2)
        self._captured: tuple[SINTNet, Any, Any] | None = None
        self._start_observing()

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {"pos_num": 16, "neg_num": 48, "pos_iou": 0.7, "neg_iou": 0.5, "margin": 1.0,
                "context": 0.5}

    # --- feature capture ----------------------------------------------------------------------

    def _start_observing(self) -> None:
        handle = nn.modules.module.register_module_forward_hook(_observer(weakref.ref(self)))
        weakref.finalize(self, handle.remove)

    def observe(self, module: nn.Module, output: Any) -> None:
        """Forward-hook callback: keep the backbone levels of the last ``SINTNet`` forward."""
        if isinstance(module, SINTBackbone):
            self._levels.append(output)
        elif isinstance(module, SINTNet) and len(self._levels) == 2:
            self._captured = (module, self._levels[0], self._levels[1])
            self._levels.clear()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers only assign labels
        state = dict(self.__dict__)
        state["_levels"], state["_captured"] = deque(maxlen=2), None
        return state

    # --- labels --------------------------------------------------------------------------------

    def assign(self, box: np.ndarray, negative: bool, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> Targets:
        opts = self.options
        box = np.asarray(box, dtype=np.float64)
        near = jitter_boxes(box, OVERSAMPLE * opts["pos_num"], 0.15, 0.15, rng)
        far = scattered_boxes(box, OVERSAMPLE * opts["neg_num"], self.geometry.instance_size, rng)
        pool = np.concatenate([near, far])
        iou = iou_xywh(pool, np.asarray(box)[None])
        if negative:
            positives = np.zeros((0, 4))
            negatives = pool[rng.permutation(len(pool))[:opts["neg_num"]]]
        else:
            positives = np.concatenate([box[None], near[iou[:len(near)] > opts["pos_iou"]]])[:opts["pos_num"]]
            negatives = pool[iou < opts["neg_iou"]]
            negatives = negatives[rng.permutation(len(negatives))[:opts["neg_num"]]]
        return self._pack(box, positives, negatives)

    def _pack(self, box: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> Targets:
        """Fixed-size arrays (missing candidates are copies of the box, labelled -1)."""
        total = self.options["pos_num"] + self.options["neg_num"]
        candidates = np.repeat(box[None], total, axis=0)
        labels = np.full(total, -1, dtype=np.int8)
        found = np.concatenate([positives, negatives])
        candidates[:len(found)] = found
        labels[:len(positives)] = 1
        labels[len(positives):len(found)] = 0
        aspect = float(box[3] / max(box[2], 1e-6))
        return {"template_box": template_box(aspect, self.geometry.exemplar_size,
                                             self.options["context"]).astype(np.float32),
                "candidates": to_corners(candidates).astype(np.float32), "candidate_label": labels}

    # --- loss ----------------------------------------------------------------------------------

    def embeddings(self, net: SINTNet, z_levels: Sequence[torch.Tensor], x_levels: Sequence[torch.Tensor],
                   targets: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Template embeddings repeated per candidate ``(B*N, D)`` and candidate embeddings ``(B*N, D)``."""
        firsts, seconds = [], []
        count = targets["candidates"].shape[1]
        for b in range(targets["candidates"].shape[0]):
            z = [level[b:b + 1].float() for level in z_levels]
            x = [level[b:b + 1].float() for level in x_levels]
            firsts.append(net.embedding(z, targets["template_box"][b:b + 1].float()).expand(count, -1))
            seconds.append(net.embedding(x, targets["candidates"][b].float()))
        return torch.cat(firsts), torch.cat(seconds)

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self._captured is None:
            raise RuntimeError("sint objective: no SINTNet forward seen; call the network as net(z, x) first")
        net, z_levels, x_levels = self._captured
        self._captured = None
        first, second = self.embeddings(net, z_levels, x_levels, targets)
        labels = targets["candidate_label"].reshape(-1)
        total = first.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        for name, value in (("pos", 1), ("neg", 0)):
            chosen = labels == value
            part = first.new_zeros(())
            if chosen.any():
                same = torch.full((int(chosen.sum()),), bool(value), device=labels.device)
                part = contrastive_loss(first[chosen], second[chosen], same, self.options["margin"])
            total = total + 0.5 * part
            parts[name] = part.detach()
        return total, parts
