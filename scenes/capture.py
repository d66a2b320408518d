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
                                            "T_ego_cam": 4x4,
                                            "lens": optional CameraModel.to_dict() (kind "opencv" or
                                                    "fisheye" + distortion; its size, focal lengths and
                                                    centre are the intrinsics'): a lens that is not the
                                                    ideal pinhole; absent = pinhole,
                                            "mask": optional "masks/<cam>.png": which pixels of this
                                                    camera see the scene (see masks/ below)}],
                               "lidar": {"T_ego_lidar": 4x4, "n_beams", "min_elevation_deg",
                                         "max_elevation_deg", "n_azimuth", "max_range",
                                         "elevations_deg": null or [n_beams angles],
                                         "returns_only": optional bool: the sweeps hold only returns
                                           (a recorded point cloud, any N), not the whole pattern},
                               "frames": [{"index": int, "time": float seconds, "T_world_ego": 4x4,
                                           "images": {cam_name: {"path": "images/<cam>/000000.png",
                                                                 "semantic_path": "semantics/<cam>/000000.png",
                                                                 "T_world_cam": 4x4,
                                                                 "exposure": optional float, the gain the
                                                                   image was recorded with (ground truth of
                                                                   a simulated exposure change; 1 = reference),
                                                                 "time": optional float, when this image was
                                                                   taken if not at the frame's time (a
                                                                   recorded rig's cameras fire apart),
                                                                 "T_world_ego": optional 4x4, the ego pose at
                                                                   that time}},
                                           "lidar": {"path": "lidar/000000.npy", "T_world_lidar": 4x4}}],
                               "scene": SceneGraph.to_dict() (aabb + actors: class, instance id, size, track)}
    images/<cam>/<frame>.png  uint8 RGB, width x height of that camera
    semantics/<cam>/<frame>.png  optional: uint8 per-pixel class ids of that image (0 sky, 1 road,
                              2 lane_marking, 3 sidewalk, 4 building, 5 pole, 6 tree, 7 car,
                              8 pedestrian, 255 unlabelled), as a labelled driving dataset provides
    masks/<cam>.png           optional: uint8, width x height of that camera; 0 where the camera sees
                              the ego vehicle itself (its hood, body, a mount) in every image, not
                              the scene: those pixels are never trained on nor scored; 255 elsewhere
    lidar/<frame>.npy         float32 [N, 4]: unit direction in the LiDAR frame (x, y, z) + range in
                              metres (inf = no return); N = n_beams * n_azimuth, beam-major (any N
                              with returns_only)

4x4 poses are row-major nested lists. For every image T_world_cam = T_world_ego @ T_ego_cam (the
image's own T_world_ego where it has one, else the frame's) and
T_world_lidar = T_world_ego @ T_ego_lidar. Paths are relative to the log folder. Cameras are
OpenCV; the ego frame's origin is on the ground under the centre of the ego vehicle (an imported
drive's is its dataset's vehicle frame, see its importer). A log is written into
``<out_dir>.tmp-<pid>`` and renamed to ``<out_dir>`` only when complete (`CaptureLogWriter`).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.errors import InputError, read_json_object
from scenes.graph import SceneGraph
from scenes.lens import CameraModel
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
    lens: CameraModel | None = None
    """The lens when it is not the ideal pinhole of ``intrinsics``."""
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    """bool ``[H, W]``: False where the camera sees the ego vehicle itself, not the scene (the
    log's ``masks/<cam>.png``); None: every pixel sees the scene."""


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
    exposures: dict = field(default_factory=dict)
    """Camera name -> the gain its image was recorded with, where the log states one."""
    image_times: dict = field(default_factory=dict)
    """Camera name -> when its image was taken, where that is not the frame's ``time``."""


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
        """The `Camera` (intrinsics, pose, time, name, lens) of one image."""
        spec = next(c for c in self.cameras if c.name == cam_name)
        return Camera(spec.intrinsics, frame.T_world_cams[cam_name], frame.image_times.get(cam_name, frame.time), cam_name, spec.lens)

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
        lens = None
        if c.get("lens") is not None:
            lens = CameraModel.from_dict(_field(c, "lens", src, where, dict), source=f"{src}: {where}.lens")
            if (lens.width, lens.height, lens.fx, lens.fy, lens.cx, lens.cy) != (K.width, K.height, K.fx, K.fy, K.cx, K.cy):
                raise InputError(src, f"{where}.lens", "its width, height, fx, fy, cx, cy must be the intrinsics'")
        mask = _read_mask(src.parent, src, c, where, K) if c.get("mask") is not None else None
        cams.append(CaptureCamera(str(_field(c, "name", src, where, str)), K, T_ego_cam, lens, mask))
    if not cams:
        raise InputError(src, "cameras", "expected at least one camera")
    return cams


def _read_mask(root: Path, src: Path, camera: dict, where: str, K: Intrinsics) -> np.ndarray:
    """A camera's ego mask (``masks/<cam>.png``) as bool ``[H, W]``, True where it sees the scene."""
    return read_mask_image(root / str(_field(camera, "mask", src, where, str)), K.width, K.height, f"{where}.mask")


def read_image_file(path: Path, field_name: str | None = None, what: str = "image") -> np.ndarray:
    """An image file's pixels as stored, or `InputError` naming the file (and ``field_name``) when it
    is missing or unreadable."""
    if not Path(path).is_file():
        raise InputError(path, field_name, f"{what} missing")
    try:
        return np.asarray(iio.imread(path))
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(path, field_name, f"unreadable {what} ({e})") from None


def read_mask_image(path: Path, width: int, height: int, field_name: str | None = None) -> np.ndarray:
    """An ego mask image (0 = the ego vehicle, anything else = scene; grey, RGB or RGBA) as bool
    ``[height, width]``, True where the camera sees the scene; `InputError` naming the file (and
    ``field_name``) when it is missing, unreadable, another size or masks every pixel."""
    m = read_image_file(path, field_name, "mask image")
    if m.ndim == 3:
        m = m[..., :3].max(-1)
    if m.shape != (height, width):
        raise InputError(path, field_name, f"mask is {m.shape[1]}x{m.shape[0]}, the camera's images {width}x{height}")
    if not m.any():
        raise InputError(path, field_name, "masks out every pixel (0 everywhere); 0 marks the ego vehicle, anything else the scene")
    return m > 0


def _read_frame(root: Path, src: Path, i: int, f: dict, cams: list[CaptureCamera], n_lidar) -> CaptureFrame:
    where = f"frames[{i}]"
    T_we = _pose(_field(f, "T_world_ego", src, where), src, f"{where}.T_world_ego")
    images = _field(f, "images", src, where, dict)
    paths, poses, sem_paths, exposures, image_times = {}, {}, {}, {}, {}
    for cam in cams:
        w = f"{where}.images.{cam.name}"
        img = _field(images, cam.name, src, f"{where}.images", dict)
        path = root / str(_field(img, "path", src, w, str))
        T_wc = _pose(_field(img, "T_world_cam", src, w), src, f"{w}.T_world_cam")
        T_we_img = _pose(img["T_world_ego"], src, f"{w}.T_world_ego") if "T_world_ego" in img else T_we
        if not np.allclose(T_wc, T_we_img @ cam.T_ego_cam, atol=1e-4):
            raise InputError(src, f"{w}.T_world_cam", "inconsistent with T_world_ego @ T_ego_cam")
        if "time" in img:
            t_img = _field(img, "time", src, w, (int, float))
            if not np.isfinite(t_img):
                raise InputError(src, f"{w}.time", "must be finite")
            image_times[cam.name] = float(t_img)
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
        if "exposure" in img:
            gain = _field(img, "exposure", src, w, (int, float))
            if not (np.isfinite(gain) and gain > 0):
                raise InputError(src, f"{w}.exposure", f"expected a positive gain, got {gain}")
            exposures[cam.name] = float(gain)
    lid = _field(f, "lidar", src, where, dict)
    lidar_path = root / str(_field(lid, "path", src, f"{where}.lidar", str))
    _check_lidar(lidar_path, f"{where}.lidar.path", n_lidar)
    T_wl = _pose(_field(lid, "T_world_lidar", src, f"{where}.lidar"), src, f"{where}.lidar.T_world_lidar")
    time = _field(f, "time", src, where, (int, float))
    if not np.isfinite(time):
        raise InputError(src, f"{where}.time", "must be finite")
    return CaptureFrame(int(_field(f, "index", src, where, int)), float(time), T_we, paths, poses, lidar_path, T_wl,
                        sem_paths, exposures, image_times)


def read_capture_log(path: str | Path) -> CaptureLog:
    """Read and validate a capture log folder; raises `InputError` naming the file and field on any problem."""
    root = Path(path)
    src, log = _load_json(root)
    cams = _read_cameras(log, src)
    lidar = dict(_field(log, "lidar", src, "", dict))
    lidar["T_ego_lidar"] = _pose(_field(lidar, "T_ego_lidar", src, "lidar"), src, "lidar.T_ego_lidar")
    try:  # a point cloud of returns (a recorded drive's LiDAR) may have any size
        n_lidar = None if lidar.get("returns_only") else int(lidar["n_beams"]) * int(lidar["n_azimuth"])
    except (KeyError, TypeError, ValueError):
        n_lidar = None
    frames = [_read_frame(root, src, i, f, cams, n_lidar) for i, f in enumerate(_field(log, "frames", src, "", list))]
    if not frames:
        raise InputError(src, "frames", "expected at least one frame")
    scene = SceneGraph.from_dict(_field(log, "scene", src, "", dict), source=f"{src}: scene")
    world = _field(log, "world", src, "", dict)
    return CaptureLog(root, str(log.get("name", root.name)), world, cams, lidar, frames, scene)


def set_camera_masks(path: str | Path, masks: dict) -> CaptureLog:
    """Give cameras of the capture log at ``path`` ego masks (``masks``: camera name -> bool
    ``[H, W]``, False where the camera sees the ego vehicle; None removes a camera's mask), in place:
    the mask PNGs are written first and log.json is replaced in one rename, so a kill leaves the
    log as it was or as it should be. Returns the log read back."""
    log = read_capture_log(path)
    root, names = Path(path), {c.name: c for c in log.cameras}
    src = root / "log.json"
    doc = json.loads(src.read_text())
    checked = {}
    for name, mask in masks.items():  # every mask checked before anything is written
        if name not in names:
            raise InputError(src, "cameras", f"no camera '{name}' in this log (it has {', '.join(names)})")
        if mask is not None:
            K = names[name].intrinsics
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != (K.height, K.width):
                raise InputError(f"mask of camera '{name}'", None, f"expected {K.width}x{K.height} pixels, got {mask.shape[1]}x{mask.shape[0]}")
            if not mask.any():
                raise InputError(f"mask of camera '{name}'", None, "masks out every pixel")
        checked[name] = mask
    for name, mask in checked.items():
        entry = next(c for c in doc["cameras"] if c["name"] == name)
        if mask is None:
            entry.pop("mask", None)
            continue
        (root / "masks").mkdir(exist_ok=True)
        png = root / "masks" / f"{name}.png"
        tmp = png.with_name(f".{png.name}.tmp-{os.getpid()}.png")
        iio.imwrite(tmp, np.where(mask, 255, 0).astype(np.uint8))
        os.replace(tmp, png)
        entry["mask"] = f"masks/{name}.png"
    _replace_log_json(src, doc)
    return read_capture_log(root)


def set_scene(path: str | Path, scene: SceneGraph) -> CaptureLog:
    """Replace the actors' ``scene`` of the capture log at ``path``, in place (log.json is replaced in
    one rename). Returns the log read back."""
    src = read_capture_log(path).root / "log.json"
    doc = json.loads(src.read_text())
    doc["scene"] = scene.to_dict()
    _replace_log_json(src, doc)
    return read_capture_log(path)


def _replace_log_json(src: Path, doc: dict) -> None:
    tmp = src.with_name(f".log.json.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, src)


# -------------------------------------------------------------------------------------- writing
class CaptureLogWriter:
    """Writes a capture log folder frame by frame, atomically: everything goes into
    ``<out_dir>.tmp-<pid>``, renamed to ``out_dir`` by `close` once complete (use it as a context
    manager: an exception leaves nothing behind). The built-in recorder and the importers of
    recorded drives both write through it, so every log has one format.

    ``cameras``: the rig (name, intrinsics, ``T_ego_cam``, optional lens); ``lidar``: the LiDAR
    header (``T_ego_lidar`` 4x4 + scan-pattern fields, or ``returns_only: True`` for point clouds
    of any size); ``world``: what built the scene (``{}`` for a recorded drive)."""

    def __init__(self, out_dir: str | Path, name: str, cameras: list[CaptureCamera], lidar: dict, world: dict | None = None,
                 overwrite: bool = False, semantics: bool = False):
        self.out_dir = Path(out_dir)
        if self.out_dir.exists() and not overwrite:
            raise InputError(self.out_dir, None, "output folder exists; pass overwrite=True or choose another folder")
        self.cameras, self.semantics = list(cameras), semantics
        self.T_ego_lidar = rigid_pose(lidar.get("T_ego_lidar"), "capture log writer", "lidar.T_ego_lidar")
        self.header = {
            "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "name": name, "world": world or {},
            "cameras": [{"name": c.name, "intrinsics": c.intrinsics.to_dict(), "T_ego_cam": np.asarray(c.T_ego_cam).tolist(),
                         **({"lens": c.lens.to_dict()} if c.lens is not None else {}),
                         **({"mask": f"masks/{c.name}.png"} if c.mask is not None else {})} for c in self.cameras],
            "lidar": {**lidar, "T_ego_lidar": self.T_ego_lidar.tolist()},
        }
        self.frames: list[dict] = []
        self.tmp = self.out_dir.parent / f"{self.out_dir.name}.tmp-{os.getpid()}"
        shutil.rmtree(self.tmp, ignore_errors=True)
        for c in self.cameras:
            (self.tmp / "images" / c.name).mkdir(parents=True)
            if semantics:
                (self.tmp / "semantics" / c.name).mkdir(parents=True)
        (self.tmp / "lidar").mkdir(parents=True)
        for c in self.cameras:
            if c.mask is not None:
                self.set_mask(c.name, c.mask)

    def set_mask(self, camera: str, mask: np.ndarray) -> None:
        """Give ``camera`` an ego mask (bool ``[H, W]``, False where it sees the ego vehicle), any
        time before `close` (an importer that learns it from the data's labels)."""
        i = [c.name for c in self.cameras].index(camera)
        K = self.cameras[i].intrinsics
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (K.height, K.width):
            raise InputError("capture log writer", f"cameras.{camera}.mask", f"expected {K.height}x{K.width} (rows x columns), got {mask.shape}")
        (self.tmp / "masks").mkdir(exist_ok=True)
        iio.imwrite(self.tmp / "masks" / f"{camera}.png", np.where(mask, 255, 0).astype(np.uint8))
        self.header["cameras"][i]["mask"] = f"masks/{camera}.png"

    def add_frame(self, time: float, T_world_ego: np.ndarray, images: dict, lidar: np.ndarray,
                  semantics: dict | None = None, exposures: dict | None = None, image_times: dict | None = None,
                  image_ego_poses: dict | None = None) -> dict:
        """One frame: ``images`` camera name -> uint8 or float [0, 1] ``[H, W, 3]``; ``lidar`` float
        ``[N, 4]`` (unit direction in the LiDAR frame + range, inf = no return) taken at ``time`` from
        ``T_world_ego``; ``semantics`` camera name -> uint8 class ids; ``exposures`` camera name ->
        recorded gain; ``image_times`` / ``image_ego_poses`` camera name -> when that image was taken
        and the ego pose then (cameras that do not fire with the LiDAR). Returns its record."""
        i = len(self.frames)
        T_world_ego = np.asarray(T_world_ego, dtype=np.float64)
        rec = {"index": i, "time": float(time), "T_world_ego": T_world_ego.tolist(), "images": {},
               "lidar": {"path": f"lidar/{i:06d}.npy", "T_world_lidar": (T_world_ego @ self.T_ego_lidar).tolist()}}
        for c in self.cameras:
            img = np.asarray(images[c.name])
            if img.dtype != np.uint8:
                img = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
            T_we = np.asarray(image_ego_poses[c.name], dtype=np.float64) if image_ego_poses and c.name in image_ego_poses else T_world_ego
            entry = {"path": f"images/{c.name}/{i:06d}.png", "T_world_cam": (T_we @ c.T_ego_cam).tolist()}
            if image_ego_poses and c.name in image_ego_poses:
                entry["T_world_ego"] = T_we.tolist()
            if image_times and c.name in image_times:
                entry["time"] = float(image_times[c.name])
            iio.imwrite(self.tmp / entry["path"], img[..., :3])
            if self.semantics:
                entry["semantic_path"] = f"semantics/{c.name}/{i:06d}.png"
                iio.imwrite(self.tmp / entry["semantic_path"], np.asarray(semantics[c.name], dtype=np.uint8))
            if exposures is not None:
                entry["exposure"] = float(exposures[c.name])
            rec["images"][c.name] = entry
        np.save(self.tmp / rec["lidar"]["path"], np.asarray(lidar, dtype=np.float32))
        self.frames.append(rec)
        return rec

    def close(self, scene: SceneGraph) -> Path:
        """Write log.json (with the actors' ``scene``) and the README, and move the log into place."""
        (self.tmp / "log.json").write_text(json.dumps({**self.header, "frames": self.frames, "scene": scene.to_dict()}, indent=1))
        (self.tmp / "README.md").write_text(f"# nerfsim capture log '{self.header['name']}'\n\n{FORMAT_DOC}")
        if self.out_dir.exists():
            shutil.rmtree(self.out_dir)
        self.tmp.rename(self.out_dir)
        return self.out_dir

    def __enter__(self) -> "CaptureLogWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)  # a no-op after close(); the half-written log otherwise
