"""Run `storyshade` with write faults injected at the operating-system boundary, for tests.

    python tests/faultserve.py RULES.json serve --data ... (any storyshade arguments)

An audit hook (sys.addaudithook) sees every file the process opens or links. While the
file RULES.json exists, each rule in it, {"pattern": REGEX, "errno": "ENOSPC", "skip": N},
makes every open-for-writing (or hard link) of a path matching REGEX raise that OSError,
after letting the first N through; rules are read again whenever the file changes. The
server itself is the real one, unchanged: only what the disk answers is made up.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
import threading

RULES = sys.argv.pop(1)
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_inside = threading.local()
_state: dict = {"mtime": None, "rules": [], "seen": {}}


def _rules() -> list[dict]:
    try:
        mtime = os.stat(RULES).st_mtime_ns
    except OSError:
        return []
    if mtime != _state["mtime"]:
        with open(RULES, encoding="utf-8") as fh:
            _state["rules"] = json.load(fh)
        _state["mtime"], _state["seen"] = mtime, {}
    return _state["rules"]


def _writes(mode: object, flags: object) -> bool:
    if isinstance(mode, str) and mode != "r":
        return any(c in mode for c in "wax+")
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def _hook(event: str, args: tuple) -> None:
    if event not in ("open", "os.link") or getattr(_inside, "busy", False):
        return
    path, writing = (args[1], True) if event == "os.link" else (args[0], _writes(*args[1:3]))
    if not writing or not isinstance(path, str | bytes | os.PathLike):
        return
    _inside.busy = True
    try:
        target = os.fsdecode(path)
        for i, rule in enumerate(_rules()):
            if re.search(rule["pattern"], target):
                seen = _state["seen"][i] = _state["seen"].get(i, 0) + 1
                if seen > rule.get("skip", 0):
                    code = getattr(errno, rule.get("errno", "ENOSPC"))
                    raise OSError(code, os.strerror(code), target)
    finally:
        _inside.busy = False


sys.addaudithook(_hook)

from storyshade.cli import main  # noqa: E402  after the hook, so it sees every open

sys.exit(main(sys.argv[1:]))
