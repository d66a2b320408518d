"""`nerfsim pose-data SCENE --actor ID --views N --out DIR`: object pose-estimation training data of
one actor, rendered from sampled viewpoints in its scene, in BOP format.

Viewpoints: cameras around the actor's box at time ``time``, azimuth uniform, elevation and distance
drawn from ranges, looking at the box centre (seeded). Everything else of the scene stays in view
(occluders included, so ``visib_fract`` can be < 1).

BOP layout (https://github.com/thodan/bop_toolkit/blob/master/docs/bop_datasets_format.md), units mm,
OpenCV camera; the object's model frame is the actor's box frame (x forward, y left, z up, origin at
the box centre), obj_id 1::

    DIR/models/obj_000001.ply            marching-cubes mesh of the actor's field (mm), models_info.json
    DIR/000000/rgb/000000.png            colour
    DIR/000000/depth/000000.png          uint16 depth, depth_scale 1.0 (mm)
    DIR/000000/mask/000000_000000.png    the object's full silhouette (rendered alone)
    DIR/000000/mask_visib/000000_000000.png   its visible pixels
    DIR/000000/xyz/000000.npy            float32 [H, W, 3] model-frame coordinates (mm) of each visible pixel (NaN elsewhere): dense 2D-3D correspondences
    DIR/000000/scene_camera.json         cam_K, depth_scale, cam_R_w2c, cam_t_w2c (mm)
    DIR/000000/scene_gt.json             cam_R_m2c, cam_t_m2c (mm), obj_id
    DIR/000000/scene_gt_info.json        bbox_obj, bbox_visib [x, y, w, h], px_count_all / valid / visib, visib_fract
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np

from scenes.errors import InputError
from scenes.files import atomic_write, atomic_write_json
from scenes.graph import SceneState
from scenes.settings import ANY_FINITE, AT_LEAST_ONE, POSITIVE, Range
from scenes.transforms import invert_pose, look_at
from sensors.boxes import amodal_box
from scenes.lens import CameraModel
from tasks.media import depth_mm, write_png


@dataclass(frozen=True)
class PoseDataConfig:
    """Viewpoints and images of the pose data."""

    views: Annotated[int, AT_LEAST_ONE] = 50
    """Number of viewpoints."""
    width: Annotated[int, Range(lo=8)] = 320
    """Image width, pixels."""
    height: Annotated[int, Range(lo=8)] = 240
    """Image height, pixels."""
    hfov_deg: Annotated[float, Range(lo=0.0, hi=179.0, strict_lo=True)] = 55.0
    """Horizontal field of view, degrees (pinhole)."""
    distance: Annotated[tuple[float, float], POSITIVE] = (1.2, 2.0)
    """Camera distance to the box centre, in box diagonals."""
    elevation_deg: Annotated[tuple[float, float], Range(lo=-89.0, hi=89.0)] = (5.0, 35.0)
    """Range of the camera elevation above the box centre, degrees."""
    time: Annotated[float, ANY_FINITE] = 0.0
    """Scene time (the actor's pose and everything around it)."""
    seed: int = 0
    """Seed of the viewpoints."""


def sample_viewpoints(T_world_actor: np.ndarray, size, cfg: PoseDataConfig) -> list[np.ndarray]:
    """``T_world_cam`` of each view, looking at the box centre from around it (seeded)."""
    rng = np.random.default_rng(cfg.seed)
    centre, diag = np.asarray(T_world_actor)[:3, 3], float(np.linalg.norm(size))
    out = []
    for _ in range(cfg.views):
        az, el = rng.uniform(0, 2 * np.pi), np.radians(rng.uniform(*cfg.elevation_deg))
        r = rng.uniform(*cfg.distance) * diag
        eye = centre + r * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        out.append(look_at(eye, centre))
    return out


def write_pose_data(renderer, model, state: SceneState, actor_id: str, out: Path, cfg: PoseDataConfig = PoseDataConfig(),
                    mesh=None) -> dict:
    """Render and write the BOP folder; returns ``scene_gt_info`` (per view)."""
    from sensors.frame import capture_camera

    actor = next((a for a in state.actors if a.actor_id == actor_id), None)
    if actor is None:
        raise InputError("pose-data", "--actor", f"no actor '{actor_id}' at time {state.time}; known: {[a.actor_id for a in state.actors]}")
    lens = CameraModel.from_intrinsics(_intrinsics(cfg))
    K = [lens.fx, 0.0, lens.cx, 0.0, lens.fy, lens.cy, 0.0, 0.0, 1.0]
    folder = Path(out) / "000000"
    for sub in ("rgb", "depth", "mask", "mask_visib", "xyz"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    cams, gts, infos = {}, {}, {}
    for i, T_world_cam in enumerate(sample_viewpoints(actor.T_world_actor, actor.size, cfg)):
        f = capture_camera(renderer, lens, T_world_cam, state, state.time, f"view_{i}", ("rgb", "depth", "instances"))
        T_cam_model = invert_pose(T_world_cam) @ np.asarray(actor.T_world_actor)
        visible = f.instance == actor.instance_id
        full = _silhouette(renderer, f, actor, state.time)
        name = f"{i:06d}"
        write_png(folder / "rgb" / f"{name}.png", f.rgb)
        write_png(folder / "depth" / f"{name}.png", depth_mm(f.depth))
        write_png(folder / "mask" / f"{name}_000000.png", (full * 255).astype(np.uint8))
        write_png(folder / "mask_visib" / f"{name}_000000.png", (visible * 255).astype(np.uint8))
        xyz = _model_coordinates(f, visible, T_cam_model)
        atomic_write(folder / "xyz" / f"{name}.npy", lambda p: np.save(p, xyz))
        T_cam_world = invert_pose(T_world_cam)
        cams[str(i)] = {"cam_K": K, "depth_scale": 1.0, "cam_R_w2c": T_cam_world[:3, :3].reshape(-1).tolist(),
                        "cam_t_w2c": (T_cam_world[:3, 3] * 1000).tolist()}
        gts[str(i)] = [{"cam_R_m2c": T_cam_model[:3, :3].reshape(-1).tolist(), "cam_t_m2c": (T_cam_model[:3, 3] * 1000).tolist(), "obj_id": 1}]
        box, _ = amodal_box(lens, actor.size, T_cam_model)
        infos[str(i)] = [{"bbox_obj": _xywh_box(box), "bbox_visib": _xywh_mask(visible), "px_count_all": int(full.sum()),
                          "px_count_valid": int((full & np.isfinite(f.depth)).sum()), "px_count_visib": int(visible.sum()),
                          "visib_fract": float(visible.sum() / full.sum()) if full.sum() else 0.0}]
    for name, doc in (("scene_camera.json", cams), ("scene_gt.json", gts), ("scene_gt_info.json", infos)):
        atomic_write_json(folder / name, doc)
    if mesh is not None:
        _write_model(Path(out) / "models", mesh, actor.size)
    return infos


def _intrinsics(cfg: PoseDataConfig):
    from scenes.camera import Intrinsics

    return Intrinsics.from_fov(cfg.width, cfg.height, cfg.hfov_deg)


def _silhouette(renderer, frame, actor, time: float) -> np.ndarray:
    """The actor's full silhouette: the frame's rays rendered through the actor alone."""
    o, d = frame.pixel_rays_world()
    r = renderer.cast(o.reshape(-1, 3), d.reshape(-1, 3), SceneState(time, (actor,)), background=False)
    return (r["instance"] == actor.instance_id).reshape(frame.shape)


def _model_coordinates(frame, visible: np.ndarray, T_cam_model: np.ndarray) -> np.ndarray:
    """Model-frame point (mm) seen by each visible pixel (first surface), NaN elsewhere."""
    d_cam, _ = frame.model.pixel_directions()
    p_cam = d_cam * np.where(visible, frame.ray_dist_median, np.nan)[..., None]
    T = invert_pose(T_cam_model)
    return ((p_cam @ T[:3, :3].T + T[:3, 3]) * 1000).astype(np.float32)


def _xywh_box(box) -> list[float]:
    if box is None:
        return [-1, -1, -1, -1]
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _xywh_mask(mask: np.ndarray) -> list[int]:
    vs, us = np.nonzero(mask)
    if len(us) == 0:
        return [-1, -1, -1, -1]
    return [int(us.min()), int(vs.min()), int(us.max() - us.min() + 1), int(vs.max() - vs.min() + 1)]


def _write_model(folder: Path, mesh, size) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mm = mesh.copy()
    mm.apply_scale(1000.0)
    from sensors.mesh import export_mesh

    export_mesh(mm, folder / "obj_000001.ply")
    ext = np.asarray(size, float) * 1000
    # diameter: the box diagonal, an upper bound of the mesh's (BOP's is the largest vertex distance)
    info = {"1": {"diameter": float(np.linalg.norm(ext)), "min_x": -ext[0] / 2, "min_y": -ext[1] / 2, "min_z": -ext[2] / 2,
                  "size_x": ext[0], "size_y": ext[1], "size_z": ext[2]}}
    atomic_write_json(folder / "models_info.json", info)
