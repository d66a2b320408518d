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

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.capture import FORMAT_DOC, FORMAT_NAME, FORMAT_VERSION
from scenes.errors import InputError
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

    @staticmethod
    def tiny() -> "CaptureConfig":
        """Small images and a sparse LiDAR, for tests."""
        return CaptureConfig(name="tiny", width=96, height=54, lidar=LidarConfig(n_beams=16, n_azimuth=128))

    def T_ego_lidar(self) -> np.ndarray:
        return make_pose(np.eye(3), self.lidar_position)

    def intrinsics(self, spec: CameraSpec) -> Intrinsics:
        return Intrinsics.from_fov(self.width, self.height, spec.hfov_deg)


# -------------------------------------------------------------------------------------- writing
def _progress(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("[cyan]{task.fields[rate]}"),
                    TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), disable=not enabled)


def _frame_record(i: int, t: float, T_world_ego: np.ndarray, cfg: CaptureConfig) -> dict:
    images = {c.name: {"path": f"images/{c.name}/{i:06d}.png", "semantic_path": f"semantics/{c.name}/{i:06d}.png",
                       "T_world_cam": (T_world_ego @ c.T_ego_cam()).tolist()} for c in cfg.cameras}
    lidar = {"path": f"lidar/{i:06d}.npy", "T_world_lidar": (T_world_ego @ cfg.T_ego_lidar()).tolist()}
    return {"index": i, "time": t, "T_world_ego": T_world_ego.tolist(), "images": images, "lidar": lidar}


def _write_frame(root: Path, rec: dict, twin: Twin, state, cfg: CaptureConfig) -> None:
    for spec in cfg.cameras:
        img = rec["images"][spec.name]
        cam = Camera(cfg.intrinsics(spec), np.array(img["T_world_cam"]), rec["time"], spec.name)
        products = twin.render(cam, state)
        iio.imwrite(root / img["path"], np.round(np.clip(products["rgb"], 0, 1) * 255).astype(np.uint8))
        iio.imwrite(root / img["semantic_path"], products["semantic"].astype(np.uint8))
    sweep = twin.lidar(np.array(rec["lidar"]["T_world_lidar"]), cfg.lidar.directions(), state, cfg.lidar.max_range)
    arr = np.concatenate([sweep["dirs_lidar"], sweep["range"][:, None]], axis=1).astype(np.float32)
    np.save(root / rec["lidar"]["path"], arr)


def _header(world, cfg: CaptureConfig) -> dict:
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": cfg.name,
        "world": {"seed": world.config.seed, "config": world.config.to_dict()},
        "cameras": [{"name": c.name, "intrinsics": cfg.intrinsics(c).to_dict(), "T_ego_cam": c.T_ego_cam().tolist()}
                    for c in cfg.cameras],
        "lidar": {"T_ego_lidar": cfg.T_ego_lidar().tolist(), **asdict(cfg.lidar)},
    }


def generate_capture_log(world, cfg: CaptureConfig | None = None, out_dir: str | Path = "capture_log",
                         progress: bool = True, overwrite: bool = False) -> Path:
    """Drive the ego down ``world``'s route, render every camera + LiDAR at ``cfg.fps`` with the twin,
    and write a capture log (format in the module docstring) atomically to ``out_dir``. Returns its path."""
    cfg = cfg or CaptureConfig()
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise InputError(out_dir, None, "output folder exists; pass overwrite=True or choose another folder")
    tmp = out_dir.parent / f"{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for c in cfg.cameras:
            (tmp / "images" / c.name).mkdir(parents=True)
            (tmp / "semantics" / c.name).mkdir(parents=True)
        (tmp / "lidar").mkdir()
        _write_frames(world, cfg, tmp, progress)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_frames(world, cfg: CaptureConfig, root: Path, progress: bool) -> None:
    duration = world.duration if cfg.duration is None else cfg.duration
    times = np.arange(int(np.floor(duration * cfg.fps + 1e-9)) + 1) / cfg.fps
    twin, log, frames = Twin(world), _header(world, cfg), []
    with _progress(progress) as bar:
        task = bar.add_task(f"capture {cfg.name}", total=len(times), rate="")
        for i, t in enumerate(times):
            rec = _frame_record(i, float(t), world.T_world_ego(float(t)), cfg)
            _write_frame(root, rec, twin, world.graph.at(float(t)), cfg)
            frames.append(rec)
            speed = bar.tasks[0].speed
            bar.update(task, advance=1, rate=f"{speed:.1f} frames/s" if speed else "")
    log["frames"], log["scene"] = frames, world.graph.to_dict()
    (root / "log.json").write_text(json.dumps(log, indent=1))
    (root / "README.md").write_text(f"# nerfsim capture log '{cfg.name}'\n\n{FORMAT_DOC}")
