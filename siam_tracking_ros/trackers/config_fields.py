"""Config field groups declared once and shared by the variants' config dataclasses.

A variant's config inherits the groups it uses and overrides defaults only:

- :class:`SearchFields`: crop sizes, context, minimum size, cosine-window influence (every variant),
- :class:`AnchorFields`: anchor stride/ratios/scales and the score map they give (RPN family),
- :class:`RPNDecisionFields`: the RPN decision loop's scale/ratio penalty and size rate,
- :class:`FCSearchFields`: SiamFC's multi-scale search (SiamFC family, SiamDW-FC),
- :class:`BackboneStrideFields`: the MobileNetV2 backbone option's stride,
- :class:`PresetTable` / :class:`PresetFields`: named presets filling the fields left at ``None``
  (one mechanism; chosen by a ``preset`` field or by the config's own selecting fields).

``__post_init__`` is cooperative: every group calls ``super().__post_init__()``. Registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from siam_tracking_ros.core.anchors import score_map_size
from siam_tracking_ros.models.assembly import MOBILENETV2_STRIDE


@dataclass
class ConfigBase:
    """Root of the field groups: the end of the cooperative ``__post_init__`` chain."""

    def __post_init__(self) -> None:
        return None


@dataclass
class SearchFields(ConfigBase):
    """Template/search crop sizes, context amount, minimum box size and window influence."""

    exemplar_size: int = 127
    instance_size: int = 255
    context_amount: float = 0.5
    window_influence: float = 0.40
    min_size: float = 10.0


@dataclass
class AnchorFields(ConfigBase):
    """Anchors per score-map cell and the score map's geometry (pysot's names)."""

    anchor_stride: int = 8
    anchor_ratios: tuple[float, ...] = (0.33, 0.5, 1.0, 2.0, 3.0)
    anchor_scales: tuple[float, ...] = (8.0,)
    base_size: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.anchor_ratios = tuple(float(r) for r in self.anchor_ratios)
        self.anchor_scales = tuple(float(s) for s in self.anchor_scales)

    @property
    def anchor_num(self) -> int:
        """Anchors per score-map position ``K``."""
        return len(self.anchor_ratios) * len(self.anchor_scales)

    @property
    def score_size(self) -> int:
        """Side of the score map for ``instance_size`` (17 for 255, 19 for 271, 21 for 287)."""
        return self.score_size_for(self.instance_size)  # type: ignore[attr-defined]

    def score_size_for(self, instance_size: int) -> int:
        """Side of the score map for a given search size."""
        return score_map_size(instance_size, self.exemplar_size,  # type: ignore[attr-defined]
                              self.anchor_stride, self.base_size)


@dataclass
class BackboneStrideFields(ConfigBase):
    """``backbone: mobilenetv2`` (ImageNet MobileNetV2 ``features[:14]``, stride 16) sets the
    config's stride fields, named by ``STRIDE_FIELDS`` (class data), to that stride."""

    STRIDE_FIELDS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if getattr(self, "backbone", None) == "mobilenetv2":
            for name in self.STRIDE_FIELDS:
                setattr(self, name, MOBILENETV2_STRIDE)


@dataclass
class RPNDecisionFields(ConfigBase):
    """Scale/ratio change penalty and size learning rate of the RPN decision loop."""

    penalty_k: float = 0.16
    lr: float = 0.30
    #: Platt scaling ``(a, b)`` of the chosen proposal's probability into a presence probability
    #: (fitted on validation runs by ``siam-train features``); None publishes the raw probability
    score_calibration: tuple[float, float] | None = None


@dataclass
class FCSearchFields(ConfigBase):
    """SiamFC's multi-scale search and its calibrated presence score."""

    total_stride: int = 8
    response_up: int = 16
    scale_num: int = 3
    scale_step: float = 1.0375
    scale_lr: float = 0.59
    scale_penalty: float = 0.9745
    score_bias: float = 0.0
    score_temperature: float = 1.0

    @property
    def score_size(self) -> int:
        """Side of the raw response map (17 for 127/255)."""
        return (self.instance_size - self.exemplar_size) // self.total_stride + 1  # type: ignore[attr-defined]

    @property
    def upscale_size(self) -> int:
        """Side of the upsampled response map (272 by default)."""
        return self.score_size * self.response_up


@dataclass
class PresetTable(ConfigBase):
    """Named presets as data: the fields a config leaves at ``None`` take the preset's values.

    ``PRESETS`` (class data) maps a preset name to field values; :meth:`preset_name` picks the
    one that applies (default: :meth:`default_preset`, the first) and :meth:`preset_value` reads a
    field through it. The registry lists them as ``<variant>/<preset>``
    (:func:`~.registry.list_presets`) and turns such a name into the fields that select it
    (:meth:`selecting`). A config with a ``preset`` field inherits :class:`PresetFields` (the
    values are filled in at construction); one whose own fields already select (NanoTrack:
    ``version``, ``opencv_compat``) overrides :meth:`default_preset` and :meth:`selecting` and
    keeps its ``None`` fields (they follow a later change of the selecting fields, e.g. the node's
    ``tracker_params.version``), read with :meth:`preset_value`.
    """

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}

    def default_preset(self) -> str:
        """The preset used when none is named (the first one)."""
        return next(iter(self.PRESETS))

    def preset_name(self) -> str:
        """The preset that applies: the ``preset`` field if set, else :meth:`default_preset`."""
        return getattr(self, "preset", "") or self.default_preset()

    @classmethod
    def selecting(cls, preset: str) -> dict[str, Any]:
        """The config fields that make ``preset`` apply (``<variant>/<preset>`` names)."""
        return {"preset": preset}

    def preset_value(self, field: str) -> Any:
        """The field's value, or the applying preset's where the field is ``None``."""
        value = getattr(self, field)
        return self.PRESETS[self.preset_name()].get(field) if value is None else value

    def __post_init__(self) -> None:
        name = self.preset_name()
        if name not in self.PRESETS:
            raise ValueError(f"{type(self).__name__}: unknown preset '{name}'; "
                             f"known: {', '.join(self.PRESETS)}")
        self.apply_preset(self.PRESETS[name])
        super().__post_init__()

    def apply_preset(self, values: Mapping[str, Any]) -> None:
        """What construction does with the applying preset's ``values`` (here: nothing)."""


@dataclass
class PresetFields(PresetTable):
    """:class:`PresetTable` chosen by a ``preset`` field (``""`` means :meth:`default_preset`, e.g.
    the one named after the chosen backbone or head); its values fill the ``None`` fields."""

    preset: str = ""

    def apply_preset(self, values: Mapping[str, Any]) -> None:
        """Fill the fields left at ``None`` (before the other groups' ``__post_init__``)."""
        for key, value in values.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
