"""Siamese single-object tracking: a ROS-free PyTorch core and a thin ROS 2 node over it.

The generated ROS interfaces (``siam_tracking_ros.msg`` / ``.srv``) live in the colcon install
tree; ``extend_path`` lets a source checkout that is first on ``sys.path`` still find them.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
__version__ = "0.1.0"
