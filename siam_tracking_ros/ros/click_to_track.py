"""``siam-click``: pick the target with the mouse (or give a box) and call the tracker's ``init_target``.

Usage::

    siam-click [--node /tracker_node] [--image TOPIC] [--box X,Y,W,H] [--timeout S] [--ros-args ...]

Without ``--box`` it opens an OpenCV window showing ``<node>/debug_image`` (or ``--image``, e.g.
the camera topic). Drag a box with the left mouse button: the frame freezes while you drag, and on
release the box is sent with that frame's stamp (the tracker initialises on exactly that frame
while it is still buffered, else on its newest one). Keys: ``r`` reset (``~/reset``), ``space``
freeze / unfreeze, ``q`` or Esc quit. Needs a display and an OpenCV build with GUI support
(``opencv-python``, not ``-headless``); without them it says so and exits with code 2.

With ``--box`` it runs headless: it waits for the service and the model, then initialises on the
first frame it receives on ``--image`` (a ``video_publisher --wait-subscribers`` can hold the
video until then) or, when frames already flow, on the newest frame; exits 0 once tracking.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WINDOW = "siam-click"
HELP_LINE = "drag: track   r: reset   space: freeze   q: quit"
MIN_BOX_SIDE = 4


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` (pixels, top-left origin) as floats; ValueError for anything else."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if len(parts) != 4:
        raise ValueError(f"a box is x,y,w,h (4 numbers), got '{text}'")
    x, y, width, height = (float(p) for p in parts)
    if width <= 0 or height <= 0:
        raise ValueError(f"box width and height must be positive, got '{text}'")
    return x, y, width, height


def display_problem() -> str | None:
    """Why no OpenCV window can be opened here, or None when one can."""
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY")
                                                 or os.environ.get("WAYLAND_DISPLAY")):
        return ("no display (DISPLAY and WAYLAND_DISPLAY are unset): run siam-click on a desktop, "
                "with ssh -X, or give the box on the command line with --box X,Y,W,H")
    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
           if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        return (f"this OpenCV ({cv2.__version__}) has no GUI support (a -headless build): install "
                "opencv-python instead of opencv-python-headless, or use --box X,Y,W,H")
    return None


@dataclass
class BoxSelector:
    """Mouse-drag state: press starts a box, motion resizes it, release finishes it."""

    start: tuple[int, int] | None = None
    end: tuple[int, int] | None = None
    finished: tuple[float, float, float, float] | None = None

    @property
    def dragging(self) -> bool:
        return self.start is not None

    def press(self, x: int, y: int) -> None:
        self.start = self.end = (x, y)

    def move(self, x: int, y: int) -> None:
        if self.start is not None:
            self.end = (x, y)

    def release(self, x: int, y: int) -> tuple[float, float, float, float] | None:
        """The dragged box ``(x, y, w, h)``, or None when it is too small (a click)."""
        if self.start is None:
            return None
        self.end = (x, y)
        box = self.box()
        self.start = self.end = None
        if box is None or min(box[2], box[3]) < MIN_BOX_SIDE:
            return None
        self.finished = box
        return box

    def box(self) -> tuple[float, float, float, float] | None:
        """The box being dragged, corners in any order."""
        if self.start is None or self.end is None:
            return None
        (x0, y0), (x1, y1) = self.start, self.end
        return float(min(x0, x1)), float(min(y0, y1)), float(abs(x1 - x0)), float(abs(y1 - y0))


def annotate(frame: np.ndarray, selector: BoxSelector, message: str, frozen: bool) -> np.ndarray:
    """The frame with the box being dragged, the last answer and the key help."""
    import cv2

    out = frame.copy()
    box = selector.box()
    if box is not None:
        x, y, w, h = (round(v) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), (0, 255, 255), 2)
    lines = [HELP_LINE + ("   [frozen]" if frozen else ""), message]
    for row, text in enumerate(line for line in lines if line):
        y = out.shape[0] - 10 - 18 * row
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, (6, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def make_client_node(node_path: str, image_topic: str):
    """A node that keeps the newest image and calls ``init_target`` / ``reset`` of ``node_path``."""
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from siam_tracking_ros.ros.image_conversion import ImageConversionError, imgmsg_to_bgr8
    from siam_tracking_ros.srv import InitTarget

    class ClickClient(Node):
        """The tool's ROS side: newest frame (with its stamp), service clients."""

        def __init__(self) -> None:
            super().__init__("siam_click")
            self._lock = threading.Lock()
            self.frame: np.ndarray | None = None
            self.stamp = None
            self.frames = 0
            self.image_topic = image_topic
            self.init_client = self.create_client(InitTarget, f"{node_path}/init_target")
            self.reset_client = self.create_client(Trigger, f"{node_path}/reset")
            self._subscription = None

        def subscribe(self) -> None:
            if self._subscription is None:
                self._subscription = self.create_subscription(Image, self.image_topic, self._on_image,
                                                              qos_profile_sensor_data)

        def _on_image(self, msg) -> None:
            try:
                frame = imgmsg_to_bgr8(msg)
            except ImageConversionError as exc:
                self.get_logger().warning(f"cannot show image: {exc}", throttle_duration_sec=5.0)
                return
            with self._lock:
                self.frame, self.stamp, self.frames = frame, msg.header.stamp, self.frames + 1

        def newest(self):
            """``(frame, stamp, count)`` of the newest image (frame None before the first)."""
            with self._lock:
                return self.frame, self.stamp, self.frames

        def request_init(self, box: tuple[float, float, float, float], stamp=None):
            request = InitTarget.Request()
            request.x, request.y, request.width, request.height = (float(v) for v in box)
            if stamp is not None:
                request.stamp = stamp
            return self.init_client.call_async(request)

        def request_reset(self):
            return self.reset_client.call_async(Trigger.Request())

    return ClickClient()


def wait_future(future, timeout: float):
    """The future's result, or None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    return future.result() if future.done() else None


def run_with_box(client, box: tuple[float, float, float, float], timeout: float) -> tuple[bool, str]:
    """Headless: initialise on ``box`` as soon as the model and a frame are there."""
    deadline = time.monotonic() + timeout
    if not client.init_client.wait_for_service(timeout_sec=timeout):
        return False, f"service {client.init_client.srv_name} not available after {timeout:g} s"
    answer = None
    while time.monotonic() < deadline:  # phase 1: frames may already flow; else wait for the model
        answer = wait_future(client.request_init(box), max(0.1, deadline - time.monotonic()))
        if answer is None or answer.success:
            break
        if "loading" not in answer.message:
            break  # model ready, no frame yet
        time.sleep(0.3)
    if answer is not None and answer.success:
        return True, answer.message
    client.subscribe()  # phase 2: the first frame we see is buffered by the tracker too
    last_message = answer.message if answer is not None else "no answer"
    tried = 0
    while time.monotonic() < deadline:
        _, stamp, count = client.newest()
        if count == 0 or count == tried:
            time.sleep(0.01)
            continue
        tried = count
        answer = wait_future(client.request_init(box, stamp), max(0.1, deadline - time.monotonic()))
        if answer is not None and answer.success:
            return True, answer.message
        last_message = answer.message if answer is not None else "no answer"
    return False, f"not initialised within {timeout:g} s: {last_message}"


def run_window(client) -> int:
    """The interactive window; returns the exit code."""
    import cv2

    selector = BoxSelector()
    state = {"frozen": None, "message": f"waiting for images on {client.image_topic} ...",
             "pending": None}

    def on_mouse(event: int, x: int, y: int, flags: int, param) -> None:
        if event == cv2.EVENT_LBUTTONDOWN:
            frame, stamp, _ = client.newest()
            if frame is not None:
                state["frozen"] = state["frozen"] or (frame, stamp)
                selector.press(x, y)
        elif event == cv2.EVENT_MOUSEMOVE:
            selector.move(x, y)
        elif event == cv2.EVENT_LBUTTONUP and selector.dragging:
            box = selector.release(x, y)
            if box is not None and state["frozen"] is not None:
                stamp = state["frozen"][1]
                state["pending"] = ("init", box, stamp, client.request_init(box, stamp))
                state["message"] = f"init_target {tuple(round(v) for v in box)} ..."
            state["frozen"] = None

    cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    cv2.setMouseCallback(WINDOW, on_mouse)
    blank = np.zeros((240, 320, 3), np.uint8)
    while True:
        frame = state["frozen"][0] if state["frozen"] is not None else client.newest()[0]
        cv2.imshow(WINDOW, annotate(blank if frame is None else frame, selector, state["message"],
                                    state["frozen"] is not None))
        key = cv2.waitKey(15) & 0xFF
        if key in (ord("q"), 27) or cv2.getWindowProperty(WINDOW, cv2.WND_PROP_VISIBLE) < 1:
            break
        if key == ord("r"):
            state["pending"] = ("reset", None, None, client.request_reset())
            state["message"] = "reset ..."
        elif key == ord(" "):
            newest = client.newest()
            state["frozen"] = None if state["frozen"] is not None or newest[0] is None else newest[:2]
        pending = state["pending"]
        if pending is not None and pending[3].done():
            kind, box, stamp, future = pending
            answer = future.result()
            state["pending"] = None
            if kind == "init" and not answer.success and stamp is not None and "stamp" in answer.message:
                state["pending"] = ("init", box, None, client.request_init(box))  # frame left the buffer
            else:
                state["message"] = f"{kind}: {'ok' if answer.success else 'failed'}: {answer.message}"
    cv2.destroyAllWindows()
    return 0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    from rclpy.utilities import remove_ros_args

    parser = argparse.ArgumentParser(prog="siam-click", description=__doc__.split("\n\n")[0])
    parser.add_argument("--node", default="tracker_node",
                        help="the tracker node (its init_target and reset services); default tracker_node")
    parser.add_argument("--image", help="image topic to show (default: <node>/debug_image)")
    parser.add_argument("--box", type=parse_box, help="headless: initialise on this box x,y,w,h and exit")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="--box: give up after this many seconds (default 120)")
    return parser.parse_args(remove_ros_args(list(argv))[1:])


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``siam-click``."""
    full = list(sys.argv if argv is None else ["siam-click", *argv])
    args = parse_args(full)
    if args.box is None:
        problem = display_problem()
        if problem:
            print(f"siam-click: {problem}", file=sys.stderr)
            return 2
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from siam_tracking_ros.ros.shutdown import (
        disarm_interrupts,
        ignore_interrupts_until_exit,
        install_interrupt_once,
    )

    install_interrupt_once()
    rclpy.init(args=full)
    client = make_client_node(args.node, args.image or f"{args.node.rstrip('/')}/debug_image")
    executor = SingleThreadedExecutor()
    executor.add_node(client)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    code = 0
    try:
        if args.box is not None:
            ok, message = run_with_box(client, args.box, args.timeout)
            print(f"siam-click: {'tracking' if ok else 'failed'}: {message}", file=sys.stdout if ok
                  else sys.stderr)
            code = 0 if ok else 1
        else:
            client.subscribe()
            code = run_window(client)
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    finally:
        disarm_interrupts()
        executor.shutdown()
        spinner.join(timeout=5.0)  # a thread still inside rcl at exit aborts the process
        client.destroy_node()
        rclpy.try_shutdown()
        ignore_interrupts_until_exit()
    return code


if __name__ == "__main__":
    sys.exit(main())
