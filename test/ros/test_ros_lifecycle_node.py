"""ros/tracker_lifecycle_node.py over DDS: transitions that fail when the model cannot load, lifecycle
publishers that publish only while active, real results from every transition (issue 11)."""

from __future__ import annotations

import time

import pytest
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from siam_ros_testing import Probe, Spinner, change_state, current_state, wait_for
from siam_tracking_ros.msg import TrackedObject

pytestmark = pytest.mark.ros


@pytest.fixture
def lifecycle_node(ros_session):
    """Builds lifecycle tracker nodes (untrained siamfc on the CPU unless told) with a probe."""
    from siam_tracking_ros.ros.tracker_lifecycle_node import TrackerLifecycleNode

    made = []

    def make(name: str, overrides: list[Parameter]):
        defaults = [Parameter("tracker", value="siamfc"), Parameter("weights", value="random"),
                    Parameter("device", value="cpu"), Parameter("image_reliability", value="reliable"),
                    Parameter("diagnostics_period", value=0.2)]
        given = {p.name for p in overrides}
        node = TrackerLifecycleNode(name, parameter_overrides=[
            *(p for p in defaults if p.name not in given), *overrides])
        probe = Probe(f"/{name}", image_topic="/image")
        made.append((node, probe, Spinner(node, probe)))
        return node, probe

    yield make
    for node, probe, spinner in made:
        spinner.stop()
        node.destroy_node()
        probe.destroy_node()


def test_configure_fails_with_bad_weights_and_succeeds_once_they_are_fixed(lifecycle_node, crossing,
                                                                           tmp_path) -> None:
    name = "tracker_lc_weights"
    missing = tmp_path / "missing.pth"
    node, probe = lifecycle_node(name, [Parameter("weights", value=str(missing))])
    assert current_state(probe, name) == "unconfigured"
    assert not change_state(probe, name, "configure", timeout=120.0)
    assert current_state(probe, name) == "unconfigured"
    assert not node.runtime.configured and node.runtime.engine.tracker is None
    assert str(missing) in node.runtime.engine.load_error
    time.sleep(1.0)
    assert not probe.reset_client.service_is_ready()  # nothing was created

    client = AsyncParameterClient(probe, name)
    assert client.wait_for_services(timeout_sec=20.0)
    future = client.set_parameters([Parameter("weights", value="random")])
    assert wait_for(future.done, 60.0) and future.result().results[0].successful
    assert change_state(probe, name, "configure", timeout=120.0)
    assert current_state(probe, name) == "inactive"
    assert node.runtime.engine.tracker is not None and node.runtime.engine.load_error is None
    assert wait_for(probe.reset_client.service_is_ready)


def test_configure_fails_for_an_unknown_tracker(lifecycle_node) -> None:
    name = "tracker_lc_unknown"
    node, probe = lifecycle_node(name, [Parameter("tracker", value="no_such_variant"),
                                        Parameter("weights", value="")])
    assert not change_state(probe, name, "configure", timeout=120.0)
    assert current_state(probe, name) == "unconfigured"
    assert "no_such_variant" in node.runtime.engine.load_error and not node.runtime.configured


def test_outputs_are_published_only_while_active(lifecycle_node, crossing) -> None:
    from rclpy.lifecycle import LifecyclePublisher

    name = "tracker_lc_outputs"
    node, probe = lifecycle_node(name, [])
    assert change_state(probe, name, "configure", timeout=120.0)
    runtime = node.runtime
    outputs = runtime.outputs
    publishers = [outputs.object, outputs.mask, outputs.confidence, outputs.debug]
    assert all(isinstance(p, LifecyclePublisher) and not p.is_activated for p in publishers)
    probe.wait_subscribers()

    # inactive: frames arrive, nothing is tracked or published, even a direct publish goes nowhere
    for index in range(3):
        probe.publish_frame(crossing.frame(index), index)
    assert wait_for(lambda: runtime.received == 3)
    outputs.object.publish(TrackedObject())
    assert wait_for(lambda: probe.latest_diagnostics().get("active") == "false")  # diagnostics do come
    time.sleep(1.0)
    assert probe.objects == [] and runtime.stats.processed == 0

    assert change_state(probe, name, "activate", timeout=120.0)
    assert all(p.is_activated for p in publishers)
    assert probe.send_and_wait(crossing.frame(3), 3).state == TrackedObject.IDLE
    assert probe.init_target(crossing.boxes[3], index=3).success
    assert probe.send_and_wait(crossing.frame(4), 4).state == TrackedObject.TRACKING

    assert change_state(probe, name, "deactivate", timeout=120.0)
    assert not any(p.is_activated for p in publishers)
    count = len(probe.objects)
    probe.publish_frame(crossing.frame(5), 5)
    outputs.object.publish(TrackedObject())
    assert wait_for(lambda: runtime.received == 6)
    time.sleep(1.0)
    assert len(probe.objects) == count

    assert change_state(probe, name, "cleanup", timeout=120.0)
    assert current_state(probe, name) == "unconfigured"
    assert runtime.outputs is None and len(runtime.entities) == 0 and runtime.engine.tracker is None
    assert wait_for(lambda: not probe.reset_client.service_is_ready())
    assert change_state(probe, name, "configure", timeout=120.0)
    assert change_state(probe, name, "activate", timeout=120.0)
    assert change_state(probe, name, "active_shutdown", timeout=120.0)
    assert current_state(probe, name) == "finalized"
    assert node.runtime.engine.tracker is None and not node.runtime.configured


def test_activate_fails_without_a_model(lifecycle_node) -> None:
    name = "tracker_lc_nomodel"
    node, probe = lifecycle_node(name, [])
    assert change_state(probe, name, "configure", timeout=120.0)
    node.runtime.engine.unload()  # the model is gone (as after a failed load with none before it)
    assert not change_state(probe, name, "activate", timeout=120.0)
    assert current_state(probe, name) == "inactive" and not node.runtime.active
    assert not node.runtime.outputs.object.is_activated
