"""Where things sit in a shot bundle and in a take folder, and which version says so."""

from __future__ import annotations

import re

FORMAT = "storyshade.shot"
# A bundle is written at the lowest version that holds what it carries:
# 1: passes and cameras; 2: + per-object looks; 3: + held frames (re-shading part of a take).
VERSION = 3
LOOKS_VERSION = 2
VERSIONS = (1, 2, 3)  # what a server reads
MANIFEST = "shot.json"
PASS_DIR = "frames"  # one multilayer EXR per frame
TAKE_DIR = "take"  # held frames' pictures (version 3)
REFERENCE_DIR = "references"  # reference images a job names, relative to shot.json
# An image a request names inside its bundle: plain folder and file names of these
# characters, at most four deep (the server refuses others; the add-on renames to fit).
NAME_CHARS = r"\w .()+\-"
BUNDLE_IMAGE = re.compile(rf"[\w][{NAME_CHARS}]{{0,99}}(/[\w][{NAME_CHARS}]{{0,99}}){{0,3}}")


def plain_name(text: str) -> str:
    """`text` with every character a bundle path may not hold replaced by `_`."""
    return re.sub(rf"[^{NAME_CHARS}]", "_", text)


def frame_name(frame: int) -> str:
    """A shaded frame's file name, in a take folder and in a job's frames folder alike."""
    return f"{frame:04d}.png"


def pass_file(frame: int) -> str:
    """Where frame `frame`'s depth/normal pass file sits inside the bundle."""
    return f"{PASS_DIR}/{frame:04d}.exr"


def take_file(frame: int) -> str:
    """Where a held frame's picture (the earlier take's PNG) sits inside the bundle."""
    return f"{TAKE_DIR}/{frame_name(frame)}"
