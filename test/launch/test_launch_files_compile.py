"""Launch files compile and build their description (no launch packages needed).

``launch`` and ``launch_ros`` are not installable from PyPI, so ``generate_launch_description()``
runs against a stand-in of both: every class there records the arguments it was built with. The
tests then read the declared arguments, the substitutions and the nodes off the recorded objects.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import py_compile
import re
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
EXECUTABLES = {p.name for p in (ROOT / "scripts").iterdir()}
STAND_IN_ROOTS = ("launch", "launch_ros")


class Recorded:
    """Any class of the stand-in ``launch`` / ``launch_ros``: keeps its arguments."""

    made: ClassVar[list[Recorded]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs
        Recorded.made.append(self)

    @property
    def kind(self) -> str:
        return type(self).__name__


class StandInModule(types.ModuleType):
    """A module where every CamelCase name is a :class:`Recorded` subclass and others are submodules."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__path__: list[str] = []  # a package: submodules import through the finder below

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            value: Any = type(name, (Recorded,), {"__module__": self.__name__})
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


def describe(path: Path) -> tuple[Recorded, list[Recorded], types.ModuleType]:
    """Run ``generate_launch_description()`` of ``path``: the description, every object built, the module."""
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.name.split('.')[0]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    Recorded.made = []
    description = module.generate_launch_description()
    return description, list(Recorded.made), module


def of_kind(objects: list[Recorded], *kinds: str) -> list[Recorded]:
    return [o for o in objects if o.kind in kinds]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_file_compiles(path: Path) -> None:
    py_compile.compile(str(path), doraise=True)
    assert "def generate_launch_description" in path.read_text()


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=[p.name for p in LAUNCH_FILES])
def test_launch_description_builds_with_declared_arguments(path: Path, stand_in_launch) -> None:
    description, made, _ = describe(path)
    assert description.kind == "LaunchDescription"
    declared = {a.args[0]: a for a in of_kind(made, "DeclareLaunchArgument")}
    for name, argument in declared.items():
        assert argument.kwargs.get("description"), f"argument '{name}' has no description"
    for config in of_kind(made, "LaunchConfiguration"):
        name = config.args[0]
        assert name in declared or "default" in config.kwargs, \
            f"LaunchConfiguration('{name}') is not declared"
    for node in of_kind(made, "Node", "LifecycleNode"):
        if node.kwargs.get("package") == "siam_tracking_ros":
            assert node.kwargs["executable"] in EXECUTABLES, node.kwargs["executable"]


def test_tracker_launch_arguments_are_declared_documented_and_used(stand_in_launch) -> None:
    description, made, module = describe(ROOT / "launch" / "tracker.launch.py")
    declared = [a.args[0] for a in of_kind(made, "DeclareLaunchArgument")]
    assert declared == ["tracker", "image", "device", "weights", "params_file", "namespace", "lifecycle",
                        "video"]
    for name in declared:
        assert re.search(rf"\b{name}\b", module.__doc__), f"'{name}' is not in the module docstring"
    # the description holds every declaration and the three nodes
    entities = description.args[0]
    assert [e.kind for e in entities].count("DeclareLaunchArgument") == len(declared)
    [plain] = [e for e in entities if e.kind == "Node" and e.kwargs["executable"] == "tracker_node"]
    [managed] = [e for e in entities if e.kind == "LifecycleNode"]
    [player] = [e for e in entities if e.kind == "Node" and e.kwargs["executable"] == "video_publisher"]
    assert managed.kwargs["executable"] == "tracker_lifecycle_node"

    def config(name: str) -> Recorded:
        [made_config] = [c for c in of_kind(made, "LaunchConfiguration") if c.args[0] == name]
        return made_config

    for node in (plain, managed):
        assert node.kwargs["namespace"] is config("namespace")
        remappings = dict(node.kwargs["remappings"])
        assert remappings["image"] is config("image")  # image:= moves the input topic
        assert remappings["image/compressed"] == [config("image"), "/compressed"]
        params_file, overrides = node.kwargs["parameters"]
        assert params_file is config("params_file")  # the file first, the launch arguments over it
        for name in ("tracker", "device", "weights"):
            value = overrides[name]
            assert value.kind == "ParameterValue" and value.args[0] is config(name)
            assert value.kwargs["value_type"] is str
    # one of the two tracker nodes starts, chosen by lifecycle:=
    assert plain.kwargs["condition"].kind == "UnlessCondition"
    assert managed.kwargs["condition"].kind == "IfCondition"
    assert plain.kwargs["condition"].args[0] is config("lifecycle")
    assert managed.kwargs["condition"].args[0] is config("lifecycle")
    assert dict(player.kwargs["remappings"])["image"] is config("image")
    assert config("video") in player.kwargs["condition"].args[0].args[0]  # no player without video:=
    [params_default] = [a.kwargs["default_value"] for a in of_kind(made, "DeclareLaunchArgument")
                        if a.args[0] == "params_file"]
    assert params_default[1:] == ["/config/", config("tracker"), ".yaml"]


def test_stand_in_sees_an_undeclared_argument(stand_in_launch, tmp_path: Path) -> None:
    """The declaration check fails for a launch file that uses an argument it never declares."""
    broken = tmp_path / "broken.launch.py"
    broken.write_text(
        "from launch import LaunchDescription\n"
        "from launch.actions import DeclareLaunchArgument\n"
        "from launch.substitutions import LaunchConfiguration\n"
        "from launch_ros.actions import Node\n\n"
        "def generate_launch_description():\n"
        "    return LaunchDescription([\n"
        "        DeclareLaunchArgument('image', description='input topic'),\n"
        "        Node(package='siam_tracking_ros', executable='tracker_node',\n"
        "             remappings=[('image', LaunchConfiguration('imgae'))]),\n"
        "    ])\n")
    with pytest.raises(AssertionError, match="LaunchConfiguration\\('imgae'\\) is not declared"):
        test_launch_description_builds_with_declared_arguments(broken, None)
