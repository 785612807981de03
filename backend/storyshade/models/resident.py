"""Loaded pipelines kept resident between jobs, within a memory budget.

Loading a pipeline costs seconds to a minute; keeping it between jobs makes the second job
start at once. `models.loader.ModelCache` bounds the count of pipelines; a server needs a
bound in bytes, because one SDXL pipeline weighs as much as three SD1.5 ones. The size of a
pipeline is estimated before loading from its safetensors files, so room is made first and
two big pipelines never sit in memory together beyond the budget.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

from storyshade.models.loader import ModelCache, ModelKey


def weights_bytes(key: ModelKey) -> int:
    """Bytes of safetensors weights the pipeline for `key` loads (≈ its memory at that dtype)."""
    total = 0
    paths = (
        key.weight_paths()
        if hasattr(key, "weight_paths")  # a Wan key (models/wan_loader.py)
        else (key.checkpoint, key.motion_adapter, *(p for _, p in key.controlnets))
    )
    for path in paths:
        path = Path(path)
        files = [path] if path.is_file() else path.rglob("*.safetensors")
        total += sum(f.stat().st_size for f in files)
    return total


class ResidentModels(ModelCache):
    """A ModelCache bounded by `budget_bytes` of estimated weights, least recently used out."""

    def __init__(self, budget_bytes: int) -> None:
        super().__init__(size=1 << 16)
        self.budget_bytes = budget_bytes
        self.sizes: dict[ModelKey, int] = {}

    def get(self, key: ModelKey) -> Any:
        if key not in self._items:
            self._make_room(weights_bytes(key))
        pipe = super().get(key)  # loads (and configures LoRAs/sampler) as ModelCache does
        self.sizes.setdefault(key, weights_bytes(key))
        return pipe

    def _make_room(self, need: int) -> None:
        """Drop least recently used pipelines until `need` more bytes fit the budget."""
        evicted = False
        with self._lock:
            while self._items and sum(self.sizes.values()) + need > self.budget_bytes:
                old, _ = self._items.popitem(last=False)
                self.sizes.pop(old, None)
                evicted = True
        if evicted:
            _release_memory()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "resident": len(self._items),
                "resident_bytes": sum(self.sizes.values()),
                "budget_bytes": self.budget_bytes,
                "loads": self.loads,
            }


def _release_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
