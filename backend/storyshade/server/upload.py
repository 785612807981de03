"""Turn an uploaded bundle zip into a validated bundle folder, or a 4xx naming what is wrong.

Everything is checked before the job is queued, so a bad upload fails in the request that
sent it rather than minutes later in the worker: zip structure and paths, sizes and counts
(declared and actually written), shot.json, frame count and resolution limits, and every
pass file (a readable EXR of the declared size, with finite depth and normals).
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from storyshade.bundle import Bundle, Shot, load_bundle, parse_shot
from storyshade.errors import BundleError, StoryShadeError
from storyshade.server.ziparchive import TooLarge, check_entries, open_zip

MANIFEST_MAX = 16 << 20  # a shot.json over 16 MiB is not a shot
EXTRA_MEMBERS = 64  # files a bundle may hold beyond its pass files
EXR_CHANNELS_MAX = 12  # depth 1 + normal 3 + combined 4, with room; more is not a pass file
EXR_PARTS_MAX = 12

__all__ = ["Limits", "TooLarge", "check_passes", "unpack_bundle"]


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_frames: int
    max_resolution: int


def _find_manifest(members: list[zipfile.ZipInfo]) -> tuple[zipfile.ZipInfo, str]:
    """The one shot.json and the folder (prefix) it sits in."""
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
    return manifests[0], "" if str(parent) == "." else f"{parent}/"


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


def _wanted(
    members: list[zipfile.ZipInfo], prefix: str, shot: Shot, extra: Sequence[str] = ()
) -> list[tuple[zipfile.ZipInfo, str]]:
    """(entry, path inside the bundle) for shot.json, each pass and take file shot.json
    names and each reference image the settings name (`extra`); nothing else in the zip is
    written."""
    by_name = {m.filename: m for m in members}
    wanted = [(by_name[f"{prefix}shot.json"], "shot.json")]
    for i, name in enumerate(extra):
        member = by_name.get(prefix + name)
        if member is None:
            raise BundleError(
                f"reference image {name} is not in the uploaded bundle",
                "put the image in the bundle zip, beside shot.json, and name it relative to it",
                field=f"settings.references.{i}.image",
            )
        wanted.append((member, name))
    for i, entry in enumerate(shot.frames):
        named = [(entry.file, "file", f"pass file {entry.file} is missing", "re-export the shot")]
        if entry.take:
            named.append(
                (
                    entry.take,
                    "take",
                    f"held frame {entry.frame}'s picture {entry.take} is missing",
                    "zip the take's frames with the bundle, or drop `take` to generate it",
                )
            )
        for name, key, problem, fix in named:
            member = by_name.get(prefix + name)
            if member is None:
                raise BundleError(problem, fix, field=f"frames[{i}].{key}")
            wanted.append((member, name))
    return wanted


def _target(dest: Path, relative: str) -> Path:
    """Where an entry lands: checked after every transformation, on the resolved path."""
    target = (dest / relative).resolve()
    if not target.is_relative_to(dest.resolve()) or target == dest.resolve():
        raise BundleError(f"unsafe path in zip: {relative[:200]!r}", field="bundle")
    return target


def _extract(
    archive: zipfile.ZipFile, wanted: list[tuple[zipfile.ZipInfo, str]], dest: Path, limit: int
) -> None:
    written = 0
    for m, relative in wanted:
        target = _target(dest, relative)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # "x": never through an existing file or link, never one entry over another
            with archive.open(m) as src, target.open("xb") as out:
                while chunk := src.read(1 << 20):  # at most the declared size comes out
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


def _check_header(parts: list, entry_file: str, bundle: Bundle, field: str) -> None:
    """A pass file costs what a pass needs: the shot's size, a few float channels."""
    if len(parts) > EXR_PARTS_MAX or sum(len(p[1]) for p in parts) > EXR_CHANNELS_MAX:
        raise BundleError(
            f"{entry_file} has {len(parts)} parts and {sum(len(p[1]) for p in parts)} channels; "
            f"a pass file holds at most {EXR_CHANNELS_MAX} (depth, normal, combined)",
            "export with StoryShade, which writes only the passes it needs",
            field=field,
        )
    for window, channels in parts:
        if window is None:
            continue
        (x0, y0), (x1, y1) = window
        size = (int(x1) - int(x0) + 1, int(y1) - int(y0) + 1)
        if size != tuple(bundle.shot.resolution):
            raise BundleError(
                f"{entry_file} is {size[0]}x{size[1]} but shot.json says "
                f"{bundle.width}x{bundle.height}",
                "re-export the shot",
                field=field,
            )
        if any(
            getattr(c, "xSampling", 1) != 1 or getattr(c, "ySampling", 1) != 1 for c in channels
        ):
            raise BundleError(
                f"{entry_file} has subsampled channels", "re-export the shot", field=field
            )


def check_passes(bundle: Bundle) -> None:
    """Every pass file is an EXR of the shot's size with finite depth and normals."""
    import OpenEXR

    for i, entry in enumerate(bundle.shot.frames):
        field = f"frames[{i}].file"
        path = bundle.root / entry.file
        try:  # the header first: a lying header must not make us allocate its pixels
            with OpenEXR.File(str(path), header_only=True) as exr:
                parts = [
                    (part.header.get("dataWindow"), list(part.header.get("channels") or []))
                    for part in exr.parts
                ]
        except Exception:  # OpenEXR raises bare RuntimeError on anything that is not an EXR
            raise BundleError(
                f"{entry.file} is not an OpenEXR image", "re-export the shot", field=field
            ) from None
        _check_header(parts, entry.file, bundle, field)
        bundle.read_frame(i)  # raises on missing passes, NaN or infinite values, unknown ids
        if entry.take:
            bundle.read_take(i)  # a PNG of the shot's size (checked before decoding)


def unpack_bundle(
    fileobj: BinaryIO, job_dir: Path, limits: Limits, extra: Sequence[str] = ()
) -> Bundle:
    """Extract and validate the uploaded zip into `job_dir/bundle`; `extra` names further
    files the job needs from it (reference images, relative to shot.json)."""
    dest = job_dir / "bundle"
    most = 2 * limits.max_frames + EXTRA_MEMBERS  # a pass file and a held picture per frame
    archive = open_zip(fileobj, most)
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > most:
            raise TooLarge(
                f"the zip holds {len(members)} files; a bundle within the limits holds at most "
                f"{most}",
                "zip only the bundle folder",
                field="bundle",
            )
        check_entries(members, limits.max_bytes)
        manifest, prefix = _find_manifest(members)
        shot = parse_shot(_read(archive, manifest), max_frames=limits.max_frames)
        _check_shot(shot, limits)
        wanted = _wanted(members, prefix, shot, extra)
        dest.mkdir(parents=True, exist_ok=True)
        _extract(archive, wanted, dest, limits.max_bytes)
    bundle = load_bundle(dest)
    check_passes(bundle)
    return bundle
