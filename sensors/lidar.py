"""LiDAR: the scan pattern of a spinning LiDAR (`LidarConfig`), and sweeps rendered from the scene:
ranges, ray drop, actor id per point; .npy / .ply / .pcd.

Conventions: LiDAR frame x forward, y left, z up; the scan pattern is beam-major (azimuth 0 = +x,
counter-clockwise seen from above). A sweep is instantaneous
(no motion distortion). A beam returns nothing (range ``inf``, ``dropped``) when the ray escapes
(accumulation below ``min_accumulation``: transmittance stays high) or its range exceeds
``max_range``. ``range_mode`` picks the expected range (``expected``) or the first surface
(``median``: where the accumulated weight reaches 0.5; sharp at object edges).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenes.errors import InputError
from scenes.files import atomic_write
from scenes.graph import SceneState


@dataclass(frozen=True)
class LidarConfig:
    """A spinning LiDAR: evenly spaced beam elevations x evenly spaced azimuths over 360 degrees."""

    n_beams: int = 48
    """Number of beams (elevations)."""
    min_elevation_deg: float = -25.0
    """Lowest beam elevation, degrees (negative = below the horizon)."""
    max_elevation_deg: float = 30.0
    """Highest beam elevation, degrees."""
    n_azimuth: int = 512
    """Azimuth steps per revolution (azimuth 0 = +x, counter-clockwise seen from above)."""
    max_range: float = 60.0
    """Returns farther than this are dropped (range ``inf``), metres."""
    elevations_deg: tuple[float, ...] | None = None
    """Explicit beam elevations (degrees, as in a real sensor's datasheet) instead of the even spread
    between min and max; ``n_beams`` must then equal their number."""

    def __post_init__(self):
        if self.elevations_deg is not None:
            el = tuple(float(e) for e in self.elevations_deg)
            if len(el) != self.n_beams or not np.isfinite(el).all():
                raise InputError("lidar config", "elevations_deg", f"expected {self.n_beams} finite angles (n_beams), got {len(el)}")
            object.__setattr__(self, "elevations_deg", el)

    def directions(self) -> np.ndarray:
        """Unit beam directions ``[n_beams * n_azimuth, 3]`` in the LiDAR frame, beam-major."""
        el = np.radians(np.linspace(self.min_elevation_deg, self.max_elevation_deg, self.n_beams)
                        if self.elevations_deg is None else np.asarray(self.elevations_deg))
        az = np.arange(self.n_azimuth) * (2 * np.pi / self.n_azimuth)
        el, az = np.meshgrid(el, az, indexing="ij")
        d = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)
        return d.reshape(-1, 3)


@dataclass
class LidarSweep:
    """One sweep: every beam of the pattern, dropped ones included."""

    name: str
    time: float
    T_world_lidar: np.ndarray
    dirs: np.ndarray
    """Unit beam directions ``[N, 3]``, LiDAR frame."""
    range: np.ndarray
    """Metres ``[N]``, ``inf`` where dropped."""
    instance: np.ndarray
    """Actor instance id ``[N]`` int32 (0 = background or no return)."""
    semantic: np.ndarray
    """Class id ``[N]`` uint8 (0 = no return / sky)."""

    @property
    def hit(self) -> np.ndarray:
        return np.isfinite(self.range)

    def points(self) -> np.ndarray:
        """Returned points ``[M, 3]`` in the LiDAR frame (dropped beams left out)."""
        return self.dirs[self.hit] * self.range[self.hit, None]

    def save(self, path_stem: Path, formats: tuple[str, ...] = ("npy", "ply", "pcd")) -> list[Path]:
        """Write the sweep: ``.npy`` float32 ``[N, 6]`` (dir x y z, range, instance, semantic; every
        beam), ``.ply`` / ``.pcd`` of the returned points (x y z float32, instance int32, semantic uint8)."""
        path_stem = Path(path_stem)
        path_stem.parent.mkdir(parents=True, exist_ok=True)
        written = []
        if "npy" in formats:
            arr = np.concatenate([self.dirs, self.range[:, None], self.instance[:, None], self.semantic[:, None]], 1).astype(np.float32)
            written.append(_atomic(path_stem.with_suffix(".npy"), lambda p: np.save(p, arr)))
        pts, inst, sem = self.points().astype(np.float32), self.instance[self.hit].astype(np.int32), self.semantic[self.hit].astype(np.uint8)
        if "ply" in formats:
            written.append(_atomic(path_stem.with_suffix(".ply"), lambda p: write_ply(p, pts, inst, sem)))
        if "pcd" in formats:
            written.append(_atomic(path_stem.with_suffix(".pcd"), lambda p: write_pcd(p, pts, inst, sem)))
        return written


def capture_lidar(renderer, sensor, T_world_ego: np.ndarray, state: SceneState,
                  range_mode: str = "median", min_accumulation: float = 0.5) -> LidarSweep:
    """Render one sweep of ``sensor`` (a `sensors.rig.LidarSensor`: imported by the rig, not from it,
    so this module stays below the rig) mounted on an ego at ``T_world_ego``."""
    if range_mode not in ("expected", "median"):
        raise ValueError(f"range_mode must be 'expected' or 'median', got '{range_mode}'")
    T = sensor.pose(T_world_ego)
    dirs = sensor.pattern.directions()
    dirs_w = dirs @ T[:3, :3].T
    r = renderer.cast(np.broadcast_to(T[:3, 3], dirs_w.shape), dirs_w, state)
    rng = (r["ray_dist"] if range_mode == "expected" else r["ray_dist_median"]).astype(np.float64)
    hit = (r["accumulation"] >= min_accumulation) & (rng <= sensor.pattern.max_range)
    rng = np.where(hit, rng, np.inf)
    return LidarSweep(sensor.name, state.time, T, dirs, rng, np.where(hit, r["instance"], 0).astype(np.int32),
                      np.where(hit, r["semantic"], 0).astype(np.uint8))


_atomic = atomic_write


def _point_records(xyz: np.ndarray, instance: np.ndarray, semantic: np.ndarray) -> np.ndarray:
    """Packed little-endian records x y z (float32), instance (int32), semantic (uint8)."""
    dt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("instance", "<i4"), ("semantic", "u1")])
    rec = np.empty(len(xyz), dtype=dt)
    rec["x"], rec["y"], rec["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    rec["instance"], rec["semantic"] = instance, semantic
    return rec


def write_ply(path: Path, xyz: np.ndarray, instance: np.ndarray, semantic: np.ndarray) -> None:
    """Binary little-endian PLY with per-vertex ``instance`` (int) and ``semantic`` (uchar)."""
    rec = _point_records(xyz, instance, semantic)
    header = ("ply\nformat binary_little_endian 1.0\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property int instance\nproperty uchar semantic\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())


def write_pcd(path: Path, xyz: np.ndarray, instance: np.ndarray, semantic: np.ndarray) -> None:
    """PCD v0.7, binary, fields x y z instance semantic."""
    rec = _point_records(xyz, instance, semantic)
    header = ("# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS x y z instance semantic\n"
              "SIZE 4 4 4 4 1\nTYPE F F F I U\nCOUNT 1 1 1 1 1\n"
              f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\nDATA binary\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
