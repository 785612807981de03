#!/usr/bin/env bash
# Run the add-on tests under Blender 4.2 LTS (bpy 4.2.x from PyPI) in .venv-bpy42.
#
# Why a second venv: one venv holds one bpy, and the add-on must work on 4.2 as well as
# on the 5.0 in .venv. The backend is NOT installed here: the tests that need a server
# start it from another Python, as the add-on's Start button does for users:
# $STORYSHADE_SERVER_PYTHON, default .venv/bin/python.
#
# Usage: scripts/test_bpy42.sh [extra pytest args]
# Other Blender versions: BPY_VERSION=4.5.15 VENV=.venv-bpy45 scripts/test_bpy42.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BPY_VERSION="${BPY_VERSION:-4.2.23}"
VENV="${VENV:-.venv-bpy42}"
if ! "$VENV/bin/python" -c "import bpy, sys; sys.exit(bpy.app.version_string.split()[0] != '$BPY_VERSION')" 2>/dev/null; then
  rm -rf "$VENV"
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q "bpy==$BPY_VERSION" "numpy<2" "pytest>=8" "pytest-timeout>=2.3"
fi
export STORYSHADE_SERVER_PYTHON="${STORYSHADE_SERVER_PYTHON:-$PWD/.venv/bin/python}"
# -p no:cacheprovider: leave the main run's pytest cache alone.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/test_addon_*.py "$@"
