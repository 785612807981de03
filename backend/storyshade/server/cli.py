"""`storyshade serve`: the shading server, loopback-only unless given a token."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from storyshade.errors import StoryShadeError

DEFAULT_PORT = 8787


def build_config(args: argparse.Namespace):
    from storyshade.models.locate import model_roots
    from storyshade.server.config import ServerConfig, is_loopback

    token = args.token or os.environ.get("STORYSHADE_TOKEN") or None
    clients, quotas = {}, {}
    if args.clients:
        from storyshade.server.clients import load_client_table

        clients, quotas = load_client_table(args.clients, token)
    if not is_loopback(args.host) and not (token or clients):
        raise StoryShadeError(
            f"refusing to listen on {args.host} without a token: anyone who can reach this "
            "machine could submit jobs, read every frame and fill its disk",
            "set a token with --token SECRET or the STORYSHADE_TOKEN environment variable "
            "(clients then send 'Authorization: Bearer SECRET'), or keep --host 127.0.0.1",
            field="host",
        )
    for name in ("max_upload_mb", "max_frames", "max_resolution"):
        if getattr(args, name) < 1:
            raise StoryShadeError(f"--{name.replace('_', '-')} must be at least 1", field=name)
    if args.min_free_mb < 0:
        raise StoryShadeError("--min-free-mb must be 0 (no floor) or more", field="min_free_mb")
    if not 0 <= args.keep_days < 100_000:
        raise StoryShadeError(
            "--keep-days must be 0 (keep every job) or a number of days", field="keep_days"
        )
    if args.ray_workers < 0:
        raise StoryShadeError("--ray-workers must be 0 (one per GPU) or more", field="ray_workers")
    if args.ray:
        from storyshade.cluster.connect import require_ray  # imports no Ray

        require_ray()
    return ServerConfig(
        data_dir=Path(args.data).expanduser(),
        model_roots=model_roots(args.models),
        max_upload_bytes=args.max_upload_mb << 20,
        max_frames=args.max_frames,
        max_resolution=args.max_resolution,
        token=token,
        clients=clients,
        quotas=quotas,
        min_free_bytes=args.min_free_mb << 20,
        keep_seconds=args.keep_days * 86400.0,
        cors_origins=list(args.cors_origin or []),
        cache_bytes=max(0, args.cache_mb) << 20,
        model_memory_bytes=max(0, args.model_memory_mb) << 20,
        host=args.host,
        ray=args.ray,
        ray_workers=args.ray_workers,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from storyshade.server.app import create_app
    from storyshade.server.datadir import lock_data_dir, upload_tmp

    config = build_config(args)
    lock = lock_data_dir(config.data_dir)  # noqa: F841  held for the life of the process
    tempfile.tempdir = str(upload_tmp(config.data_dir))  # upload spool files go here
    app = create_app(config)
    auth = "token required" if config.needs_auth else "no token: loopback only"
    if config.clients:
        auth += f", {len(config.clients)} named clients"
    print(
        f"StoryShade server on http://{args.host}:{args.port} (data: {config.data_dir}; {auth})",
        flush=True,
    )
    if config.ray:
        cluster = app.state.store.runner.cluster
        print(
            f"Rendering on Ray cluster {cluster['address']}: {cluster['workers']} workers "
            f"({cluster['gpus']} GPU, {cluster['cpus']} CPU)",
            flush=True,
        )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP shading server")
    p.add_argument("--host", default="127.0.0.1", help="a non-loopback address needs a token")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--models", action="append", metavar="DIR", help="models root (repeatable)")
    p.add_argument("--data", default="~/.storyshade", help="jobs, results and cache live here")
    p.add_argument(
        "--token", help="require 'Authorization: Bearer TOKEN' (or set $STORYSHADE_TOKEN)"
    )
    p.add_argument(
        "--clients",
        metavar="FILE",
        help="TOML file of name = token: each client sees and cancels only its own jobs "
        "(docs/server.md)",
    )
    p.add_argument("--max-upload-mb", type=int, default=2048, help="largest request body")
    p.add_argument(
        "--min-free-mb",
        type=int,
        default=1024,
        help="free space the data folder's disk keeps: below it submits get 507 and "
        "/v1/health says degraded (0: no floor)",
    )
    p.add_argument(
        "--keep-days",
        type=float,
        default=0.0,
        metavar="DAYS",
        help="delete finished jobs (and their frames) this long after they end; fractions "
        "allowed; 0 (default) keeps every job",
    )
    p.add_argument("--max-frames", type=int, default=1024, help="most frames in one shot")
    p.add_argument(
        "--max-resolution", type=int, default=4096, help="longest side of a bundle, in pixels"
    )
    p.add_argument(
        "--cache-mb", type=int, default=4096, help="disk for cached frames (0: no stage cache)"
    )
    p.add_argument(
        "--model-memory-mb",
        type=int,
        default=8192,
        help="memory for loaded models kept between jobs (least recently used dropped first)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser requests from ORIGIN (repeatable); none by default",
    )
    p.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="render on Ray workers: 'auto' (this machine's cluster, else a private one) or "
        "a head's host:port; needs storyshade[cluster] (docs/cluster.md)",
    )
    p.add_argument(
        "--ray-workers",
        type=int,
        default=0,
        metavar="N",
        help="Ray workers to start (default: one per GPU in the cluster, else one per CPU)",
    )
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_serve)
