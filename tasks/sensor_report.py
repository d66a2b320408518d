"""Every sensor product of a scene trained on the built-in world, measured against the mesh twin on
cameras never trained on (`tasks.evaluate.novel_cameras`). The figures of issue #4:

- depth AbsRel; normals median angular error on road, facades and cars; background semantic
  accuracy (pixels the twin labels road / lane marking / sidewalk / building / pole / tree);
- instance-mask IoU for actors with >= 500 visible twin pixels; 2D (modal) box IoU for the same;
- correspondences from one novel camera to the next (0.5 s later): share of co-visible pixels within
  2 px of the twin's flow, and precision of the visibility flag;
- LiDAR: median range error on beams where both return; sky returns: beams the twin's ray escapes
  (no surface at any range) that return a point farther than `SKY_RETURN_TOLERANCE_M` from every
  surface of the twin (a return in empty space); grazing returns: the same beams returning within
  the tolerance of a surface (a silhouette a few cm off: the beam grazes a roof edge or a canopy);
- actor meshes: symmetric Chamfer distance to the twin's car meshes (mean, metres).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from scenes.classes import BACKGROUND_CLASSES, CLASS_IDS
from scenes.errors import InputError
from scenes.graph import SceneGraph
from sensors.flow import correspondences
from sensors.frame import Frame, capture_camera
from sensors.lens import CameraModel
from sensors.lidar import capture_lidar
from sensors.mesh import MeshConfig, actor_mesh
from sensors.renderers import NeuralRenderer, TwinRenderer
from sensors.rig import Rig

NORMAL_CLASSES = ("road", "building", "car")
SKY_RETURN_TOLERANCE_M = 0.2
"""A LiDAR return this close to a real surface is a range error, not a return from empty space (the
issue's range tolerance)."""


def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = np.einsum("...i,...i->...", a, b) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def box_iou(a, b) -> float:
    if a is None or b is None:
        return 0.0
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return float(inter / (area(a) + area(b) - inter)) if inter > 0 else 0.0


def frame_metrics(pred: Frame, gt: Frame, min_pixels: int = 500) -> dict:
    """Per-frame comparisons; lists so that callers can pool them over frames."""
    m: dict[str, list] = {"abs_rel": [], "normal_err": [], "mask_iou": [], "box_iou": [], "semantic_ok": []}
    valid = np.isfinite(gt.depth) & np.isfinite(pred.depth) & (gt.depth > 0)
    m["abs_rel"].append(np.abs(pred.depth[valid] - gt.depth[valid]) / gt.depth[valid])
    sel = np.isin(gt.semantic, [CLASS_IDS[c] for c in NORMAL_CLASSES]) & valid
    m["normal_err"].append(angular_error_deg(pred.normals[sel], gt.normals[sel]))
    bg = np.isin(gt.semantic, [CLASS_IDS[c] for c in BACKGROUND_CLASSES]) & (pred.instance == 0) & np.isfinite(pred.depth)
    m["semantic_ok"].append(pred.semantic[bg] == gt.semantic[bg])
    pred_boxes = {b.instance_id: b for b in pred.boxes}
    for b in gt.boxes:
        if b.visible_pixels >= min_pixels:
            m["mask_iou"].append(mask_iou(pred.instance == b.instance_id, gt.instance == b.instance_id))
            m["box_iou"].append(box_iou(pred_boxes[b.instance_id].box2d_modal, b.box2d_modal))
    return m


def flow_metrics(pred, gt, tol_px: float = 2.0) -> dict:
    co_visible = gt.visible
    err = np.linalg.norm(pred.flow - gt.flow, axis=-1)
    ok = co_visible & pred.in_view & (err <= tol_px)
    return {"within": int(ok.sum()), "co_visible": int(co_visible.sum()),
            "flag_tp": int((pred.visible & gt.visible).sum()), "flag_pos": int(pred.visible.sum())}


def chamfer(a_points: np.ndarray, b_points: np.ndarray) -> float:
    """Symmetric mean nearest-neighbour distance between two point sets (mean of both directions)."""
    from scipy.spatial import cKDTree

    d_ab = cKDTree(b_points).query(a_points)[0]
    d_ba = cKDTree(a_points).query(b_points)[0]
    return float(0.5 * (d_ab.mean() + d_ba.mean()))


def car_chamfers(model, world, graph: SceneGraph, n_points: int = 20000, cfg: MeshConfig = MeshConfig()) -> list[float]:
    """Chamfer distance of each car asset's mesh (box frame) to its twin mesh."""
    import trimesh

    out = []
    seen = set()
    for a in graph.actors:
        if a.class_name != "car" or a.asset_id in seen:
            continue
        seen.add(a.asset_id)
        mesh = actor_mesh(model, a.asset_id, a.size, cfg)
        if len(mesh.faces) == 0:
            out.append(float("inf"))
            continue
        twin_mesh = trimesh.util.concatenate([trimesh.Trimesh(p.mesh.vertices, p.mesh.faces, process=False)
                                              for p in world.actor_assets[a.asset_id]])
        out.append(chamfer(np.asarray(mesh.sample(n_points, seed=0)), np.asarray(twin_mesh.sample(n_points, seed=0))))
    return out


def evaluate_sensors(model, twin, log, graph: SceneGraph, cameras, lidar_frames: int = 2, meshes: bool = True) -> dict:
    """Every issue-#4 figure of a trained scene against its twin (see the module docstring)."""
    neural, truth = NeuralRenderer(model), TwinRenderer(twin)
    pooled: dict[str, list] = {"abs_rel": [], "normal_err": [], "mask_iou": [], "box_iou": [], "semantic_ok": []}
    frames = []
    for cam in cameras:
        state = graph.at(cam.time)
        lens = CameraModel.from_intrinsics(cam.intrinsics)
        p = capture_camera(neural, lens, cam.T_world_cam, state, cam.time, cam.name)
        g = capture_camera(truth, lens, cam.T_world_cam, state, cam.time, cam.name)
        for k, v in frame_metrics(p, g).items():
            pooled[k].extend(v)
        frames.append((p, g, state))
    flow = {"within": 0, "co_visible": 0, "flag_tp": 0, "flag_pos": 0}
    for (pa, ga, sa), (pb, gb, sb) in zip(frames[:-1], frames[1:]):
        if pa.name.rsplit("_", 3)[0] != pb.name.rsplit("_", 3)[0]:
            continue  # the two novel views of the same rig camera (names: <camera>_<up|left>_1m_<time>)
        f_pred, f_gt = correspondences(pa, sa, pb, sb), correspondences(ga, sa, gb, sb)
        for k, v in flow_metrics(f_pred, f_gt).items():
            flow[k] += v
    rig = Rig.from_capture_log(log)
    unlimited = replace(rig.lidars[0], pattern=replace(rig.lidars[0].pattern, max_range=1e9))
    lidar_err, sky_returns, edge_returns, sky_beams = [], 0, 0, 0
    for f in log.frames[:: max(1, len(log.frames) // lidar_frames)][:lidar_frames]:
        state = graph.at(f.time)
        sp = capture_lidar(neural, rig.lidars[0], f.T_world_ego, state)
        sg = capture_lidar(truth, rig.lidars[0], f.T_world_ego, state)
        both = sp.hit & sg.hit
        lidar_err.append(np.abs(sp.range[both] - sg.range[both]))
        sky = ~capture_lidar(truth, unlimited, f.T_world_ego, state).hit  # no surface at any range
        escaped = sp.hit & sky
        points_w = sp.T_world_lidar[:3, 3] + (sp.dirs[escaped] * sp.range[escaped, None]) @ sp.T_world_lidar[:3, :3].T
        off_surface = twin.distance_to_surface(points_w, state) > SKY_RETURN_TOLERANCE_M
        sky_returns += int(off_surface.sum())
        edge_returns += int((~off_surface).sum())
        sky_beams += int(sky.sum())
    out = {
        "depth_abs_rel": float(np.mean(np.concatenate(pooled["abs_rel"]))),
        "normals_median_deg": float(np.median(np.concatenate(pooled["normal_err"]))),
        "instance_iou_mean": float(np.mean(pooled["mask_iou"])) if pooled["mask_iou"] else float("nan"),
        "instance_iou_min": float(np.min(pooled["mask_iou"])) if pooled["mask_iou"] else float("nan"),
        "box2d_iou_mean": float(np.mean(pooled["box_iou"])) if pooled["box_iou"] else float("nan"),
        "box2d_iou_min": float(np.min(pooled["box_iou"])) if pooled["box_iou"] else float("nan"),
        "n_actor_boxes": len(pooled["box_iou"]),
        "background_semantic_accuracy": float(np.mean(np.concatenate(pooled["semantic_ok"]))),
        "flow_within_2px": flow["within"] / max(flow["co_visible"], 1),
        "flow_visibility_precision": flow["flag_tp"] / max(flow["flag_pos"], 1),
        "lidar_median_range_error_m": float(np.median(np.concatenate(lidar_err))),
        "lidar_sky_returns": sky_returns,
        "lidar_grazing_returns": edge_returns,
        "lidar_sky_beams": sky_beams,
        "n_views": len(cameras),
    }
    if meshes:
        ch = car_chamfers(model, twin.world, graph)
        out["car_mesh_chamfer_mean_m"] = float(np.mean(ch)) if ch else float("nan")
        out["car_mesh_chamfer_max_m"] = float(np.max(ch)) if ch else float("nan")
    return out


def evaluate_scene_sensors(path: Path, max_frames: int = 2) -> dict:
    from scenes.capture import read_capture_log
    from tasks.evaluate import novel_cameras
    from tasks.pipeline import load_scene, twin_for

    scene = load_scene(path)
    source = scene.meta.get("extra", {}).get("source", {})
    if source.get("kind") != "capture-log":
        raise InputError(Path(path) / "scene.json", "extra.source", "sensor evaluation needs a scene trained on a capture log of the built-in world")
    log = read_capture_log(source["path"])
    cams = novel_cameras(log, int(source.get("holdout_every", 10)), max_frames)
    return evaluate_sensors(scene.model, twin_for(scene), log, scene.graph, cams)
