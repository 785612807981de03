"""Everything StoryShade adds to Blender, in one ordered list: `register()` goes down it,
`unregister()` comes back up. No other module registers anything
(tests/test_addon_registration.py reads the sources for it).

The order is the dependencies' order: a property group before what points at it, the
sidebar's preset pickers read before its settings class is registered, the CLI command
last so that it is unregistered first (bpy 4.2 crashes at exit while one is registered;
FIELD_NOTES has that and the add-on's other exit rules: no PropertyGroup with Python
methods, no dynamic EnumProperty items callback).
"""

from __future__ import annotations

import atexit
from collections.abc import Callable

import bpy

from .looks.props import StoryShadeLook, StoryShadeReference
from .operators import bank, cancel, cli, pull, reshade, server, shade, take
from .operators import looks as look_ops
from .operators import references as reference_ops
from .operators import sequence as sequence_ops
from .session import handlers, runtime, sequence
from .settings import prefs, preset_hooks, props
from .ui import looks as look_panels
from .ui import preview, shots, sidebar


class Class:
    """An operator, panel, menu, property group or the preferences."""

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def register(self) -> None:
        bpy.utils.register_class(self.cls)

    def unregister(self) -> None:
        bpy.utils.unregister_class(self.cls)


class Property:
    """A property StoryShade adds to Blender's own data (saved in the .blend)."""

    def __init__(self, owner: type, name: str, prop) -> None:
        self.owner, self.name, self.prop = owner, name, prop

    def register(self) -> None:
        setattr(self.owner, self.name, self.prop)

    def unregister(self) -> None:
        delattr(self.owner, self.name)


class Handler:
    """A function Blender calls at an application event (bpy.app.handlers.<event>)."""

    def __init__(self, event: str, fn: Callable) -> None:
        self.event, self.fn = event, fn

    def register(self) -> None:
        handlers = getattr(bpy.app.handlers, self.event)
        if self.fn not in handlers:
            handlers.append(self.fn)

    def unregister(self) -> None:
        handlers = getattr(bpy.app.handlers, self.event)
        if self.fn in handlers:
            handlers.remove(self.fn)


class Hook:
    """A function added to one of the add-on's own hook lists (a module lower down calls
    it without importing the module that defines it)."""

    def __init__(self, hooks: list, fn: Callable) -> None:
        self.hooks, self.fn = hooks, fn

    def register(self) -> None:
        if self.fn not in self.hooks:
            self.hooks.append(self.fn)

    def unregister(self) -> None:
        if self.fn in self.hooks:
            self.hooks.remove(self.fn)


class Timer:
    """A bpy.app.timers function. Operators start it when there is something to watch
    (a health check, a server starting, a download); one still running when the add-on
    goes is stopped, so it never calls into a disabled add-on."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def register(self) -> None:
        pass

    def unregister(self) -> None:
        if bpy.app.timers.is_registered(self.fn):
            bpy.app.timers.unregister(self.fn)


class Call:
    """A step that is neither a class nor a property: `on_register` when the add-on is
    registered, `on_unregister` when it goes."""

    def __init__(
        self, what: str, on_register: Callable | None = None, on_unregister: Callable | None = None
    ) -> None:
        self.what, self.on_register, self.on_unregister = what, on_register, on_unregister

    def register(self) -> None:
        if self.on_register is not None:
            self.on_register()

    def unregister(self) -> None:
        if self.on_unregister is not None:
            self.on_unregister()


class AtExit:
    """Something that must not outlive Blender or the add-on: `fn` runs at interpreter
    exit, and when the add-on is unregistered."""

    def __init__(self, fn: Callable) -> None:
        self.fn = fn

    def register(self) -> None:
        atexit.register(self.fn)

    def unregister(self) -> None:
        atexit.unregister(self.fn)
        self.fn()


class CliCommand:
    """`blender -c <name> ...` (Blender 4.2+)."""

    def __init__(self, name: str, fn: Callable[[list[str]], int]) -> None:
        self.name, self.fn = name, fn
        self.handle = None

    def register(self) -> None:
        if hasattr(bpy.utils, "register_cli_command"):
            self.handle = bpy.utils.register_cli_command(self.name, self.fn)

    def unregister(self) -> None:
        if self.handle is not None:
            bpy.utils.unregister_cli_command(self.handle)
            self.handle = None


REGISTERED = (
    # Looks and references: saved on objects, collections and the scene's settings.
    Class(StoryShadeReference),
    Class(StoryShadeLook),
    Property(bpy.types.Object, "storyshade_look", bpy.props.PointerProperty(type=StoryShadeLook)),
    Property(
        bpy.types.Collection,
        "storyshade_look",
        bpy.props.PointerProperty(type=StoryShadeLook),
    ),
    # Preferences and the sidebar's settings (its pickers list the preset files now).
    Class(prefs.StoryShadePreferences),
    Call("read the preset files into the sidebar's pickers", props.load_preset_pickers),
    Class(props.StoryShadeSceneSettings),
    Property(
        bpy.types.Scene, "storyshade", bpy.props.PointerProperty(type=props.StoryShadeSceneSettings)
    ),
    Property(
        bpy.types.Scene,
        "storyshade_skip_shots",
        bpy.props.StringProperty(
            name="Shots left out", description="Shots Shade Sequence skips, one per line"
        ),
    ),
    Property(
        bpy.types.Scene,
        "storyshade_seed_policy",
        bpy.props.EnumProperty(name="Seeds", items=sequence.SEED_POLICIES, default=sequence.SAME),
    ),
    # Operators, one job each.
    Class(shade.STORYSHADE_OT_shade),
    Class(shade.STORYSHADE_OT_reattach),
    Class(cancel.STORYSHADE_OT_cancel),
    Class(server.STORYSHADE_OT_server_check),
    Class(server.STORYSHADE_OT_server_start),
    Class(server.STORYSHADE_OT_server_stop),
    Class(pull.STORYSHADE_OT_models_pull),
    Class(pull.STORYSHADE_OT_models_pull_cancel),
    Class(take.STORYSHADE_OT_take_use_settings),
    Class(take.STORYSHADE_OT_show_in_sequencer),
    Class(reshade.STORYSHADE_OT_reshade_take),
    Class(reshade.STORYSHADE_OT_contact_sheet),
    Class(reshade.STORYSHADE_OT_open_review),
    Class(look_ops.STORYSHADE_OT_look_add),
    Class(look_ops.STORYSHADE_OT_look_remove),
    Class(look_ops.STORYSHADE_OT_look_select),
    Class(reference_ops.STORYSHADE_OT_reference_add),
    Class(reference_ops.STORYSHADE_OT_reference_remove),
    Class(bank.STORYSHADE_OT_bank_save),
    Class(bank.STORYSHADE_OT_bank_load),
    Class(sequence_ops.STORYSHADE_OT_shot_toggle),
    Class(sequence_ops.STORYSHADE_OT_shade_sequence),
    # The interface: the sidebar (3D viewport and Sequencer), the looks' panels, the menu.
    Class(sidebar.STORYSHADE_PT_main),
    Class(sidebar.STORYSHADE_PT_sequencer),
    Class(look_panels.STORYSHADE_PT_object_look),
    Class(look_panels.STORYSHADE_PT_collection_look),
    Class(look_panels.STORYSHADE_PT_looks),
    Class(look_panels.STORYSHADE_MT_bank),
    Class(shots.STORYSHADE_PT_shots),
    Call("the latest frame's preview icon", preview.create, preview.remove),
    # What runs when Blender saves or loads a file, and what a changed picker asks.
    Handler("save_pre", handlers.save_pre),
    Handler("save_post", handlers.save_post),
    Handler("load_post", handlers.load_post),
    Hook(preset_hooks.HOOKS, server.check_readiness),
    Timer(server.watch_health),
    Timer(server.watch_start),
    Timer(pull.watch),
    # A server started from the panel, and a run in progress, end with the add-on.
    AtExit(runtime.local_server.stop),
    Call("a run in progress ends with the add-on", on_unregister=runtime.end_run),
    CliCommand("storyshade", cli.main),
)


def register(entries=REGISTERED) -> None:
    """Register `entries` in order; if one fails, those before it are unregistered again,
    so a failed enable leaves nothing behind that would block the next one."""
    done = []
    try:
        for entry in entries:
            entry.register()
            done.append(entry)
    except BaseException:
        for entry in reversed(done):
            entry.unregister()
        raise


def unregister(entries=REGISTERED) -> None:
    for entry in reversed(entries):
        entry.unregister()


def classes(entries=REGISTERED) -> list[type]:
    """The registered classes, in order (what the tests hold against the saved surface)."""
    return [entry.cls for entry in entries if isinstance(entry, Class)]
