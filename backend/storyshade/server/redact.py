"""Keep the server's own folders out of what clients read.

Errors can carry paths (an OS error names the file it failed on); a client needs to know
what went wrong with its job, not where the server keeps its data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Redactor:
    """Replaces each folder (as given and resolved) with a placeholder such as `<data>`."""

    def __init__(self, folders: dict[str, Path | list[Path]]) -> None:
        pairs: dict[str, str] = {}
        for placeholder, given in folders.items():
            for folder in given if isinstance(given, list) else [given]:
                for form in {str(folder), str(Path(folder).resolve())}:
                    if len(form) > 1:
                        pairs[form] = placeholder
        self.pairs = sorted(pairs.items(), key=lambda p: -len(p[0]))  # longest first

    def text(self, text: str) -> str:
        for path, placeholder in self.pairs:
            text = text.replace(path, placeholder)
        return text

    def error(self, error: dict[str, Any]) -> dict[str, Any]:
        return {k: self.text(v) if isinstance(v, str) else v for k, v in error.items()}
