"""What every importer of a recorded drive needs: LiDAR points as capture-log rays, and the scene box."""

from __future__ import annotations

import numpy as np


def lidar_rays_of_points(xyz: np.ndarray) -> np.ndarray:
    """Capture-log LiDAR rows ``[N, 4]`` (unit direction + range, float32) of sensor-frame points
    ``[N, 3]`` (points at the sensor itself, as some datasets pad with, are dropped)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    r = np.linalg.norm(xyz, axis=1)
    ok = r > 1e-3
    return np.concatenate([xyz[ok] / r[ok, None], r[ok, None]], axis=1).astype(np.float32)


class SceneExtent:
    """The scene box of a recorded drive, grown frame by frame: the ego path and the bulk of the
    LiDAR returns (1st-99th percentile per axis and frame, within ``reach`` metres of the ego: a
    few far returns should not stretch the box), with ``margin`` metres around."""

    def __init__(self, reach: float = 60.0, margin: float = 2.0):
        self.reach, self.margin = reach, margin
        self.lo, self.hi = np.full(3, np.inf), np.full(3, -np.inf)

    def add(self, T_world_lidar: np.ndarray, ego_position: np.ndarray, scan: np.ndarray) -> None:
        """One sweep: ``scan`` capture-log rows ``[N, 4]`` taken from ``T_world_lidar``."""
        hit = np.isfinite(scan[:, 3])
        pts = (scan[hit, :3] * scan[hit, 3:]) @ T_world_lidar[:3, :3].T + T_world_lidar[:3, 3]
        pts = pts[np.linalg.norm(pts - ego_position, axis=1) < self.reach]
        lo, hi = (np.percentile(pts, [1, 99], axis=0) if len(pts) >= 20 else (ego_position, ego_position))
        self.lo = np.minimum(self.lo, np.minimum(lo, ego_position))
        self.hi = np.maximum(self.hi, np.maximum(hi, ego_position))

    def aabb(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(float(v) for v in self.lo - self.margin), tuple(float(v) for v in self.hi + self.margin)
