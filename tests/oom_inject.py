"""A full GPU on a machine without one: a real module that raises CUDA's out-of-memory
error the first `times` times it is called (the engines' OOM ladders are under test)."""

from __future__ import annotations

import torch


def fail_like_a_full_gpu(module: torch.nn.Module, calls: list[int], times: int = 1):
    """Returns the hook's handle: `.remove()` it after."""

    def hook(*_):
        calls.append(1)
        if len(calls) <= times:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. (injected by the test)")

    return module.register_forward_pre_hook(hook)
