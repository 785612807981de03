"""What runs when a preset picker (or Extra Presets) changes in the sidebar: the hooks
registration.py adds, e.g. the readiness check, called with the context. A hook list, so
the settings, which the operators import, import no operator.

A module of its own that imports nothing: bpy 4.2 keeps an EnumProperty's update callback
after its class is unregistered, and with it the callback's module globals; globals that
held `bpy` kept the bpy module alive past Python's teardown, so Blender's own exit never
ran and the process crashed at exit. These hold only the hook list, which unregister
empties (tests/test_addon_panel.py runs that exit).
"""

from __future__ import annotations

HOOKS: list = []


def changed(self, context) -> None:
    """A picker changed: ask the server again whether it can run the new presets."""
    for hook in HOOKS:
        hook(context)
