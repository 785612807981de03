"""Reviewing a sequence: `storyshade sheet` (a row per shot, a column per take, from the take
folders beside the .blend) and the server's /v1/review page, played in real headless
Chromium (Debian's package; `make setup` installs it where it can), under the page's
Content-Security-Policy."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from conftest import write_synthetic_bundle
from serverproc import ServerProcess
from storyshade.cli import main
from test_server_helpers import TokenServer, post_job, zip_dir

COLORS = {("sh010", "take_001"): (200, 40, 40), ("sh010", "take_002"): (40, 200, 40),
          ("sh020", "take_001"): (40, 40, 200)}  # fmt: skip


def takes_tree(root: Path) -> Path:
    for (shot, take), rgb in COLORS.items():
        folder = root / shot / take
        folder.mkdir(parents=True)
        for frame in (1, 2, 3):
            img = np.zeros((72, 128, 3), np.uint8)
            img[...] = rgb[::-1]  # BGR on disk
            cv2.imwrite(str(folder / f"{frame:04d}.png"), img)
        record = {"settings": {"preset": "anime-cel", "seed": 7}, "shot": shot, "take": take}
        (folder / "job.json").write_text(json.dumps(record))
    (root / "sh030" / "take_001").mkdir(parents=True)  # frames deleted: left out
    return root


def _has(sheet: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool((np.abs(sheet.astype(int) - rgb).max(-1) <= 2).sum() > 500)


def test_sheet_has_a_row_per_shot_and_a_column_per_take(tmp_path) -> None:
    root = takes_tree(tmp_path / "storyshade")
    out = tmp_path / "sheet.png"
    assert main(["sheet", str(root), "--out", str(out)]) == 0
    sheet = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert all(_has(sheet, rgb) for rgb in COLORS.values())
    top, bottom = sheet[: sheet.shape[0] // 2], sheet[sheet.shape[0] // 2 :]
    assert _has(top, (200, 40, 40)) and _has(top, (40, 200, 40)) and _has(bottom, (40, 40, 200))
    latest = tmp_path / "latest.png"
    assert main(["sheet", str(root), "--out", str(latest), "--latest", "1"]) == 0
    one = cv2.cvtColor(cv2.imread(str(latest)), cv2.COLOR_BGR2RGB)
    assert not _has(one, (200, 40, 40)) and _has(one, (40, 200, 40))


def test_sheet_of_nothing_says_what_to_do(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["sheet", str(tmp_path / "empty"), "--out", str(tmp_path / "s.png")]) != 0
    assert "no takes with frames" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--virtual-time-budget=15000", *args, url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_review_page_plays_the_takes_side_by_side(tmp_path, tiny_models) -> None:
    with ServerProcess(tmp_path / "data", tiny_models) as srv:
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            for i, shot in enumerate(("sh010", "sh010", "sh020")):
                bundle = write_synthetic_bundle(tmp_path / f"b{i}", frames=2)
                data = json.loads((bundle / "shot.json").read_text())
                (bundle / "shot.json").write_text(json.dumps({**data, "shot": shot}))
                settings = {"preset": "preview", "width": 64, "height": 64, "seed": i}
                tag = f"{shot}_take_00{i + 1}" if i < 2 else ""  # the add-on's strip name
                job = post_job(client, zip_dir(bundle), settings, tag=tag).json()
                assert srv.wait_job(job["id"])["state"] == "done"
        # under its Content-Security-Policy (no inline script, scripts from itself only)
        csp = httpx.get(f"{srv.url}/v1/review").headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        dom = _chromium(f"{srv.url}/v1/review", "--dump-dom", "--enable-logging=stderr", "--v=0")
        assert "2 shots, 3 takes" in dom.stdout, dom.stdout[-2000:] + dom.stderr[-2000:]
        assert dom.stdout.count('src="blob:') == 3  # every take is playing a frame
        # one take is "1 take"; takes are named by their strip, a job without one by its id
        assert "sh010 (2 takes)" in dom.stdout and "sh020 (1 take)" in dom.stdout
        assert "sh010_take_001 · preview" in dom.stdout and "sh010_take_002" in dom.stdout
        assert f"job {job['id'][:6]} · preview" in dom.stdout
        blocked = [line for line in dom.stderr.splitlines() if "Content Security Policy" in line]
        assert not blocked, blocked  # the browser refused nothing the page needs
        shot = tmp_path / "review.png"
        _chromium(f"{srv.url}/v1/review", f"--screenshot={shot}", "--window-size=1000,600")
        image = cv2.imread(str(shot))
        assert image is not None and image.std() > 10  # frames, not an empty page


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")
def test_review_page_asks_for_the_token_and_shows_nothing_without_it(tmp_path, tiny_models) -> None:
    with TokenServer(tmp_path / "data", tiny_models, "review-token-0123456789") as srv:
        assert httpx.get(f"{srv.url}/v1/jobs").status_code == 401  # the data needs it
        dom = _chromium(f"{srv.url}/v1/review", "--dump-dom")
        assert "this server needs a token" in dom.stdout
