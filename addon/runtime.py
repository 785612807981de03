"""What lives only while Blender runs (never saved in the .blend): the shading run in
progress, the local server this Blender started, and the last server health answer."""

from __future__ import annotations

from .server_local import HealthCheck, LocalServer

current = None  # session.ShadeSession of the run in progress, if any
sequence = None  # sequence.SequenceRun of the last Shade Sequence, if any
local_server = LocalServer()
health = HealthCheck()


def busy() -> bool:
    return current is not None and current.running
