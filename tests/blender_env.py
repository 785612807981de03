"""Put the repo's add-on and demo scene builder on sys.path for in-process bpy tests."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "demo"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
