"""Turn an uploaded bundle zip into a validated bundle folder, or a 4xx naming what is wrong.

Everything is checked before the job is queued, so a bad upload fails in the request that
sent it rather than minutes later in the worker: zip structure and paths, sizes and counts
(declared and actually written), shot.json, frame count and resolution limits, and every
pass file (a readable EXR of the declared size, with finite depth and normals).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from storyshade.bundle import Bundle, Shot, load_bundle, parse_shot
from storyshade.errors import BundleError, StoryShadeError

MANIFEST_MAX = 16 << 20  # a shot.json over 16 MiB is not a shot
EXTRA_MEMBERS = 64  # files a bundle may hold beyond its pass files


class TooLarge(StoryShadeError):
    status = 413


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_frames: int
    max_resolution: int


def _open(fileobj: BinaryIO) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise BundleError(
            "the upload is not a zip archive",
            "send the bundle folder zipped (the add-on does this; or `zip -r shot.zip BUNDLE`)",
            field="bundle",
        ) from None


def _check_members(members: list[zipfile.ZipInfo], limits: Limits) -> str:
    """Reject unsafe or oversized member lists; returns the folder (prefix) of shot.json."""
    if len(members) > limits.max_frames + EXTRA_MEMBERS:
        raise TooLarge(
            f"the zip holds {len(members)} files; a bundle within the limits holds at most "
            f"{limits.max_frames + EXTRA_MEMBERS}",
            "zip only the bundle folder",
            field="bundle",
        )
    total = sum(m.file_size for m in members)
    if total > limits.max_bytes:
        raise TooLarge(
            f"the bundle unpacks to {total} bytes, over the server limit of {limits.max_bytes}",
            "render fewer frames or a smaller resolution, or raise --max-upload-mb",
            field="bundle",
        )
    for m in members:
        path = PurePosixPath(m.filename)
        if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in m.filename:
            raise BundleError(f"unsafe path in zip: {m.filename!r}", field="bundle")
        if m.flag_bits & 0x1:
            raise BundleError(
                f"{m.filename} is encrypted", "zip without a password", field="bundle"
            )
    manifests = [m for m in members if PurePosixPath(m.filename).name == "shot.json"]
    if len(manifests) != 1:
        raise BundleError(
            f"the zip must hold exactly one shot.json (found {len(manifests)})",
            "zip one bundle folder as exported by the add-on",
            field="bundle",
        )
    if manifests[0].file_size > MANIFEST_MAX:
        raise TooLarge("shot.json is over 16 MiB", "re-export the shot", field="shot.json")
    parent = PurePosixPath(manifests[0].filename).parent
    return "" if str(parent) == "." else f"{parent}/"


def _check_shot(shot: Shot, limits: Limits) -> None:
    if len(shot.frames) > limits.max_frames:
        raise BundleError(
            f"the shot has {len(shot.frames)} frames; this server takes at most "
            f"{limits.max_frames}",
            "split the shot, or start the server with a larger --max-frames",
            field="shot.json:frames",
        )
    if max(shot.resolution) > limits.max_resolution:
        w, h = shot.resolution
        raise BundleError(
            f"the shot is {w}x{h}; this server takes at most {limits.max_resolution} pixels "
            "on the longest side",
            "lower the render resolution before exporting (generation is far smaller anyway), "
            "or start the server with a larger --max-resolution",
            field="shot.json:resolution",
        )


def _read(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
    try:
        with archive.open(member) as src:
            return src.read(member.file_size + 1)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise BundleError(
            f"cannot unpack {member.filename} ({exc})", "zip the bundle again", field="bundle"
        ) from None


def _extract(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], prefix: str, dest: Path, limit: int
) -> None:
    written = 0
    for m in members:
        if not m.filename.startswith(prefix):
            continue  # outside the bundle folder: not ours to keep
        target = dest / m.filename[len(prefix) :]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(m) as src, target.open("wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > limit:
                        raise TooLarge(
                            f"the bundle unpacks to more than {limit} bytes",
                            "raise --max-upload-mb",
                            field="bundle",
                        )
                    out.write(chunk)
        except StoryShadeError:
            raise
        except (zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
            raise BundleError(
                f"cannot unpack {m.filename} ({exc})", "zip the bundle again", field="bundle"
            ) from None
        except OSError as exc:
            if exc.errno in (28, 122):  # ENOSPC, EDQUOT: the server's problem, not the upload's
                raise
            raise BundleError(
                f"cannot unpack {m.filename} ({exc.strerror})", "rename the file", field="bundle"
            ) from None


def check_passes(bundle: Bundle) -> None:
    """Every pass file is an EXR of the shot's size with finite depth and normals."""
    import OpenEXR

    for i, entry in enumerate(bundle.shot.frames):
        field = f"frames[{i}].file"
        path = bundle.root / entry.file
        try:  # the header first: a lying header must not make us allocate its pixels
            with OpenEXR.File(str(path), header_only=True) as exr:
                windows = [part.header.get("dataWindow") for part in exr.parts]
        except Exception:  # OpenEXR raises bare RuntimeError on anything that is not an EXR
            raise BundleError(
                f"{entry.file} is not an OpenEXR image", "re-export the shot", field=field
            ) from None
        for window in windows:
            if window is None:
                continue
            (x0, y0), (x1, y1) = window
            if (int(x1) - int(x0) + 1, int(y1) - int(y0) + 1) != tuple(bundle.shot.resolution):
                raise BundleError(
                    f"{entry.file} is {int(x1) - int(x0) + 1}x{int(y1) - int(y0) + 1} but "
                    f"shot.json says {bundle.width}x{bundle.height}",
                    "re-export the shot",
                    field=field,
                )
        bundle.read_passes(i)  # raises on missing passes and NaN or infinite values


def unpack_bundle(fileobj: BinaryIO, job_dir: Path, limits: Limits) -> Bundle:
    """Extract and validate the uploaded zip into `job_dir/bundle`."""
    dest = job_dir / "bundle"
    archive = _open(fileobj)
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        prefix = _check_members(members, limits)
        manifest = next(m for m in members if m.filename == f"{prefix}shot.json")
        shot = parse_shot(_read(archive, manifest))
        _check_shot(shot, limits)
        dest.mkdir(parents=True, exist_ok=True)
        _extract(archive, members, prefix, dest, limits.max_bytes)
    bundle = load_bundle(dest)
    check_passes(bundle)
    return bundle
