"""Reference images on the add-on's side: checked before anything is exported, copied into
the bundle, named relative to it on the wire (no bpy: the network thread uses it too).

A reference is `{"image": ABSOLUTE PATH, "weight": W, "look"?: NAME}` in the settings the
add-on keeps (job record, take strip), so a take can be re-shaded from the same files. The
server gets the same list with each image renamed to its place inside the bundle zip,
`references/N-NAME` (docs/references.md). The server decodes the images itself; here we
check what can be known cheaply (the file is there, its extension and first bytes name a
format the server reads, its size is within the server's limit), so a wrong file is named
before minutes of export and upload.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..errors import InputError
from ..wire.layout import REFERENCE_DIR, plain_name
from ..wire.references import MAX_REFERENCES

MAX_BYTES = 32 * 1024 * 1024  # the server's limit per image
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WebP", ".bmp": "BMP"}
SUPPORTED = "PNG, JPEG, WebP or BMP"


def _format_of(head: bytes) -> str | None:
    """The format the file's first bytes announce."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith(b"BM"):
        return "BMP"
    return None


def check_image(path: str | Path, what: str = "reference image") -> Path:
    """The image's absolute path, or an InputError naming the file and the fix."""
    path = Path(path).expanduser()
    if not str(path).strip() or str(path) == ".":
        raise InputError(f"a {what} has no file", "pick an image file or remove the reference")
    path = path.resolve()
    if not path.is_file():
        raise InputError(
            f"{what} {path} is not there" + (" (it is a folder)" if path.is_dir() else ""),
            "pick the image again, or remove the reference",
        )
    expected = FORMATS.get(path.suffix.lower())
    if expected is None:
        raise InputError(
            f"{what} {path}: '{path.suffix or 'no extension'}' is not an image format "
            "StoryShade reads",
            f"save it as {SUPPORTED} (.png, .jpg, .webp, .bmp)",
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise InputError(
            f"{what} {path} cannot be read ({exc.strerror})", "check the file"
        ) from None
    if size > MAX_BYTES:
        raise InputError(
            f"{what} {path} is {size // (1024 * 1024)} MiB, over the server's 32 MiB limit",
            "save a smaller copy (the encoder sees 224 px)",
        )
    found = _format_of(head)
    if found != expected:
        raise InputError(
            f"{what} {path} is not a {expected} file"
            + (f" (its bytes say {found})" if found else " (not an image StoryShade reads)"),
            f"re-save it as {SUPPORTED} with the matching extension",
        )
    return path


def check_references(refs: object, looks: list[str], base: Path | None = None) -> list[dict]:
    """The references with absolute, checked image paths: at most 4, weights 0-2, each look
    one of the shot's `looks`. Relative paths are taken from `base` (default: the current
    folder)."""
    if not isinstance(refs, list):
        raise InputError("settings.references must be a list", '[{"image": "a.png"}]')
    if len(refs) > MAX_REFERENCES:
        raise InputError(
            f"{len(refs)} reference images; StoryShade takes at most {MAX_REFERENCES} per shot",
            "remove some (style references and the shot's looks' references count together)",
        )
    out = []
    for i, ref in enumerate(refs):
        where = f"reference {i + 1}"
        if not isinstance(ref, dict) or not isinstance(ref.get("image"), str):
            raise InputError(f'{where} must be {{"image": PATH, "weight": W}}')
        unknown = set(ref) - {"image", "weight", "look"}
        if unknown:
            raise InputError(
                f"{where} has unknown keys {sorted(unknown)}", "use image, weight, look"
            )
        weight = ref.get("weight", 0.8)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 2:
            raise InputError(
                f"{where} ({ref['image']}): weight {weight!r} is not 0-2", "0.5-1.0 is usual"
            )
        look = ref.get("look")
        if look is not None and look not in looks:
            raise InputError(
                f"{where} ({Path(ref['image']).name}) is for look '{look}', which the shot does "
                "not have",
                f"the shot's looks: {', '.join(sorted(looks)) or 'none'} (give the object or "
                "collection a look, or check the spelling)",
            )
        image = Path(ref["image"]).expanduser()
        if not image.is_absolute():
            image = (base or Path.cwd()) / image
        entry = {"image": str(check_image(image)), "weight": round(float(weight), 4)}
        out.append({**entry, "look": look} if look is not None else entry)
    return out


def bundle_name(index: int, image: str) -> str:
    """Where reference `index` sits in the bundle: its own name, numbered (two references
    may share a file name), with only the characters the server takes in a bundle path
    (letters, digits, space, `._()+-`; `girl's #2.png` becomes `1-girl_s _2.png`)."""
    path = Path(image)
    stem = plain_name(path.stem)[:60]
    return f"{REFERENCE_DIR}/{index + 1}-{stem}{path.suffix.lower()}"


def key_frame_name(image: str) -> str:
    """Where the colour match key frame sits in the bundle."""
    path = Path(image)
    return f"{REFERENCE_DIR}/key-{plain_name(path.stem)[:60]}{path.suffix.lower()}"


def _bundle_images(settings: dict) -> list[tuple[str, str]]:
    """(absolute path, name inside the bundle) of every image the settings send."""
    out = [
        (ref["image"], bundle_name(i, ref["image"]))
        for i, ref in enumerate(settings.get("references") or [])
    ]
    key = (settings.get("color_match") or {}).get("image")
    if key:
        out.append((key, key_frame_name(key)))
    return out


def wire_settings(settings: dict) -> dict:
    """The settings as the server gets them: each image named inside the bundle."""
    out = dict(settings)
    refs = settings.get("references")
    if refs:
        out["references"] = [
            {**ref, "image": bundle_name(i, ref["image"])} for i, ref in enumerate(refs)
        ]
    key = (settings.get("color_match") or {}).get("image")
    if key:
        out["color_match"] = {**settings["color_match"], "image": key_frame_name(key)}
    return out


def copy_into(bundle_dir: Path, settings: dict) -> None:
    """Copy the settings' images into the bundle where wire_settings names them."""
    for image, name in _bundle_images(settings):
        target = Path(bundle_dir) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copyfile(image, target)
        except OSError as exc:
            raise InputError(
                f"image {image} cannot be copied into the shot ({exc.strerror})",
                "check that the file is still there",
            ) from None
