"""Which speed levers a job may use here: refusals before any work, 'auto' decisions.

Torch-free at import (the server imports it to refuse a job at submit)."""

from __future__ import annotations

import os
import shutil

from storyshade.errors import StoryShadeError
from storyshade.settings import Settings


def compile_problem(device: str) -> str | None:
    """Why torch.compile cannot work on `device` here, or None when it should."""
    import torch

    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile is not supported by this Python and torch"
    kind = torch.device(device).type
    if kind == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (inductor needs it on CUDA)"
    if kind == "cpu":
        cxx = os.environ.get("CXX") or "g++"
        return None if shutil.which(cxx) else f"no C++ compiler ('{cxx}') for inductor on the CPU"
    return f"torch.compile is not supported on '{kind}' here"


def check_compile(settings: Settings) -> None:
    """compile = 'on' where it cannot work: refused before any work (a 4xx / CLI exit 2)."""
    if settings.compile != "on" or settings.engine not in ("animatediff", "wan-vace"):
        return  # other engines with 'on' are refused by Settings itself
    from storyshade.models.loader import pick_device

    problem = compile_problem(pick_device(settings.device))
    if problem:
        raise StoryShadeError(
            f"compile 'on' cannot work here: {problem}",
            "set compile to 'auto' (compiles where it can) or 'off'",
            field="settings.compile",
        )


def wanted(settings: Settings, device: str) -> tuple[bool, str | None]:
    """(compile this job?, a note for the events when 'auto' decides against it)."""
    if settings.compile == "off":
        return False, None
    check_compile(settings)
    kind = device.split(":")[0]
    if settings.compile == "auto":
        if kind != "cuda":
            return False, f"compile 'auto': eager on '{kind}' (compiles on CUDA only)"
        problem = compile_problem(device)
        if problem:
            return False, f"compile 'auto': eager here ({problem})"
    return True, None
