"""`storyshade presets list|show`: the presets as a user sees them (the data logic is
presets.py's)."""

from __future__ import annotations

import argparse
import json
import warnings

from storyshade.presets import PresetWarning, choose, resolve, scan
from storyshade.wire.layering import DEFAULTS, LAYERS


def _cmd_list(args: argparse.Namespace) -> int:
    presets, broken = scan()
    for layer in LAYERS:
        if args.layer and layer != args.layer:
            continue
        print(f"{layer}:")
        for p in sorted((p for p in presets.values() if p.layer == layer), key=lambda p: p.name):
            mark = "*" if DEFAULTS[layer] == p.name else " "
            where = "" if p.shipped else f"  [{p.path}]"
            print(f" {mark} {p.name:18s} {p.description}{where}")
    for name, exc in sorted(broken.items()):
        print(f"BROKEN {name}: {exc.message}")
    print("(* = default for its layer)")
    return 2 if broken else 0


def _cmd_show(args: argparse.Namespace) -> int:
    chosen = choose(args.names)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PresetWarning)
        settings = resolve(args.names)
    data = settings.model_dump(mode="json")
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for layer in LAYERS:
        p = chosen.get(layer)
        print(f"# {layer:10s} {p.name if p else '-':18s} {p.path if p else ''}")
    for w in caught:
        print(f"# warning: {w.message}")
    print(json.dumps(data, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    presets = sub.add_parser("presets", help="list and inspect presets").add_subparsers(
        dest="presets_command", required=True
    )
    p = presets.add_parser("list", help="every preset by layer (user folders first)")
    p.add_argument("--layer", choices=LAYERS)
    p.set_defaults(func=_cmd_list)
    p = presets.add_parser("show", help="the fully merged settings for NAME[,NAME...]")
    p.add_argument("names", help="preset name(s), comma-separated; other layers use defaults")
    p.add_argument("--json", action="store_true", help="only the merged settings, as JSON")
    p.set_defaults(func=_cmd_show)
