"""Python-side packaging: `pip install .` gives the ROS-free core and its CLIs.

Inside a ROS workspace the package is built by colcon through CMakeLists.txt (ament_cmake), which
also generates the msg/srv interfaces and installs the same executables (scripts/).
"""

from setuptools import find_packages, setup

CONSOLE_SCRIPTS = [
    "tracker_node = siam_tracking_ros.ros.tracker_node:main",
    "tracker_lifecycle_node = siam_tracking_ros.ros.tracker_lifecycle_node:main",
    "video_publisher = siam_tracking_ros.ros.video_publisher:main",
    "siam-demo = siam_tracking_ros.ros.demo:main",
    "follow_target = siam_tracking_ros.ros.follow_target:main",
    "siam-click = siam_tracking_ros.ros.click_to_track:main",
    "siam-train = siam_tracking_ros.train.cli:main",
    "siam-eval = siam_tracking_ros.eval.cli:main",
    "siam-tune = siam_tracking_ros.eval.tune:main",
    "siam-bench = siam_tracking_ros.bench.cli:main",
    "siam-convert = siam_tracking_ros.weights.cli:main",
]

setup(
    name="siam_tracking_ros",
    version="0.1.0",
    description="Siamese single-object trackers in PyTorch with a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["siam_tracking_ros", "siam_tracking_ros.*"]),
    package_data={"siam_tracking_ros": ["weights/data/*.safetensors"]},
    install_requires=["numpy", "opencv-python-headless", "pyyaml", "safetensors", "tqdm",
                      "matplotlib", "torch"],
    extras_require={"test": ["pytest>=8,<8.4", "ruff"]},
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
