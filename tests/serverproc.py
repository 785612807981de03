"""Run a real `storyshade serve` process on loopback for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m storyshade serve ...` in a child process; stop() or kill() it."""

    def __init__(
        self,
        data: Path,
        models: Path | None = None,
        *extra: str,
        port: int = 0,
        python: str | None = None,
        prefix: Sequence[str] = (),
        entry: Sequence[str] = ("-m", "storyshade"),
    ):
        # the server's Python: STORYSHADE_SERVER_PYTHON in the bpy 4.2 suite (no torch there)
        self.python = python or os.environ.get("STORYSHADE_SERVER_PYTHON") or sys.executable
        self.prefix = list(prefix)  # e.g. nsenter into a mount namespace (test_server_faults)
        self.entry = list(entry)  # e.g. tests/faultserve.py RULES (a fault-injecting launcher)
        self.data = data
        self.models = models
        self.extra = list(extra)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> ServerProcess:
        cmd = [*self.prefix, self.python, *self.entry, "serve", "--port", str(self.port)]
        cmd += ["--data", str(self.data)]
        if self.models:
            cmd += ["--models", str(self.models)]
        env = dict(os.environ, PYTHONPATH=str(REPO / "backend"), OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen(
            cmd + self.extra, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
            try:
                self.get("/v1/health")
                return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server did not start:\n{self.log.read_text()}")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(self.url + path, timeout=10) as resp:
            return json.loads(resp.read())

    def wait_job(self, job_id: str, timeout: float = 300.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            job = self.get(f"/v1/jobs/{job_id}")
            if job["state"] in ("done", "failed", "cancelled"):
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} not finished after {timeout}s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
