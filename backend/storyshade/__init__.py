"""StoryShade shading server: shot bundles in, shaded animatic frames out.

Never imports bpy: the backend runs on machines with no Blender.
"""

__version__ = "0.1.0"
