"""Fit text to the sidebar by measuring it with Blender's own font code (blf).

A label wider than its column is cut off with "...", and a character count cannot know
how wide text is at a given UI scale or font; blf.dimensions can.
"""

from __future__ import annotations

import blf
import bpy

FONT = 0  # blf's default font id is the UI font
UNIT = 20  # Blender's UI_UNIT_X at UI scale 1.0, in pixels
# What a sidebar column loses to the region's edges, the scroll bar, a sub-panel's
# indent and a label's own padding, in UI units (seen in Blender 4.3 and 5.2 windows:
# at 2.6 a label of the measured width was still cut off).
MARGIN_UNITS = 3.4


def _prefs(context=None):
    return getattr(context, "preferences", None) or bpy.context.preferences


def ui_scale(context=None) -> float:
    """The effective UI scale (resolution scale times the display's DPI factor; without
    a window, as in background mode, the Resolution Scale preference)."""
    prefs = _prefs(context)
    return prefs.system.ui_scale or prefs.view.ui_scale or 1.0


def _font_size(context=None) -> float:
    prefs = _prefs(context)
    points = prefs.ui_styles[0].widget.points if len(prefs.ui_styles) else 11
    return points * ui_scale(context)


def text_width(text: str, context=None) -> float:
    """Width in pixels of `text` in the UI's label font at the current UI scale."""
    blf.size(FONT, _font_size(context))
    return blf.dimensions(FONT, text)[0]


def column_width(context, icon: bool = False) -> float:
    """Pixels a label's text can use in the sidebar (less with an icon before it)."""
    scale = ui_scale(context)
    region = getattr(context, "region", None)
    width = region.width if region is not None and region.width > 1 else 300
    return width - UNIT * scale * (MARGIN_UNITS + (1.0 if icon else 0.0))


def wrap(text: str, width: float, context=None) -> list[str]:
    """Greedy word wrap by measured width; a word wider than a line is split by letters."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if text_width(candidate, context) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:  # a long path or URL: break it anywhere
                if line and text_width(line + char, context) > width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


def wrapped(layout, context, text: str, icon: str = "NONE") -> None:
    """Long lines as several labels, measured with Blender's font: one label is cut off."""
    width = column_width(context, icon=icon != "NONE")
    for i, line in enumerate(wrap(text, width, context)):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1" if icon != "NONE" else "NONE")
