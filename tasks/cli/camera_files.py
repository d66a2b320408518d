"""Camera files: nerfsim's ``cameras.json`` and nerfstudio's ``camera_path.json``.

nerfsim format (OpenCV camera axes, ``T_world_cam`` maps camera to world, time in seconds)::

    {"cameras": [{"name": "front_000", "time": 0.0,
                  "intrinsics": {"width": 320, "height": 180, "fx": .., "fy": .., "cx": .., "cy": ..},
                  "T_world_cam": [[...4 rows of 4...]]}]}

A camera may give a lens model instead of pinhole ``intrinsics`` (`scenes.lens.CameraModel`):
``"model": {"kind": "opencv" | "fisheye" | "equirectangular" | "pinhole", "width", "height", "fx",
"fy", "cx", "cy", "distortion": [...], "max_fov_deg"}``.

nerfstudio ``camera_path.json`` (as written by its viewer): ``render_width``, ``render_height``,
``camera_path[i].camera_to_world`` (16 numbers, row-major, OpenGL camera axes), ``camera_path[i].fov``
(vertical, degrees), optional ``fps`` and ``camera_type`` (``perspective``, ``fisheye``: equidistant
with the same vertical fov, ``equirectangular``); entry i is taken at time ``i / fps`` unless it has
``time``.
It is converted to OpenCV axes once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.errors import InputError, read_json_object
from scenes.files import atomic_write_json
from scenes.transforms import opengl_to_opencv, rigid_pose
from scenes.lens import CameraModel


@dataclass(frozen=True)
class View:
    """One camera to render: its lens, pose and time."""

    name: str
    model: CameraModel
    T_world_cam: np.ndarray
    time: float


def _flat_pose(value, src, field) -> np.ndarray:
    """nerfstudio's ``camera_to_world``: 16 numbers, row-major (or 4 rows of 4)."""
    if isinstance(value, list) and len(value) == 16 and all(isinstance(v, (int, float)) for v in value):
        value = [value[i:i + 4] for i in range(0, 16, 4)]
    return rigid_pose(value, src, field)


def _time(value, src, field) -> float:
    if not isinstance(value, (int, float)) or not np.isfinite(value):
        raise InputError(src, field, "expected seconds (a finite number)")
    return float(value)


def _nerfstudio_path(d: dict, src: Path) -> list[View]:
    for key in ("render_width", "render_height"):
        if not isinstance(d.get(key), (int, float)) or d[key] <= 0:
            raise InputError(src, key, "expected a positive number")
    W, H = int(d["render_width"]), int(d["render_height"])
    fps = float(d.get("fps", 10.0))
    cams = []
    for i, entry in enumerate(d["camera_path"]):
        where = f"camera_path[{i}]"
        if not isinstance(entry, dict) or "camera_to_world" not in entry or "fov" not in entry:
            raise InputError(src, where, "expected 'camera_to_world' (16 numbers) and 'fov' (degrees)")
        fov = entry["fov"]
        if not isinstance(fov, (int, float)) or not 0 < fov < 180:
            raise InputError(src, f"{where}.fov", f"expected a vertical field of view in (0, 180) degrees, got {fov!r}")
        kind = d.get("camera_type", "perspective")
        if kind == "equirectangular":
            model = CameraModel("equirectangular", W, H)
        elif kind in ("perspective", "fisheye"):
            # perspective: tan(fov/2) = (H/2) / f; equidistant fisheye: fov/2 = (H/2) / f
            half = 0.5 * np.radians(fov)
            f = 0.5 * H / (np.tan(half) if kind == "perspective" else half)
            model = CameraModel("pinhole" if kind == "perspective" else "fisheye", W, H, f, f, W / 2, H / 2)
        else:
            raise InputError(src, "camera_type", f"expected perspective, fisheye or equirectangular, got {kind!r}")
        T = opengl_to_opencv(_flat_pose(entry["camera_to_world"], src, f"{where}.camera_to_world"))
        cams.append(View(f"frame_{i:05d}", model, T, _time(entry.get("time", i / fps), src, f"{where}.time")))
    return cams


def _nerfsim_cameras(d: dict, src: Path) -> list[View]:
    cams = []
    if not isinstance(d.get("cameras"), list):
        raise InputError(src, "cameras", "expected a list of cameras")
    for i, c in enumerate(d["cameras"]):
        where = f"cameras[{i}]"
        if not isinstance(c, dict):
            raise InputError(src, where, "expected an object")
        if "T_world_cam" not in c:
            raise InputError(src, f"{where}.T_world_cam", "missing")
        if "model" in c:
            model = CameraModel.from_dict(c["model"], source=f"{src}: {where}.model")
        elif "intrinsics" in c:
            model = CameraModel.from_intrinsics(Intrinsics.from_dict(c["intrinsics"], source=f"{src}: {where}.intrinsics"))
        else:
            raise InputError(src, f"{where}.intrinsics", "missing (or give a lens 'model')")
        cams.append(View(str(c.get("name", f"cam_{i:05d}")), model, rigid_pose(c["T_world_cam"], src, f"{where}.T_world_cam"),
                         _time(c.get("time", 0.0), src, f"{where}.time")))
    return cams


def load_views(path: str | Path) -> list[View]:
    """Views (any lens) from a nerfsim ``cameras.json`` or a nerfstudio ``camera_path.json``."""
    src = Path(path)
    d = read_json_object(src, "no such cameras file", "an object with 'cameras' or 'camera_path'")
    views = _nerfstudio_path(d, src) if "camera_path" in d else _nerfsim_cameras(d, src)
    if not views:
        raise InputError(src, "cameras", "no cameras")
    return views


def load_cameras(path: str | Path) -> list[Camera]:
    """Pinhole cameras from a cameras file (other lenses are refused: use `load_views`)."""
    cams = []
    for i, v in enumerate(load_views(path)):
        if v.model.kind != "pinhole":
            raise InputError(path, f"cameras[{i}].model.kind", f"this command needs pinhole cameras, got '{v.model.kind}'")
        m = v.model
        cams.append(Camera(Intrinsics(m.width, m.height, m.fx, m.fy, m.cx, m.cy), v.T_world_cam, v.time, v.name))
    return cams


def view_of(camera: Camera) -> View:
    return View(camera.name, CameraModel.from_intrinsics(camera.intrinsics), camera.T_world_cam, camera.time)


def cameras_to_dict(cameras: list[Camera]) -> dict:
    return {"cameras": [{"name": c.name, "time": c.time, "intrinsics": c.intrinsics.to_dict(),
                         "T_world_cam": np.asarray(c.T_world_cam).tolist()} for c in cameras]}


def save_cameras(cameras: list[Camera], path: str | Path) -> None:
    atomic_write_json(path, cameras_to_dict(cameras))
