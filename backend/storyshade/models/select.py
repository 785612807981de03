"""Which files of a repository a model needs, and under which local names: pure rules on the
repository's file list, so the choice is tested without a network.

A diffusers folder often holds the same weights several times: fp32, fp16, non-EMA, as
`.safetensors` and as pickles (`.bin`). A pull takes one variant, `.safetensors` only:

- weights are the diffusers/transformers weight files (`diffusion_pytorch_model*` and
  `model*`, sharded or not); of those, the asked variant (`fp16` by default) where the folder
  has it, else the plain files (a repository without fp16 copies, e.g. bf16 Wan weights);
- a variant's files are saved under the plain names (`unet/diffusion_pytorch_model.fp16.
  safetensors` becomes `unet/diffusion_pytorch_model.safetensors`; a sharded variant keeps
  its shard names and its index becomes the plain index), so the folder loads like any
  diffusers folder, without a `variant` argument;
- configuration files (`.json`, `.txt`, a tokenizer's `.model`) are taken beside them;
- a folder whose weights exist only as pickles is refused: nothing is taken from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from storyshade.errors import ModelError
from storyshade.models.safety import PICKLE_SUFFIXES
from storyshade.models.sources import Source

VARIANTS = ("fp16", "fp32")
PLAIN = "fp32"  # the repositories' unmarked weights; asking for fp32 takes those
WEIGHT = re.compile(
    r"^(?P<stem>diffusion_pytorch_model|model)(?:\.(?P<variant>[A-Za-z0-9_]+))?"
    r"(?P<shard>-\d{5}-of-\d{5})?\.safetensors$"
)
INDEX = re.compile(
    r"^(?P<stem>diffusion_pytorch_model|model)\.safetensors\.index"
    r"(?:\.(?P<variant>[A-Za-z0-9_]+))?\.json$"
)
CONFIG_SUFFIXES = (".json", ".txt", ".model")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at one commit, as the hub describes it."""

    path: str
    size: int
    sha256: str | None = None  # LFS files: the content's sha256
    blob_id: str | None = None  # other files: the git blob id (sha1 of "blob N\0" + content)


@dataclass(frozen=True)
class Take:
    """A file to fetch and where it goes, relative to the model's destination."""

    remote: RemoteFile
    local: str


def _children(files: dict[str, RemoteFile], folder: str) -> list[RemoteFile]:
    """The files directly in `folder` ("" = the repository root)."""
    return [f for f in files.values() if str(PurePosixPath(f.path).parent) == (folder or ".")]


def _plain_name(name: str) -> str:
    """A variant's file name as the plain file would be called."""
    weight = WEIGHT.match(name)
    if weight and weight["variant"] and not weight["shard"]:
        return f"{weight['stem']}.safetensors"
    index = INDEX.match(name)
    if index and index["variant"]:
        return f"{index['stem']}.safetensors.index.json"
    return name


def _choose_variant(repo: str, folder: str, weights: list[RemoteFile], variant: str) -> str | None:
    """The variant taken from a folder: the asked one where present, else the plain files."""
    have = {WEIGHT.match(PurePosixPath(f.path).name)["variant"] for f in weights}  # type: ignore[index]
    asked = None if variant == PLAIN else variant
    if asked in have:
        return asked
    if None in have:
        return None
    raise ModelError(
        f"{repo}: {folder or 'the root'} has no {variant} or plain .safetensors weights "
        f"(only {', '.join(sorted(v for v in have if v))})",
        f"pull with --variant {sorted(v for v in have if v)[0]}"
        if have & set(VARIANTS)
        else "download it by hand and convert it (docs/models.md)",
        field="variant",
    )


def folder_files(
    repo: str, files: dict[str, RemoteFile], folder: str, variant: str, configs: bool = True
) -> list[Take]:
    """The files one diffusers folder needs, with local names relative to the folder."""
    children = _children(files, folder)
    names = {PurePosixPath(f.path).name: f for f in children}
    weights = [f for n, f in names.items() if WEIGHT.match(n)]
    if not weights:
        pickles = [n for n in names if n.lower().endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ModelError(
                f"{repo}: {folder or 'the root'} holds weights only as pickle files "
                f"({', '.join(sorted(pickles))}); StoryShade loads only .safetensors, because "
                "pickle files can run code when opened",
                "choose a model published as .safetensors, or download it by hand and convert "
                "it once if you trust it (docs/models.md)",
                field="models",
            )
    chosen = _choose_variant(repo, folder, weights, variant) if weights else None
    out = []
    for name, remote in sorted(names.items()):
        weight, index = WEIGHT.match(name), INDEX.match(name)
        if weight:
            keep = weight["variant"] == chosen
        elif index:
            keep = index["variant"] == chosen
        else:
            keep = configs and name.endswith(CONFIG_SUFFIXES)
        if keep:
            out.append(Take(remote, _plain_name(name)))
    return out


def select(source: Source, files: dict[str, RemoteFile], variant: str) -> list[Take]:
    """Every file `source` needs from a repository holding `files`, by local name."""
    if variant not in VARIANTS:
        raise ModelError(
            f"variant '{variant}' is not one of {', '.join(VARIANTS)}",
            "use --variant fp16 (the default: half the download) or --variant fp32",
            field="variant",
        )

    def missing(what: str) -> ModelError:
        return ModelError(
            f"{source.repo} has no {what} (any more)",
            f"check {source.url()}; if the repository changed, update StoryShade or download "
            "the model by hand (docs/models.md)",
            field="models",
        )

    if source.layout == "file":
        if source.path not in files:
            raise missing(source.path)
        return [Take(files[source.path], PurePosixPath(source.path).name)]
    if source.layout == "folder":
        takes = folder_files(source.repo, files, source.path, variant)
        if not any(WEIGHT.match(t.local) for t in takes):
            raise missing(f".safetensors weights in {source.path or 'its root'}")
        return takes
    if "model_index.json" not in files:
        raise missing("model_index.json (it is not a diffusers pipeline)")
    takes = [Take(files["model_index.json"], "model_index.json")]
    for part in source.parts:
        found = folder_files(source.repo, files, part, variant)
        if not found:
            raise missing(f"folder {part}/")
        takes += [Take(t.remote, f"{part}/{t.local}") for t in found]
    return takes
