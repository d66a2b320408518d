"""Capture logs: the on-disk format of a multi-camera + LiDAR drive, and its validating reader.

The writer (driving the ego through the built-in world, rendering every rig camera and the LiDAR
with the ground-truth twin) is `sensors.recording`: it simulates sensors, which are the layer above.

Conventions (ARCHITECTURE.md): world z up, metres; ego/LiDAR frames x forward, y left, z up; cameras
OpenCV (x right, y down, z forward); ``T_a_b`` maps b coordinates to a coordinates; time in seconds
from the log start. Images are float32 [0, 1] in memory and uint8 RGB PNG on disk.

On-disk format
--------------
A capture log is a folder (format "nerfsim-capture-log", format_version 1):

    README.md                 this description
    log.json                  {"format": "nerfsim-capture-log", "format_version": 1, "name": str,
                               "world": {"seed": int, "config": {...WorldConfig fields...}},
                               "cameras": [{"name": str,
                                            "intrinsics": {"width", "height", "fx", "fy", "cx", "cy"},
                                            "T_ego_cam": 4x4}],
                               "lidar": {"T_ego_lidar": 4x4, "n_beams", "min_elevation_deg",
                                         "max_elevation_deg", "n_azimuth", "max_range",
                                         "elevations_deg": null or [n_beams angles]},
                               "frames": [{"index": int, "time": float seconds, "T_world_ego": 4x4,
                                           "images": {cam_name: {"path": "images/<cam>/000000.png",
                                                                 "semantic_path": "semantics/<cam>/000000.png",
                                                                 "T_world_cam": 4x4}},
                                           "lidar": {"path": "lidar/000000.npy", "T_world_lidar": 4x4}}],
                               "scene": SceneGraph.to_dict() (aabb + actors: class, instance id, size, track)}
    images/<cam>/<frame>.png  uint8 RGB, width x height of that camera
    semantics/<cam>/<frame>.png  optional: uint8 per-pixel class ids of that image (0 sky, 1 road,
                              2 lane_marking, 3 sidewalk, 4 building, 5 pole, 6 tree, 7 car,
                              8 pedestrian), as a labelled driving dataset provides
    lidar/<frame>.npy         float32 [N, 4]: unit direction in the LiDAR frame (x, y, z) + range in
                              metres (inf = no return); N = n_beams * n_azimuth, beam-major

4x4 poses are row-major nested lists. For every frame T_world_cam = T_world_ego @ T_ego_cam and
T_world_lidar = T_world_ego @ T_ego_lidar. Paths are relative to the log folder. Cameras are
OpenCV; the ego frame's origin is on the ground under the centre of the ego vehicle. A log is
written into ``<out_dir>.tmp-<pid>`` and renamed to ``<out_dir>`` only when complete.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.errors import InputError, read_json_object
from scenes.graph import SceneGraph
from scenes.transforms import rigid_pose

FORMAT_NAME = "nerfsim-capture-log"
FORMAT_VERSION = 1
FORMAT_DOC = __doc__[__doc__.index("On-disk format"):]


# -------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class CaptureCamera:
    """A rig camera as recorded in log.json."""

    name: str
    intrinsics: Intrinsics
    T_ego_cam: np.ndarray


@dataclass(frozen=True)
class CaptureFrame:
    """One time step: ego pose, one image per camera, one LiDAR sweep."""

    index: int
    time: float
    T_world_ego: np.ndarray
    image_paths: dict
    """Camera name -> absolute image path."""
    T_world_cams: dict
    """Camera name -> ``T_world_cam`` (OpenCV axes)."""
    lidar_path: Path
    T_world_lidar: np.ndarray
    semantic_paths: dict = field(default_factory=dict)
    """Camera name -> absolute path of its semantic label image (empty when the log has none)."""


@dataclass
class CaptureLog:
    """A capture log read back from disk (validated by `read_capture_log`); images load lazily."""

    root: Path
    name: str
    world: dict
    cameras: list[CaptureCamera]
    lidar: dict
    """The LiDAR entry of log.json: its scan-pattern fields (``n_beams``, ..., ``max_range``, the
    fields of `sensors.lidar.LidarConfig`) + ``T_ego_lidar``."""
    frames: list[CaptureFrame]
    scene: SceneGraph

    def camera(self, frame: CaptureFrame, cam_name: str) -> Camera:
        """The `Camera` (intrinsics, pose, time, name) of one image."""
        spec = next(c for c in self.cameras if c.name == cam_name)
        return Camera(spec.intrinsics, frame.T_world_cams[cam_name], frame.time, cam_name)

    def views(self) -> list[tuple[Camera, Path]]:
        """Every image of the log as ``(Camera, image path)``, frame-major then rig order."""
        return [(self.camera(f, c.name), f.image_paths[c.name]) for f in self.frames for c in self.cameras]

    @staticmethod
    def load_semantic(path: str | Path) -> np.ndarray:
        """A semantic label image as uint8 class ids ``[H, W]`` (`scenes.classes`)."""
        return np.asarray(iio.imread(path), dtype=np.uint8)

    @property
    def has_semantics(self) -> bool:
        return all(len(f.semantic_paths) == len(self.cameras) for f in self.frames)

    @staticmethod
    def load_image(path: str | Path) -> np.ndarray:
        """An image as float32 ``[H, W, 3]`` in [0, 1]."""
        return np.asarray(iio.imread(path), dtype=np.float32)[..., :3] / 255.0

    def lidar_rays(self, frame: int | CaptureFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World-space ``origins [N, 3]``, unit ``dirs [N, 3]`` and ``ranges [N]`` (inf = no return) of a sweep."""
        f = self.frames[frame] if isinstance(frame, int) else frame
        arr = np.load(f.lidar_path).astype(np.float64)
        dirs = arr[:, :3] @ f.T_world_lidar[:3, :3].T
        return np.broadcast_to(f.T_world_lidar[:3, 3], dirs.shape).copy(), dirs, arr[:, 3]


def _field(d, key: str, src, where: str, kind=None):
    """``d[key]``, or an InputError naming the file and the field."""
    name = f"{where}.{key}" if where else key
    if not isinstance(d, dict) or key not in d:
        raise InputError(src, name, "missing")
    if kind is not None and not isinstance(d[key], kind):
        raise InputError(src, name, f"expected {getattr(kind, '__name__', kind)}, got {type(d[key]).__name__}")
    return d[key]


def _pose(value, src, name: str) -> np.ndarray:
    return rigid_pose(value, src, name)


def _png_size(path: Path, name: str) -> tuple[int, int]:
    if not path.is_file():
        raise InputError(path, name, "image file missing")
    head = path.read_bytes()[:24]
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise InputError(path, name, "not a PNG file")
    w, h = struct.unpack(">II", head[16:24])
    return int(w), int(h)


def _check_lidar(path: Path, name: str, n_expected: int | None) -> None:
    if not path.is_file():
        raise InputError(path, name, "LiDAR file missing")
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(path, name, f"not a readable .npy array ({e})") from None
    if arr.ndim != 2 or arr.shape[1] != 4 or arr.dtype.kind != "f":
        raise InputError(path, name, f"expected a float array [N, 4] (direction xyz + range), got {arr.dtype} {arr.shape}")
    if n_expected is not None and arr.shape[0] != n_expected:
        raise InputError(path, name, f"expected {n_expected} rows (n_beams * n_azimuth), got {arr.shape[0]}")


def _load_json(root: Path) -> tuple[Path, dict]:
    if not root.is_dir():
        raise InputError(root, None, "capture log folder not found")
    src = root / "log.json"
    log = read_json_object(src, "log.json missing: not a nerfsim capture log folder")
    if _field(log, "format", src, "") != FORMAT_NAME:
        raise InputError(src, "format", f"expected '{FORMAT_NAME}', got {log['format']!r}")
    if _field(log, "format_version", src, "") != FORMAT_VERSION:
        raise InputError(src, "format_version",
                         f"unsupported version {log['format_version']!r}; this reader knows {FORMAT_VERSION}")
    return src, log


def _read_cameras(log: dict, src: Path) -> list[CaptureCamera]:
    cams = []
    for i, c in enumerate(_field(log, "cameras", src, "", list)):
        where = f"cameras[{i}]"
        K = Intrinsics.from_dict(_field(c, "intrinsics", src, where, dict), source=f"{src}: {where}.intrinsics")
        T_ego_cam = _pose(_field(c, "T_ego_cam", src, where), src, f"{where}.T_ego_cam")
        cams.append(CaptureCamera(str(_field(c, "name", src, where, str)), K, T_ego_cam))
    if not cams:
        raise InputError(src, "cameras", "expected at least one camera")
    return cams


def _read_frame(root: Path, src: Path, i: int, f: dict, cams: list[CaptureCamera], n_lidar) -> CaptureFrame:
    where = f"frames[{i}]"
    T_we = _pose(_field(f, "T_world_ego", src, where), src, f"{where}.T_world_ego")
    images = _field(f, "images", src, where, dict)
    paths, poses, sem_paths = {}, {}, {}
    for cam in cams:
        w = f"{where}.images.{cam.name}"
        img = _field(images, cam.name, src, f"{where}.images", dict)
        path = root / str(_field(img, "path", src, w, str))
        T_wc = _pose(_field(img, "T_world_cam", src, w), src, f"{w}.T_world_cam")
        if not np.allclose(T_wc, T_we @ cam.T_ego_cam, atol=1e-4):
            raise InputError(src, f"{w}.T_world_cam", "inconsistent with T_world_ego @ T_ego_cam")
        size = _png_size(path, f"{w}.path")
        if size != (cam.intrinsics.width, cam.intrinsics.height):
            raise InputError(path, f"{w}.path", f"image is {size[0]}x{size[1]}, camera '{cam.name}' expects "
                                                f"{cam.intrinsics.width}x{cam.intrinsics.height}")
        paths[cam.name], poses[cam.name] = path, T_wc
        if "semantic_path" in img:
            sem = root / str(_field(img, "semantic_path", src, w, str))
            if _png_size(sem, f"{w}.semantic_path") != size:
                raise InputError(sem, f"{w}.semantic_path", f"label image size differs from the image's {size[0]}x{size[1]}")
            sem_paths[cam.name] = sem
    lid = _field(f, "lidar", src, where, dict)
    lidar_path = root / str(_field(lid, "path", src, f"{where}.lidar", str))
    _check_lidar(lidar_path, f"{where}.lidar.path", n_lidar)
    T_wl = _pose(_field(lid, "T_world_lidar", src, f"{where}.lidar"), src, f"{where}.lidar.T_world_lidar")
    time = _field(f, "time", src, where, (int, float))
    if not np.isfinite(time):
        raise InputError(src, f"{where}.time", "must be finite")
    return CaptureFrame(int(_field(f, "index", src, where, int)), float(time), T_we, paths, poses, lidar_path, T_wl,
                        sem_paths)


def read_capture_log(path: str | Path) -> CaptureLog:
    """Read and validate a capture log folder; raises `InputError` naming the file and field on any problem."""
    root = Path(path)
    src, log = _load_json(root)
    cams = _read_cameras(log, src)
    lidar = dict(_field(log, "lidar", src, "", dict))
    lidar["T_ego_lidar"] = _pose(_field(lidar, "T_ego_lidar", src, "lidar"), src, "lidar.T_ego_lidar")
    try:
        n_lidar = int(lidar["n_beams"]) * int(lidar["n_azimuth"])
    except (KeyError, TypeError, ValueError):
        n_lidar = None
    frames = [_read_frame(root, src, i, f, cams, n_lidar) for i, f in enumerate(_field(log, "frames", src, "", list))]
    if not frames:
        raise InputError(src, "frames", "expected at least one frame")
    scene = SceneGraph.from_dict(_field(log, "scene", src, "", dict), source=f"{src}: scene")
    world = _field(log, "world", src, "", dict)
    return CaptureLog(root, str(log.get("name", root.name)), world, cams, lidar, frames, scene)
