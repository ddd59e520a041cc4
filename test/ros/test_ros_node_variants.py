"""Node start-up failures, mask output, compressed input and the lifecycle node, in-process over DDS."""

from __future__ import annotations

import pytest
import torch
from rclpy.parameter import Parameter
from siam_ros_testing import Probe, Spinner, change_state, current_state, iou, wait_for
from siam_tracking_ros.msg import TrackedObject

pytestmark = pytest.mark.ros


@pytest.fixture
def make_node(ros_session):
    """Builds tracker nodes with a probe, spins them, cleans up."""
    made = []

    def make(name: str, overrides: list[Parameter], lifecycle: bool = False):
        from siam_tracking_ros.ros.tracker_lifecycle_node import TrackerLifecycleNode
        from siam_tracking_ros.ros.tracker_node import TrackerNode

        node_class = TrackerLifecycleNode if lifecycle else TrackerNode
        reliable = Parameter("image_reliability", value="reliable")
        node = node_class(name, parameter_overrides=[reliable, *overrides])
        probe = Probe(f"/{name}", image_topic="/image")
        spinner = Spinner(node, probe)
        made.append((node, probe, spinner))
        return node, probe

    yield make
    for node, probe, spinner in made:
        spinner.stop()
        node.destroy_node()
        probe.destroy_node()


def first_variant_without_default_weights() -> str:
    from siam_tracking_ros.trackers import get_spec, list_trackers

    names = [n for n in list_trackers() if not get_spec(n).default_weights.exists()]
    if not names:
        pytest.skip("every registered variant ships default weights")
    return names[0]


def test_missing_default_weights_keep_node_up_in_idle(make_node, crossing) -> None:
    variant = first_variant_without_default_weights()
    node, probe = make_node("tracker_noweights", [Parameter("tracker", value=variant),
                                                  Parameter("device", value="cpu")])
    assert node.runtime.engine.wait_idle(60.0)
    assert "no trained default weights" in node.runtime.engine.load_error
    probe.wait_subscribers()
    answer = probe.init_target(crossing.boxes[0])
    assert not answer.success and "no trained default weights ship" in answer.message
    msg = probe.send_and_wait(crossing.frame(0), 0)  # still up, publishing IDLE
    assert msg.state == TrackedObject.IDLE
    assert wait_for(lambda: probe.latest_diagnostics().get("last_error", "").startswith("cannot load"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_is_reported(make_node, crossing) -> None:
    node, probe = make_node("tracker_cuda", [Parameter("tracker", value="siamfc"),
                                             Parameter("weights", value="random"),
                                             Parameter("device", value="cuda")])
    assert node.runtime.engine.wait_idle(60.0)
    probe.wait_subscribers()
    probe.send_and_wait(crossing.frame(0), 0)
    answer = probe.init_target(crossing.boxes[0])
    assert not answer.success and "CUDA is not available" in answer.message


def test_init_before_any_frame(make_node, crossing) -> None:
    node, probe = make_node("tracker_noframe", [Parameter("tracker", value="siamfc"),
                                                Parameter("weights", value="random"),
                                                Parameter("device", value="cpu")])
    assert node.runtime.engine.wait_idle(60.0) and node.runtime.engine.tracker is not None
    answer = probe.init_target(crossing.boxes[0])
    assert not answer.success and "no image received yet on /image" in answer.message


@pytest.mark.slow
def test_mask_variant_publishes_masks_with_source_header(make_node, crossing) -> None:
    """SiamMask (untrained weights: the mask's content is not checked, its plumbing is)."""
    node, probe = make_node("tracker_mask", [Parameter("tracker", value="siammask"),
                                             Parameter("weights", value="random"),
                                             Parameter("device", value="cpu")])
    assert node.runtime.engine.wait_idle(120.0) and node.runtime.engine.tracker is not None
    assert node.runtime.engine.produces_mask
    probe.wait_subscribers()
    probe.send_and_wait(crossing.frame(0), 0)
    assert probe.init_target(crossing.boxes[0], index=0).success
    msg = probe.send_and_wait(crossing.frame(1), 1, timeout=60.0)
    assert msg.has_mask and msg.tracker == "siammask"
    assert wait_for(lambda: len(probe.masks) > 0, 10.0)
    mask = probe.masks[-1]
    assert mask.encoding == "mono8" and (mask.width, mask.height) == (360, 240)
    assert (mask.header.stamp, mask.header.frame_id) == (msg.header.stamp, msg.header.frame_id)


def test_compressed_transport(make_node, nanotrack_weights, crossing) -> None:
    from sensor_msgs.msg import CompressedImage

    from siam_tracking_ros.ros.image_conversion import cv2_to_compressed_imgmsg

    node, probe = make_node("tracker_jpeg", [Parameter("weights", value=str(nanotrack_weights)),
                                             Parameter("device", value="cpu"),
                                             Parameter("image_transport", value="compressed")])
    publisher = probe.create_publisher(CompressedImage, "/image/compressed", 10)
    assert wait_for(lambda: publisher.get_subscription_count() > 0)
    assert wait_for(lambda: probe.objects_sub.get_publisher_count() > 0)
    assert node.runtime.engine.wait_idle(60.0)

    def send(index: int) -> TrackedObject:
        msg = cv2_to_compressed_imgmsg(crossing.frame(index), "jpeg")
        msg.header.stamp = probe.stamp_of(index)
        publisher.publish(msg)
        assert wait_for(lambda: bool(probe.objects_for(index)))
        return probe.objects_for(index)[-1]

    send(0)
    assert probe.init_target(crossing.boxes[0], index=0).success
    results = [send(i) for i in range(1, 15)]
    assert results[-1].state == TrackedObject.TRACKING
    last = results[-1]
    assert iou((last.x, last.y, last.width, last.height), crossing.boxes[14]) > 0.4


def test_lifecycle_node_transitions(make_node, nanotrack_weights, crossing) -> None:
    name = "tracker_lifecycle"
    node, probe = make_node(name, [Parameter("weights", value=str(nanotrack_weights)),
                                   Parameter("device", value="cpu")], lifecycle=True)
    assert current_state(probe, name) == "unconfigured"
    assert node.runtime.engine.tracker is None and not node.runtime.configured
    assert change_state(probe, name, "configure")
    assert current_state(probe, name) == "inactive"
    assert node.runtime.engine.wait_idle(60.0) and node.runtime.engine.tracker is not None
    probe.wait_subscribers()
    answer = probe.init_target(crossing.boxes[0])
    assert not answer.success and "not active" in answer.message

    assert change_state(probe, name, "activate")
    probe.send_and_wait(crossing.frame(0), 0)
    assert probe.init_target(crossing.boxes[0], index=0).success
    assert probe.send_and_wait(crossing.frame(1), 1).state == TrackedObject.TRACKING

    assert change_state(probe, name, "deactivate")
    runtime = node.runtime
    processed, received = runtime.stats.processed, runtime.received
    probe.publish_frame(crossing.frame(2), 2)
    assert wait_for(lambda: runtime.received == received + 1)  # the node did get the frame ...
    assert runtime.stats.processed == processed  # ... and, inactive, did not process it
    # back to active: the next frame is processed, frame 2 never is (it was not even queued)
    assert change_state(probe, name, "activate")
    assert probe.send_and_wait(crossing.frame(3), 3).state == TrackedObject.TRACKING
    assert runtime.stats.processed == processed + 1 and not probe.objects_for(2)
    assert change_state(probe, name, "deactivate")

    assert change_state(probe, name, "cleanup")
    assert current_state(probe, name) == "unconfigured"
    assert node.runtime.engine.tracker is None and node.runtime.engine.state == TrackedObject.IDLE
    assert change_state(probe, name, "configure") and change_state(probe, name, "activate")
    assert node.runtime.engine.wait_idle(60.0)
    probe.new_run()
    probe.wait_subscribers()
    assert probe.send_and_wait(crossing.frame(4), 4).state == TrackedObject.IDLE
