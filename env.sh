# Source me (bash or zsh): `source env.sh`. Activates .venv (ROS 2 Kilted from PyPI), points the
# ament/cmake prefixes at it, and overlays this package's colcon install/ so that the node
# executables and CLIs are on PATH and siam_tracking_ros (with its msg/srv) is importable.
_siam_root="$(cd "$(dirname "${BASH_SOURCE[0]:-${(%):-%x}}")" && pwd)"
if [ ! -x "$_siam_root/.venv/bin/python" ]; then
  echo "env.sh: $_siam_root/.venv is missing: run ./setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_siam_root/.venv/bin/activate"
case ":${AMENT_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
  export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}";; esac
case ":${CMAKE_PREFIX_PATH:-}:" in *":$VIRTUAL_ENV:"*) ;; *)
  export CMAKE_PREFIX_PATH="$VIRTUAL_ENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}";; esac
# Fast DDS with shared-memory segments big enough for camera frames (config/fastdds.xml, docs/NODE.md);
# an FASTDDS_DEFAULT_PROFILES_FILE already set is kept
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_siam_root/config/fastdds.xml}"
if [ "${1:-}" != "--no-install" ]; then
  if [ -f "$_siam_root/install/local_setup.${ZSH_VERSION:+zsh}${ZSH_VERSION:-bash}" ]; then
    # shellcheck disable=SC1090
    source "$_siam_root/install/local_setup.${ZSH_VERSION:+zsh}${ZSH_VERSION:-bash}"
  else
    echo "env.sh: $_siam_root/install is missing: run ./setup.sh to build the package" >&2
  fi
fi
unset _siam_root
