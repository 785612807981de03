"""One undo log for every change a job makes to the shared pipeline (#12): each kind of
change comes back, newest first, whatever ends the block; and an error in the middle of a
window, with every kind of change in place at once, leaves the cached pipeline as loaded."""

from __future__ import annotations

import pytest
import torch
from storyshade.engine.pipeline_edits import PipelineEdits, edited
from storyshade.engine.windowed import WindowedAnimateDiffEngine
from storyshade.models.loader import ModelCache, model_key
from storyshade.progress import Reporter
from test_pipeline_restore import pipeline_state, reference, settings_with_everything, shade
from torch import nn

__all__ = ["reference"]  # a fixture, used by name


class Attention(nn.Module):
    """The part of diffusers' Attention that processors touch."""

    def __init__(self) -> None:
        super().__init__()
        self.processor = "original"

    def set_processor(self, processor: object) -> None:
        self.processor = processor


def test_every_kind_of_edit_is_undone_newest_first():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    attn, conv = Attention(), model[0]
    log: list[str] = []
    with edited() as edits:
        edits.processor(attn, "first")
        edits.processor(attn, "second")  # stacked: undone to "first", then "original"
        edits.forward(conv, lambda x: x)
        edits.child(model, "1", nn.Identity())
        edits.memory_format(model, torch.channels_last)
        edits.callback(lambda: log.append("callback"))
        assert len(edits) == 6
        assert attn.processor == "second" and "forward" in conv.__dict__
        assert isinstance(model[1], nn.Identity)
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        assert not conv.weight.is_contiguous()
    assert attn.processor == "original"
    assert "forward" not in conv.__dict__
    assert isinstance(model[1], nn.ReLU)
    assert conv.weight.is_contiguous()
    assert log == ["callback"]


def test_an_instance_forward_that_was_there_before_comes_back():
    layer = nn.Linear(2, 2)
    own = layer.forward
    layer.forward = own  # set on the instance by someone else before the job
    with edited() as edits:
        edits.forward(layer, lambda x: x)
    assert layer.__dict__["forward"] is own


def test_a_failing_undo_does_not_stop_the_others_and_is_raised():
    attn = Attention()
    edits = PipelineEdits()
    edits.processor(attn, "job's")

    def broken() -> None:
        raise RuntimeError("undo failed")

    edits.callback(broken)
    with pytest.raises(RuntimeError, match="undo failed"):
        edits.undo()
    assert attn.processor == "original" and len(edits) == 0


def test_an_error_mid_window_undoes_every_change(tiny_models, reference):
    """Looks, a reference, motion_scale and slicing all at once; the UNet fails (as a bad
    kernel would) in the second window of the first step."""
    settings = settings_with_everything(reference).model_copy(update={"forward_chunk": 8})
    cache = ModelCache(size=1)
    pipe = cache.get(model_key([tiny_models], settings))
    before = pipeline_state(pipe)
    seen: dict[str, int] = {"calls": 0}

    def fail_in_window_two(module: nn.Module, args: tuple) -> None:
        seen["calls"] += 1
        changed = sum(type(m).__name__ == "Split" for m in pipe.unet.modules())
        processors = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
        seen["split"], seen["regional"] = changed, "CrossAttention" in processors
        if seen["calls"] == 2:
            raise RuntimeError("a kernel failed mid-window")

    hook = pipe.unet.register_forward_pre_hook(fail_in_window_two)
    try:
        with pytest.raises(RuntimeError, match="mid-window"):
            list(shade(WindowedAnimateDiffEngine([tiny_models], cache), settings, Reporter()))
    finally:
        hook.remove()
    assert seen["split"] > 0 and seen["regional"], "the changes were in place when it failed"
    assert pipeline_state(pipe) == before
