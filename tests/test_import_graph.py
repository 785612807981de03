"""The import graph, read from the source: no cycles between modules (backend and add-on),
the backend's layers only look down: models -> controls -> engine -> render ->
server / cluster, with cluster never importing server (what both need lives below them);
and so do the add-on's rooms: ui -> operators -> session -> settings -> remote -> takes ->
export -> looks -> the ground -> wire."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Backend units (a sub-package or a top-level module) by layer; a unit may import its own
# layer or below, never above. The base holds the shared definitions everyone uses.
LAYERS = [
    {"wire"},  # addon/wire/ as storyshade.wire: what the add-on and the server share
    {
        "allocator",  # the process's heap behaviour, set by every entry point
        "errors",
        "declare",  # what a setting declares besides its type: stage, feature, layers
        "settings",
        "settings_flags",  # the CLI options settings declare
        "settings_doc",  # the settings and engines as tables, from their declarations
        # the engine registry: names and capabilities; it imports engine modules by name
        # (importlib) only when asked, so nothing here loads the model stack
        "engines",
        "exr",
        "bundle",
        "progress",
        "progress_bar",
        "cancel",  # the cancel token handed to the work that must stop
        "presets",
        "presets_cli",
        "contact_sheet",
        "references",  # reference images: paths and safe decoding (no torch)
    },
    {"review"},  # reads take folders; the server serves its page
    {"models"},
    {"job_input"},  # a job's bundle, settings and resolved models, carried to the engine
    {"controls"},
    {"engine"},
    {"cache", "render"},
    {"cluster", "server"},
    {"cli", "__main__"},
]
FORBIDDEN = {("cluster", "server")}  # same layer, one direction only

# The add-on's rooms (sub-packages of addon/) and the few modules at its root, lowest
# first; a room may import its own modules and the rooms below it, never one above.
ADDON_LAYERS = [
    {"wire"},  # what the add-on and the server share (standard library only)
    {"errors", "compat", "identity"},  # the ground: errors, Blender versions, the add-on's name
    {"looks"},  # looks, references, the character bank: what a grey box is
    {"export"},  # the shot bundle, written here or in a background Blender
    {"takes"},  # take folders and strips, re-shading a range, a run's job record
    {"remote"},  # the server from Blender's side, off the main thread: never bpy
    {"settings"},  # the sidebar's saved settings, preferences, presets, the request
    {"session"},  # a run's state machine, sequences, what lives while Blender runs
    {"operators"},  # what a user runs: one operator per job, and the command line
    {"ui"},  # panels and menus: they only read state
    {"registration"},  # the one list of what the add-on adds to Blender
]


def modules(root: Path, package: str) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path
    return out


def imports(
    root: Path, package: str, also: tuple[tuple[Path, str], ...] = ()
) -> dict[str, set[str]]:
    """Module -> modules of the same package it imports (anywhere in the file, so a
    function-level import counts: it is a dependency all the same). `also`: sub-packages
    that live elsewhere in the repository (root, dotted name)."""
    mods = modules(root, package)
    for extra_root, extra_package in also:
        mods |= modules(extra_root, extra_package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        here = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here.split(".")[: len(here.split(".")) - max(node.level - 1, 0)]
                if not node.level:
                    module = node.module or ""
                else:
                    module = ".".join([*base, node.module] if node.module else base)
                subs = [f"{module}.{a.name}" for a in node.names]
                targets = [t for t in subs if t in mods]
                if len(targets) < len(subs):
                    targets.append(module)
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rsplit(".", 1)[0] if "." in target else ""
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


BACKEND = (
    REPO / "backend" / "storyshade",
    "storyshade",
    ((REPO / "addon" / "wire", "storyshade.wire"),),
)


@pytest.mark.parametrize("root, package, also", [BACKEND, (REPO / "addon", "addon", ())])
def test_no_import_cycles(root: Path, package: str, also) -> None:
    assert cycles(imports(root, package, also)) == []


def test_the_finder_sees_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "b.py").write_text("from . import a\n")
    (tmp_path / "c.py").write_text("from .a import f\n")
    assert cycles(imports(tmp_path, "pkg")) == [["pkg.a", "pkg.b"]]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def upward(graph: dict[str, set[str]], layers: list[set[str]], forbidden=frozenset()) -> list:
    """The imports that look up (or across a forbidden pair) between layered units."""
    layer = {unit: i for i, units in enumerate(layers) for unit in units}
    wrong = []
    for module, targets in graph.items():
        src = _unit(module)
        for target in targets:
            dst = _unit(target)
            if not src or not dst or src == dst:
                continue
            assert src in layer and dst in layer, f"{src} or {dst}: put it in a layer"
            if layer[dst] > layer[src] or (src, dst) in forbidden:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_backend_layers_only_look_down() -> None:
    graph = imports(*BACKEND)
    assert any(m.startswith("storyshade.wire.") for m in graph), "the wire is in the graph"
    assert upward(graph, LAYERS, FORBIDDEN) == []


def test_addon_rooms_only_look_down() -> None:
    graph = imports(REPO / "addon", "addon")
    rooms = {_unit(m) for m in graph} - {""}
    assert rooms == set().union(*ADDON_LAYERS), "every room and root module has a layer"
    assert upward(graph, ADDON_LAYERS) == []


def test_the_rooms_check_sees_an_upward_import(tmp_path: Path) -> None:
    for room in ("ui", "session"):
        (tmp_path / room).mkdir()
        (tmp_path / room / "__init__.py").write_text('"""A room."""\n')
    (tmp_path / "__init__.py").write_text("")
    (tmp_path / "ui" / "panel.py").write_text("from ..session import run\n")
    (tmp_path / "session" / "run.py").write_text("from ..ui import panel\n")
    graph = imports(tmp_path, "pkg")
    assert upward(graph, [{"session"}, {"ui"}]) == ["pkg.session.run imports pkg.ui.panel"]


def test_a_room_is_entered_without_running_anything() -> None:
    """Each room's __init__.py only says what the room holds: importing one module of a
    room (the worker thread's, a test's) runs no other module of it."""
    for init in sorted((REPO / "addon").glob("*/__init__.py")):
        body = ast.parse(init.read_text(encoding="utf-8")).body
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init
        assert isinstance(body[0].value, ast.Constant) and len(body[0].value.value) > 80, init
