"""The server, seen from Blender: the HTTP client, the worker thread that uploads a shot
and follows its job, the messages it hands the main thread, a model download, and a local
`storyshade serve` with its health check. Nothing here imports bpy: it runs off Blender's
main thread (tests/test_addon_protocol.py walks its imports). Below the settings and the
session; above takes and looks."""
