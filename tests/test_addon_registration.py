"""One registration list: every class, property, handler, hook, timer and the CLI command
is registered from addon/registration.py, in order, and unregistered in reverse; no other
module registers anything or does anything at import but define."""

from __future__ import annotations

import ast
import dataclasses
import importlib

import bpy
import pytest
from test_addon_helpers import REPO, ensure_registered

from addon import registration
from addon.session import runtime
from addon.settings import preset_hooks, props

ADDON = REPO / "addon"
# Calls that add something to Blender (or to Python's exit), by the attribute called.
REGISTERING = {
    "register_class",
    "unregister_class",
    "register_cli_command",
    "unregister_cli_command",
}


def _module(path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _dotted(node: ast.AST) -> str:
    """`a.b.c` of an attribute chain ('' where a link is not a plain name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return ""
    return ".".join([node.id, *reversed(parts)])


def registering(path) -> list[str]:
    """Where the file registers something itself: a registering call, a handler or
    exit function added, a property set on Blender's types, a module-level call (a
    module that does something at import), its own register()/unregister()."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name = _dotted(node.func)
            if node.func.attr in REGISTERING or name == "atexit.register":
                found.append(f"{where} {name or node.func.attr}")
            elif ".handlers." in f".{name}" and node.func.attr in ("append", "remove"):
                found.append(f"{where} {name}")
        targets = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = node.targets
        for target in targets:
            if _dotted(target).startswith("bpy.types."):
                found.append(f"{where} {_dotted(target)}")
    for node in tree.body:
        where = f"{path.relative_to(REPO)}:{node.lineno}"
        if isinstance(node, ast.FunctionDef) and node.name in ("register", "unregister"):
            found.append(f"{where} def {node.name}")
        if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant):
            found.append(f"{where} runs {ast.unparse(node)[:60]}")
    return found


def test_no_module_but_the_list_registers_anything() -> None:
    found = {}
    for path in sorted(ADDON.rglob("*.py")):
        if path.name != "registration.py":
            found.update({line: path for line in registering(path)})
    assert list(found) == []


def test_the_scan_sees_registering() -> None:
    """The scan above finds what registration.py does (so it would find it elsewhere)."""
    seen = " ".join(registering(ADDON / "registration.py"))
    for what in (
        "bpy.utils.register_class",
        "bpy.utils.register_cli_command",
        "atexit.register",
        "def register",
    ):
        assert what in seen


def test_every_timer_an_operator_starts_is_in_the_list() -> None:
    """A timer still running when the add-on goes is stopped by its Timer entry; one
    started but not listed would outlive the add-on."""
    listed = {e.fn for e in registration.REGISTERED if isinstance(e, registration.Timer)}
    started = []
    for path in sorted(ADDON.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func) == "bpy.app.timers.register":
                assert isinstance(node.args[0], ast.Name), f"{path}: a named function"
                module = importlib.import_module(_module(path))
                started.append(getattr(module, node.args[0].id))
    assert started and set(started) <= listed
    assert len(listed) == len(set(started)), "a listed timer nothing starts"


def _ours_in_blender() -> dict:
    """What of StoryShade Blender holds now."""
    handlers = [e for e in registration.REGISTERED if isinstance(e, registration.Handler)]
    return {
        "classes": [c.__name__ for c in registration.classes() if c.is_registered],
        "types": sorted(n for n in dir(bpy.types) if n.startswith(("STORYSHADE", "StoryShade"))),
        "data": [
            f"{t.__name__}.{p}"
            for t in (bpy.types.Scene, bpy.types.Object, bpy.types.Collection)
            for p in (
                "storyshade",
                "storyshade_look",
                "storyshade_skip_shots",
                "storyshade_seed_policy",
            )
            if hasattr(t, p)
        ],
        "handlers": [h.fn for h in handlers if h.fn in getattr(bpy.app.handlers, h.event)],
        "hooks": list(preset_hooks.HOOKS),
        "timers": [
            e.fn
            for e in registration.REGISTERED
            if isinstance(e, registration.Timer) and bpy.app.timers.is_registered(e.fn)
        ],
    }


@pytest.fixture()
def registered():
    ensure_registered()
    yield
    ensure_registered()


def test_unregister_takes_back_everything_and_register_restores_it(registered) -> None:
    timers = [e.fn for e in registration.REGISTERED if isinstance(e, registration.Timer)]
    timer = timers[0]  # as an operator leaves it running while it waits
    bpy.app.timers.register(timer, first_interval=3600)
    on = _ours_in_blender()
    assert len(on["classes"]) == len(registration.classes()) == 33
    assert len(on["types"]) == 29 and len(on["data"]) == 5  # property groups are not types
    assert len(on["handlers"]) == 3 and len(on["hooks"]) == 1 and on["timers"] == [timer]
    registration.unregister()
    off = _ours_in_blender()
    assert off == {k: [] for k in on}
    registration.register()
    again = _ours_in_blender()
    assert again == {**on, "timers": []}


def test_a_failed_registration_leaves_nothing_behind(registered) -> None:
    def fail():
        raise RuntimeError("a step that fails")

    registration.unregister()
    before = _ours_in_blender()
    entries = (*registration.REGISTERED, registration.Call("fails", fail))
    with pytest.raises(RuntimeError, match="a step that fails"):
        registration.register(entries)
    assert _ours_in_blender() == before, "everything registered before it was taken back"
    registration.register()


def test_runtime_status_is_not_in_the_saved_settings() -> None:
    """What a run says (runtime.Status) lives while Blender runs, never in the .blend."""
    ensure_registered()
    saved = {p.identifier for p in props.StoryShadeSceneSettings.bl_rna.properties}
    status = {f.name for f in dataclasses.fields(runtime.Status)}
    assert saved and status and not (saved & status)
