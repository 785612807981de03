"""What a server instance is allowed to do: folders, limits, credentials."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "localhost.", "ip6-localhost"}


@dataclass
class ServerConfig:
    data_dir: Path
    model_roots: list[Path] = field(default_factory=list)
    max_upload_bytes: int = 2 << 30
    max_frames: int = 1024
    max_resolution: int = 4096  # longest side of the bundle's render resolution, in pixels
    token: str | None = None  # the administrator's: sees and cancels every job
    clients: dict[str, str] = field(default_factory=dict)  # client name → its own token
    quotas: dict[str, int] = field(default_factory=dict)  # client name → bytes its jobs may use
    min_free_bytes: int = 1 << 30  # below this free on the data disk, submits get 507
    keep_seconds: float = 0.0  # finished jobs older than this are deleted; 0 keeps them
    cors_origins: list[str] = field(default_factory=list)
    cache_bytes: int = 4 << 30  # finished frames kept for identical reruns; 0 disables
    model_memory_bytes: int = 8 << 30  # loaded pipelines kept resident between jobs
    host: str = "127.0.0.1"
    ray: str | None = None  # serve --ray: "auto" or a cluster's host:port (docs/cluster.md)
    ray_workers: int = 0  # 0: one Ray worker per GPU in the cluster, else per CPU

    @property
    def needs_auth(self) -> bool:
        return bool(self.token or self.clients)


def is_loopback(host: str) -> bool:
    """True only for names and addresses that cannot be reached from another machine."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name we would have to resolve: assume it is reachable
