"""Named clients on a shared server (`serve --clients FILE`): each sees, follows and cancels
only its own jobs; the admin token sees every job; bad client files are refused at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serverproc import REPO
from test_server_helpers import TokenServer, bundle_zip, post_job

ADMIN = "admin-token-0123456789"
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789abc"
PREVIEW = {"preset": "preview", "width": 64, "height": 64}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, tiny_models: Path):
    root = tmp_path_factory.mktemp("clients")
    clients = root / "clients.toml"
    clients.write_text(f'alice = "{ALICE}"\nbob = "{BOB}"\n')
    with TokenServer(root / "data", tiny_models, ADMIN, "--clients", str(clients)) as proc:
        yield proc


def _as(srv, token: str) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=60, headers={"Authorization": f"Bearer {token}"})


def test_a_client_sees_and_cancels_only_its_own_jobs(shared, tmp_path) -> None:
    with _as(shared, ALICE) as alice, _as(shared, BOB) as bob, _as(shared, ADMIN) as admin:
        resp = post_job(alice, bundle_zip(tmp_path / "a"), PREVIEW)
        assert resp.status_code == 201, resp.text
        job = resp.json()
        assert job["owner"] == "alice"
        mine = post_job(bob, bundle_zip(tmp_path / "b"), PREVIEW).json()

        path = f"/v1/jobs/{job['id']}"
        for method, url in (
            ("GET", path),
            ("DELETE", path),
            ("GET", f"{path}/events"),
            ("GET", f"{path}/frames/1"),
        ):
            resp = bob.request(method, url)
            assert resp.status_code == 404, (method, url, resp.text)
            assert resp.json()["field"] == "job_id"
        assert [j["id"] for j in bob.get("/v1/jobs").json()["jobs"]] == [mine["id"]]
        assert [j["id"] for j in alice.get("/v1/jobs").json()["jobs"]] == [job["id"]]
        assert alice.get(path).json()["cancel_requested"] is False  # bob's DELETE did nothing

        everyone = {j["id"]: j["owner"] for j in admin.get("/v1/jobs").json()["jobs"]}
        assert everyone == {job["id"]: "alice", mine["id"]: "bob"}
        assert admin.delete(f"/v1/jobs/{mine['id']}").status_code == 200  # admin may cancel
        assert alice.get(path).status_code == 200 and alice.delete(path).status_code == 200


def test_unknown_tokens_are_refused(shared) -> None:
    for headers in ({}, {"Authorization": "Bearer alice"}, {"Authorization": f"Basic {ALICE}"}):
        resp = httpx.get(f"{shared.url}/v1/jobs", headers=headers)
        assert resp.status_code == 401 and resp.json()["field"] == "Authorization"


def _serve(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STORYSHADE_TOKEN"}
    env["PYTHONPATH"] = str(REPO / "backend")
    return subprocess.run(
        [sys.executable, "-m", "storyshade", "serve", "--port", "9", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.parametrize(
    "text, says",
    [
        ("alice = ", "not valid TOML"),
        ('alice = "short"', "16+ characters"),
        ('"../x" = "0123456789abcdefgh"', "not a plain name"),
        ('a = "0123456789abcdefgh"\nb = "0123456789abcdefgh"', "another client's"),
        ("", "names no client"),
    ],
)
def test_bad_clients_files_are_refused_at_start(tmp_path, text, says) -> None:
    clients = tmp_path / "clients.toml"
    clients.write_text(text)
    result = _serve("--data", str(tmp_path / "d"), "--clients", str(clients))
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr


def test_clients_alone_are_credentials_for_other_addresses(tmp_path) -> None:
    """Named clients count as a token for the refusal to serve beyond loopback without one
    (checked on the parsed command line: nothing is bound)."""
    import argparse

    from storyshade.server.cli import add_commands, build_config

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())
    clients = tmp_path / "clients.toml"
    clients.write_text(f'alice = "{ALICE}"')
    args = ["serve", "--host", "0.0.0.0", "--data", str(tmp_path / "d")]
    config = build_config(parser.parse_args([*args, "--clients", str(clients)]))
    assert config.needs_auth and config.clients == {"alice": ALICE} and config.token is None
    env_token = os.environ.pop("STORYSHADE_TOKEN", None)
    try:
        with pytest.raises(Exception, match="refusing to listen"):
            build_config(parser.parse_args(args))
    finally:
        if env_token is not None:
            os.environ["STORYSHADE_TOKEN"] = env_token


def test_health_shows_a_client_nothing_about_the_others(shared, tmp_path, tiny_models) -> None:
    with _as(shared, ALICE) as alice, _as(shared, BOB) as bob, _as(shared, ADMIN) as admin:
        assert post_job(bob, bundle_zip(tmp_path / "b"), PREVIEW).status_code == 201
        everyone = admin.get("/v1/health").json()
        mine = alice.get("/v1/health").json()
    with _as(shared, ALICE) as alice:
        own = alice.get("/v1/jobs").json()["jobs"]
    assert sum(mine["jobs"].values()) == len(own)  # her own jobs' counts only
    assert sum(everyone["jobs"].values()) > sum(mine["jobs"].values())
    assert everyone["model_roots"] == [str(tiny_models)]
    assert mine["model_roots"] == ["<models>"]  # how many folders, not where
    assert str(tiny_models) not in json.dumps(mine)
    for admin_only in ("models", "workers", "worker_restarts", "disk"):
        assert mine[admin_only] is None, admin_only
    assert everyone["models"] is not None and everyone["disk"]["free_bytes"] > 0
