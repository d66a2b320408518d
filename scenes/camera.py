"""Pinhole camera data: intrinsics and pose. Plain data here; ray generation lives in `sim.rays`,
lens models (distortion, fisheye) in `sensors/`.

Conventions: OpenCV camera axes (x right, y down, z forward); pixel (u, v) centres are at integer + 0.5;
`T_world_cam` maps camera coordinates to world coordinates; `time` is seconds from the log start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.errors import InputError, fields_of
from scenes.transforms import is_rigid


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics of an image of ``width`` x ``height`` pixels."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        vals = (self.width, self.height, self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in vals) or self.width <= 0 or self.height <= 0 or self.fx <= 0 or self.fy <= 0:
            raise InputError("intrinsics", None, f"expected positive finite width/height/fx/fy, got {vals}")

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    @staticmethod
    def from_fov(width: int, height: int, hfov_deg: float) -> "Intrinsics":
        fx = 0.5 * width / np.tan(0.5 * np.radians(hfov_deg))
        return Intrinsics(width, height, fx, fx, width / 2.0, height / 2.0)

    def scaled(self, factor: float) -> "Intrinsics":
        """The same camera at ``factor`` times the resolution."""
        w, h = max(1, round(self.width * factor)), max(1, round(self.height * factor))
        sx, sy = w / self.width, h / self.height
        return Intrinsics(w, h, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy}

    @staticmethod
    def from_dict(d: dict, source: str = "intrinsics") -> "Intrinsics":
        with fields_of(source, "numbers width, height, fx, fy, cx, cy"):
            return Intrinsics(int(d["width"]), int(d["height"]), float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]))


@dataclass(frozen=True)
class Camera:
    """One camera view: intrinsics, pose and capture time."""

    intrinsics: Intrinsics
    T_world_cam: np.ndarray
    time: float = 0.0
    name: str = ""

    def __post_init__(self):
        T = np.asarray(self.T_world_cam, dtype=np.float64)
        if not is_rigid(T):
            raise InputError(f"camera {self.name or ''}".strip(), "T_world_cam", "expected a finite 4x4 rigid transform")
        object.__setattr__(self, "T_world_cam", T)
        if not np.isfinite(self.time):
            raise InputError(f"camera {self.name}", "time", "must be finite")


def pixel_rays(intrinsics: Intrinsics, T_world_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre, row-major ``[H, W]``.

    Returns ``origins [H, W, 3]``, unit ``directions [H, W, 3]`` and ``z_per_dist [H, W]``, the
    camera-z component of each unit direction (z-depth = ray distance * z_per_dist).
    """
    K = intrinsics
    u = np.arange(K.width) + 0.5
    v = np.arange(K.height) + 0.5
    uu, vv = np.meshgrid(u, v)
    d_cam = np.stack([(uu - K.cx) / K.fx, (vv - K.cy) / K.fy, np.ones_like(uu)], axis=-1)
    d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    T = np.asarray(T_world_cam, dtype=np.float64)
    dirs = d_cam @ T[:3, :3].T
    origins = np.broadcast_to(T[:3, 3], dirs.shape).copy()
    return origins, dirs, d_cam[..., 2].copy()
