"""Open an untrusted zip upload safely: bounded before it is parsed, strict about every entry.

`zipfile` trusts the archive: it reads the whole central directory into memory before we
can count it, inflates bzip2 and LZMA with no output cap, and leaves entry names to the
caller. So the end-of-central-directory record is read first (entry count and directory
size bound what parsing can cost), and every entry must be a plain file with a plain name,
stored or deflated (deflate is inflated in bounded chunks; the others are refused).
"""

from __future__ import annotations

import stat
import struct
import zipfile
from typing import BinaryIO

from storyshade.errors import BundleError, StoryShadeError

METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
MAX_NAME = 1024  # bytes in one entry name; a bundle's names are a few dozen
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CD_ENTRY_MIN = 46  # fixed part of one central directory entry


class TooLarge(StoryShadeError):
    status = 413


def _not_a_zip() -> BundleError:
    return BundleError(
        "the upload is not a zip archive",
        "send the bundle folder zipped (the add-on does this; or `zip -r shot.zip BUNDLE`)",
        field="bundle",
    )


def _directory_size(fileobj: BinaryIO) -> tuple[int, int]:
    """(entries, central directory bytes) from the end record, as zipfile will find it."""
    fileobj.seek(0, 2)
    size = fileobj.tell()
    if size < _EOCD.size:
        raise _not_a_zip()
    tail_start = max(0, size - (_EOCD.size + 0xFFFF))
    fileobj.seek(tail_start)
    tail = fileobj.read()
    at = len(tail) - _EOCD.size  # zipfile tries "no comment" first, then searches back
    if tail[at : at + 4] != b"PK\x05\x06":
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + _EOCD.size > len(tail):
            raise _not_a_zip()
    _sig, _disk, _cd_disk, _here, entries, cd_size, _cd_offset, _comment = _EOCD.unpack_from(
        tail, at
    )
    locator_at = tail_start + at - _EOCD64_LOCATOR.size
    if locator_at >= 0:  # zip64: the real counts are in the zip64 record
        fileobj.seek(locator_at)
        locator = fileobj.read(_EOCD64_LOCATOR.size)
        if locator[:4] == b"PK\x06\x07":
            _sig, _disk, _record_at, _disks = _EOCD64_LOCATOR.unpack(locator)
            fileobj.seek(max(0, locator_at - _EOCD64.size))
            record = fileobj.read(_EOCD64.size)
            if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
                fields = _EOCD64.unpack(record)
                entries, cd_size = fields[7], fields[8]
    fileobj.seek(0)
    return entries, cd_size


def open_zip(fileobj: BinaryIO, max_entries: int) -> zipfile.ZipFile:
    """The archive, parsed only once its directory is known to be small enough."""
    entries, cd_size = _directory_size(fileobj)
    if entries > max_entries or cd_size > max_entries * (_CD_ENTRY_MIN + MAX_NAME + 64):
        raise TooLarge(
            f"the zip lists {entries} entries in a {cd_size}-byte directory; a bundle within "
            f"this server's limits holds at most {max_entries} files",
            "zip only the bundle folder",
            field="bundle",
        )
    try:
        return zipfile.ZipFile(fileobj)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise _not_a_zip() from None


def _unsafe(name: str) -> BundleError:
    return BundleError(
        f"unsafe path in zip: {name[:200]!r}",
        "zip the bundle folder as exported, with plain relative names",
        field="bundle",
    )


def check_entry(info: zipfile.ZipInfo) -> None:
    """One entry: a plain, unencrypted file, stored or deflated, with a plain relative name."""
    name = info.filename
    parts = name.split("/")
    if (
        not name
        or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME
        or "\\" in name
        or "\0" in info.orig_filename  # zipfile cuts the name at a NUL; the original has it
        or ":" in name  # drive letters (C:) and NTFS streams
        or name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise _unsafe(name)
    mode = info.external_attr >> 16
    if mode and not (stat.S_ISREG(mode) or stat.S_IFMT(mode) == 0):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise BundleError(
            f"{name[:200]} is {kind}",
            "zip the files themselves (zip without --symlinks)",
            field="bundle",
        )
    if info.flag_bits & 0x1:
        raise BundleError(f"{name[:200]} is encrypted", "zip without a password", field="bundle")
    if info.compress_type not in METHODS:
        raise BundleError(
            f"{name[:200]} uses zip compression method {info.compress_type}; only stored and "
            "deflate entries are accepted",
            "zip with the default (deflate) or no compression, e.g. `zip -r shot.zip BUNDLE`",
            field="bundle",
        )


def check_entries(members: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Every entry safe, no name twice, and the declared total within the limit."""
    seen: set[str] = set()
    for m in members:
        check_entry(m)
        if m.filename in seen:
            raise BundleError(
                f"the zip holds {m.filename[:200]} twice", "zip the bundle again", field="bundle"
            )
        seen.add(m.filename)
    total = sum(m.file_size for m in members)
    if total > max_bytes:
        raise TooLarge(
            f"the bundle unpacks to {total} bytes, over the server limit of {max_bytes}",
            "render fewer frames or a smaller resolution, or raise --max-upload-mb",
            field="bundle",
        )
