"""Launch files compile, build their description and start the nodes their arguments ask for.

``launch`` and ``launch_ros`` are not installable from PyPI, so the launch files run against a
stand-in of both: every class there records the arguments it was built with, and a small
interpreter below does what ``ros2 launch`` would with them (declared defaults, given arguments,
substitutions, conditions, opaque functions, included files) up to the nodes it would start. The
tests check those nodes: executables, remappings, parameters, namespace.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import py_compile
import re
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
EXECUTABLES = {p.name for p in (ROOT / "scripts").iterdir()}
STAND_IN_ROOTS = ("launch", "launch_ros")
TRUE, FALSE = ("true", "1"), ("false", "0")


class Recorded:
    """Any class of the stand-in ``launch`` / ``launch_ros``: keeps its arguments."""

    made: ClassVar[list[Recorded]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        Recorded.made.append(self)

    @property
    def kind(self) -> str:
        return type(self).__name__

    def perform(self, context: Context) -> str:
        raise NotImplementedError(f"the launch stand-in cannot perform {self.kind}: add it to the test")


class Context:
    """What the interpreter knows while it runs: the launch configurations (argument values)."""

    def __init__(self, configurations: dict[str, str]) -> None:
        self.launch_configurations = dict(configurations)


def text(value: Any, context: Context) -> str:
    """A substitution, a list of them or plain text, performed to text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return "".join(text(part, context) for part in value)
    if isinstance(value, Recorded):
        return value.perform(context)
    return str(value)


class LaunchConfiguration(Recorded):
    def perform(self, context: Context) -> str:
        name = self.args[0]
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if "default" in self.kwargs:
            return text(self.kwargs["default"], context)
        raise KeyError(f"LaunchConfiguration('{name}') is not declared")


class PythonExpression(Recorded):
    def perform(self, context: Context) -> str:
        return str(eval(text(self.args[0], context), {}, {}))  # the expression of our own launch file


class FindPackageShare(Recorded):
    def perform(self, context: Context) -> str:
        from ament_index_python.packages import get_package_share_directory

        return get_package_share_directory(text(self.args[0], context))


class IfCondition(Recorded):
    def evaluate(self, context: Context) -> bool:
        value = text(self.args[0], context).strip().lower()
        assert value in TRUE + FALSE, f"a condition got '{value}'"
        return value in TRUE


class UnlessCondition(IfCondition):
    def evaluate(self, context: Context) -> bool:
        return not super().evaluate(context)


SPECIAL = {cls.__name__: cls for cls in (LaunchConfiguration, PythonExpression, FindPackageShare,
                                         IfCondition, UnlessCondition)}


class StandInModule(types.ModuleType):
    """A module where every CamelCase name is a :class:`Recorded` subclass and others are submodules."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []  # a package: submodules import through the finder below

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            value: Any = SPECIAL.get(name) or type(name, (Recorded,), {"__module__": self.__name__})
        else:
            value = importlib.import_module(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        if fullname.split(".")[0] in STAND_IN_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return StandInModule(spec.name)

    def exec_module(self, module) -> None:
        pass


def _is_stand_in_name(name: str) -> bool:
    return name.split(".")[0] in STAND_IN_ROOTS


@pytest.fixture
def stand_in_launch(monkeypatch: pytest.MonkeyPatch):
    """``launch`` / ``launch_ros`` replaced by the stand-in for one test (the real ones, or the
    repository's launch/ folder seen as a namespace package, come back afterwards)."""
    for name in [n for n in sys.modules if _is_stand_in_name(n)]:
        monkeypatch.delitem(sys.modules, name)
    finder = StandInFinder()
    sys.meta_path.insert(0, finder)
    Recorded.made = []
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if _is_stand_in_name(n)]:
            del sys.modules[name]


def load(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.name.split('.')[0]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def describe(path: Path) -> tuple[Recorded, list[Recorded], types.ModuleType]:
    """Run ``generate_launch_description()`` of ``path``: the description, every object built, the module."""
    module = load(path)
    Recorded.made = []
    description = module.generate_launch_description()
    return description, list(Recorded.made), module


def of_kind(objects: list[Recorded], *kinds: str) -> list[Recorded]:
    return [o for o in objects if o.kind in kinds]


@dataclass
class Started:
    """A node the launch would start, every substitution performed."""

    kind: str
    package: str
    executable: str
    name: str
    namespace: str
    remappings: dict[str, str]
    files: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)  # the dict layers merged, in order
    arguments: list[str] = field(default_factory=list)


def parameter(value: Any, context: Context) -> Any:
    if isinstance(value, Recorded) and value.kind == "ParameterValue":
        assert value.kwargs.get("value_type") is str, "launch arguments reach parameters as text"
        return text(value.args[0], context)
    return text(value, context) if isinstance(value, Recorded) else value


def start(node: Recorded, context: Context) -> Started:
    kw = node.kwargs
    started = Started(node.kind, text(kw.get("package", ""), context), text(kw["executable"], context),
                      text(kw.get("name", ""), context), text(kw.get("namespace", ""), context),
                      {text(a, context): text(b, context) for a, b in kw.get("remappings", [])},
                      arguments=[text(a, context) for a in kw.get("arguments", [])])
    for layer in kw.get("parameters", []):
        if isinstance(layer, dict):
            started.parameters.update({k: parameter(v, context) for k, v in layer.items()})
        else:
            started.files.append(text(layer, context))
    return started


IGNORED = ("LogInfo", "RegisterEventHandler", "EmitEvent", "SetEnvironmentVariable")


def expand(entities: list, context: Context) -> list[Started]:
    """What ``ros2 launch`` would do with ``entities``, down to the nodes it starts."""
    started: list[Started] = []
    for entity in entities:
        kind, kw = entity.kind, entity.kwargs
        if kind == "DeclareLaunchArgument":
            name = entity.args[0]
            if name not in context.launch_configurations:
                assert "default_value" in kw, f"argument '{name}' has no default and was not given"
                context.launch_configurations[name] = text(kw["default_value"], context)
        elif kind == "OpaqueFunction":
            actions = kw["function"](context, *kw.get("args", ()), **kw.get("kwargs", {}))
            started += expand(list(actions or []), context)
        elif kind == "IncludeLaunchDescription":
            path = Path(text(entity.args[0].args[0], context))
            given = {text(k, context): text(v, context) for k, v in kw.get("launch_arguments", [])}
            child = Context({**context.launch_configurations, **given})
            started += expand(load(path).generate_launch_description().args[0], child)
        elif kind in ("Node", "LifecycleNode"):
            condition = kw.get("condition")
            if condition is None or condition.evaluate(context):
                started.append(start(entity, context))
        elif kind == "GroupAction":
            started += expand(list(entity.args[0] if entity.args else kw["actions"]), context)
        elif kind not in IGNORED:
            raise NotImplementedError(f"the launch stand-in cannot run {kind}: add it to the test")
    return started


def launch(path: Path, **arguments: str) -> list[Started]:
    """The nodes ``ros2 launch siam_tracking_ros <path> name:=value ...`` would start."""
    description, _, _ = describe(path)
    assert description.kind == "LaunchDescription"
    return expand(list(description.args[0]), Context(arguments))


def the(nodes: list[Started], executable: str) -> Started:
    [node] = [n for n in nodes if n.executable == executable]
    return node


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_file_compiles(path: Path) -> None:
    py_compile.compile(str(path), doraise=True)
    assert "def generate_launch_description" in path.read_text()


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_with_defaults_starts_installed_executables(path: Path, stand_in_launch) -> None:
    """Every argument has a description (``ros2 launch --show-args``); with the defaults the launch
    runs (every LaunchConfiguration it performs is declared) and starts this package's executables."""
    _, made, _ = describe(path)
    for argument in of_kind(made, "DeclareLaunchArgument"):
        assert argument.kwargs.get("description"), f"argument '{argument.args[0]}' has no description"
    nodes = launch(path)
    assert nodes, "the launch starts no node"
    for node in nodes:
        if node.package == "siam_tracking_ros":
            assert node.executable in EXECUTABLES, node.executable


TRACKER_LAUNCH = ROOT / "launch" / "tracker.launch.py"


def test_tracker_launch_defaults(stand_in_launch) -> None:
    _, made, module = describe(TRACKER_LAUNCH)
    declared = [a.args[0] for a in of_kind(made, "DeclareLaunchArgument")]
    assert sorted(declared) == sorted(["tracker", "image", "device", "weights", "params_file", "namespace",
                                       "lifecycle", "video"])
    for name in declared:
        assert re.search(rf"\b{name}\b", module.__doc__), f"argument '{name}' is not in the docstring"
    nodes = launch(TRACKER_LAUNCH)
    assert [n.executable for n in nodes] == ["tracker_node"]  # no player without video:=
    node = nodes[0]
    assert (node.kind, node.name, node.namespace) == ("Node", "tracker_node", "")
    assert node.remappings == {"image": "image", "image/compressed": "image/compressed"}
    assert any(Path(f).name == "nanotrack.yaml" and Path(f).is_file() for f in node.files), node.files


def test_tracker_launch_arguments_reach_the_nodes(stand_in_launch, tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("tracker_node:\n  ros__parameters:\n    score_threshold: 0.4\n")
    nodes = launch(TRACKER_LAUNCH, tracker="siamfc", image="/camera/image_raw", device="cpu",
                   weights="/w/siamfc.safetensors", params_file=str(own), namespace="robot",
                   lifecycle="true", video="/videos/clip.mp4")
    assert sorted(n.executable for n in nodes) == ["tracker_lifecycle_node", "video_publisher"]
    tracker, player = the(nodes, "tracker_lifecycle_node"), the(nodes, "video_publisher")
    assert tracker.kind == "LifecycleNode" and tracker.namespace == player.namespace == "robot"
    assert tracker.remappings == {"image": "/camera/image_raw",
                                  "image/compressed": "/camera/image_raw/compressed"}
    assert player.remappings == {"image": "/camera/image_raw"}
    assert player.parameters["source"] == "/videos/clip.mp4"
    assert {k: tracker.parameters[k] for k in ("tracker", "device", "weights")} == {
        "tracker": "siamfc", "device": "cpu", "weights": "/w/siamfc.safetensors"}
    assert str(own) in tracker.files  # the user's file ...
    packaged = [f for f in tracker.files if Path(f).name == "siamfc.yaml"]
    assert not packaged or tracker.files.index(packaged[0]) < tracker.files.index(str(own))  # ... on top


def test_stand_in_sees_an_undeclared_argument(stand_in_launch, tmp_path: Path) -> None:
    """The launch check fails for a file that uses an argument it never declares (a typo)."""
    broken = tmp_path / "broken.launch.py"
    broken.write_text(
        '"""Broken: image is declared, imgae used."""\n'
        "from launch import LaunchDescription\n"
        "from launch.actions import DeclareLaunchArgument\n"
        "from launch.substitutions import LaunchConfiguration\n"
        "from launch_ros.actions import Node\n\n"
        "def generate_launch_description():\n"
        "    return LaunchDescription([\n"
        "        DeclareLaunchArgument('image', default_value='image', description='input topic'),\n"
        "        Node(package='siam_tracking_ros', executable='tracker_node',\n"
        "             remappings=[('image', LaunchConfiguration('imgae'))]),\n"
        "    ])\n")
    with pytest.raises(KeyError, match="LaunchConfiguration\\('imgae'\\) is not declared"):
        test_launch_with_defaults_starts_installed_executables(broken, None)
