"""Stage cache: results of the render stages, keyed by content hashes of their inputs.

The idea is ComfyUI's DAG cache: a stage whose inputs did not change is not recomputed.
Three stages are cached:

- control images (an LRU of ControlSets within a byte budget). The key hashes the bundle's
  files and only the settings that can change control images, so a rerun that changes only
  the prompt, seed or steps skips control encoding. The ControlSets are held in memory, their
  frames in files under `controls/` (controls/store.py; the budget counts those bytes), so a
  long shot's controls never sit in RAM; a folder goes when its ControlSet is evicted and no
  job still uses it. They do not outlive the process: rebuilding them costs seconds.
- reference images' embeddings (EmbeddingCache, in memory): the image encoder and the
  adapter's projection run once per image, model files and device; a prompt-only rerun
  reuses them, as it reuses the control images.
- finished frames, on disk in `frames/<key>/`. The key hashes the bundle, every setting and
  the model files' identity, so an identical rerun returns without computing, across
  restarts. Entries are PNGs and a JSON marker: loading one never unpickles anything. The
  folder is kept under a size budget, least recently used first.

Both keys also hash the source of the rendering code, so a code change never serves frames
or controls that the new code would not make.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from storyshade import wire as shared
from storyshade.bundle import hash_file
from storyshade.cancel import CancelToken
from storyshade.controls import ControlSet
from storyshade.controls.store import DiskFrames
from storyshade.job_input import JobInput
from storyshade.models.loader import ModelKey
from storyshade.progress import Reporter
from storyshade.settings import Settings
from storyshade.wire.layout import frame_name
from storyshade.wire.states import Event, Stage

# Settings that steer generation but never change the control images. Everything not listed
# here is part of the controls key: a setting added later is assumed to matter (a miss costs
# time, a stale hit would cost correctness).
GENERATION_ONLY = frozenset(
    {
        "prompt",
        "prompt_prefix",
        "prompt_suffix",
        "negative_prompt",
        "seed",
        "steps",
        "guidance_scale",
        "checkpoint",
        "motion_adapter",
        "motion_scale",
        "scheduler",
        "loras",
        "context_length",
        "context_overlap",
        "decode_chunk_size",
        "dtype",
        "device",
        "context_schedule",
        "context_fuse",
        "free_noise",
        "forward_chunk",
        "attention_slicing",
        "channels_last",
        "preview_every",
        "references",
        "ip_adapter",
        "image_encoder",
        "color_match",
    }
)
# Fields of one control that only weight it during generation.
CONTROL_GENERATION_ONLY = frozenset({"model", "scale", "start", "end", "guess_mode"})


def _sha(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


@cache
def code_signature() -> str:
    """Hash of the rendering code (everything in the package but the HTTP server)."""
    root = Path(__file__).resolve().parent
    wire = Path(shared.__file__).resolve().parent  # addon/wire/ in a checkout
    sources = [(p.relative_to(root).as_posix(), p) for p in root.rglob("*.py")]
    sources += [(f"wire/{p.name}", p) for p in wire.glob("*.py") if wire != root / "wire"]
    h = hashlib.sha256()
    for rel, path in sorted(sources):
        if rel.startswith("server/"):
            continue
        h.update(rel.encode() + b"\0")
        hash_file(path, h)
    return h.hexdigest()


def _files_signature(path: Path) -> list[tuple[str, int, int]]:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    out = []
    for p in files:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def _paths(value: object) -> list[Path]:
    """Every Path inside a (nested) dataclass, tuple or list: the files a ModelKey names."""
    if isinstance(value, Path):
        return [value]
    if isinstance(value, list | tuple):
        return [p for v in value for p in _paths(v)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [p for f in dataclasses.fields(value) for p in _paths(getattr(value, f.name))]
    return []


def models_signature(key: ModelKey | None) -> str:
    """Identity (path, size, mtime) of every model file a job's resolved models name."""
    if key is None:  # the model-free draft engine
        return "no-models"
    paths = sorted(set(_paths(key)))
    sig = [_files_signature(p) for p in paths if p.exists()]
    return _sha(json.dumps([key.device, key.dtype, sig]))


def _reference_images(settings: Settings) -> str:
    """The contents of the images the settings name (references, the colour-match frame):
    a path may be overwritten with another picture."""
    from storyshade.references import file_hash, image_fields

    out = []
    for _, image in image_fields(settings):
        try:
            out.append(file_hash(image))
        except OSError:
            out.append("missing")
    return json.dumps(out)


class EmbeddingCache:
    """Reference images' embeddings (a few tokens each: kilobytes), in memory, least
    recently used dropped past `size`. The key (`key`) hashes the image's content and the adapter's and encoder's files, never the prompt,
    so a job that changes only the prompt (or seed, steps, looks) encodes nothing."""

    def __init__(self, size: int = 64) -> None:
        self.size = size
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(image_hash: str, files: tuple[Path, ...], device: Any, dtype: Any) -> str:
        """An image's tokens: its content, the adapter's and encoder's files (path, size,
        mtime), device and dtype; never the prompt."""
        sig = [_files_signature(p) for p in files]
        return _sha("embeddings", image_hash, repr(sig), str(device), str(dtype))

    def get(self, key: str) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclasses.dataclass(frozen=True)
class StageKeys:
    bundle: str
    controls: str
    frames: str


class StageCache:
    """Finished frames under `root` (at most `max_bytes` on disk) and control images in memory
    (at most `max_control_bytes`)."""

    def __init__(
        self, root: Path, max_bytes: int = 4 << 30, max_control_bytes: int = 1 << 30
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_control_bytes = max_control_bytes
        self._controls: OrderedDict[str, ControlSet] = OrderedDict()
        self._control_bytes: dict[str, int] = {}
        self._lock = threading.Lock()
        self.embeddings = EmbeddingCache()
        (root / "frames").mkdir(parents=True, exist_ok=True)

    @property
    def control_dir(self) -> Path:
        """Where built control frames are written (one folder per ControlSet)."""
        return self.root / "controls"

    # -- keys ------------------------------------------------------------------------------
    def keys(self, work: JobInput, roots: list[Path]) -> StageKeys:
        """Both stages' keys from what the job already carries (its bundle's hash, its
        resolved models): nothing is hashed or resolved again here."""
        bhash, settings = work.bundle_hash, work.settings
        all_settings = settings.model_dump(mode="json")
        control_settings = {k: v for k, v in all_settings.items() if k not in GENERATION_ONLY}
        control_settings["controls"] = {
            role: {k: v for k, v in ctl.items() if k not in CONTROL_GENERATION_ONLY}
            for role, ctl in all_settings["controls"].items()
        }
        control_settings["__roots__"] = [str(r) for r in roots]  # learned detectors' weights
        code = code_signature()
        controls = _sha("controls", code, bhash, json.dumps(control_settings, sort_keys=True))
        frames = _sha(
            "frames",
            code,
            bhash,
            models_signature(work.models),
            _reference_images(settings),
            json.dumps(all_settings, sort_keys=True),
        )
        return StageKeys(bhash, controls, frames)

    # -- control images --------------------------------------------------------------------
    def controls(self, key: str, build: Callable[[], ControlSet], reporter: Reporter) -> ControlSet:
        """The control images for `key`: from the cache (saying so), else `build()` and keep."""
        with self._lock:
            cached = self._controls.get(key)
            if cached is not None:
                self._controls.move_to_end(key)
        if cached is not None:
            n = len(cached.frame_numbers)
            reporter.note(
                "control images reused from the stage cache (only generation settings changed)",
                stage=Stage.CONTROLS,
                cache="hit",
                reused="controls",
                key=key[:16],
            )
            reporter.stage(Stage.CONTROLS, n, n, cached=True)
            return cached
        controls = build()
        size = nbytes(controls)
        with self._lock:
            self._controls[key] = controls
            self._control_bytes[key] = size
            while sum(self._control_bytes.values()) > self.max_control_bytes and self._controls:
                old, _ = self._controls.popitem(last=False)
                self._control_bytes.pop(old, None)
        return controls

    # -- finished frames -------------------------------------------------------------------
    def restore_frames(
        self,
        key: str | None,
        out_dir: Path,
        frame_numbers: list[int],
        reporter: Reporter,
        cancel: CancelToken | None = None,
    ) -> list[Path] | None:
        """Place a cached shot's frames in `out_dir` (hard links where possible), or None;
        a cancelled `cancel` stops after the frame being placed."""
        cancel = cancel or CancelToken()
        if key is None:
            return None
        entry = self.root / "frames" / key
        names = [frame_name(n) for n in frame_numbers]
        if not (entry / "complete").is_file() or not all((entry / n).is_file() for n in names):
            return None
        reporter.note(
            "identical rerun: frames returned from the stage cache, nothing recomputed",
            stage=Stage.FRAMES,
            cache="hit",
            reused="frames",
            key=key[:16],
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for index, (frame, name) in enumerate(zip(frame_numbers, names, strict=True)):
            target = out_dir / name
            tmp = target.with_suffix(".tmp")
            tmp.unlink(missing_ok=True)
            try:
                os.link(entry / name, tmp)
            except OSError:
                shutil.copyfile(entry / name, tmp)
            tmp.replace(target)
            written.append(target)
            reporter.emit({"type": Event.FRAME, "frame": frame, "index": index, "cached": True})
            reporter.stage(Stage.SAVING, index + 1, len(names), cached=True)
            cancel.check()
        _touch(entry)
        return written

    def save_frames(self, key: str | None, written: list[Path]) -> None:
        """Keep a finished shot's frames; only complete shots are kept."""
        if key is None or not written:
            return
        entry = self.root / "frames" / key
        tmp = entry.with_name(f"{key}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for path in written:
            try:
                os.link(path, tmp / path.name)
            except OSError:
                shutil.copyfile(path, tmp / path.name)
        (tmp / "complete").write_text(json.dumps({"time": time.time()}), encoding="utf-8")
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
        self.evict()

    # -- size budget -----------------------------------------------------------------------
    def entries(self) -> list[tuple[float, int, Path]]:
        """(last use, bytes, path) of every frames entry on disk."""
        out = []
        for path in (self.root / "frames").iterdir():
            if path.is_dir() and ".tmp" not in path.name:
                size = sum(p.stat().st_size for p in path.iterdir())
                out.append((path.stat().st_mtime, size, path))
        return out

    def evict(self) -> None:
        """Drop least recently used entries until the folder fits its budget."""
        entries = sorted(self.entries())
        total = sum(size for _, size, _ in entries)
        for _, size, path in entries:
            if total <= self.max_bytes:
                break
            shutil.rmtree(path, ignore_errors=True)
            total -= size

    def clear_partial(self) -> None:
        """Remove half-written entries and control frame folders left by a crash (call at
        startup, before any job builds controls here)."""
        for path in (self.root / "frames").glob("*.tmp"):
            shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(self.control_dir, ignore_errors=True)


def nbytes(obj: object) -> int:
    """Bytes held in numpy arrays inside `obj` (dataclass fields, dicts, lists), and in the
    files of disk-backed frame sequences (controls/store.py's DiskFrames)."""
    if isinstance(obj, np.ndarray | DiskFrames):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(nbytes(v) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes(getattr(obj, f.name)) for f in dataclasses.fields(obj))
    return 0


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def through_stages(
    stages: StageCache | None,
    work: JobInput,
    roots: list[Path],
    out_dir: Path,
    reporter: Reporter,
    produce: Callable[[StageKeys | None], list[Path]],
    *,
    cancel: CancelToken | None = None,
) -> list[Path]:
    """The one stage-cache path, for local and Ray renders alike: an identical rerun's
    frames come from the cache (stopping at the next frame once `cancel` is cancelled);
    otherwise `produce(keys)` renders (using keys.controls for the control images where it
    builds them here) and a complete result is kept."""
    keys = stages.keys(work, roots) if stages else None
    frames = work.bundle.shot.generated_frames
    if stages and keys:
        done = stages.restore_frames(keys.frames, out_dir, frames, reporter, cancel)
        if done is not None:
            return done
    written = produce(keys)
    if stages and keys and len(written) == len(frames):
        stages.save_frames(keys.frames, written)
    return written
