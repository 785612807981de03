"""Control images: turn exact Blender passes into what SD1.5 ControlNets were trained on."""

from storyshade.controls.build import ControlSet, build_controls

__all__ = ["ControlSet", "build_controls"]
