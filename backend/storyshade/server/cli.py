"""`storyshade serve`."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_PORT = 8787


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from storyshade.models.locate import model_roots
    from storyshade.server.app import ServerConfig, create_app

    config = ServerConfig(
        data_dir=Path(args.data).expanduser(),
        model_roots=model_roots(args.models),
        max_upload_bytes=args.max_upload_mb << 20,
    )
    app = create_app(config)
    print(
        f"StoryShade server on http://{args.host}:{args.port} (data: {config.data_dir})", flush=True
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the HTTP shading server")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--models", action="append", metavar="DIR", help="models root (repeatable)")
    p.add_argument("--data", default="~/.storyshade", help="jobs and results live here")
    p.add_argument("--max-upload-mb", type=int, default=2048)
    p.add_argument("--log-level", default="warning")
    p.set_defaults(func=cmd_serve)
