"""StoryShade shading server: shot bundles in, shaded animatic frames out.

Never imports bpy: the backend runs on machines with no Blender. `storyshade.wire` (what
the add-on and the server share) is the add-on's `addon/wire/`: in a checkout
`backend/storyshade/wire` is a link to it, so both sides import the same files, and a wheel
holds a copy.
"""

__version__ = "0.1.0"
