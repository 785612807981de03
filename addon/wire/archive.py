"""The bundle folder as the zip `POST /v1/jobs` takes."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path


def zip_bundle(folder: Path) -> bytes:
    """Every file under `folder`, by its relative POSIX name, stored (the EXR passes are
    compressed already, so deflating them again costs time for nothing)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()
