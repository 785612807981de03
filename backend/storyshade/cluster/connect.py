"""Join the Ray cluster `storyshade serve --ray` names, or start a private one on loopback.

Ray resolves "localhost" to the machine's network address and its servers listen on every
interface; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` makes a node use 127.0.0.1 instead. It is
read when Ray is imported, so it is decided here, before the import, from the address: set
for a private cluster and for a loopback address, left alone for a real multi-machine one.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any

from storyshade.errors import StoryShadeError

LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
INSTALL = "pip install 'storyshade[cluster]'"


def require_ray() -> None:
    """Fail before the server starts when the `cluster` extra is missing (without importing
    Ray: the import must wait until `connect` has chosen the network mode)."""
    if importlib.util.find_spec("ray") is None:
        raise StoryShadeError(
            "--ray needs Ray, which is not installed in this Python",
            f"install it with: {INSTALL} (the same Ray version on every machine)",
            field="ray",
        )


def _host(address: str) -> str:
    host = address.removeprefix("ray://").rsplit(":", 1)[0]
    return host.strip("[]")


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reachable(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False


def running_cluster() -> str | None:
    """The address `ray.init("auto")` would join: $RAY_ADDRESS, else the cluster that
    `ray start` began on this machine, if its head still answers."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    try:
        address = (Path(tmp) / "ray" / "ray_current_cluster").read_text().strip()
    except OSError:
        return None
    return address if address and _reachable(address) else None


def connect(address: str) -> dict[str, Any]:
    """ray.init for `--ray auto|ADDRESS`; returns what was joined (for the log and health).

    auto: the cluster this machine belongs to, else a private one on 127.0.0.1 that lives
    and dies with the server. ADDRESS: host:port of a running cluster's head (GCS)."""
    require_ray()
    joined = running_cluster() if address == "auto" else address
    private = joined is None
    if private or _is_loopback(_host(joined or "")):
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    import ray

    try:
        if private:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address="auto" if address == "auto" else joined, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if _auth_failure(exc):
            raise StoryShadeError(
                f"the Ray cluster at {joined} refused this server's token",
                "set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token) for the server, as on every node; "
                "see docs/cluster.md",
                field="ray",
            ) from None
        raise StoryShadeError(
            f"could not join the Ray cluster at {joined}: {str(exc)[:300]}",
            "start it with `ray start --head` (see docs/cluster.md), check the address and "
            "port, or use --ray auto on a machine of the cluster",
            field="ray",
        ) from None
    return {"address": "private (127.0.0.1)" if private else joined, "private": private}


def _auth_failure(exc: BaseException | None) -> bool:
    """Ray wraps a refused token in two other errors; look down the chain for it."""
    from ray.exceptions import AuthenticationError

    while exc is not None:
        if isinstance(exc, AuthenticationError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def cluster_size() -> tuple[int, int]:
    """(GPUs, CPUs) the cluster offers now."""
    import ray

    resources = ray.cluster_resources()
    return int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
