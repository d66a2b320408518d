"""Camera data: intrinsics, lens, pose and time. Plain data and the rays of every pixel here; the
lens models (distortion, fisheye) are `scenes.lens.CameraModel`.

Conventions: OpenCV camera axes (x right, y down, z forward); pixel (u, v) centres are at integer + 0.5;
`T_world_cam` maps camera coordinates to world coordinates; `time` is seconds from the log start.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.errors import InputError, fields_of
from scenes.lens import CameraModel
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
    """One camera view: intrinsics, pose, capture time and lens."""

    intrinsics: Intrinsics
    T_world_cam: np.ndarray
    time: float = 0.0
    name: str = ""
    lens: CameraModel | None = None
    """The lens when it is not the ideal pinhole of ``intrinsics`` (OpenCV distortion, fisheye):
    rays and projections follow it; its size, focal lengths and centre are the intrinsics'."""

    def __post_init__(self):
        T = np.asarray(self.T_world_cam, dtype=np.float64)
        if not is_rigid(T):
            raise InputError(f"camera {self.name or ''}".strip(), "T_world_cam", "expected a finite 4x4 rigid transform")
        object.__setattr__(self, "T_world_cam", T)
        if not np.isfinite(self.time):
            raise InputError(f"camera {self.name}", "time", "must be finite")
        K, L = self.intrinsics, self.lens
        if L is not None and (L.width, L.height, L.fx, L.fy, L.cx, L.cy) != (K.width, K.height, K.fx, K.fy, K.cx, K.cy):
            raise InputError(f"camera {self.name}", "lens", "its size, focal lengths and centre must be the intrinsics'")

    @property
    def model(self) -> CameraModel:
        """The camera's lens model (pinhole when it has no ``lens``)."""
        return self.lens if self.lens is not None else CameraModel.from_intrinsics(self.intrinsics)


def pixel_rays(intrinsics: Intrinsics, T_world_cam: np.ndarray, lens: CameraModel | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre, row-major ``[H, W]``, through ``lens`` (default:
    the pinhole of ``intrinsics``).

    Returns ``origins [H, W, 3]``, unit ``directions [H, W, 3]`` and ``z_per_dist [H, W]``, the
    camera-z component of each unit direction (z-depth = ray distance * z_per_dist).
    """
    K = intrinsics
    if lens is not None:
        d_cam = lens.pixel_directions()[0]
    else:
        uu, vv = np.meshgrid(np.arange(K.width) + 0.5, np.arange(K.height) + 0.5)
        d_cam = np.stack([(uu - K.cx) / K.fx, (vv - K.cy) / K.fy, np.ones_like(uu)], axis=-1)
        d_cam /= np.linalg.norm(d_cam, axis=-1, keepdims=True)
    T = np.asarray(T_world_cam, dtype=np.float64)
    dirs = d_cam @ T[:3, :3].T
    origins = np.broadcast_to(T[:3, 3], dirs.shape).copy()
    return origins, dirs, d_cam[..., 2].copy()
