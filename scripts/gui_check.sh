#!/usr/bin/env bash
# Try the add-on in real Blender windows: Debian's Blender packages in chroots, under Xvfb.
#
# Why: the tests run Blender without a window (the bpy module), where panels are never
# drawn, timers never fire and the Sequencer never shows anything. This script installs the
# built extension zip into real GUI builds and clicks through it (scripts/gui_check.py):
# looks on objects and a collection, Check, Shade with `preview`, progress, the Sequencer,
# a cancelled slow job, UI scale 1.5, the Shots sub-panel and Shade Sequence, and Download
# Models against a second server whose hub is a local stand-in, and the Wan engine (wan-tiny).
#
# First, per suite, a *fresh user* run does what a person does: a new user folder, the
# extension installed with Install from Disk's operator in the running window, the
# preferences never saved, Shade in an unsaved file, then Save As (the take must move
# beside the .blend). Then the scripted run with the add-on installed from the command line.
#
# Usage (root, Linux; downloads about 1.5 GB per suite the first time):
#   scripts/gui_check.sh [SUITE...]        default: trixie sid   (trixie: 4.3, sid: 5.x)
# Environment:
#   GUI_ROOT  where the chroots and tiny models live   (default /var/tmp/storyshade-gui)
#   GUI_OUT   screenshots, logs, the test projects     (default $GUI_ROOT/out)
#   GUI_CHECK_ARGS  more arguments for gui_check.py    (e.g. --looks-only, --shots-only)
#   GUI_FRESH_ONLY=1  only the fresh user run
#   GUI_ADDON_FROM=DIR  build the extension from another checkout (e.g. to see the fresh
#                       user run fail on an older add-on; the driving script stays this one)
# Output per suite: GUI_OUT/<ver>-<step>.png (sidebar or Sequencer crops), full-*.png
# (whole window), log-<ver>.json (panel texts per step, longest main-loop stall),
# blender-<ver>.log. Exit 0 when every suite's script ran to its end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
GUI_ROOT=${GUI_ROOT:-/var/tmp/storyshade-gui}
GUI_OUT=$(realpath -m "${GUI_OUT:-$GUI_ROOT/out}")
SUITES=("$@")
[ ${#SUITES[@]} -gt 0 ] || SUITES=(trixie sid)
PY=$REPO/.venv/bin/python
[ "$(id -u)" = 0 ] || { echo "gui_check: needs root (debootstrap, chroot, mount)"; exit 1; }
[ -x "$PY" ] || { echo "gui_check: run 'make setup' first (.venv)"; exit 1; }
for tool in debootstrap xvfb-run; do
  command -v $tool >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap xvfb xauth; }
done
mkdir -p "$GUI_ROOT" "$GUI_OUT"

chroot_for() {  # a minimal Debian SUITE with its blender package, made once
  local suite=$1 root=$GUI_ROOT/$1
  # numpy: the add-on needs it, and Debian's blender only recommends it
  if ! chroot "$root" dpkg -s blender python3-numpy imagemagick >/dev/null 2>&1; then
    [ -d "$root/usr" ] || debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian
    mount --bind /proc "$root/proc"
    # sid's Release files can be older than their Valid-Until on a snapshot mirror
    chroot "$root" apt-get -o Acquire::Check-Valid-Until=false update -qq
    DEBIAN_FRONTEND=noninteractive chroot "$root" \
      apt-get install -y -qq --no-install-recommends blender python3-numpy imagemagick xvfb xauth
    umount "$root/proc"
  fi
}

# The extension zip, built with Blender's own builder, and a server with tiny models.
BUILDER=$("$PY" -c "import importlib.util as u, pathlib; print(next(pathlib.Path(u.find_spec('bpy').origin).parent.glob('*/scripts/addons_core/bl_pkg/cli/blender_ext.py')))")
rm -rf "$GUI_ROOT/dist" && mkdir -p "$GUI_ROOT/dist"
"$PY" "$BUILDER" build --source-dir "${GUI_ADDON_FROM:-$REPO}" --output-dir "$GUI_ROOT/dist" >/dev/null
ZIP=$(ls "$GUI_ROOT"/dist/storyshade-*.zip)
MODELS=$GUI_ROOT/models
# (again when an older run's set lacks the tiny Wan VACE checkpoint)
[ -f "$MODELS/.done" ] && [ -d "$MODELS/checkpoints/tiny-wan-vace" ] || {
  rm -rf "$MODELS" "$GUI_ROOT/hub" && "$PY" -m storyshade models tiny "$MODELS" >/dev/null && touch "$MODELS/.done"; }
PRESETS=$GUI_OUT/presets
mkdir -p "$PRESETS/quality"
# A quality slow enough to cancel mid-denoise on any machine: the tiny models, many steps.
sed 's/^steps = .*/steps = 150/; s/^description = .*/description = "GUI check: tiny models, 150 steps"/' \
  "$REPO/presets/quality/tiny.toml" > "$PRESETS/quality/gui-slow.toml"
PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
rm -rf "$GUI_OUT/server-data"
STORYSHADE_PRESETS=$PRESETS OMP_NUM_THREADS=1 PYTHONPATH=$REPO/backend \
  "$PY" -m storyshade serve --port "$PORT" --data "$GUI_OUT/server-data" --models "$MODELS" \
  > "$GUI_OUT/server.log" 2>&1 &
SERVER=$!
# Download Models: a second server with an empty models folder, its hub the stand-in
# (tests/hubstandin.py) serving the tiny models under the real repository ids; the
# Lightning motion file is throttled so the progress bar stays on screen a few seconds.
HUB=$GUI_ROOT/hub
[ -f "$HUB/.done" ] || { rm -rf "$HUB" && "$PY" tests/hub_repos.py "$HUB" "$MODELS" >/dev/null && touch "$HUB/.done"; }
"$PY" -c "import json, pathlib, sys; root = pathlib.Path(sys.argv[1]); \
key = 'ByteDance/AnimateDiff-Lightning/animatediff_lightning_4step_diffusers.safetensors'; \
chunks = -(-(root / key).stat().st_size // 8192); \
(root / '_standin.json').write_text(json.dumps({'throttle': {key: chunks * 8192 // 8}}))" "$HUB"
HUB_PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
STANDIN_PORT=$HUB_PORT "$PY" tests/hubstandin.py "$HUB" > "$GUI_OUT/hub.log" 2>&1 &
HUBPID=$!
PULL_PORT=$("$PY" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
rm -rf "$GUI_OUT/pull-data" "$GUI_OUT/pull-models" && mkdir -p "$GUI_OUT/pull-models"
HF_ENDPOINT=http://127.0.0.1:$HUB_PORT HF_HOME=$GUI_OUT/pull-hf OMP_NUM_THREADS=1 PYTHONPATH=$REPO/backend \
  "$PY" -m storyshade serve --port "$PULL_PORT" --data "$GUI_OUT/pull-data" --models "$GUI_OUT/pull-models" \
  > "$GUI_OUT/pull-server.log" 2>&1 &
PULLSERVER=$!
MOUNTS=()
cleanup() {
  kill "$SERVER" "$HUBPID" "$PULLSERVER" 2>/dev/null || true
  for m in "${MOUNTS[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
}
trap cleanup EXIT
for _ in $(seq 120); do
  "$PY" -c "import urllib.request as u; [u.urlopen(f'http://127.0.0.1:{p}/v1/health', timeout=2) for p in ($PORT, $PULL_PORT)]" 2>/dev/null && break
  sleep 1
done

status=0
for suite in "${SUITES[@]}"; do
  chroot_for "$suite"
  root=$GUI_ROOT/$suite
  mkdir -p "$root/storyshade" "$root/out"
  for pair in "/proc:proc" "/dev:dev" "$REPO:storyshade" "$GUI_OUT:out"; do
    mount --bind "${pair%%:*}" "$root/${pair#*:}"
    MOUNTS=("$root/${pair#*:}" "${MOUNTS[@]}")
  done
  ver=$(chroot "$root" blender --version 2>/dev/null | head -1 | awk '{print $2}')
  echo "gui_check: $suite: Blender $ver"
  rm -rf "${GUI_OUT:?}"/pull-models/*  # each suite downloads into an empty models folder
  zipname=$(basename "$ZIP")
  cp "$ZIP" "$root/tmp/$zipname"
  # The fresh user: a new user folder, nothing installed or saved before Blender starts.
  chroot "$root" rm -rf /tmp/gui-fresh-home
  if timeout 600 chroot "$root" env HOME=/tmp/gui-fresh-home LANG=C.UTF-8 \
      xvfb-run -a -s "-screen 0 1600x1000x24" \
      blender --python-exit-code 1 --python /storyshade/scripts/gui_check.py -- \
      --server "http://127.0.0.1:$PORT" --out /out --fresh-user "/tmp/$zipname" \
      > "$GUI_OUT/blender-$suite-fresh.log" 2>&1 \
      && grep -q "gui_check: result 0" "$GUI_OUT/blender-$suite-fresh.log"; then
    echo "gui_check: $suite: fresh user: PASS (first Shade placed its take; Save As moved it)"
  else
    said=$(grep -h "a new user's first Shade failed\|RuntimeError" "$GUI_OUT/blender-$suite-fresh.log" | tail -1)
    echo "gui_check: $suite: fresh user: FAIL: ${said:-see $GUI_OUT/blender-$suite-fresh.log}"
    status=1
  fi
  sleep 2  # xvfb-run's X server may still be closing its devices
  if [ -n "${GUI_FRESH_ONLY:-}" ]; then
    for m in "$root/out" "$root/storyshade" "$root/dev" "$root/proc"; do umount "$m" || umount -l "$m"; done
    MOUNTS=()
    continue
  fi
  run() { chroot "$root" env HOME=/tmp/gui-home LANG=C.UTF-8 "$@"; }
  run rm -rf /tmp/gui-home
  run blender --command extension install-file \
    -r user_default -e "/tmp/$zipname" > "$GUI_OUT/install-$suite.log" 2>&1
  # No splash screen over the sidebar (saved with the preferences that enable the add-on).
  run blender -b --python-expr "import bpy; bpy.context.preferences.view.show_splash = False; \
bpy.ops.wm.save_userpref()" >> "$GUI_OUT/install-$suite.log" 2>&1
  if ! timeout 900 chroot "$root" env HOME=/tmp/gui-home LANG=C.UTF-8 \
      xvfb-run -a -s "-screen 0 1600x1000x24" \
      blender --python-exit-code 1 --python /storyshade/scripts/gui_check.py -- \
      --server "http://127.0.0.1:$PORT" --pull-server "http://127.0.0.1:$PULL_PORT" --out /out \
      ${GUI_CHECK_ARGS:-} > "$GUI_OUT/blender-$suite.log" 2>&1; then
    echo "gui_check: $suite: Blender exited with an error (see $GUI_OUT/blender-$suite.log)"
    status=1
  fi
  grep -h "gui_check: stall" "$GUI_OUT/blender-$suite.log" || { echo "gui_check: $suite: no result"; status=1; }
  # the script's own verdict: Blender quits with 0 after a step failed too
  if ! grep -q "gui_check: result 0" "$GUI_OUT/blender-$suite.log"; then
    said=$(grep -h "RuntimeError" "$GUI_OUT/blender-$suite.log" | tail -1)
    echo "gui_check: $suite: FAIL: ${said:-see $GUI_OUT/blender-$suite.log}"
    status=1
  fi
  sleep 2  # xvfb-run's X server may still be closing its devices
  for m in "$root/out" "$root/storyshade" "$root/dev" "$root/proc"; do umount "$m" || umount -l "$m"; done
  MOUNTS=()
done
echo "gui_check: screenshots and logs in $GUI_OUT"
exit $status
