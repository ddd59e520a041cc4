"""``siam-bench``: speed and memory of tracker variants (``model``) and of the ROS node (``node``).

``siam-bench model --tracker NAME ... [--device cpu cuda] [--targets 1 4]`` measures load time,
init latency, track latency p50/p95/p99, throughput and peak memory per variant and device.
``siam-bench node --tracker NAME [--resolution 640x480 1920x1080] [--rate 30 100]`` measures
end-to-end latency, processed rate and service response under load over DDS against the tracker
node; ``--soak N`` (``--soak-frames N``) instead
streams N frames and records the node's memory over time. Both write ``OUT/bench.json`` and
``OUT/bench.md`` and print the table. Timings are reports, never pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import torch

from siam_tracking_ros.backends import BACKENDS
from siam_tracking_ros.bench import model as model_bench
from siam_tracking_ros.bench.memory import rss_mib
from siam_tracking_ros.core.report import json_safe, machine_info
from siam_tracking_ros.data.sequences import find_sequences
from siam_tracking_ros.eval import factory
from siam_tracking_ros.eval.baselines import DEFAULT_NANO_BACKBONE, DEFAULT_NANO_NECKHEAD

MODEL_COLUMNS = ("tracker", "device", "half", "cuda_graphs", "targets", "resolution", "backend", "threads",
                 "load_ms", "init_ms", "track_p50_ms", "track_p95_ms", "track_p99_ms", "fps", "target_fps",
                 "peak_rss_mib", "cuda_peak_mib", "weights")
NODE_COLUMNS = ("tracker", "resolution", "rate_hz", "published", "node_received", "received", "dropped",
                "processed_hz", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_max_ms",
                "node_latency_p50_ms", "service_p95_ms", "rss_start_mib", "rss_end_mib")


def _resolution(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    try:
        return int(width), int(height)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"resolution must be WxH, got {text!r}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siam-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracker", nargs="+", required=True, metavar="NAME")
    common.add_argument("--weights", nargs="+", metavar="[NAME=]PATH",
                        help="weights per variant; variants without trained weights fall back to random "
                             "(speed does not depend on the values)")
    common.add_argument("--option", nargs="+", default=[], metavar="[NAME:]KEY=VALUE")
    common.add_argument("--sequence", type=Path, default=model_bench.default_sequence_dir(),
                        help="real frames to track (a sequence folder)")
    common.add_argument("--out", type=Path, required=True)
    common.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch, OpenCV and ONNX Runtime threads (model: one row per count; node: the "
                             "first)")

    model = sub.add_parser("model", parents=[common], help="per-variant latency, throughput, memory")
    model.add_argument("--device", nargs="+", default=["cpu"])
    model.add_argument("--targets", nargs="+", type=int, default=[1], help="targets tracked at once")
    model.add_argument("--frames", type=int, default=100, help="frames to track")
    model.add_argument("--warmup", type=int, default=5)
    model.add_argument("--half", action="store_true", help="fp16 network (CUDA only)")
    model.add_argument("--cuda-graphs", action="store_true",
                       help="replay the search pass from CUDA graphs (CUDA only)")
    model.add_argument("--resolution", type=_resolution, nargs="+",
                       help="resize frames to WxH, one row per size (default: as stored)")
    model.add_argument("--backend", nargs="+", default=["auto"], choices=BACKENDS,
                       help="inference backend(s) of the variants, one row each (OpenCV baselines: one row)")
    model.add_argument("--in-process", action="store_true",
                       help="run all configurations in this process (default: one child process each)")
    model.add_argument("--nano-backbone", default=str(DEFAULT_NANO_BACKBONE))
    model.add_argument("--nano-neckhead", default=str(DEFAULT_NANO_NECKHEAD))

    node = sub.add_parser("node", parents=[common], help="end-to-end latency over DDS; soak")
    node.add_argument("--device", default="cpu")
    node.add_argument("--resolution", nargs="+", type=_resolution, default=[(640, 480), (1920, 1080)])
    node.add_argument("--rate", nargs="+", type=float, default=[30.0, 100.0])
    node.add_argument("--duration", type=float, default=10.0, help="seconds per (resolution, rate)")
    node.add_argument("--soak", "--soak-frames", dest="soak_frames", type=int, metavar="N",
                      help="soak: stream N frames, sample memory")
    node.add_argument("--sample-every", type=float, default=5.0, help="soak: seconds between samples")
    node.add_argument("--startup-timeout", type=float, default=180.0,
                      help="seconds to wait for the node to load its model and accept the target")
    node.add_argument("--node-executable", help="start this executable (e.g. the installed "
                      "install/siam_tracking_ros/lib/siam_tracking_ros/tracker_node) instead of this "
                      "checkout's siam_tracking_ros.ros.tracker_node")
    node.add_argument("--node-arg", nargs="+", default=[], help="extra --ros-args for the node")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads[0]))
    cv2.setNumThreads(max(1, args.threads[0]))
    try:
        requests = factory.build_requests(args.tracker, args.weights, args.option)
        sequence = find_sequences(args.sequence)[0]
    except (KeyError, ValueError, FileNotFoundError) as exc:
        print(f"siam-bench: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    if args.command == "model":
        rows = run_model(args, requests, sequence)
        columns = MODEL_COLUMNS
    else:
        try:
            rows = run_node(args, requests, sequence)
        except (FileNotFoundError, RuntimeError) as exc:
            print(f"siam-bench: {exc}", file=sys.stderr)
            return 1
        columns = NODE_COLUMNS
    write_report(args, rows, columns, argv)
    return 0


def _with_weights_fallback(request: factory.TrackerRequest, attempt: Any) -> Any:
    """Run ``attempt(request)``; a variant with no trained weights is retried with random ones."""
    from siam_tracking_ros.weights.io import WeightsError

    try:
        return attempt(request)
    except WeightsError:
        if request.weights is not None:
            raise
        fallback = factory.TrackerRequest(request.name, "random", request.options)
        return attempt(fallback)


class ModelConfig(NamedTuple):
    """One row of ``siam-bench model``."""

    request: factory.TrackerRequest
    device: str
    targets: int
    resolution: tuple[int, int] | None
    backend: str
    threads: int

    def label(self) -> dict[str, Any]:
        return {"tracker": self.request.name, "device": self.device, "targets": self.targets,
                "backend": self.backend, "threads": self.threads}


def model_configs(args: argparse.Namespace, requests: list[factory.TrackerRequest]) -> list[ModelConfig]:
    """Every (resolution, threads, variant, backend, device, targets); baselines once per backend set."""
    configs = []
    for resolution in args.resolution or [None]:
        for threads in args.threads:
            for request in requests:
                backends = ["opencv"] if factory.is_baseline(request.name) else args.backend
                configs += [ModelConfig(request, device, targets, resolution, backend, threads)
                            for backend in backends for device in args.device for targets in args.targets]
    return configs


def run_model(args: argparse.Namespace, requests: list[factory.TrackerRequest],
              sequence: Any) -> list[dict[str, Any]]:
    """One row per configuration (:func:`model_configs`); each in a fresh process unless
    ``--in-process`` or there is only one, so memory numbers do not carry over between rows. Every
    row tracks the same frames (the first ``--frames`` of ``--sequence``, resized)."""
    configs = model_configs(args, requests)
    isolate = not args.in_process and len(configs) > 1
    frames_by_size: dict[Any, Any] = {}
    rows = []
    for config in configs:
        if isolate:
            result = _run_isolated(args, config)
        else:
            if config.resolution not in frames_by_size:
                frames_by_size[config.resolution] = model_bench.load_frames(sequence, args.frames + 1,
                                                                            config.resolution)
            result = _run_one(args, config, *frames_by_size[config.resolution])
        print(format_table([result], MODEL_COLUMNS).splitlines()[-1], flush=True)
        rows.append(result)
    return rows


def _run_one(args: argparse.Namespace, config: ModelConfig, frames: Any, box: Any) -> dict[str, Any]:
    torch.set_num_threads(max(1, config.threads))
    cv2.setNumThreads(max(1, config.threads))

    def attempt(req: factory.TrackerRequest) -> Any:
        return model_bench.bench_model(req, frames, box, config.device, config.targets, args.warmup,
                                       nano_paths=(args.nano_backbone, args.nano_neckhead),
                                       half=args.half, cuda_graphs=args.cuda_graphs,
                                       backend=config.backend, threads=config.threads)

    try:
        return _with_weights_fallback(config.request, attempt).as_dict()
    except Exception as exc:  # report and go on with the next configuration
        return {**config.label(), "error": f"{type(exc).__name__}: {exc}"}


def _run_isolated(args: argparse.Namespace, config: ModelConfig) -> dict[str, Any]:
    """Run one configuration as ``siam-bench model --in-process`` in a child process."""
    request = config.request
    with tempfile.TemporaryDirectory(prefix="siam_bench_") as tmp:
        argv = ["model", "--in-process", "--tracker", request.name, "--device", config.device,
                "--targets", str(config.targets), "--frames", str(args.frames), "--warmup", str(args.warmup),
                "--sequence", str(args.sequence), "--threads", str(config.threads), "--out", tmp,
                "--nano-backbone", str(args.nano_backbone), "--nano-neckhead", str(args.nano_neckhead)]
        if config.backend in BACKENDS:
            argv += ["--backend", config.backend]
        if request.weights:
            argv += ["--weights", f"{request.name}={request.weights}"]
        if request.options:
            argv += ["--option", *(f"{request.name}:{k}={v}" for k, v in request.options.items())]
        if config.resolution:
            argv += ["--resolution", "{}x{}".format(*config.resolution)]
        argv += ["--half"] * args.half + ["--cuda-graphs"] * args.cuda_graphs
        child = subprocess.run([sys.executable, "-m", "siam_tracking_ros.bench.cli", *argv],
                               capture_output=True, text=True, check=False)
        report = Path(tmp) / "bench.json"
        if child.returncode != 0 or not report.is_file():
            return {**config.label(), "error": (child.stderr.strip().splitlines() or ["child failed"])[-1]}
        return json.loads(report.read_text())["results"][0]


def run_node(args: argparse.Namespace, requests: list[factory.TrackerRequest],
             sequence: Any) -> list[dict[str, Any]]:
    from siam_tracking_ros.bench import node as node_bench

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")  # keep DDS on this machine
    frames, box = model_bench.load_frames(sequence, 60, None)
    height, width = frames[0].shape[:2]
    args.out.mkdir(parents=True, exist_ok=True)
    client = node_bench.BenchClient()
    rows: list[dict[str, Any]] = []
    try:
        for request in requests:
            extra = ["-p", "diagnostics_period:=0.25", *args.node_arg]  # fresh received_frames counts
            if request.weights:
                weights = Path(request.weights)
                extra += ["-p", f"weights:={weights.resolve() if weights.exists() else request.weights}"]
            extra += [a for k, v in request.options.items() for a in ("-p", f"tracker_params.{k}:={v}")]
            process = node_bench.NodeProcess(request.name, args.device, extra,
                                             args.out / f"node_{request.name}.log", args.node_executable)
            try:
                rows += _node_runs(args, request.name, client, process, frames, box, (width, height))
            finally:
                process.stop()
    finally:
        client.close()
    return rows


def _node_runs(args: argparse.Namespace, name: str, client: Any, process: Any, frames: list,
               box: Any, source_size: tuple[int, int]) -> list[dict[str, Any]]:
    from siam_tracking_ros.bench import node as node_bench

    settings = ([(args.resolution[0], args.rate[0])] if args.soak_frames
                else [(r, f) for r in args.resolution for f in args.rate])
    rows = []
    for resolution, rate in settings:
        messages = node_bench.make_image_messages(frames, resolution)
        scale = [resolution[0] / source_size[0], resolution[1] / source_size[1]] * 2
        ok, message = node_bench.start_target(client, messages[0], box * scale, args.startup_timeout,
                                              process.alive)
        if not process.alive():
            raise RuntimeError(f"tracker node exited (see {args.out}/node_{name}.log)")
        if not ok:
            raise RuntimeError(f"init_target failed: {message}")
        client.clear()
        count = args.soak_frames or int(args.duration * rate)
        sample_every = args.sample_every if args.soak_frames else 0.0
        received_before, rss_start = client.node_counter("received_frames"), rss_mib(process.pid)
        with node_bench.ServiceProber(client) as prober:
            stamps, samples = node_bench.publish_stream(client, messages, count, rate, process.pid,
                                                        sample_every)
        time.sleep(1.0)  # let the last results arrive
        result = node_bench.summarize_stream(name, resolution, rate, client, stamps, samples,
                                             prober.times).as_dict()
        received_after = client.node_counter("received_frames")
        if received_before is not None and received_after is not None:
            result["node_received"] = received_after - received_before
        result["rss_start_mib"], result["rss_end_mib"] = rss_start, rss_mib(process.pid)
        if args.soak_frames:
            result["rss_drift_mib"] = node_bench.memory_drift(samples, "rss_mib")
            result["gpu_drift_mib"] = node_bench.memory_drift(samples, "gpu_mib")
        print(format_table([result], NODE_COLUMNS).splitlines()[-1], flush=True)
        rows.append(result)
    return rows


def format_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Markdown table of ``rows``; rows with an ``error`` show it in the last column."""
    header = [*columns, "error"] if any("error" in r for r in rows) else list(columns)
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(c)) for c in header) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return str(value)


def write_report(args: argparse.Namespace, rows: list[dict[str, Any]], columns: tuple[str, ...],
                 argv: list[str] | None) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    command = "siam-bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    document = {"command": command, "machine": machine_info(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": rows}
    (args.out / "bench.json").write_text(json.dumps(json_safe(document), indent=1))
    table = format_table(rows, columns)
    (args.out / "bench.md").write_text(f"`{command}`\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
