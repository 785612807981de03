"""Review a sequence at a glance: one contact sheet, a row per shot, a column per take.

Reads the take folders the add-on writes beside the .blend (`//storyshade/<shot>/<take>/`,
frames `NNNN.png` and the `job.json` record with the settings the take was shaded with),
so it needs neither Blender nor the server:

    storyshade sheet //storyshade --out sequence.png            # every take of every shot
    storyshade sheet //storyshade --out sequence.png --latest 2 # the two newest per shot

Each cell is the take's middle frame with the take's name, preset and seed under it.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from storyshade.contact_sheet import BACKGROUND, FONT, TEXT, contact_sheet
from storyshade.errors import StoryShadeError

CAPTION = 18  # pixels under each cell for the take's settings


@dataclass
class Take:
    shot: str
    name: str
    frames: list[Path]
    settings: dict = field(default_factory=dict)

    @property
    def caption(self) -> str:
        preset = self.settings.get("preset") or "default"
        seed = self.settings.get("seed")
        return f"{self.name} {preset}" + (f" seed {seed}" if seed is not None else "")


def find_takes(root: Path) -> dict[str, list[Take]]:
    """Shot name -> its takes with frames on disk, oldest first (take folders sort by
    number). Takes whose frames were deleted are left out."""
    root = Path(root)
    if not root.is_dir():
        raise StoryShadeError(
            f"{root} is not a folder of takes",
            "point at the storyshade folder beside the .blend (it holds <shot>/<take>/)",
            field="takes",
        )
    shots: dict[str, list[Take]] = {}
    for shot_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for take_dir in sorted(p for p in shot_dir.iterdir() if p.is_dir()):
            frames = sorted(p for p in take_dir.glob("*.png") if p.stem.lstrip("-").isdigit())
            if not frames:
                continue
            settings: dict = {}
            record = take_dir / "job.json"
            if record.is_file():
                try:
                    settings = json.loads(record.read_text(encoding="utf-8")).get("settings") or {}
                except (OSError, ValueError, AttributeError):
                    settings = {}
            shots.setdefault(shot_dir.name, []).append(
                Take(
                    shot_dir.name,
                    take_dir.name,
                    frames,
                    settings if isinstance(settings, dict) else {},
                )
            )
    if not shots:
        raise StoryShadeError(
            f"no takes with frames under {root}",
            "shade the shots first; takes land in <shot>/<take>/NNNN.png",
            field="takes",
        )
    return shots


def _cell(take: Take | None, size: tuple[int, int]) -> np.ndarray:
    """The take's middle frame with its caption below; an empty cell if there is none."""
    w, h = size
    cell = np.empty((h + CAPTION, w, 3), np.uint8)
    cell[...] = BACKGROUND
    if take is None:
        return cell
    frame = cv2.imread(str(take.frames[len(take.frames) // 2]), cv2.IMREAD_COLOR)
    if frame is not None:
        cell[:h] = cv2.resize(
            cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), (w, h), interpolation=cv2.INTER_AREA
        )
    cv2.putText(cell, take.caption[:60], (3, h + 13), FONT, 0.38, TEXT, 1, cv2.LINE_AA)
    return cell


def sequence_sheet(root: Path, latest: int | None = None, max_width: int = 1600) -> np.ndarray:
    """The sheet: rows are shots (by name), columns the 1st, 2nd... chosen take of each."""
    shots = find_takes(root)
    chosen = {shot: takes[-latest:] if latest else takes for shot, takes in shots.items()}
    columns = max(len(t) for t in chosen.values())
    first = cv2.imread(str(next(iter(chosen.values()))[0].frames[0]), cv2.IMREAD_COLOR)
    h, w = first.shape[:2] if first is not None else (144, 256)
    scale = min(1.0, 320 / w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    grid = {
        f"take {i + 1}": [_cell(t[i] if i < len(t) else None, size) for t in chosen.values()]
        for i in range(columns)
    }
    return contact_sheet(grid, list(chosen), max_width)


def cmd_sheet(args: argparse.Namespace) -> int:
    from PIL import Image

    sheet = sequence_sheet(Path(args.takes), args.latest)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out)
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sheet", help="one contact sheet of a sequence: a row per shot, a column per take"
    )
    p.add_argument("takes", help="the storyshade folder beside the .blend (<shot>/<take>/)")
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument("--latest", type=int, help="only the N newest takes of each shot")
    p.set_defaults(func=cmd_sheet)
