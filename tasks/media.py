"""Pictures and videos for people: colour maps for metric images, contact sheets, MP4s.

Colour-mapped images are for looking only; metric values are always written separately.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw

from scenes.files import atomic_write


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def depth_mm(depth: np.ndarray) -> np.ndarray:
    """Metric depth as uint16 millimetres (0 = no return, not positive, or beyond 65.535 m)."""
    ok = np.isfinite(depth) & (depth > 0) & (depth * 1000 < 65535.5)
    return np.where(ok, np.round(np.where(ok, depth, 0) * 1000), 0).astype(np.uint16)


def colorize_depth(depth: np.ndarray, near: float = 2.0, far: float = 60.0) -> np.ndarray:
    """Log-depth through the turbo colour map (near = red, far = blue), sky (inf) black."""
    from matplotlib import colormaps

    d = np.where(np.isfinite(depth), depth, far)
    x = 1 - np.clip(np.log(np.clip(d, near, far) / near) / np.log(far / near), 0, 1)
    rgb = colormaps["turbo"](x)[..., :3]
    rgb[~np.isfinite(depth)] = 0
    return rgb.astype(np.float32)


def colorize_ids(ids: np.ndarray) -> np.ndarray:
    """A stable distinct colour per integer id (0 = black)."""
    rng = np.random.default_rng(12345)
    lut = rng.uniform(0.25, 1.0, size=(int(ids.max(initial=0)) + 1, 3)).astype(np.float32)
    lut[0] = 0
    return lut[ids]


def label(img: np.ndarray, text: str) -> np.ndarray:
    """Write ``text`` in the top-left corner of a float image."""
    pil = Image.fromarray(to_uint8(img))
    draw = ImageDraw.Draw(pil)
    draw.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
    draw.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(pil).astype(np.float32) / 255.0


def grid(rows: list[list[np.ndarray]], pad: int = 2) -> np.ndarray:
    """Tile equally sized images ``[H, W, 3]`` into one picture."""
    H, W = rows[0][0].shape[:2]
    ncol = max(len(r) for r in rows)
    out = np.ones(((H + pad) * len(rows) - pad, (W + pad) * ncol - pad, 3), np.float32)
    for i, r in enumerate(rows):
        for j, im in enumerate(r):
            out[i * (H + pad) : i * (H + pad) + H, j * (W + pad) : j * (W + pad) + W] = im[..., :3]
    return out


def write_png(path: str | Path, img: np.ndarray) -> None:
    """Atomic PNG write: a float image in [0, 1] as 8-bit, an integer image (uint8 / uint16 ids,
    millimetres) as it is."""
    atomic_write(path, lambda tmp: iio.imwrite(tmp, img if np.issubdtype(img.dtype, np.integer) else to_uint8(img)))


def write_video(path: str | Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    """Atomic H.264 MP4 (even frame size enforced by padding)."""
    arr = np.stack([to_uint8(f) for f in frames])
    H, W = arr.shape[1:3]
    arr = np.pad(arr, ((0, 0), (0, H % 2), (0, W % 2), (0, 0)))
    plugin = {"plugin": "pyav"} if _has_pyav() else {}  # else imageio's ffmpeg plugin
    atomic_write(path, lambda tmp: iio.imwrite(tmp, arr, fps=fps, codec="libx264", **plugin))


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401

        return True
    except ImportError:
        return False
