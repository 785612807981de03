"""Rendering never fetches: the hub libraries are switched offline for this process unless
the user set their switches themselves. A pull the user asked for (`storyshade models
pull`) lifts StoryShade's own default, never a switch the user set.

Why not a plain `setdefault`: it cannot be told apart from the user's own
`HF_HUB_OFFLINE=1` afterwards, and `models pull` then refused every download.
"""

from __future__ import annotations

import os
import sys

SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_ours: set[str] = set()  # the switches this process set, not the user
_lifted = False  # a pull was asked for: the default stays off for this process


def offline_by_default() -> None:
    """Switch the hub libraries offline where the user said nothing (not after a pull
    lifted the default: a module imported later must not switch it back on)."""
    if _lifted:
        return
    for name in SWITCHES:
        if name not in os.environ:
            os.environ[name] = "1"
            _ours.add(name)


def lift_default() -> None:
    """Before an asked-for download: StoryShade's own offline default goes (the variable
    and huggingface_hub's copy read at its import); the user's own switches stay."""
    global _lifted
    _lifted = True
    for name in _ours:
        os.environ[name] = "0"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None and "HF_HUB_OFFLINE" in _ours:
        constants.HF_HUB_OFFLINE = False
