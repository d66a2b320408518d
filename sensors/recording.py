"""Recording a capture log of the built-in world: drive the ego down its route and, at every frame,
render each rig camera (RGB + semantic labels) and the LiDAR with the ground-truth twin.

The log's format, and its reader, are `scenes.capture` (the format is data: training reads it
without any sensor code). `CameraSpec` is a rig camera as the recorder is told about it (name, yaw,
field of view, mount position); in a written log it becomes a `scenes.capture.CaptureCamera`.

Conventions (ARCHITECTURE.md): ego frame x forward, y left, z up, origin on the ground under the ego
vehicle's centre; cameras OpenCV; time in seconds from the start of the drive; images uint8 PNG on
disk. The LiDAR's axes are the ego's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.capture import CaptureCamera, CaptureLogWriter
from scenes.errors import InputError
from scenes.lens import CameraModel
from scenes.transforms import make_pose, rot_z
from scenes.twin import Twin
from sensors.lidar import LidarConfig


@dataclass(frozen=True)
class CameraSpec:
    """One camera of the rig, mounted on the ego (ego frame: x forward, y left, z up)."""

    name: str
    """Camera name, also its image folder (``images/<name>/``)."""
    yaw_deg: float = 0.0
    """Heading of the optical axis relative to ego +x, degrees, counter-clockwise (left positive)."""
    hfov_deg: float = 80.0
    """Horizontal field of view, degrees."""
    position: tuple[float, float, float] = (1.0, 0.0, 1.6)
    """Optical centre in the ego frame, metres."""

    def T_ego_cam(self) -> np.ndarray:
        """Camera pose in the ego frame with OpenCV axes (x right, y down, z along the optical axis)."""
        yaw = np.radians(self.yaw_deg)
        fwd = rot_z(yaw)[:, 0]
        right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
        return make_pose(np.stack([right, [0.0, 0.0, -1.0], fwd], axis=1), self.position)


def _default_rig() -> tuple[CameraSpec, ...]:
    return (CameraSpec("front", 0.0), CameraSpec("front_left", 55.0), CameraSpec("front_right", -55.0))


@dataclass(frozen=True)
class CaptureConfig:
    """What to record while driving the ego down its route."""

    name: str = "street"
    """Name of the log (written into log.json)."""
    cameras: tuple[CameraSpec, ...] = field(default_factory=_default_rig)
    """Camera rig; default front, front-left (+55 deg) and front-right (-55 deg), hfov 80 deg, 1.6 m high."""
    width: int = 320
    """Image width, pixels."""
    height: int = 180
    """Image height, pixels."""
    fps: float = 10.0
    """Frame rate, Hz (every camera and the LiDAR fire together)."""
    duration: float | None = None
    """Seconds to record; ``None`` = the world's duration."""
    lidar: LidarConfig = field(default_factory=LidarConfig)
    """Spinning LiDAR scan pattern (default `LidarConfig()`: 48 beams, -25..+30 deg, 512 azimuth
    steps, 60 m)."""
    lidar_position: tuple[float, float, float] = (0.0, 0.0, 1.9)
    """LiDAR origin in the ego frame (roof), metres; its axes are the ego axes."""
    distortion: tuple[float, ...] = ()
    """OpenCV radial-tangential coefficients ``(k1, k2, p1, p2[, k3])`` of every rig camera (e.g.
    ``(-0.3, 0.1, 0, 0)``: strong barrel, as on a wide automotive lens); empty = ideal pinhole. The
    images are rendered through the lens and log.json carries it."""
    exposure_jitter: float = 0.0
    """Auto-exposure: each image is recorded with a gain drawn uniformly in ``[1 - j, 1 + j]`` (per
    camera and frame, written in log.json as ``exposure``); 0 = every image at the reference exposure."""
    exposure_seed: int = 0
    """Seed of the exposure gains."""

    @staticmethod
    def tiny() -> "CaptureConfig":
        """Small images and a sparse LiDAR, for tests."""
        return CaptureConfig(name="tiny", width=96, height=54, lidar=LidarConfig(n_beams=16, n_azimuth=128))

    def T_ego_lidar(self) -> np.ndarray:
        return make_pose(np.eye(3), self.lidar_position)

    def intrinsics(self, spec: CameraSpec) -> Intrinsics:
        return Intrinsics.from_fov(self.width, self.height, spec.hfov_deg)

    def lens(self, spec: CameraSpec) -> CameraModel | None:
        """The camera's lens model when ``distortion`` is set (None: the pinhole of `intrinsics`)."""
        if not self.distortion:
            return None
        K = self.intrinsics(spec)
        return CameraModel("opencv", K.width, K.height, K.fx, K.fy, K.cx, K.cy, tuple(self.distortion))

    def __post_init__(self):
        if not 0.0 <= self.exposure_jitter < 1.0:
            raise InputError("CaptureConfig", "exposure_jitter", f"expected a fraction in [0, 1), got {self.exposure_jitter}")
        for spec in self.cameras:
            self.lens(spec)  # refuses a wrong number of coefficients, naming the field


# -------------------------------------------------------------------------------------- writing
def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[cyan]{task.fields[rate]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def _write_frame(writer: CaptureLogWriter, twin: Twin, world, cfg: CaptureConfig, t: float, gains: np.ndarray) -> None:
    """Render every camera (RGB x its exposure gain, semantic labels) and the LiDAR at time ``t``."""
    T_world_ego, state = world.T_world_ego(t), world.graph.at(t)
    images, labels = {}, {}
    for spec, gain in zip(cfg.cameras, gains):
        cam = Camera(cfg.intrinsics(spec), T_world_ego @ spec.T_ego_cam(), t, spec.name, cfg.lens(spec))
        products = twin.render(cam, state)
        images[spec.name], labels[spec.name] = products["rgb"] * gain, products["semantic"]
    sweep = twin.lidar(T_world_ego @ cfg.T_ego_lidar(), cfg.lidar.directions(), state, cfg.lidar.max_range)
    scan = np.concatenate([sweep["dirs_lidar"], sweep["range"][:, None]], axis=1)
    exposures = {c.name: g for c, g in zip(cfg.cameras, gains)} if cfg.exposure_jitter > 0 else None
    writer.add_frame(t, T_world_ego, images, scan, labels, exposures)


def generate_capture_log(world, cfg: CaptureConfig | None = None, out_dir: str | Path = "capture_log",
                         progress: bool = True, overwrite: bool = False) -> Path:
    """Drive the ego down ``world``'s route, render every camera + LiDAR at ``cfg.fps`` with the twin,
    and write a capture log (format: `scenes.capture`) atomically to ``out_dir``. Returns its path."""
    cfg = cfg or CaptureConfig()
    cams = [CaptureCamera(c.name, cfg.intrinsics(c), c.T_ego_cam(), cfg.lens(c)) for c in cfg.cameras]
    lidar = {"T_ego_lidar": cfg.T_ego_lidar(), **asdict(cfg.lidar)}
    origin = {"seed": world.config.seed, "config": world.config.to_dict()}
    with CaptureLogWriter(out_dir, cfg.name, cams, lidar, origin, overwrite, semantics=True) as writer:
        duration = world.duration if cfg.duration is None else cfg.duration
        times = np.arange(int(np.floor(duration * cfg.fps + 1e-9)) + 1) / cfg.fps
        gains = np.random.default_rng(cfg.exposure_seed).uniform(1 - cfg.exposure_jitter, 1 + cfg.exposure_jitter,
                                                                 (len(times), len(cfg.cameras)))
        twin = Twin(world)
        with _progress(progress) as bar:
            task = bar.add_task(f"capture {cfg.name}", total=len(times), rate="")
            for t, g in zip(times, gains):
                _write_frame(writer, twin, world, cfg, float(t), g)
                speed = bar.tasks[0].speed
                bar.update(task, advance=1, rate=f"{speed:.1f} frames/s" if speed else "")
        return writer.close(world.graph)
