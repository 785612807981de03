#!/usr/bin/env bash
# Run the add-on tests under Blender 4.2 LTS (bpy 4.2.x from PyPI) in .venv-bpy42.
#
# Why a second venv: bpy 4.2 and 5.0 cannot share one; the add-on must work on both.
# The backend is NOT installed here: tests that need a server start it from the main
# .venv's Python (STORYSHADE_SERVER_PYTHON, default .venv/bin/python) as a subprocess.
#
# Usage: scripts/test_bpy42.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
BPY42="${BPY42:-4.2.23}"
VENV=.venv-bpy42
if ! "$VENV/bin/python" -c "import bpy, sys; sys.exit(bpy.app.version_string.split()[0] != '$BPY42')" 2>/dev/null; then
  rm -rf "$VENV"
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q "bpy==$BPY42" "numpy<2" "pytest>=8" "pytest-timeout>=2.3"
fi
export STORYSHADE_SERVER_PYTHON="${STORYSHADE_SERVER_PYTHON:-$PWD/.venv/bin/python}"
# -p no:cacheprovider: the main venv's pytest cache stays untouched by this second run.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/test_addon_*.py "$@"
