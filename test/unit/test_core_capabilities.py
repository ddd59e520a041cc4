"""core/capabilities.py: trackers declare what they can do by type (issue 11)."""

from __future__ import annotations

import pytest

from siam_tracking_ros.core.capabilities import BatchedTargets, GlobalSearch, MaskOutput, capabilities
from siam_tracking_ros.trackers.dasiamrpn import DaSiamRPNTracker
from siam_tracking_ros.trackers.siamfc import SiamFCTracker
from siam_tracking_ros.trackers.siammask import SiamMaskTracker
from siam_tracking_ros.trackers.siamrpn import SiamRPNTracker
from siam_tracking_ros.trackers.siamrpnpp import SiamRPNppTracker


@pytest.mark.parametrize(("cls", "expected"), [
    (SiamRPNppTracker, {"global_search"}),
    (DaSiamRPNTracker, {"global_search"}),
    (SiamMaskTracker, {"mask"}),
    (SiamRPNTracker, set()),
    (SiamFCTracker, set()),
])
def test_capabilities_are_declared_by_type(cls: type, expected: set[str]) -> None:
    assert {name for name, cap in (("global_search", GlobalSearch), ("mask", MaskOutput),
                                   ("batched", BatchedTargets)) if issubclass(cls, cap)} == expected


def test_capability_names_of_an_instance() -> None:
    class Both(GlobalSearch, MaskOutput):
        def enable_global_search(self, flag: bool = True) -> None:
            self.flag = flag

    assert capabilities(Both()) == {"global_search", "mask"}
    assert capabilities(object()) == frozenset()
    with pytest.raises(TypeError):
        GlobalSearch()  # type: ignore[abstract]


def test_search_scale_and_configured_global_search_are_declared() -> None:
    from siam_tracking_ros.core.capabilities import ScalableSearch
    from siam_tracking_ros.trackers import build_tracker
    from siam_tracking_ros.trackers.nanotrack import NanoTracker

    assert issubclass(NanoTracker, ScalableSearch) and not issubclass(SiamRPNppTracker, ScalableSearch)
    assert "search_scale" in capabilities(build_tracker("nanotrack", weights="random", device="cpu"))
    for name in ("siamrpnpp", "dasiamrpn"):
        kwargs = {"backbone": "alexnet"} if name == "siamrpnpp" else {"width_mult": 0.25, "hidden": 16}
        assert not build_tracker(name, weights="random", device="cpu", **kwargs).global_search_configured
        assert build_tracker(name, weights="random", device="cpu", long_term=True,
                             **kwargs).global_search_configured
