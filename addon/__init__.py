"""StoryShade add-on: export depth/normal passes, shade them on the server, place takes.

Imports only the standard library, bpy, blf, mathutils and numpy (tests enforce this).
What it adds to Blender is one ordered list, in registration.py.
"""

from .registration import register, unregister  # noqa: F401
