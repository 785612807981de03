"""Import boundaries: the add-on needs only what Blender ships; the backend never bpy."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# blf: Blender's own font module, built in like bpy (the panel measures text with it).
ADDON_ALLOWED = {"bpy", "blf", "mathutils", "numpy"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_addon_imports_only_stdlib_bpy_mathutils_numpy() -> None:
    stdlib = set(sys.stdlib_module_names)
    bad = {}
    for path in sorted((REPO / "addon").rglob("*.py")):
        extra = {m for m in _imports(path) if m not in stdlib and m not in ADDON_ALLOWED}
        if extra:
            bad[str(path.relative_to(REPO))] = sorted(extra)
    assert not bad, f"add-on imports outside its boundary: {bad}"


def test_backend_never_imports_bpy() -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / "backend").rglob("*.py")
        if {"bpy", "mathutils"} & _imports(p)
    ]
    assert not offenders, f"backend modules import Blender: {offenders}"


def test_root_init_only_reexports_addon() -> None:
    source = (REPO / "__init__.py").read_text(encoding="utf-8")
    code = [ln for ln in source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(source.splitlines()) <= 3
    assert any("from .addon import register, unregister" in ln for ln in code)
