"""Start and stop a local `storyshade serve` from Blender, and check any server's health.

Blender's own Python cannot run the server (it needs torch and diffusers), so the server
runs from another Python the user names in the preferences, or one found automatically:
a `storyshade` command on PATH, or the .venv beside a source checkout. No bpy here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import StoryShadeError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def command_for(path: str) -> list[str]:
    """`storyshade serve` through a given executable: the command itself or a Python."""
    exe = Path(path).expanduser()
    if exe.is_dir():  # a virtual environment's folder
        exe = _venv_python(exe)
    if exe.stem.lower().startswith("storyshade"):
        return [str(exe), "serve"]
    return [str(exe), "-m", "storyshade", "serve"]


# The folder holding addon/: a source checkout's root (with its .venv), or the extension's.
ADDON_ROOT = Path(__file__).resolve().parents[2]  # addon/remote/server_local.py


def detect_command(configured: str = "", repo_root: Path | None = None) -> list[str] | None:
    """The command that runs the server: the preference if set, else what can be found."""
    if configured.strip():
        return command_for(configured.strip())
    found = shutil.which("storyshade")
    if found:
        return [found, "serve"]
    root = repo_root or ADDON_ROOT
    for venv in (root / ".venv", root.parent / ".venv"):
        if _venv_python(venv).exists():
            return command_for(str(_venv_python(venv)))
    return None


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url if "//" in url else f"http://{url}")
    host = parts.hostname or "127.0.0.1"
    if host not in LOOPBACK:
        raise StoryShadeError(
            f"the server URL {url} points at another machine; Start only runs a server here",
            "set the server URL to http://127.0.0.1:8787 in the add-on preferences, or start "
            "the server on that machine with `storyshade serve`",
        )
    return host, parts.port or 8787


class LocalServer:
    """The one server process this Blender session started (never one it did not)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None
        self.command: list[str] = []

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(
        self,
        command: list[str],
        url: str,
        models: str = "",
        data: str = "",
        env: dict | None = None,
        token: str | None = None,
    ) -> None:
        """Launch the server; returns at once (see wait_ready / HealthCheck for "up").

        The token goes in the environment, not the command line, where `ps` would show it.
        """
        if self.running:
            return
        host, port = host_port(url)
        exe = Path(command[0])
        if not (exe.exists() or shutil.which(command[0])):
            raise StoryShadeError(
                f"cannot start the server: {command[0]} does not exist",
                "set 'Server Python' in the add-on preferences to a Python that has StoryShade "
                "installed (pip install storyshade), or to its `storyshade` command",
            )
        cmd = [*command, "--host", host, "--port", str(port)]
        if models.strip():
            cmd += ["--models", str(Path(models.strip()).expanduser())]
        if data.strip():
            cmd += ["--data", str(Path(data.strip()).expanduser())]
        child_env = dict(env if env is not None else os.environ)
        child_env.pop("PYTHONHOME", None)  # Blender's own Python home would break another Python
        if token:
            child_env["STORYSHADE_TOKEN"] = token
        self.log_path = Path(tempfile.gettempdir()) / f"storyshade-server-{port}.log"
        log = self.log_path.open("w", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env
            )
        except OSError as exc:
            raise StoryShadeError(
                f"cannot start the server with {cmd[0]} ({exc})",
                "check 'Server Python' in the add-on preferences",
            ) from None
        finally:
            log.close()
        self.command = cmd

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, lines: int = 3) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def exited_error(self) -> StoryShadeError | None:
        """Why the process we started is gone, if it died on its own."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return StoryShadeError(
            f"the local server exited (code {self.proc.returncode}): {self.log_tail() or 'no output'}",
            f"read {self.log_path}; check 'Server Python' and 'Models Folder' in the preferences",
        )

    def wait_ready(self, client, timeout: float = 90.0) -> dict:
        """Block until the server answers health (headless use and tests)."""
        deadline = time.monotonic() + timeout
        while True:
            err = self.exited_error()
            if err is not None:
                raise err
            try:
                return client.health()
            except StoryShadeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)


class HealthCheck:
    """Ask a server for /v1/health (and, given presets, /v1/readiness) in a thread; the
    panel shows the last answer."""

    def __init__(self) -> None:
        self.result: dict | None = None
        self.error: StoryShadeError | None = None
        self.readiness: dict | None = None  # for the presets in `preset`; None: not known
        self.preset: str | None = None
        self.url = ""
        self.checked_at = 0.0
        self._thread: threading.Thread | None = None
        self._want: tuple | None = None  # a newer request made while one was in flight
        self._running = False
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._running

    def start(self, client, preset: str | None = None) -> None:
        """Check now; `preset` (comma-separated names) also asks whether the server can
        run them. A request made while busy runs when the current one ends."""
        with self._lock:
            if self._running:
                self._want = (client, preset)
                return
            self._running, self._want = True, None
        self._thread = threading.Thread(
            target=self._run, args=(client, preset), name="storyshade-health", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, client, preset: str | None) -> None:
        while True:
            readiness = None
            try:
                result, error = client.health(), None
                if preset is not None:
                    readiness = client.readiness(preset)
            except StoryShadeError as exc:
                result, error = None, exc
            self.record(client.url, result, error, readiness, preset)
            with self._lock:
                want, self._want = self._want, None
                if want is None:
                    self._running = False
                    return
            client, preset = want

    def record(self, url, result, error, readiness=None, preset=None) -> None:
        """What a check (this one's, or a shading run's own) found out about the server."""
        self.result, self.error, self.url = result, error, url
        if preset is not None or error is not None:
            self.readiness, self.preset = readiness, preset
        self.checked_at = time.time()

    def readiness_for(self, preset: str) -> dict | None:
        """The last readiness answer if it is for these presets."""
        return self.readiness if self.preset == preset and self.error is None else None

    def summary(self) -> tuple[bool, str, str]:
        """(reachable, one line for the panel, a fix or a warning)."""
        if self.error is not None:
            return False, f"Not reachable at {self.url}", self.error.fix
        if self.result is None:
            return False, "Not checked yet", "press Check (or Start for a local server)"
        h = self.result
        roots = h.get("model_roots") or []
        jobs = h.get("jobs") or {}
        line = f"Reachable: v{h.get('version', '?')} on {h.get('device', '?')}"
        if jobs.get("queued") or jobs.get("running"):
            line += f", {jobs.get('running', 0)} running, {jobs.get('queued', 0)} queued"
        if h.get("models_ready") is False or not roots:
            return (
                True,
                line,
                (
                    "no models folder: only the 'preview' quality works; start the server with "
                    "--models DIR (or set 'Models Folder' in the preferences)"
                ),
            )
        return True, f"{line}, models in {len(roots)} folder(s)", ""
