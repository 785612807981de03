"""Unpack an uploaded bundle zip safely (no paths outside the folder, bounded size)."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from storyshade.errors import BundleError, StoryShadeError


class TooLarge(StoryShadeError):
    status = 413


def unpack_bundle(fileobj: BinaryIO, dest: Path, max_bytes: int) -> Path:
    """Extract the zip into `dest`; returns the folder holding shot.json."""
    try:
        archive = zipfile.ZipFile(fileobj)
    except zipfile.BadZipFile:
        raise BundleError(
            "the upload is not a zip archive",
            "send the bundle folder zipped (the add-on does this; or `zip -r shot.zip BUNDLE`)",
            field="bundle",
        ) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        total = sum(m.file_size for m in members)
        if total > max_bytes:
            raise TooLarge(
                f"the bundle unpacks to {total} bytes, over the server limit of {max_bytes}",
                "render fewer frames or a smaller resolution, or raise --max-upload-mb",
                field="bundle",
            )
        for m in members:
            parts = PurePosixPath(m.filename).parts
            if PurePosixPath(m.filename).is_absolute() or ".." in parts or not parts:
                raise BundleError(f"unsafe path in zip: {m.filename}", field="bundle")
        manifests = [m.filename for m in members if PurePosixPath(m.filename).name == "shot.json"]
        if len(manifests) != 1:
            raise BundleError(
                "the zip must hold exactly one shot.json",
                "zip one bundle folder as exported by the add-on",
                field="bundle",
            )
        dest.mkdir(parents=True, exist_ok=True)
        for m in members:
            target = dest / m.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(m) as src, target.open("wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    return (dest / manifests[0]).parent
