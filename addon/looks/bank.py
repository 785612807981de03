"""The character bank: looks (wire.looks.Look) with their reference images, kept in a folder so the same
character is reused across shots and .blend files (no bpy here: plain files).

One subfolder per character, holding `character.toml` and copies of its images:

    BANK/Girl/character.toml
    BANK/Girl/girl-front.png

    format = "storyshade.character"
    version = 1
    name = "Girl"
    prompt = "a girl in a red coat, long black hair"
    negative = ""
    weight = 1.0
    color = [0.8, 0.1, 0.1]        # optional: the preview's base colour

    [[references]]
    image = "girl-front.png"       # a file in this folder
    weight = 0.9

Read with tomllib; written by `dump_toml`, a writer for exactly this flat schema (the
add-on may import nothing outside the standard library, bpy and numpy).
"""

from __future__ import annotations

import math
import re
import shutil
import tomllib
from pathlib import Path

from ..errors import InputError
from ..wire.looks import WEIGHT_MAX, WEIGHT_MIN, Look
from .reference_files import MAX_REFERENCES, check_image

TOML = "character.toml"
FORMAT = "storyshade.character"
VERSION = 1
KEYS = {"format", "version", "name", "prompt", "negative", "weight", "color", "references"}


def default_folder() -> Path:
    return Path.home() / "StoryShade" / "characters"


def folder_name(name: str) -> str:
    """A character's subfolder: its name, made safe for every file system."""
    return re.sub(r"[^A-Za-z0-9._ -]+", "_", name).strip(" ._") or "character"


# -- writing ---------------------------------------------------------------------------------
def _string(text: str) -> str:
    """A TOML basic string."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _float(value: float) -> str:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{value} cannot be written to a character file")
    return repr(round(value, 6))


def dump_toml(char: Look, images: list[tuple[str, float]]) -> str:
    """The character file's text; `images` are (file name in the folder, weight)."""
    lines = [
        "# A StoryShade character (docs/references.md#the-character-bank)",
        f"format = {_string(FORMAT)}",
        f"version = {VERSION}",
        f"name = {_string(char.name)}",
        f"prompt = {_string(char.prompt)}",
        f"negative = {_string(char.negative)}",
        f"weight = {_float(char.weight)}",
    ]
    if char.color is not None:
        lines.append(f"color = [{', '.join(_float(c) for c in char.color)}]")
    for image, weight in images:
        lines += ["", "[[references]]", f"image = {_string(image)}", f"weight = {_float(weight)}"]
    return "\n".join(lines) + "\n"


def save_character(bank: Path, char: Look) -> Path:
    """Write the character and copies of its images to BANK/<name>/, replacing an earlier
    save of it; the folder is built beside and swapped in, so a failure leaves the old one."""
    if not char.prompt.strip():
        raise InputError(
            f"the look '{char.name}' has no prompt", "describe it before saving it to the bank"
        )
    if len(char.references) > MAX_REFERENCES:
        raise InputError(
            f"the look '{char.name}' has {len(char.references)} references; at most "
            f"{MAX_REFERENCES}",
            "remove some before saving it",
        )
    sources = [
        (check_image(path, f"look '{char.name}' reference"), w) for path, w in char.references
    ]
    bank = Path(bank)
    target = bank / folder_name(char.name)
    staging = bank / f".{target.name}.saving"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        images: list[tuple[str, float]] = []
        for source, weight in sources:
            name, n = source.name, 1
            while any(name == taken for taken, _ in images):
                n += 1
                name = f"{source.stem}-{n}{source.suffix}"
            shutil.copyfile(source, staging / name)
            images.append((name, weight))
        (staging / TOML).write_text(dump_toml(char, images), encoding="utf-8")
        old = bank / f".{target.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise InputError(
            f"cannot write the character '{char.name}' to {target} ({exc.strerror or exc})",
            "check that the bank folder is writable (Sidebar > StoryShade > Character Bank)",
        ) from None
    return target


# -- reading ---------------------------------------------------------------------------------
def _bad(path: Path, problem: str) -> InputError:
    return InputError(
        f"character file {path}: {problem}",
        "fix the file (docs/references.md shows the format), or save the look to the bank again",
    )


def _number(path: Path, key: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(path, f"{key} = {value!r} is not a number in {low:g}-{high:g}")
    return float(value)


def read_character(folder: Path) -> Look:
    """The character in `folder`, every field and image checked."""
    folder = Path(folder)
    path = folder / TOML
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{folder} holds no {TOML}: it is not a saved character",
            "save a look to the bank with Save Active Look to Bank, or remove the folder",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, f"cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise _bad(path, f"is not valid TOML ({exc})") from None
    unknown = set(data) - KEYS
    if unknown:
        raise _bad(path, f"unknown keys {sorted(unknown)} (it takes {', '.join(sorted(KEYS))})")
    if data.get("format", FORMAT) != FORMAT or data.get("version", VERSION) != VERSION:
        raise _bad(path, f"is not a {FORMAT} version {VERSION} file")
    for key in ("name", "prompt", "negative"):
        if not isinstance(data.get(key, ""), str):
            raise _bad(path, f"{key} must be text")
    prompt = data.get("prompt", "")
    if not prompt.strip():
        raise _bad(path, "prompt is missing or empty")
    color = data.get("color")
    if color is not None:
        if not isinstance(color, list) or len(color) != 3:
            raise _bad(path, "color must be [r, g, b]")
        color = tuple(_number(path, "color", c, 0, 1) for c in color)
    refs_in = data.get("references", [])
    if not isinstance(refs_in, list) or len(refs_in) > MAX_REFERENCES:
        raise _bad(path, f"references must be a list of at most {MAX_REFERENCES} [[references]]")
    refs = []
    for i, ref in enumerate(refs_in):
        if not isinstance(ref, dict) or set(ref) - {"image", "weight"} or "image" not in ref:
            raise _bad(path, f"references {i + 1} must have image (and weight) only")
        image = ref["image"]
        if not isinstance(image, str) or Path(image).name != image or image in ("", ".", ".."):
            raise _bad(path, f"references {i + 1}: image {image!r} must be a file name in {folder}")
        checked = check_image(folder / image, f"character '{folder.name}' reference")
        refs.append((str(checked), _number(path, "weight", ref.get("weight", 0.8), 0, 2)))
    return Look(
        name=data.get("name") or folder.name,
        prompt=prompt,
        negative=data.get("negative", ""),
        weight=_number(path, "weight", data.get("weight", 1.0), WEIGHT_MIN, WEIGHT_MAX),
        color=color,  # type: ignore[arg-type]
        references=tuple(refs),
    )


def list_characters(bank: Path) -> list[str]:
    """The bank's characters (subfolder names holding a character file), sorted."""
    bank = Path(bank)
    if not bank.is_dir():
        raise InputError(
            f"the character bank folder {bank} does not exist",
            "save a look to the bank first (Save Active Look to Bank creates it), or set the bank folder "
            "(Sidebar > StoryShade > Character Bank, or the add-on preferences)",
        )
    return sorted(
        p.name
        for p in bank.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / TOML).is_file()
    )
