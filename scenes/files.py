"""Files written all at once: a reader (or a resumed run) sees the old file or the new one, never half.

The data goes to a temporary file beside the target (same folder: same file system), which then
replaces it with ``os.replace``. The temporary name keeps the suffix, so writers that choose the
format by suffix (numpy, imageio, trimesh) still work; a killed write leaves a ``.<stem>.tmp-<pid>``
file behind, never a truncated target.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """``write(tmp)`` fills a temporary file, which then becomes ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_json(path: str | Path, data, indent: int | None = 1) -> Path:
    """``data`` as JSON (``indent`` spaces per level; None = one line)."""
    import json

    return atomic_write_text(path, json.dumps(data, indent=indent))
