"""Reference images: where they are, and reading them safely (no torch, no models).

A reference image is named by path: absolute, or relative to the bundle (a preset's own
references are made absolute against the preset file when it is loaded). Images are
decoded with PIL under explicit limits, so a huge, truncated or hostile file is a clear
error naming the file, never a crash or an out-of-memory kill.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

from storyshade.errors import StoryShadeError
from storyshade.settings import Settings

FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
MAX_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 16_000_000  # e.g. 4000 x 4000; encoders see 224 px
MAX_SIDE = 8192


class ReferenceError(StoryShadeError):
    """A reference image is missing, unreadable or refused."""

    status = 422


def _error(path: Path, field: str, problem: str, fix: str) -> ReferenceError:
    return ReferenceError(f"reference image {path}: {problem}", fix, field=field)


def _absolute(image: str, base: Path) -> str:
    path = Path(image).expanduser()
    return str(path if path.is_absolute() else base / path)


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """Settings whose reference paths (and the colour-match frame's) are absolute,
    relative ones taken from `base`."""
    update: dict[str, Any] = {}
    if settings.references:
        update["references"] = [
            ref.model_copy(update={"image": _absolute(ref.image, base)})
            for ref in settings.references
        ]
    cm = settings.color_match
    if cm is not None and cm.image is not None:
        update["color_match"] = cm.model_copy(update={"image": _absolute(cm.image, base)})
    return settings.model_copy(update=update) if update else settings


def image_fields(settings: Settings) -> list[tuple[str, str]]:
    """(field, path) of every image the settings name: references and the colour-match frame."""
    out = [(f"settings.references.{i}.image", r.image) for i, r in enumerate(settings.references)]
    if settings.color_match is not None and settings.color_match.image is not None:
        out.append(("settings.color_match.image", settings.color_match.image))
    return out


def load_image(path: str | Path, index: int = 0, field: str | None = None) -> Any:
    """The image as an RGB PIL image, decoded within the limits above; errors name `field`
    (default: reference `index`'s image)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    where = field or f"settings.references.{index}.image"
    fix_format = (
        f"save it as {', '.join(FORMATS[:-1])} or {FORMATS[-1]}, at most {MAX_SIDE} px a side"
    )
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _error(
            path, where, "not found", "check the path (on the machine that renders)"
        ) from None
    except OSError as exc:
        raise _error(path, where, f"cannot be read ({exc.strerror})", "check the file") from None
    if not path.is_file():
        raise _error(path, where, "is not a file", "name an image file")
    if size > MAX_BYTES:
        raise _error(
            path,
            where,
            f"is {size // (1024 * 1024)} MiB, over the {MAX_BYTES // (1024 * 1024)} MiB limit",
            fix_format,
        )
    try:
        with warnings.catch_warnings():
            # PIL's own guard stays on; its warning becomes an error. Our limit is checked
            # from the header (open reads only that) before any pixel is decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=FORMATS) as img:
                w, h = img.size
                if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
                    raise _error(path, where, f"is {w}x{h} pixels, over the limit", fix_format)
                img.draft("RGB", (1024, 1024))  # JPEG: decode at a reduced scale
                rgb = img.convert("RGB")
                rgb.load()
                return rgb
    except StoryShadeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _error(
            path, where, "declares more pixels than the limit (a decompression bomb?)", fix_format
        ) from None
    except UnidentifiedImageError:
        raise _error(
            path, where, f"is not a supported image ({', '.join(FORMATS)})", fix_format
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise _error(
            path, where, f"cannot be decoded ({str(exc)[:160]})", "re-save the image"
        ) from None


def check_references(settings: Settings) -> None:
    """Every image the settings name decodes (paths must already be absolute)."""
    for field, image in image_fields(settings):
        load_image(image, field=field)


def file_hash(path: str | Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def parse_color_match_arg(text: str) -> dict[str, Any]:
    """`STRENGTH[:IMG]` from the command line (`1`, `0.7:shot1/0012.png`); the image path
    becomes absolute."""
    head, sep, image = text.partition(":")
    try:
        out: dict[str, Any] = {"strength": float(head)}
    except ValueError:
        raise StoryShadeError(
            f"--color-match '{text}' does not start with a strength",
            "write STRENGTH[:IMG], e.g. --color-match 1 or --color-match 0.7:frame.png",
            field="settings.color_match",
        ) from None
    if sep and image:
        out["image"] = str(Path(image).expanduser().resolve())
    return out
