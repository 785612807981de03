"""Samplers by the names settings use, configured the way AnimateDiff models expect.

Switching sampler is a config change on the cached pipeline, never a reload. AnimateDiff
motion modules were trained with linear betas; Lightning needs Euler with trailing
timesteps, AnimateLCM the LCM sampler.
"""

from __future__ import annotations

from typing import Any

_CLASSES = {
    "ddim": ("DDIMScheduler", {"clip_sample": False, "timestep_spacing": "linspace"}),
    "euler": ("EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
    "dpmpp_2m": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    "lcm": ("LCMScheduler", {}),
}


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of the named kind from the checkpoint's scheduler config."""
    import diffusers

    cls_name, extra = _CLASSES[name]
    cls = getattr(diffusers, cls_name)
    return cls.from_config(base_config, beta_schedule="linear", steps_offset=1, **extra)


def apply_scheduler(pipe: Any, name: str) -> None:
    """Swap the pipeline's sampler when the requested one differs (cheap: config only)."""
    if getattr(pipe, "_storyshade_scheduler", None) == name:
        return
    pipe.scheduler = make_scheduler(name, pipe.scheduler.config)
    pipe._storyshade_scheduler = name
