"""The wire: what the add-on and the server must agree on, written once.

The shot bundle's layout and version, shot.json reading and writing, the zip the server
takes, how preset layers merge, and the names of job states, progress stages and event
types. Standard library only and no bpy, because it ships twice: inside the Blender
extension as `addon/wire/` and inside the backend wheel as `storyshade.wire` (a
package-dir mapping in pyproject.toml), so the repository holds exactly one copy.

Data flows one way through it: the add-on gathers values from bpy and hands plain dicts
here; the server validates what this writes (backend/storyshade/bundle.py adds the
schema's limits for untrusted input).
"""
