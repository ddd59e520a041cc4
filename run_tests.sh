#!/usr/bin/env bash
# The project's test command: lint, then the whole pytest suite (unit, real-data integration and
# ROS 2 node tests over real DDS kept on this machine). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
set +u
# shellcheck disable=SC1091
source ./env.sh
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID=${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 101 ))}
ROS_LOG_DIR=$(mktemp -d -t siam-ros-log.XXXXXX)
export ROS_LOG_DIR
export MPLBACKEND=Agg
echo "==> ruff check"
ruff check .
echo "==> pytest (ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
pytest "$@"
