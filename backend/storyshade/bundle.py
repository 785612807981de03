"""Shot bundle: the on-disk and on-the-wire form of an exported shot.

A bundle is a folder with `shot.json` (this schema) and one multilayer EXR per frame
holding the Cycles depth (Z) and normal passes. The add-on writes it; the names, version and
shot.json reading both sides share live in `storyshade.wire` (the add-on's addon/wire/).
Everything here validates it, with limits for untrusted input, before any work starts.

Version 2 adds per-object looks: a `regions` table (id → look) and, in every pass file,
Cycles' Object Index pass holding each pixel's region id (0: no look, the shot's prompt).
Version 3 adds held frames for re-shading part of a take: a frame entry may name `take`, a
PNG (the earlier take's picture of that frame, at the shot's resolution). Held frames are
not generated again; they steer their neighbours so the new frames join them without a
seam. Frames without `take` are generated. Versions 1 and 2 are still read.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from storyshade.errors import BundleError
from storyshade.wire import looks, manifest
from storyshade.wire.layout import FORMAT, VERSIONS

MAX_REGIONS = looks.MAX_LOOKS  # each look is a text encoding and a mask in every layer
BACKGROUND_DEPTH = 1e10  # Cycles writes exactly this into background Z pixels.
MAX_FRAME = 1_048_574  # Blender's MAXFRAME: no scene frame number lies beyond it
MAX_FRAMES = 100_000  # no shot lists more frames; servers set far lower limits of their own
# A pass file name: plain folder and file names (no empty, '.', '..', drive or backslash
# parts), so the name means the same file on every system and stays inside the bundle.
PASS_FILE = re.compile(r"(?:[\w\-][\w.\-]{0,99}/){0,4}[\w\-][\w.\-]{0,99}\.exr", re.ASCII)
TAKE_FILE = re.compile(r"(?:[\w\-][\w.\-]{0,99}/){0,4}[\w\-][\w.\-]{0,99}\.png", re.ASCII)


class Camera(BaseModel):
    """Camera of one frame, as Blender reports it (world matrix row-major, lengths in mm)."""

    matrix_world: list[list[float]] = Field(min_length=4, max_length=4)
    type: Literal["PERSP", "ORTHO", "PANO"] = "PERSP"
    lens: float = Field(gt=0)
    sensor_width: float = Field(gt=0)
    sensor_height: float = Field(gt=0)
    sensor_fit: Literal["AUTO", "HORIZONTAL", "VERTICAL"] = "AUTO"
    ortho_scale: float = Field(default=1.0, gt=0)
    shift_x: float = 0.0
    shift_y: float = 0.0
    clip_start: float = Field(gt=0)
    clip_end: float = Field(gt=0)

    @field_validator("matrix_world")
    @classmethod
    def _four_by_four(cls, rows: list[list[float]]) -> list[list[float]]:
        if any(len(r) != 4 for r in rows) or not all(math.isfinite(v) for r in rows for v in r):
            raise ValueError("must be 4 rows of 4 finite numbers")
        return rows

    @model_validator(mode="after")
    def _clip_order(self) -> Camera:
        if self.clip_end <= self.clip_start:
            raise ValueError("clip_end must be greater than clip_start")
        return self

    def rotation(self) -> np.ndarray:
        """3x3 camera-to-world rotation with scale removed."""
        m = np.asarray(self.matrix_world, dtype=np.float64)[:3, :3]
        return m / np.linalg.norm(m, axis=0, keepdims=True)


def _plain_path(value: str, pattern: re.Pattern, kind: str, example: str) -> str:
    if not pattern.fullmatch(value) or any(p in (".", "..") for p in value.split("/")):
        raise ValueError(
            f"must be a relative {kind} path inside the bundle, of plain names "
            f"(letters, digits, '_', '-', '.'), e.g. {example}"
        )
    return value


class FrameEntry(BaseModel):
    frame: int = Field(ge=-MAX_FRAME, le=MAX_FRAME)
    file: str = Field(max_length=512)
    camera: Camera
    take: str | None = Field(
        default=None,
        max_length=512,
        description="held frame (version 3): the earlier take's PNG of this frame, kept as it "
        "is; frames without one are generated",
    )

    @field_validator("file")
    @classmethod
    def _inside_bundle(cls, value: str) -> str:
        return _plain_path(value, PASS_FILE, ".exr", "frames/0001.exr")

    @field_validator("take")
    @classmethod
    def _take_inside_bundle(cls, value: str | None) -> str | None:
        return None if value is None else _plain_path(value, TAKE_FILE, ".png", "take/0001.png")


class Region(BaseModel):
    """A look as the server reads it from shot.json: what the pixels with this id in the
    Object Index pass are. Its limits are the wire's (wire/looks.py), which the add-on
    checks before export; the engines take these, typed, beside the control images."""

    id: int = Field(ge=1, le=255)
    name: str = Field(min_length=1, max_length=looks.NAME_MAX)
    prompt: str = Field(max_length=looks.TEXT_MAX)
    negative: str = Field(default="", max_length=looks.TEXT_MAX)
    weight: float = Field(default=1.0, ge=looks.WEIGHT_MIN, le=looks.WEIGHT_MAX)
    color: tuple[float, float, float] | None = None  # base colour for the preview engine

    @field_validator("prompt")
    @classmethod
    def _says_something(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a look needs a prompt (what this object is)")
        return value

    @field_validator("color")
    @classmethod
    def _unit_rgb(cls, value: tuple[float, float, float] | None):
        if value is not None and not all(0.0 <= c <= 1.0 for c in value):
            raise ValueError("colour channels must be between 0 and 1")
        return value


# A look's fields that steer generation only: no control image depends on them.
LOOK_TEXT = {"prompt", "negative", "weight", "color"}


class Shot(BaseModel):
    """Contents of shot.json."""

    format: Literal[FORMAT] = FORMAT  # type: ignore[valid-type]  # the one spelling is in wire
    version: int
    shot: str = Field(min_length=1, max_length=128)
    frame_start: int = Field(ge=-MAX_FRAME, le=MAX_FRAME)
    frame_end: int = Field(ge=-MAX_FRAME, le=MAX_FRAME)
    fps: float = Field(gt=0, le=1000)
    resolution: tuple[int, int]
    unit_scale: float = Field(default=1.0, gt=0)
    blender_version: str = ""
    frames: list[FrameEntry] = Field(min_length=1, max_length=MAX_FRAMES)
    regions: list[Region] = Field(default_factory=list, max_length=MAX_REGIONS)

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in VERSIONS:
            raise ValueError(
                f"unsupported bundle version {value}; this server reads versions "
                f"{', '.join(map(str, VERSIONS))} (update the server or the add-on)"
            )
        return value

    @field_validator("regions", mode="before")
    @classmethod
    def _at_most_16(cls, value: object) -> object:
        if isinstance(value, list) and len(value) > MAX_REGIONS:
            raise ValueError(
                f"{len(value)} looks; a shot takes at most {MAX_REGIONS} (give objects that "
                "are the same thing one look, e.g. on their collection)"
            )
        return value

    @field_validator("resolution")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8 or max(value) > 16384:
            raise ValueError("width and height must be between 8 and 16384 pixels")
        return value

    @model_validator(mode="after")
    def _frames_match_range(self) -> Shot:
        if self.frame_end < self.frame_start:
            raise ValueError(f"frame_end {self.frame_end} is before frame_start {self.frame_start}")
        # Compared without building the range: the count comes first, so a huge range with a
        # short frame list costs nothing.
        in_order = len(self.frames) == self.frame_end - self.frame_start + 1 and all(
            f.frame == self.frame_start + i for i, f in enumerate(self.frames)
        )
        if not in_order:
            raise ValueError(
                f"frames must list every frame {self.frame_start}..{self.frame_end} once, in order"
            )
        files = {f.file for f in self.frames}
        if len(files) != len(self.frames):
            raise ValueError("each frame needs its own pass file; two frames name the same file")
        if self.regions and self.version < 2:
            raise ValueError("looks (regions) need bundle version 2")
        held = [f.take for f in self.frames if f.take]
        if held and self.version < 3:
            raise ValueError("held frames (take) need bundle version 3")
        if len(held) == len(self.frames):
            raise ValueError(
                "every frame is held (names a take picture), so there is nothing to shade; "
                "leave out `take` on the frames to generate again"
            )
        if len(set(held)) != len(held) or files & set(held):
            raise ValueError("each held frame needs its own take picture")
        ids = [r.id for r in self.regions]
        if len(set(ids)) != len(ids):
            raise ValueError("two looks share one region id")
        return self

    @property
    def frame_numbers(self) -> list[int]:
        return [f.frame for f in self.frames]

    @property
    def generated_frames(self) -> list[int]:
        """The frames a job makes: all of them, except held ones (re-shading a range)."""
        return [f.frame for f in self.frames if not f.take]


def _first_error(exc: ValidationError) -> BundleError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "shot.json"
    return BundleError(
        err["msg"],
        "re-export the shot from Blender (StoryShade > Export)",
        field=f"shot.json:{where}",
    )


def parse_shot(raw: bytes | str, max_frames: int = MAX_FRAMES) -> Shot:
    """Validate shot.json text; errors name the bad field.

    Untrusted text: too-deep nesting, huge integers and NaN are JSON errors here, and the
    frame count is checked against `max_frames` before any frame is validated."""
    try:
        data = manifest.loads(raw)
    except manifest.ManifestError as exc:
        raise BundleError(exc.problem, exc.fix, field=exc.field) from None
    frames = data.get("frames")
    if isinstance(frames, list) and len(frames) > max_frames:
        raise BundleError(
            f"the shot has {len(frames)} frames; this server takes at most {max_frames}",
            "split the shot, or start the server with a larger --max-frames",
            field="shot.json:frames",
        )
    try:
        return Shot.model_validate(data)
    except (ValidationError, RecursionError) as exc:
        if isinstance(exc, RecursionError):
            raise BundleError(
                "shot.json is nested too deeply", "re-export the shot", field="shot.json"
            ) from None
        raise _first_error(exc) from None


class Bundle:
    """A validated bundle folder. Pass files are read lazily, one frame at a time."""

    def __init__(self, root: Path, shot: Shot) -> None:
        self.root = root
        self.shot = shot

    @property
    def width(self) -> int:
        return self.shot.resolution[0]

    @property
    def height(self) -> int:
        return self.shot.resolution[1]

    def __len__(self) -> int:
        return len(self.shot.frames)

    def frame_path(self, index: int) -> Path:
        return self.root / self.shot.frames[index].file

    def held(self) -> list[int]:
        """Indices of held frames (those naming a take picture)."""
        return [i for i, f in enumerate(self.shot.frames) if f.take]

    def read_take(self, index: int) -> np.ndarray:
        """Held frame `index` as HxWx3 uint8 RGB at the shot's resolution, decoded safely:
        the header's size is checked before any pixel is decoded."""
        from PIL import Image

        entry = self.shot.frames[index]
        field = f"frames[{index}].take"
        path = self.root / (entry.take or "")
        try:
            with Image.open(path, formats=["PNG"]) as img:
                if img.size != (self.width, self.height):
                    raise BundleError(
                        f"{entry.take} is {img.size[0]}x{img.size[1]} but shot.json says "
                        f"{self.width}x{self.height}",
                        "send the take's own frames (the take was shaded at the shot's size)",
                        field=field,
                    )
                return np.asarray(img.convert("RGB"))
        except BundleError:
            raise
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise BundleError(
                f"{entry.take} is not a readable PNG ({str(exc)[:120]})",
                "send the take's PNG frames as the add-on wrote them",
                field=field,
            ) from None

    def read_passes(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(depth HxW float32 in scene units, world normal HxWx3 float32) for frame `index`."""
        depth, normal, _ids = self.read_frame(index)
        return depth, normal

    def read_frame(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Depth and normal as `read_passes`, plus the region id map (HxW uint8, 0 = no
        look) when the shot has looks; an id with no look in the table is an error."""
        from storyshade.exr import read_passes

        entry = self.shot.frames[index]
        field = f"frames[{index}].file"
        depth, normal, ids = read_passes(
            self.root / entry.file, field=field, with_ids=bool(self.shot.regions)
        )
        if ids is not None:
            unknown = sorted(set(np.unique(ids).tolist()) - {0, *(r.id for r in self.shot.regions)})
            if unknown:
                raise BundleError(
                    f"{entry.file} has pixels of region id {unknown[0]}, which shot.json's "
                    "regions table does not list",
                    "re-export the shot (every look is written to the table)",
                    field=field,
                )
        if depth.shape != (self.height, self.width):
            raise BundleError(
                f"pass is {depth.shape[1]}x{depth.shape[0]} but shot.json says "
                f"{self.width}x{self.height}",
                "re-export the shot",
                field=f"frames[{index}].file",
            )
        return depth, normal, ids


def load_bundle(path: str | Path) -> Bundle:
    """Open and validate a bundle folder (or its shot.json). Checks every pass file exists."""
    root = Path(path)
    if root.is_file() and root.name == "shot.json":
        root = root.parent
    manifest = root / "shot.json"
    if not manifest.is_file():
        raise BundleError(
            f"no shot.json in {root}",
            "export the shot first: in Blender, StoryShade > Export, or "
            "`blender -b shot.blend -c storyshade export --out DIR`",
            field="bundle",
        )
    shot = parse_shot(manifest.read_bytes())
    for i, entry in enumerate(shot.frames):
        if not (root / entry.file).is_file():
            raise BundleError(
                f"pass file {entry.file} is missing",
                "re-export the shot",
                field=f"frames[{i}].file",
            )
        if entry.take and not (root / entry.take).is_file():
            raise BundleError(
                f"held frame {entry.frame}'s picture {entry.take} is missing",
                "put the take's frame there, or drop `take` to generate that frame",
                field=f"frames[{i}].take",
            )
    return Bundle(root, shot)


def hash_file(path: Path, h: Any) -> None:
    """Feed a file to a hashlib object in 1 MiB chunks."""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)


def content_hash(bundle: Bundle) -> str:
    """The bundle's content, not its path, as `<controls>.<rest>`: the first part hashes
    what control images are made of (shot.json without the looks' texts and the held
    frames' pictures, and every pass file), the second the looks' texts and the held
    frames' pictures. The stage cache keys control images by the first part only
    (`controls_part`), so editing a look's prompt reuses them. Computed once per job (at
    submit) and carried with it (job_input.JobInput)."""
    shot = bundle.shot.model_dump(
        mode="json",
        exclude={"regions": {"__all__": LOOK_TEXT}, "frames": {"__all__": {"take"}}},
    )
    controls, rest = hashlib.sha256(), hashlib.sha256()
    controls.update(json.dumps(shot, sort_keys=True).encode("utf-8"))
    texts = [r.model_dump(mode="json", include=LOOK_TEXT) for r in bundle.shot.regions]
    rest.update(json.dumps(texts, sort_keys=True).encode("utf-8"))
    for entry in bundle.shot.frames:
        for name, h in ((entry.file, controls), (entry.take, rest)):
            if name:
                h.update(name.encode("utf-8") + b"\0")
                hash_file(bundle.root / name, h)
    return f"{controls.hexdigest()}.{rest.hexdigest()}"


def controls_part(bundle_hash: str) -> str:
    """What control images depend on, of a `content_hash` (all of a hash from before the
    split, which then keys the controls by everything: never a stale hit)."""
    return bundle_hash.split(".", 1)[0]
