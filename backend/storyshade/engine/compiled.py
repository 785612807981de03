"""compile: torch.compile of the UNet and ControlNets calls, kept with the cached pipeline.

The sampler calls the models through a `Forwards`: the eager functions, or the same
functions under `torch.compile(dynamic=False)`. Every window of a job has one size (static
windows are clamped to full length), so each function compiles once per job; the compiled
functions hang on the cached pipeline, so a later job with the same models (same shapes,
same settings) reuses the graphs without compiling again.

A compile that fails while the job runs (no working C++ compiler or Triton, an operator
inductor cannot lower) does not lose the job: the call is redone eagerly, the rest of the
job (and later jobs on that pipeline) stay eager, and the job's events say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from storyshade.engine.step_cache import deep_forward, shallow_control, shallow_forward
from storyshade.progress import Reporter

# Each compiled function sees a few shapes per pipeline (CFG rows, guess mode, a hires
# pass, two ControlNets' scales); dynamo's default limit of 8 per function is too tight.
RECOMPILE_LIMIT = 64


def unet_call(unet: Any, x: Any, t: Any, text: Any, down: Any, mid: Any) -> Any:
    return unet(
        x,
        t,
        encoder_hidden_states=text,
        down_block_additional_residuals=down,
        mid_block_additional_residual=mid,
    ).sample


def control_call(net: Any, *args: Any, **kwargs: Any) -> Any:
    return net(*args, **kwargs)


@dataclass
class Forwards:
    """The model calls the sampler makes; `compiled` says which kind these are."""

    unet: Callable[..., Any] = unet_call
    control: Callable[..., Any] = control_call
    deep: Callable[..., Any] = deep_forward
    shallow: Callable[..., Any] = shallow_forward
    shallow_control: Callable[..., Any] = shallow_control
    compiled: bool = False


EAGER = Forwards()


def compiled_forwards() -> Forwards:
    if torch._dynamo.config.recompile_limit < RECOMPILE_LIMIT:
        torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT
    c = lambda f: torch.compile(f, dynamic=False)  # noqa: E731
    return Forwards(
        c(unet_call),
        c(control_call),
        c(deep_forward),
        c(shallow_forward),
        c(shallow_control),
        compiled=True,
    )


class ModelCalls:
    """A job's model calls: compiled ones from the pipeline, eager after a failure."""

    def __init__(self, pipe: Any, compile_: bool, reporter: Reporter) -> None:
        self.pipe = pipe
        self.reporter = reporter
        self.forwards = EAGER
        if compile_:
            cached = getattr(pipe, "_storyshade_forwards", None)
            if cached is None:
                cached = compiled_forwards()
                pipe._storyshade_forwards = cached
            self.forwards = cached

    def __call__(self, name: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.forwards, name)
        if not self.forwards.compiled:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:  # a compile (or compiled-run) failure: go on eagerly
            self._fall_back(exc)
            return getattr(EAGER, name)(*args, **kwargs)

    def _fall_back(self, exc: Exception) -> None:
        self.forwards = EAGER
        self.pipe._storyshade_forwards = EAGER  # later jobs on this pipeline: eager too
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        self.reporter.note(
            f"torch.compile failed ({type(exc).__name__}: {first}); continuing without "
            "compile (settings.compile)",
            event="compile_fallback",
        )
