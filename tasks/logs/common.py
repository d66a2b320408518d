"""What the importers and exporters of recorded drives share: LiDAR points as capture-log rays, the
scene box of a drive, labelled boxes as actor tracks, roll-pitch-yaw attitudes, images in, atomic
exports out, the import summary."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from scenes.capture import CaptureCamera, CaptureLog, read_image_file
from scenes.classes import CLASS_IDS, UNLABELLED
from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack


def read_point_file(path: Path, columns: tuple[str, ...], with_sky: bool = False) -> np.ndarray:
    """A dataset's binary LiDAR sweep (float32 rows of ``columns``, x y z first) as capture-log rows
    ``[N, 4]``: unit direction + range, float32 (points at the sensor itself, as some datasets pad
    with, are dropped); ``with_sky`` (``columns`` has ``ring``): plus the upward beams' misses
    (`sky_misses`). `InputError` naming the file when it is missing or not whole rows."""
    if not path.is_file():
        raise InputError(path, None, "LiDAR sweep missing")
    raw = np.fromfile(path, dtype=np.float32)
    if raw.size % len(columns):
        raise InputError(path, None, f"expected float32 rows of {' '.join(columns)}, got {raw.size} numbers")
    raw = raw.reshape(-1, len(columns))
    rays = points_to_rays(raw[:, :3])
    if not with_sky:
        return rays
    ring = raw[np.linalg.norm(raw[:, :3].astype(np.float64), axis=1) > 1e-3, columns.index("ring")]
    return np.concatenate([rays, sky_misses(rays[:, :3], ring)])


def points_to_rays(xyz: np.ndarray) -> np.ndarray:
    """LiDAR returns ``[N, 3]`` in the LiDAR frame as capture-log rows ``[N, 4]``: unit direction +
    range, float32; points at the sensor itself (some datasets pad with them) are dropped."""
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    r = np.linalg.norm(xyz, axis=1)
    ok = r > 1e-3
    return np.concatenate([xyz[ok] / r[ok, None], r[ok, None]], axis=1).astype(np.float32)


def class_lut(classes: dict[int, str | None], size: int = 256) -> np.ndarray:
    """A dataset's label ids -> nerfsim class ids (`scenes.classes`) as a lookup table ``[size]``
    (uint8): ``classes`` maps each id to a class name, or None for an id nerfsim has no class for;
    those and every id not in ``classes`` are `scenes.classes.UNLABELLED`."""
    lut = np.full(size, UNLABELLED, np.uint8)
    for label, name in classes.items():
        if name is not None and label < size:
            lut[label] = CLASS_IDS[name]
    return lut


def label_lut(ids_of_class: dict[str, int], unlabelled: int, dtype=np.uint8) -> np.ndarray:
    """nerfsim class ids -> a dataset's label ids ``[256]`` (the exporters' side of `class_lut`):
    ``ids_of_class`` maps class names to ids; every other id (`scenes.classes.UNLABELLED` too) gets
    ``unlabelled``."""
    lut = np.full(256, unlabelled, dtype)
    for name, label in ids_of_class.items():
        lut[CLASS_IDS[name]] = label
    return lut


SKY_MIN_ELEVATION_DEG = 2.0
"""`sky_misses`: beams at least this far above the LiDAR's horizon count as looking at the sky."""


def sky_misses(dirs: np.ndarray, ring: np.ndarray, min_elevation_deg: float = SKY_MIN_ELEVATION_DEG) -> np.ndarray:
    """The rays of a spinning LiDAR's upward beams that came back empty, rebuilt from a sweep's
    returns: capture-log rows ``[M, 4]`` (unit direction in the LiDAR frame, range inf).

    Datasets keep returns only (nuScenes, AV2); the rays that hit nothing tell training where space
    is empty (the sky), and without them the sky is left to the far-field model alone. A beam
    (``ring`` index per return; its elevation the median of its returns', kept only when they agree
    within 0.5 deg) fires at evenly spaced azimuths: the step is the most common gap between
    neighbouring returns of the densest beams, the phase each beam's own offset (the sweep's common one
    for a beam with under 20 returns). Every step of a beam at least ``min_elevation_deg`` up with no
    return there nor at either neighbouring step is a miss (an empty step beside a return is as
    likely a dropped return or azimuth jitter as sky). Downward beams are left alone: a
    miss there is as often a black car or a window as nothing. Too few returns to tell the pattern:
    no misses."""
    dirs = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    ring = np.asarray(ring).reshape(-1).astype(np.int64)
    none = np.zeros((0, 4), np.float32)
    if len(dirs) < 100:
        return none
    az = np.arctan2(dirs[:, 1], dirs[:, 0])
    el = np.degrees(np.arcsin(np.clip(dirs[:, 2], -1, 1)))
    beams = [(r, np.flatnonzero(ring == r)) for r in np.unique(ring)]
    beams = [(r, idx) for r, idx in beams if len(idx) >= 3 and np.subtract(*np.percentile(el[idx], [75, 25])) < 0.5]
    dense = sorted(beams, key=lambda b: -len(b[1]))[: max(1, len(beams) // 4)]
    gaps = np.concatenate([np.diff(np.sort(az[idx])) for _, idx in dense]) if dense else np.zeros(0)
    gaps = gaps[gaps > 1e-5]
    if len(gaps) < 50:
        return none
    step = float(np.median(gaps[gaps < 2 * np.percentile(gaps, 25)]))  # the firing step, not the gaps where returns dropped
    n_az = int(round(2 * np.pi / step))
    if n_az < 16:
        return none
    step = 2 * np.pi / n_az
    phase_of = lambda a: float(np.angle(np.mean(np.exp(1j * n_az * a)))) / n_az  # noqa: E731 - azimuths: phase + k * step
    common = phase_of(az)
    cells = np.arange(n_az)
    rows = []
    for _, idx in beams:
        elevation = float(np.median(el[idx]))
        if elevation < min_elevation_deg:
            continue
        phase = phase_of(az[idx]) if len(idx) >= 20 else common  # lasers of one head may fire a little apart
        hit = np.zeros(n_az, bool)
        hit[np.round((az[idx] - phase) / step).astype(np.int64) % n_az] = True
        empty = ~hit & ~np.roll(hit, 1) & ~np.roll(hit, -1)  # next to a return, a gap is a dropout or jitter, not sky
        a = phase + cells[empty] * step
        e = np.radians(elevation)
        d = np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.full_like(a, np.sin(e))], -1)
        rows.append(np.concatenate([d, np.full((len(d), 1), np.inf)], 1))
    return np.concatenate(rows).astype(np.float32) if rows else none


def rpy_matrix(roll, pitch, yaw) -> np.ndarray:
    """``Rz(yaw) @ Ry(pitch) @ Rx(roll)`` (the 3-2-1 Euler attitude of KITTI's OXTS and Waymo's
    per-pixel LiDAR poses), for scalars or arrays of angles in radians: ``[..., 3, 3]``."""
    roll, pitch, yaw = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (roll, pitch, yaw)))
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    return np.stack([np.stack([cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr], -1),
                     np.stack([sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr], -1),
                     np.stack([-sp, cp * sr, cp * cr], -1)], -2)


def actor_from_boxes(actor_id: str, class_name: str, instance_id: int, boxes: list, source: str | Path, field: str) -> Actor:
    """An actor from its labelled boxes ``[(time, T_world_box, (length, width, height)), ...]`` in any
    order: a track keyframed at the boxes (`ActorTrack`: positions linear, rotations SLERP along the
    short arc, so a heading that crosses +-pi turns the short way), its size the median of the boxes'.
    Two boxes at one time: `InputError` naming ``source`` and ``field`` (the track)."""
    rows = sorted(boxes, key=lambda r: r[0])
    times = [float(r[0]) for r in rows]
    for a, b in zip(times, times[1:]):
        if b <= a:
            raise InputError(source, field, f"labelled twice at one time: two boxes at one time ({a:.9f} s)")
    length, width, height = np.median([r[2] for r in rows], axis=0)
    return Actor(actor_id, class_name, instance_id, (float(length), float(width), float(height)),
                 ActorTrack.from_poses(times, [r[1] for r in rows]))


class SceneExtent:
    """The scene box of a recorded drive, grown frame by frame: the ego path and the bulk of the
    LiDAR returns (1st-99th percentile per axis and frame, within ``reach`` metres of the ego: a
    few far returns should not stretch the box), with ``margin`` metres around, and at least
    ``headroom`` metres above the ego's highest position: a driving LiDAR looks at most 10-15 deg
    up, so it sees facades only to ~10 m, while the cameras see them to the roofline; what sticks
    out of the box would be left to the sky model."""

    def __init__(self, reach: float = 60.0, margin: float = 2.0, headroom: float = 20.0):
        self.reach, self.margin, self.headroom = reach, margin, headroom
        self.lo, self.hi = np.full(3, np.inf), np.full(3, -np.inf)

    def add(self, T_world_lidar: np.ndarray, ego_position: np.ndarray, scan: np.ndarray) -> None:
        """One sweep: ``scan`` capture-log rows ``[N, 4]`` taken from ``T_world_lidar``."""
        hit = np.isfinite(scan[:, 3])
        pts = (scan[hit, :3] * scan[hit, 3:]) @ T_world_lidar[:3, :3].T + T_world_lidar[:3, 3]
        pts = pts[np.linalg.norm(pts - ego_position, axis=1) < self.reach]
        lo, hi = (np.percentile(pts, [1, 99], axis=0) if len(pts) >= 20 else (ego_position, ego_position))
        self.lo = np.minimum(self.lo, np.minimum(lo, ego_position))
        self.hi = np.maximum(self.hi, np.maximum(hi, ego_position + [0.0, 0.0, self.headroom - self.margin]))

    def aabb(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(float(v) for v in self.lo - self.margin), tuple(float(v) for v in self.hi + self.margin)


@dataclass
class ImportSummary:
    """What an importer wrote."""

    log: Path
    frames: int
    cameras: list[str]
    actors: int
    not_actors: dict
    """Dataset class -> labels / annotations of it that are not actors (cyclists, cones, DontCare...)."""


def read_rgb(path: Path, width: int, height: int) -> np.ndarray:
    """A dataset's image as uint8 RGB ``[height, width, 3]``, or `InputError` naming the file."""
    img = read_image_file(path)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (height, width):
        raise InputError(path, None, f"image is {img.shape[1]}x{img.shape[0]}, its camera's calibration says {width}x{height}")
    return img[..., :3].astype(np.uint8)


def export_atomically(log: CaptureLog, cameras: list[CaptureCamera], out: str | Path, fmt: str, write: Callable[[Path], None]) -> Path:
    """``write(tmp)`` a dataset folder, moved to ``out`` once whole (nothing is left on failure).
    ``cameras`` must be undistorted: driving datasets ship rectified pinhole images."""
    for c in cameras:
        if c.lens is not None and any(c.lens.distortion):
            raise InputError(log.root / "log.json", f"cameras.{c.name}.lens", f"{fmt} images are undistorted pinhole images; this camera is distorted")
    out = Path(out)
    tmp = out.parent / f"{out.name}.tmp-export"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
