"""Export in a background Blender, so the window never waits on Cycles.

In a window, rendering the passes on Blender's main thread stalls the UI for one Cycles
render per frame (0.1-0.2 s for the smallest shot, seconds for a heavy one). Instead the
add-on runs the saved file, or a copy of it when it has unsaved changes, through
`blender -b FILE --addons MODULE -c storyshade export ...`; the modal timer only reads its
progress lines. Background mode (the CLI, scripts, tests) exports in-process as before:
there is no window to keep responsive.

`--addons` enables StoryShade in that Blender whatever its saved preferences say: Blender
writes preferences only on quit, so right after *Install from Disk* the add-on is enabled
in the window but not in a Blender started from it (which then answers
`Unrecognized command: "storyshade"`). The module name is the add-on's own root package
(`bl_ext.<repo>.storyshade` for an extension, the folder's name for a legacy add-on).

Everything the background Blender prints goes to a log file; when it fails, the error says
what StoryShade itself said, or else the exit code and where the log is.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import bpy

from ..errors import StoryShadeError
from ..identity import ADDON_ID

PREFIX = "storyshade: "
ERROR = "storyshade: error: "  # what operators/cli.py prints for a StoryShadeError
PROGRESS = re.compile(r"^storyshade: Exporting (\d+)/(\d+)")
UNKNOWN_COMMAND = 'Unrecognized command: "storyshade"'
# Set while the add-on writes its own copy of the open file: that save is no user's
# save (session/handlers.py leaves takes where they are).
saving_copy = False


def addon_module() -> str:
    """The module name Blender enables the add-on by (identity.root_package)."""
    return ADDON_ID


def blender_binary() -> str:
    return bpy.app.binary_path or ""


def available() -> bool:
    """A window and a Blender executable to run in the background (not the bpy module)."""
    exe = blender_binary()
    return not bpy.app.background and bool(exe) and Path(exe).name.lower().startswith("blender")


def command(
    blend: Path, scene_name: str, out_dir: Path, start: int, end: int, shot: str, camera
) -> list[str]:
    """The background export's command line; `--addons` must come before `-c`."""
    cmd = [blender_binary(), "-b", str(blend), "--addons", addon_module()]
    cmd += ["-c", "storyshade", "export"]
    cmd += ["--out", str(out_dir), "--frames", f"{start}-{end}", "--scene", scene_name]
    cmd += ["--shot", shot]
    if camera:
        cmd += ["--camera", camera]
    return cmd


def log_dir() -> Path:
    return Path(tempfile.gettempdir()) / "storyshade-logs"


def _reader(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


class ExportProcess:
    """A background Blender exporting frames `start`-`end` of `scene` into `out_dir`.

    An iterator like export.iter_export: each `next()` returns (done, total) at once with
    the progress so far; `close()` (cancel) stops the background Blender. `ready` says
    whether Blender is up and rendering, `seconds_per_frame()` how fast it goes.
    """

    def __init__(
        self, scene, out_dir: Path, start: int, end: int, *, shot: str, camera: str | None = None
    ) -> None:
        self.total = end - start + 1
        self.done = 0
        self.ready = False  # Blender loaded the file and StoryShade: frames are rendering
        self.started = time.monotonic()
        self._ready_at = 0.0
        self._frame_at = 0.0
        self._said = ""  # StoryShade's own last line
        self._error = ""  # StoryShade's own error line, if it printed one
        self._unknown_command = False
        self.proc: subprocess.Popen | None = None
        self.work = Path(tempfile.mkdtemp(prefix="storyshade-export-"))
        self.log_path = self._open_log()
        try:
            blend = self._blend_file()
            cmd = command(blend, scene.name, Path(out_dir), start, end, shot, camera)
            self._log("$ " + " ".join(cmd))
            try:
                self.proc = subprocess.Popen(
                    cmd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    errors="replace",
                )
            except OSError as exc:
                self._log(f"could not start: {exc}")
                raise StoryShadeError(
                    f"could not start the background Blender {cmd[0]} ({exc.strerror or exc})"
                    + self._where(),
                    "Blender's executable moved or cannot run: restart Blender and Shade again",
                ) from None
        except BaseException:
            self._cleanup()
            raise
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, self.lines), daemon=True).start()

    # -- the log ----------------------------------------------------------------------------
    def _open_log(self) -> Path | None:
        try:
            folder = log_dir()
            folder.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(
                prefix=f"export-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".log", dir=folder
            )
            os.close(fd)
            return Path(name)
        except OSError:
            return None  # the error message says there is no log

    def _log(self, line: str) -> None:
        if self.log_path is None:
            return
        try:
            with self.log_path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError:
            self.log_path = None

    def _where(self) -> str:
        if self.log_path is None:
            return " (no log: the temporary folder cannot be written)"
        return f"; its output is in {self.log_path}"

    # -- start ------------------------------------------------------------------------------
    def _blend_file(self) -> Path:
        """The open file when what is on disk is what is open, else a copy of it."""
        global saving_copy
        if bpy.data.is_saved and not bpy.data.is_dirty:
            return Path(bpy.data.filepath)  # no copy to write on the main thread
        blend = self.work / "shot.blend"
        saving_copy = True
        try:
            bpy.ops.wm.save_as_mainfile(filepath=str(blend), copy=True, check_existing=False)
        except RuntimeError as exc:
            raise StoryShadeError(
                f"could not write a copy of the open file to {blend} ({str(exc).strip()})",
                "free disk space in the temporary folder, or save the .blend first",
            ) from None
        finally:
            saving_copy = False
        return blend

    # -- progress ---------------------------------------------------------------------------
    def __iter__(self) -> ExportProcess:
        return self

    def __next__(self) -> tuple[int, int]:
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return self.done, self.total
            if line is None:
                self._ended()
                raise StopIteration
            if self._read(line):  # one frame per call: the bar moves frame by frame
                return self.done, self.total

    def _read(self, line: str) -> bool:
        """Take in one line of output; True if it was progress."""
        self._log(line)
        if UNKNOWN_COMMAND in line:
            self._unknown_command = True
        if not line.startswith(PREFIX):
            return False
        self._said = line[len(PREFIX) :]
        if line.startswith(ERROR):
            self._error = line[len(ERROR) :]
            return False
        m = PROGRESS.match(line)
        if m is None:
            return False
        now = time.monotonic()
        if not self.ready:
            self.ready, self._ready_at = True, now
        self.done, self.total = int(m.group(1)), int(m.group(2))
        self._frame_at = now
        return True

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def seconds_per_frame(self) -> float | None:
        """Measured: the time from Blender being up to the last finished frame, per frame."""
        if not self.done:
            return None
        return (self._frame_at - self._ready_at) / self.done

    # -- the end ----------------------------------------------------------------------------
    def _ended(self) -> None:
        code = self.proc.wait()
        if code == 0 and self.done == self.total:
            if self.log_path is not None:
                self.log_path.unlink(missing_ok=True)  # nothing to read in it
            self._cleanup()
            return
        self._cleanup()
        raise self.failure(code)

    def failure(self, code: int) -> StoryShadeError:
        """Why the background export ended without every frame, in words: StoryShade's
        own error if it printed one, else the exit code, the log and a fix for the cause."""
        where = self._where()
        if self._error:
            problem, _, fix = self._error.partition(" Fix: ")
            return StoryShadeError(f"the background export stopped: {problem}{where}", fix)
        frames = f"after {self.done} of {self.total} frames"
        if self._unknown_command:
            return StoryShadeError(
                f"the background Blender could not enable StoryShade ({addon_module()}), so it "
                f"did not know the export command{where}",
                "the log's lines before 'Unrecognized command' say why; reinstall StoryShade "
                "(Edit > Preferences > Get Extensions > Install from Disk) and Shade again",
            )
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return StoryShadeError(
                f"the background Blender crashed ({name}) {frames}{where}",
                "check that the scene renders with Cycles (F12); the log's last lines say "
                "where it stopped",
            )
        said = f"; StoryShade's last line: '{self._said[:200]}'" if self._said else ""
        return StoryShadeError(
            f"the background Blender stopped with exit code {code} {frames}{said}{where}",
            "read the log; check that the scene renders with Cycles (F12)",
        )

    def close(self) -> None:
        """Cancel: stop the background Blender (its log is kept only when it failed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            if self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
