"""Blender extension entry: the add-on lives in addon/; this file only re-exports it."""

from .addon import register, unregister  # noqa: F401
