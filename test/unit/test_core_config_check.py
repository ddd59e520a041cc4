"""Every tracker config field has a range, checked when a config is made (issue 15, defect 6)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from siam_tracking_ros.core.config_check import config_problems, field_range
from siam_tracking_ros.trackers import build_tracker, get_spec, list_trackers, make_config


@pytest.mark.parametrize("name", list_trackers())
def test_defaults_of_every_variant_are_in_range(name: str) -> None:
    config = make_config(name)
    assert config_problems(config) == []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            low, high = field_range(field, value)
            assert low <= value <= high, field.name


@pytest.mark.parametrize("values", [
    {"instance_size": 0}, {"instance_size": -255}, {"exemplar_size": -1}, {"context_amount": math.nan},
    {"window_influence": 5.0}, {"window_influence": math.nan}, {"penalty_k": math.inf}, {"lr": -0.1},
    {"instance_size": 100},  # smaller than the 127-pixel exemplar
])
def test_nanotrack_refuses_values_that_break_tracking(values: dict) -> None:
    name = next(iter(values))
    with pytest.raises(ValueError, match=name):
        make_config("nanotrack", **values)
    with pytest.raises(ValueError, match=name):
        build_tracker("nanotrack", weights="random", device="cpu", **values)


def test_a_stored_config_is_checked_too() -> None:
    with pytest.raises(ValueError, match="scale_step"):
        make_config("siamfc", {"scale_step": 0.5})


def test_sequences_are_checked_element_by_element() -> None:
    spec = get_spec("siamrpn")
    field = next(f for f in dataclasses.fields(spec.config_cls) if f.name == "anchor_ratios")
    assert field_range(field, 1.0) == (1e-3, 1e3)
    with pytest.raises(ValueError, match="anchor_ratios"):
        make_config("siamrpn", anchor_ratios=(0.5, -1.0, 2.0))
