"""Every change a job makes to the shared, cached pipeline, and the one way it is undone.

The model cache hands the same loaded pipeline to every job (and to both engines). A job
changes it while it runs: attention processors for looks and references, scaled motion
modules, slicing wrappers, offloading, channels-last weights. Each change goes through a
`PipelineEdits` opened by `edited()`, which undoes them all in reverse order when the block
ends, however it ends (a cancel or an error in the middle of a window included), so the
next job starts from the pipeline as it was loaded. Caches kept on the pipeline (compiled
functions, the IP-Adapter's weights) are not edits: they hold no job's settings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn


class PipelineEdits:
    """An undo log: each method makes one change and records how to take it back."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._undo)

    def processor(self, module: Any, processor: Any) -> None:
        """Set an attention module's processor (the original comes back)."""
        original = module.processor
        module.set_processor(processor)
        self._undo.append(lambda: module.set_processor(original))

    def forward(self, module: nn.Module, forward: Callable[..., Any]) -> None:
        """Shadow `module.forward` on the instance; its structure stays untouched."""
        had = "forward" in module.__dict__
        original = module.__dict__.get("forward")
        module.forward = forward

        def undo() -> None:
            if had:
                module.forward = original
            else:
                module.__dict__.pop("forward", None)

        self._undo.append(undo)

    def child(self, parent: nn.Module, name: str, module: nn.Module) -> None:
        """Replace the submodule `parent.<name>` (e.g. with a wrapper around it)."""
        original = parent._modules[name]
        parent._modules[name] = module
        self._undo.append(lambda: parent._modules.__setitem__(name, original))

    def memory_format(self, model: nn.Module, fmt: Any) -> None:
        """Convert `model`'s weights to `fmt` (channels-last); contiguous again after."""
        import torch

        model.to(memory_format=fmt)
        self._undo.append(lambda: model.to(memory_format=torch.contiguous_format))

    def callback(self, undo: Callable[[], None]) -> None:
        """A change made elsewhere (offloading), with the call that takes it back."""
        self._undo.append(undo)

    def undo(self) -> None:
        """Take back every change, newest first; every undo runs even if one fails."""
        failure: BaseException | None = None
        while self._undo:
            try:
                self._undo.pop()()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


@contextmanager
def edited() -> Iterator[PipelineEdits]:
    """A block whose pipeline changes are all undone when it ends, however it ends."""
    edits = PipelineEdits()
    try:
        yield edits
    finally:
        edits.undo()
