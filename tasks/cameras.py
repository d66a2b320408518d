"""Camera files: nerfsim's ``cameras.json`` and nerfstudio's ``camera_path.json``.

nerfsim format (OpenCV camera axes, ``T_world_cam`` maps camera to world, time in seconds)::

    {"cameras": [{"name": "front_000", "time": 0.0,
                  "intrinsics": {"width": 320, "height": 180, "fx": .., "fy": .., "cx": .., "cy": ..},
                  "T_world_cam": [[...4 rows of 4...]]}]}

nerfstudio ``camera_path.json`` (as written by its viewer): ``render_width``, ``render_height``,
``camera_path[i].camera_to_world`` (16 numbers, row-major, OpenGL camera axes), ``camera_path[i].fov``
(vertical, degrees), optional ``fps``; entry i is taken at time ``i / fps`` unless it has ``time``.
It is converted to OpenCV axes once, here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.errors import InputError, read_json_object
from scenes.transforms import opengl_to_opencv


def _pose(value, src, field) -> np.ndarray:
    try:
        T = np.asarray(value, dtype=np.float64).reshape(4, 4)
    except (TypeError, ValueError):
        raise InputError(src, field, "expected a 4x4 matrix (nested lists or 16 numbers)") from None
    return T


def _camera(src, field, **kw) -> Camera:
    try:
        return Camera(**kw)
    except InputError as e:
        raise InputError(src, f"{field}.{e.field}" if e.field else field, e.problem) from None


def _nerfstudio_path(d: dict, src: Path) -> list[Camera]:
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
        f = 0.5 * H / np.tan(0.5 * np.radians(fov))
        K = Intrinsics(W, H, f, f, W / 2, H / 2)
        T = opengl_to_opencv(_pose(entry["camera_to_world"], src, f"{where}.camera_to_world"))
        cams.append(_camera(src, where, intrinsics=K, T_world_cam=T, time=float(entry.get("time", i / fps)), name=f"frame_{i:05d}"))
    return cams


def _nerfsim_cameras(d: dict, src: Path) -> list[Camera]:
    cams = []
    if not isinstance(d.get("cameras"), list):
        raise InputError(src, "cameras", "expected a list of cameras")
    for i, c in enumerate(d["cameras"]):
        where = f"cameras[{i}]"
        if not isinstance(c, dict):
            raise InputError(src, where, "expected an object")
        for key in ("intrinsics", "T_world_cam"):
            if key not in c:
                raise InputError(src, f"{where}.{key}", "missing")
        K = Intrinsics.from_dict(c["intrinsics"], source=f"{src}: {where}.intrinsics")
        time = c.get("time", 0.0)
        if not isinstance(time, (int, float)):
            raise InputError(src, f"{where}.time", "expected seconds (a number)")
        cams.append(_camera(src, where, intrinsics=K, T_world_cam=_pose(c["T_world_cam"], src, f"{where}.T_world_cam"),
                            time=float(time), name=str(c.get("name", f"cam_{i:05d}"))))
    return cams


def load_cameras(path: str | Path) -> list[Camera]:
    """Cameras from a nerfsim ``cameras.json`` or a nerfstudio ``camera_path.json``."""
    src = Path(path)
    d = read_json_object(src, "no such cameras file", "an object with 'cameras' or 'camera_path'")
    cams = _nerfstudio_path(d, src) if "camera_path" in d else _nerfsim_cameras(d, src)
    if not cams:
        raise InputError(src, "cameras", "no cameras")
    return cams


def cameras_to_dict(cameras: list[Camera]) -> dict:
    return {"cameras": [{"name": c.name, "time": c.time, "intrinsics": c.intrinsics.to_dict(),
                         "T_world_cam": np.asarray(c.T_world_cam).tolist()} for c in cameras]}


def save_cameras(cameras: list[Camera], path: str | Path) -> None:
    Path(path).write_text(json.dumps(cameras_to_dict(cameras), indent=1))
