"""One camera capture with every image product: `Frame`, made by `capture_camera`.

Conventions (every array ``[H, W, ...]``, row-major, pixel centres at integer + 0.5):
- ``rgb`` float32 [0, 1]; ``accumulation`` float32 opacity.
- ``ray_dist`` expected distance along the unit pixel ray, metres; ``ray_dist_median`` the distance
  where the accumulated weight reaches 0.5 (first surface: sharp at depth discontinuities where the
  expectation blends two surfaces); ``depth`` / ``depth_median`` the same as z-depth along the camera
  axis (``ray_dist * z_per_dist``; for fisheye / equirectangular lenses z can be <= 0: use ray_dist).
  ``inf`` where the pixel sees only sky or lies outside the lens' field of view (``valid`` False).
- ``normals`` float32 unit normals in the camera frame (OpenCV), facing the camera; zero on misses.
- ``semantic`` uint8 class id (`scenes.classes`, 0 = sky, 255 = unlabelled background);
  ``instance`` int32 actor instance id (0 = background / sky).
- ``boxes`` one `sensors.boxes.BoxLabel` per actor of the state (3D box in camera frame, 2D amodal
  and modal boxes, truncation, occlusion, visible pixels).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenes.graph import SceneState
from sensors.boxes import box_labels
from scenes.lens import CameraModel
from sensors.rig import CameraSensor

PRODUCTS = ("rgb", "depth", "normals", "semantics", "instances", "boxes")
"""Image products a camera capture can produce (``lidar`` and ``flow`` are made by their own sensors)."""


@dataclass
class Frame:
    """Everything one camera saw at one time."""

    name: str
    time: float
    model: CameraModel
    T_world_cam: np.ndarray
    valid: np.ndarray
    rgb: np.ndarray | None = None
    ray_dist: np.ndarray | None = None
    ray_dist_median: np.ndarray | None = None
    depth: np.ndarray | None = None
    depth_median: np.ndarray | None = None
    accumulation: np.ndarray | None = None
    normals: np.ndarray | None = None
    semantic: np.ndarray | None = None
    instance: np.ndarray | None = None
    boxes: list = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.model.height, self.model.width

    def pixel_rays_world(self) -> tuple[np.ndarray, np.ndarray]:
        """World origins and unit directions ``[H, W, 3]`` of the frame's pixels."""
        d_cam, _ = self.model.pixel_directions()
        R, t = self.T_world_cam[:3, :3], self.T_world_cam[:3, 3]
        dirs = d_cam @ R.T
        return np.broadcast_to(t, dirs.shape).copy(), dirs

    def points_world(self, median: bool = False) -> np.ndarray:
        """World point seen by each pixel ``[H, W, 3]`` (inf where nothing was hit)."""
        o, d = self.pixel_rays_world()
        dist = self.ray_dist_median if median else self.ray_dist
        return o + d * dist[..., None]


def capture_camera(renderer, model: CameraModel, T_world_cam: np.ndarray, state: SceneState, time: float | None = None,
                   name: str = "camera", products: tuple[str, ...] = PRODUCTS) -> Frame:
    """Render a camera (``model`` at ``T_world_cam``) at ``state``: rgb, depths, accumulation and
    the instance and semantic masks always (one pass gives them), ``normals`` and ``boxes`` when
    asked for in ``products``.

    ``renderer`` is a `sensors.renderers.NeuralRenderer` or `TwinRenderer`. Boxes need instance masks
    and render each visible actor alone once more (its amodal mask gives the occlusion ratio).
    """
    T = np.asarray(T_world_cam, dtype=np.float64)
    d_cam, valid = model.pixel_directions()
    H, W = model.height, model.width
    sel = valid.reshape(-1)
    dirs_w = (d_cam.reshape(-1, 3) @ T[:3, :3].T)[sel]
    origins = np.broadcast_to(T[:3, 3], dirs_w.shape)
    r = renderer.cast(origins, dirs_w, state, normals="normals" in products)

    def image(values: np.ndarray, fill) -> np.ndarray:
        out = np.full((H * W,) + values.shape[1:], fill, dtype=values.dtype)
        out[sel] = values
        return out.reshape((H, W) + values.shape[1:])

    z = np.where(valid, d_cam[..., 2], 1.0)  # pixels outside the lens: inf depth, never NaN
    f = Frame(name, float(state.time if time is None else time), model, T, valid)
    f.rgb = image(r["rgb"], 0.0)
    f.accumulation = image(r["accumulation"], 0.0)
    f.ray_dist = image(r["ray_dist"], np.inf)
    f.ray_dist_median = image(r["ray_dist_median"], np.inf)
    f.depth = (f.ray_dist * z).astype(np.float32)
    f.depth_median = (f.ray_dist_median * z).astype(np.float32)
    f.instance = image(r["instance"], 0)
    f.semantic = image(r["semantic"], 0)
    if "normals" in products:
        f.normals = image((r["normals"] @ T[:3, :3]).astype(np.float32), 0.0)  # world -> camera: R_wc^T n
    if "boxes" in products:
        f.boxes = box_labels(renderer, f, state)
    return f


def capture_rig_camera(renderer, sensor: CameraSensor, T_world_ego: np.ndarray, state_at, t: float,
                       products: tuple[str, ...] = PRODUCTS) -> Frame:
    """A rig camera at rig time ``t``: posed by the ego, rendered at ``state_at(t + time_offset)``."""
    t_cam = t + sensor.time_offset
    return capture_camera(renderer, sensor.model, sensor.pose(T_world_ego), state_at(t_cam), t_cam, sensor.name, products)
