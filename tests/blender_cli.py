"""Blender's command line, as far as the background export uses it, over the bpy module.

    python blender_cli.py -b FILE [--addons MOD[,MOD]] -c ID ARGS...

does what `blender` does with these options: open FILE, enable the add-ons named by
`--addons` (for this process only, as Blender's option does), then run the command line
command ID that an enabled add-on registered, exiting with its return value. A command
nobody registered ends as Blender ends it: `Unrecognized command: "ID"`, exit code 1.
The bpy module has no `-c` of its own, so this records what `register_cli_command` is given.

The add-on tests run it as the `blender` executable a window would start, since the PyPI
bpy module is no Blender executable (tests/test_addon_export_proc.py). With
BLENDER_CLI_ABORT_AFTER=TEXT it aborts (SIGABRT, as a crash does) right after printing a
line that contains TEXT.
"""

from __future__ import annotations

import os
import sys

import bpy

COMMANDS: dict[str, object] = {}
_register = bpy.utils.register_cli_command


def _record(name: str, fn):
    COMMANDS[name] = fn
    return _register(name, fn)


bpy.utils.register_cli_command = _record


class _AbortAfter:
    """stdout that aborts the process once a line holding `text` was written."""

    def __init__(self, stream, text: str) -> None:
        self.stream, self.text = stream, text

    def write(self, data: str) -> int:
        n = self.stream.write(data)
        if self.text in data:
            self.stream.flush()
            os.abort()
        return n

    def flush(self) -> None:
        self.stream.flush()


def main(argv: list[str]) -> int:
    import addon_utils  # in bpy's scripts: importable once bpy is

    if os.environ.get("BLENDER_CLI_ABORT_AFTER"):
        sys.stdout = _AbortAfter(sys.stdout, os.environ["BLENDER_CLI_ABORT_AFTER"])
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-b", "--background"):
            pass
        elif arg == "--addons":
            i += 1
            for module in argv[i].split(","):  # what Blender's own --addons runs
                if addon_utils.check(module)[1] is False:
                    addon_utils.enable(module, persistent=True)
        elif arg in ("-c", "--command"):
            name, rest = argv[i + 1], argv[i + 2 :]
            if name not in COMMANDS:
                print(f'Unrecognized command: "{name}"', flush=True)
                return 1
            return int(COMMANDS[name](rest))
        elif not arg.startswith("-"):
            bpy.ops.wm.open_mainfile(filepath=arg, load_ui=False)
        i += 1
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # as Blender exits: no interpreter teardown (bpy 4.2 can crash in it)
