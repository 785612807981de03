"""`storyshade render`'s setting options, derived from the settings' declarations.

A field declared with a `flag` (declare.Declared.flag) gets that option, its help from the
field's description and its value checked by Settings like any other override. Values that
are not one plain scalar (a reference, a colour match) name their parser here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from storyshade.declare import declarations
from storyshade.references import parse_color_match_arg
from storyshade.settings import Settings
from storyshade.wire.references import parse_reference_arg

# field: (parser of one option value, metavar, repeatable)
PARSED: dict[str, tuple[Callable[[str], Any], str, bool]] = {
    "references": (parse_reference_arg, "IMG[:WEIGHT][@LOOK]", True),
    "color_match": (parse_color_match_arg, "STRENGTH[:IMG]", False),
}
SCALARS = {int: int, float: float, str: str}


def flags() -> dict[str, str]:
    """field → its option, for every field that has one."""
    return {name: d.flag for name, d in declarations(Settings).items() if d.flag}


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for name, flag in flags().items():
        field = Settings.model_fields[name]
        help_ = f"settings.{name}: {field.description}"
        if name in PARSED:
            _, metavar, many = PARSED[name]
            action = "append" if many else "store"
            parser.add_argument(flag, dest=name, action=action, metavar=metavar, help=help_)
        else:
            kind = SCALARS[field.annotation]  # type: ignore[index]
            parser.add_argument(flag, dest=name, type=kind, help=help_)


def setting_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the options given set (options not given set nothing)."""
    out: dict[str, Any] = {}
    for name in flags():
        value = getattr(args, name, None)
        if value is None:
            continue
        if name in PARSED:
            parse, _, many = PARSED[name]
            value = [parse(v) for v in value] if many else parse(value)
        out[name] = value
    return out
