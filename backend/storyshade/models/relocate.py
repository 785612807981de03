"""A job's resolved models on another machine: the same files under its own model folders.

Models are resolved once, at submit, into a ModelKey of paths below the server's model
roots. A Ray worker may keep its models elsewhere; it gets that key and maps each file's
place below the root it was found in onto its own roots, instead of resolving the names
again (which could pick another file than the one the job was accepted with).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from storyshade.errors import ModelError


def relocate(key: Any, from_roots: list[Path], to_roots: list[Path]) -> Any:
    """`key` (a ModelKey, or any dataclass/tuple of paths) with every path under one of
    `from_roots` replaced by the first of `to_roots` that holds the same relative path."""
    if isinstance(key, Path):
        return _move(key, from_roots, to_roots)
    if isinstance(key, tuple):
        return tuple(relocate(v, from_roots, to_roots) for v in key)
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        changes = {
            f.name: relocate(getattr(key, f.name), from_roots, to_roots)
            for f in dataclasses.fields(key)
        }
        return dataclasses.replace(key, **changes)
    return key


def _move(path: Path, from_roots: list[Path], to_roots: list[Path]) -> Path:
    base = next((r for r in from_roots if path.is_relative_to(r)), None)
    if base is None:
        return path  # not below a models root (a shipped config): the same here
    rel = path.relative_to(base)
    for root in to_roots:
        if (root / rel).exists():
            return root / rel
    raise ModelError(
        f"this worker has no '{rel}' (the job's model, found on the server under {base})",
        f"put it under one of this worker's model folders ({', '.join(map(str, to_roots))}) "
        "or share the server's",
        field="models",
    )
