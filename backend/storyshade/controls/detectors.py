"""Derived line controls: geometry lines, controlnet-aux's Canny, and its learned detectors.

Which detector feeds a line role (lineart, softedge, canny) is a per-control setting
(`detector` in a preset's `controls` table). `geometry` and `canny` need no weights. The
learned ones (lineart, lineart_coarse, lineart_anime, hed, pidinet) run on the normal
control image and load weights only from disk: `<models root>/annotators/` or the Hugging
Face cache of lllyasviel/Annotators. Nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from storyshade.controls import lines
from storyshade.errors import ModelError

ANNOTATORS_REPO = "lllyasviel/Annotators"
ANNOTATORS_DIR = "annotators"  # inside a models root
DEFAULT_DETECTOR = {"lineart": "geometry", "softedge": "geometry", "canny": "canny"}
CANNY_THRESHOLDS = (50, 100)


@dataclass(frozen=True)
class Learned:
    module: str
    cls: str
    files: tuple[str, ...]
    call: tuple[tuple[str, Any], ...] = ()


LEARNED = {
    "lineart": Learned("lineart", "LineartDetector", ("sk_model.pth", "sk_model2.pth")),
    "lineart_coarse": Learned(
        "lineart", "LineartDetector", ("sk_model.pth", "sk_model2.pth"), (("coarse", True),)
    ),
    "lineart_anime": Learned("lineart_anime", "LineartAnimeDetector", ("netG.pth",)),
    "hed": Learned("hed", "HEDdetector", ("ControlNetHED.pth",)),
    "pidinet": Learned("pidi", "PidiNetDetector", ("table5_pidinet.pth",)),
}
DETECTORS = ("geometry", "canny", *LEARNED)


def detector_for(role: str, chosen: str | None) -> str:
    return chosen or DEFAULT_DETECTOR[role]


def derive(
    role: str,
    detector: str,
    *,
    edges: np.ndarray | None,
    depth_u8: np.ndarray,
    normal_u8: np.ndarray,
    roots: list[Path],
    device: str = "cpu",
) -> np.ndarray:
    """One HxWx3 uint8 line image (white on black) for `role`, by `detector`.

    `edges` is the geometry line strength at this size (lines.resize_mask of
    lines.geometry_edges on the exact passes); only the 'geometry' detector reads it."""
    if detector == "geometry":
        if edges is None:
            raise ValueError("the geometry detector needs the edge mask")
        return lines.STYLES[role](edges)
    if detector == "canny":
        return canny(depth_u8, normal_u8)
    if detector in LEARNED:
        return learned(detector, normal_u8, roots, device)
    raise ValueError(f"unknown detector {detector!r}; use one of {DETECTORS}")


def _pad64(image: np.ndarray) -> tuple[np.ndarray, int, int]:
    """controlnet-aux rounds sizes to multiples of 64; pad so its resize is the identity."""
    h, w = image.shape[:2]
    ph, pw = -h % 64, -w % 64
    padded = cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    return padded, h, w


def _run_aux(detector: Any, image: np.ndarray, **kwargs: Any) -> np.ndarray:
    padded, h, w = _pad64(image)
    res = min(padded.shape[:2])
    out = detector(padded, detect_resolution=res, image_resolution=res, output_type="np", **kwargs)
    out = np.asarray(out)
    if out.shape[:2] != padded.shape[:2]:
        out = cv2.resize(out, (padded.shape[1], padded.shape[0]), interpolation=cv2.INTER_AREA)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    return np.ascontiguousarray(out[:h, :w, :3]).astype(np.uint8)


def _import_aux(module: str) -> Any:
    """Import a controlnet-aux module; its package import warns about unrelated detectors."""
    import importlib
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"controlnet_aux.{module}")


@lru_cache(maxsize=1)
def _canny_detector() -> Any:
    return _import_aux("canny").CannyDetector()


def canny(depth_u8: np.ndarray, normal_u8: np.ndarray) -> np.ndarray:
    """controlnet-aux CannyDetector on the depth and the normal image, combined."""
    detector = _canny_detector()
    low, high = CANNY_THRESHOLDS
    a = _run_aux(detector, depth_u8, low_threshold=low, high_threshold=high)
    b = _run_aux(detector, normal_u8, low_threshold=low, high_threshold=high)
    return np.maximum(a, b)


def find_weights(detector: str, roots: list[Path]) -> Path:
    """The folder holding all of a learned detector's weight files, or a ModelError."""
    files = LEARNED[detector].files
    looked: list[str] = []
    for root in roots:
        folder = Path(root) / ANNOTATORS_DIR
        looked.append(str(folder))
        if all((folder / f).is_file() for f in files):
            return folder
    cached = _hf_cached(files)
    if cached:
        return cached
    looked.append(f"the Hugging Face cache ({ANNOTATORS_REPO})")
    where = Path(roots[0]) / ANNOTATORS_DIR if roots else Path("<models root>") / ANNOTATORS_DIR
    raise ModelError(
        f"the '{detector}' line detector needs {', '.join(files)} from {ANNOTATORS_REPO}, "
        f"which are not on disk (looked in {'; '.join(looked)})",
        f"copy them into {where}, or use detector = 'geometry' or 'canny', which need no weights",
        field="settings.controls.detector",
    )


def _hf_cached(files: tuple[str, ...]) -> Path | None:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    paths = [try_to_load_from_cache(ANNOTATORS_REPO, f) for f in files]
    if all(isinstance(p, str) and os.path.isfile(p) for p in paths):
        folders = {Path(p).parent for p in paths}  # type: ignore[arg-type]
        if len(folders) == 1:
            return folders.pop()
    return None


@lru_cache(maxsize=2)
def _load(detector: str, folder: Path, device: str) -> Any:
    """controlnet-aux ships its detectors as .pth (pickle) files; torch's weights-only
    unpickler is forced so such a file can hold tensors but never run code."""
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    spec = LEARNED[detector]
    model = getattr(_import_aux(spec.module), spec.cls).from_pretrained(str(folder))
    return model.to(device) if hasattr(model, "to") else model


def learned(detector: str, normal_u8: np.ndarray, roots: list[Path], device: str) -> np.ndarray:
    """Run a learned controlnet-aux detector on the normal image (weights from disk only)."""
    import pickle

    folder = find_weights(detector, roots)
    try:
        model = _load(detector, folder, device)
    except pickle.UnpicklingError as exc:
        raise ModelError(
            f"refused to load {detector} weights in {folder}: the file holds more than "
            f"tensors ({str(exc).splitlines()[0][:120]})",
            "replace it with the original weights from lllyasviel/Annotators",
            field="controls",
        ) from None
    return _run_aux(model, normal_u8, **dict(LEARNED[detector].call))
