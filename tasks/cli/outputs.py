"""`nerfsim render --outputs ...`: every sensor product of a list of cameras, written to a folder
whose README documents each file. Metric values stay metric (float32 .npy, 16-bit millimetres).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from scenes.errors import InputError
from scenes.files import atomic_write, atomic_write_text as _atomic_text
from scenes.graph import SceneGraph
from sensors.lidar import LidarConfig
from sensors.flow import correspondences
from sensors.frame import Frame, capture_camera
from sensors.lidar import capture_lidar
from sensors.rig import LidarSensor
from tasks.scenarios.labels import T_CAM_LIDAR_DEFAULT as T_CAM_LIDAR  # LiDAR axes (x forward, y left, z up) in an OpenCV camera
from tasks.cli.camera_files import View
from tasks.media import colorize_depth, colorize_ids, depth_mm, write_png

OUTPUTS = ("rgb", "depth", "normals", "semantics", "instances", "boxes", "lidar", "flow")
DEFAULT_OUTPUTS = ("rgb", "depth", "instances")


README = """# nerfsim render output

Files per camera ``<name>`` (names from the cameras file; repeated names get their index), for the
products that were asked for (``--outputs``):

| product | files | content |
|---|---|---|
| rgb | `<name>_rgb.png` | 8-bit colour |
| depth | `<name>_depth.npy`, `<name>_depth_median.npy` | float32 [H, W] metric z-depth along the optical axis (expected / first surface, metres; `inf` = sky or outside the lens) |
| | `<name>_ray_dist.npy` | float32 [H, W] distance along each pixel's ray, metres (use this for fisheye / equirectangular) |
| | `<name>_depth_mm.png` | uint16 z-depth in millimetres (0 = no return or beyond 65.535 m) |
| | `<name>_accumulation.npy` | float32 [H, W] opacity |
| normals | `<name>_normals.npy` | float32 [H, W, 3] unit normals in the camera frame, facing the camera (zero = no surface) |
| semantics | `<name>_semantic.png` | uint8 class id: {classes}; 255 = background of a scene trained without labels |
| instances | `<name>_instance.png` | uint16 actor instance id (0 = background / sky) |
| boxes | `<name>_boxes.json` | per actor: 3D box in the camera frame (centre, size l/w/h, R_cam_box), KITTI dimensions / location / rotation_y / alpha, 2D amodal and modal boxes [u_min, v_min, u_max, v_max] px, truncation, occlusion, visible pixels |
| lidar | `<name>_lidar.npy`, `.ply`, `.pcd` | a spinning LiDAR at the camera centre, LiDAR frame x = camera forward, y = left, z = up: npy float32 [N, 6] (dir xyz, range m (inf = no return), instance, semantic) for every beam; ply / pcd the returned points (x y z, instance, semantic) |
| flow | `<name>_flow.npz` | correspondences to the NEXT camera of the file: `flow` float32 [H, W, 2] (pixels in next - pixels here, NaN where none), `in_view`, `visible` bool [H, W] |

`*_vis.png` files are colour-mapped previews for looking only. Cameras follow OpenCV (x right, y
down, z forward); world z up, metres; pixel centres at integer + 0.5.
"""


def parse_outputs(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if items == ["all"]:
        return OUTPUTS
    bad = [s for s in items if s not in OUTPUTS]
    if bad or not items:
        raise InputError("--outputs", None, f"unknown products {bad}; choose from {', '.join(OUTPUTS)} (or 'all')")
    return tuple(dict.fromkeys(items))


def _frame_products(outputs: tuple[str, ...]) -> tuple[str, ...]:
    need = {"rgb", "depth", "instances", "semantics"}  # always cheap: one pass gives them
    if "normals" in outputs:
        need.add("normals")
    if "boxes" in outputs:
        need.add("boxes")
    return tuple(need)


def _atomic_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda tmp: np.save(tmp, arr))  # the temporary name keeps .npy: np.save adds none


def write_frame(out: Path, name: str, f: Frame, outputs: tuple[str, ...]) -> None:
    if "rgb" in outputs:
        write_png(out / f"{name}_rgb.png", f.rgb)
    if "depth" in outputs:
        _atomic_npy(out / f"{name}_depth.npy", f.depth.astype(np.float32))
        _atomic_npy(out / f"{name}_depth_median.npy", f.depth_median.astype(np.float32))
        _atomic_npy(out / f"{name}_ray_dist.npy", f.ray_dist.astype(np.float32))
        _atomic_npy(out / f"{name}_accumulation.npy", f.accumulation.astype(np.float32))
        write_png(out / f"{name}_depth_mm.png", depth_mm(f.depth))
        write_png(out / f"{name}_depth_vis.png", colorize_depth(f.depth))
    if "normals" in outputs:
        _atomic_npy(out / f"{name}_normals.npy", f.normals.astype(np.float32))
        write_png(out / f"{name}_normals_vis.png", (f.normals * np.array([0.5, -0.5, -0.5]) + 0.5) * (np.abs(f.normals).sum(-1, keepdims=True) > 0))
    if "semantics" in outputs:
        write_png(out / f"{name}_semantic.png", f.semantic.astype(np.uint8))
        write_png(out / f"{name}_semantic_vis.png", colorize_ids(np.where(f.semantic == 255, 0, f.semantic)))
    if "instances" in outputs:
        write_png(out / f"{name}_instance.png", f.instance.astype(np.uint16))
        write_png(out / f"{name}_instance_vis.png", colorize_ids(f.instance))
    if "boxes" in outputs:
        doc = {"camera": {"name": f.name, "time": f.time, "model": f.model.to_dict(), "T_world_cam": f.T_world_cam.tolist()},
               "boxes": [b.to_dict() for b in f.boxes]}
        _atomic_text(out / f"{name}_boxes.json", json.dumps(doc, indent=1))


def render_views(renderer, views: list[View], graph: SceneGraph, out: Path, outputs: tuple[str, ...] = DEFAULT_OUTPUTS,
                 lidar: LidarConfig | None = None, progress: bool = True) -> list[str]:
    """Render ``outputs`` of every view at ``graph.at(view.time)`` into ``out`` (see `README`).
    Returns the file stem of each view. Frames are not kept (only the previous one, for flow), so
    long camera paths render in constant memory."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from scenes.classes import CLASS_NAMES

    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "README.md", README.format(classes=", ".join(f"{i} {n}" for i, n in enumerate(CLASS_NAMES))))
    names = [v.name for v in views]
    unique = [v.name if names.count(v.name) == 1 else f"{v.name}_{i:05d}" for i, v in enumerate(views)]
    prev = None
    columns = (TextColumn("render"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeRemainingColumn())
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("render", total=len(views))
        for i, v in enumerate(views):
            state = graph.at(v.time)
            f = capture_camera(renderer, v.model, v.T_world_cam, state, v.time, v.name, _frame_products(outputs))
            write_frame(out, unique[i], f, outputs)
            if "lidar" in outputs:
                sensor = LidarSensor(v.name, lidar or LidarConfig(), T_CAM_LIDAR)
                capture_lidar(renderer, sensor, v.T_world_cam, state).save(out / f"{unique[i]}_lidar")
            if "flow" in outputs and prev is not None:
                correspondences(prev[0], prev[1], f, state).save(out / f"{unique[i - 1]}_flow.npz")
            prev = (f, state)
            bar.advance(task)
    return unique
