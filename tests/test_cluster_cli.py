"""`serve --ray` flags without a cluster: a missing Ray is a clear error naming the extra,
bad counts are refused, and a server without --ray never imports Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from serverproc import REPO

# `sys.modules["ray"] = None` is how Python marks a module as not importable: as on a
# machine without the `cluster` extra, `import ray` and find_spec("ray") both say no.
NO_RAY = "import sys; sys.modules['ray'] = None; "


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO / "backend"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )


def serve(args: list[str], tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = (
        f"{prelude}from storyshade.cli import main; "
        f"raise SystemExit(main(['serve', '--data', {str(tmp_path / 'data')!r}, *{args!r}]))"
    )
    return run_python(code, tmp_path)


def test_ray_flag_without_ray_names_the_extra(tmp_path: Path) -> None:
    done = serve(["--ray", "auto"], tmp_path, NO_RAY)
    assert done.returncode == 2, done.stderr
    assert "--ray needs Ray" in done.stderr
    assert "pip install 'storyshade[cluster]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_negative_worker_count_is_refused(tmp_path: Path) -> None:
    done = serve(["--ray", "auto", "--ray-workers", "-1"], tmp_path, NO_RAY)
    assert done.returncode == 2 and "--ray-workers" in done.stderr


def test_a_server_without_ray_flag_never_imports_ray(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from storyshade.server.app import create_app, ServerConfig; "
        f"app = create_app(ServerConfig(data_dir=Path({str(tmp_path / 'data')!r})), False); "
        "assert app.state.store.runner is None and len(app.state.store.workers) == 1; "
        "print('ray' in sys.modules)"
    )
    done = run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_serve_help_documents_the_cluster_flags(tmp_path: Path) -> None:
    done = serve(["--help"], tmp_path)
    assert done.returncode == 0
    assert "--ray auto|ADDRESS" in done.stdout and "--ray-workers N" in done.stdout
