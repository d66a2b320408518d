"""Every sensor product of a scene trained on the built-in world, measured against the mesh twin on
cameras never trained on (`tasks.eval.evaluate.novel_cameras`). The figures of issue #4:

- depth AbsRel; normals median angular error on road, facades and cars; background semantic
  accuracy (pixels the twin labels road / lane marking / sidewalk / building / pole / tree);
- instance-mask IoU for actors with >= 500 visible twin pixels; 2D (modal) box IoU for the same;
- correspondences from one novel camera to the next (0.5 s later): share of co-visible pixels within
  2 px of the twin's flow, and precision of the visibility flag;
- LiDAR: median range error on beams where both return; sky returns: beams the twin's ray escapes
  (no surface at any range) that return a point farther than `SKY_RETURN_TOLERANCE_M` from every
  surface of the twin (a return in empty space); grazing returns: the same beams returning within
  the tolerance of a surface (a silhouette a few cm off: the beam grazes a roof edge or a canopy);
- actor meshes: symmetric Chamfer distance to the twin's car meshes (mean, metres), over the whole
  surfaces and over the parts the capture's training images saw (`observed_by`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from scenes.errors import InputError
from scenes.graph import SceneGraph
from sensors.flow import correspondences
from sensors.frame import capture_camera
from scenes.lens import CameraModel
from sensors.lidar import capture_lidar
from sensors.mesh import MeshConfig, actor_mesh
from sensors.renderers import NeuralRenderer, TwinRenderer
from sensors.rig import Rig
from tasks.eval.metrics import chamfer, flow_metrics, frame_metrics

SKY_RETURN_TOLERANCE_M = 0.2
"""A LiDAR return this close to a real surface is a range error, not a return from empty space (the
issue's range tolerance)."""


def _raycaster(mesh):
    """``cast(origins, dirs) -> distance to the first hit on mesh`` (inf = none), the scene built once."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)))
    return lambda origins, dirs: scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, dirs], 1).astype(np.float32)))["t_hit"].numpy().astype(np.float64)


OBSERVED_MAX_INCIDENCE_DEG = 75.0
"""A surface seen more obliquely than this (angle between the view ray and the surface normal) is not
observed: its pixel footprint is over 4x the head-on one (a roof 10 cm below the cameras' height,
10 m ahead, is seen at 89 degrees and covers no pixel)."""


def observed_by(points: np.ndarray, normals: np.ndarray, mesh, actor, views, twin, graph: SceneGraph,
                tol: float = 0.02) -> np.ndarray:
    """Which ``points [N, 3]`` on ``mesh`` (surface ``normals [N, 3]``; all in ``actor``'s box frame)
    some view saw: the point is in the view's image, faces it at most `OBSERVED_MAX_INCIDENCE_DEG`
    obliquely, and the first surface on the ray from the view's centre is the point itself, against
    ``mesh`` and against the twin's background and other actors at the view's time. Views:
    `scenes.camera.Camera` (the capture's training images). The DTU protocol's observation mask: what
    no camera saw (a van's roof above the rig, the front of a car only ever seen from behind, every
    underside) cannot be reconstructed from the capture, whatever the method."""
    cos_max = np.cos(np.radians(OBSERVED_MAX_INCIDENCE_DEG))
    seen = np.zeros(len(points), bool)
    self_hits = _raycaster(mesh)
    for cam in views:
        T_world_actor = actor.track.pose_at(cam.time)
        pw = points @ T_world_actor[:3, :3].T + T_world_actor[:3, 3]
        pc = (pw - cam.T_world_cam[:3, 3]) @ cam.T_world_cam[:3, :3]
        k = cam.intrinsics
        z = np.maximum(pc[:, 2], 1e-9)
        u, v = k.fx * pc[:, 0] / z + k.cx, k.fy * pc[:, 1] / z + k.cy
        o_box = (cam.T_world_cam[:3, 3] - T_world_actor[:3, 3]) @ T_world_actor[:3, :3]
        d_box = points - o_box
        dist = np.linalg.norm(d_box, axis=1)
        d_box /= dist[:, None]
        head_on = np.abs(np.sum(d_box * normals, axis=1)) >= cos_max
        todo = np.flatnonzero(~seen & head_on & (pc[:, 2] > 0.05) & (u >= 0) & (u < k.width) & (v >= 0) & (v < k.height))
        if len(todo) == 0:
            continue
        dist, d_box = dist[todo], d_box[todo]
        # Self-occlusion in the box frame, then the rest of the twin's scene in the world.
        ok = self_hits(np.broadcast_to(o_box, (len(todo), 3)), d_box) > dist - tol
        centre, d_world = cam.T_world_cam[:3, 3], d_box @ T_world_actor[:3, :3].T
        state = graph.at(cam.time)
        others = replace(state, actors=tuple(a for a in state.actors if a.actor_id != actor.actor_id))
        ok &= twin.cast_rays(np.broadcast_to(centre, (len(todo), 3)), d_world, others)["dist"] > dist - tol
        seen[todo[ok]] = True
    return seen


def car_chamfers(model, twin, graph: SceneGraph, views=(), n_points: int = 20000, cfg: MeshConfig = MeshConfig()) -> list[dict]:
    """Per car asset, its mesh (box frame) against the twin's mesh: ``full``, the symmetric Chamfer
    distance (metres) over both whole surfaces, and, given the capture's training ``views``,
    ``observed``: the same over the parts of each surface the views saw (`observed_by`), each
    direction measured to the whole other surface (the DTU protocol: observed predicted points to
    the truth, observed true points to the prediction)."""
    import trimesh
    from scipy.spatial import cKDTree

    out, seen = [], set()
    for a in graph.actors:
        if a.class_name != "car" or a.asset_id in seen:
            continue
        seen.add(a.asset_id)
        mesh = actor_mesh(model, a.asset_id, a.size, cfg)
        if len(mesh.faces) == 0:
            out.append({"asset_id": a.asset_id, "full": float("inf"), "observed": float("inf")})
            continue
        twin_mesh = trimesh.util.concatenate([trimesh.Trimesh(p.mesh.vertices, p.mesh.faces, process=False)
                                              for p in twin.world.actor_assets[a.asset_id]])
        P, P_face = mesh.sample(n_points, return_index=True, seed=0)
        T, T_face = twin_mesh.sample(n_points, return_index=True, seed=0)
        row = {"asset_id": a.asset_id, "full": chamfer(P, T)}
        if views:
            P_seen = P[observed_by(P, mesh.face_normals[P_face], mesh, a, views, twin, graph)]
            T_seen = T[observed_by(T, twin_mesh.face_normals[T_face], twin_mesh, a, views, twin, graph)]
            row["observed"] = float(0.5 * (cKDTree(T).query(P_seen)[0].mean() + cKDTree(P).query(T_seen)[0].mean()))
            row["observed_share_of_truth"] = len(T_seen) / len(T)
        out.append(row)
    return out


def evaluate_sensors(model, twin, log, graph: SceneGraph, cameras, lidar_frames: int = 2, meshes: bool = True,
                     training_views=()) -> dict:
    """Every issue-#4 figure of a trained scene against its twin (see the module docstring); the
    observed-surface mesh figures need the capture's ``training_views``."""
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
        ch = car_chamfers(model, twin, graph, views=training_views)
        for key, name in (("full", "car_mesh_chamfer"), ("observed", "car_mesh_chamfer_observed")):
            values = [c[key] for c in ch if key in c]
            out[f"{name}_mean_m"] = float(np.mean(values)) if values else float("nan")
            out[f"{name}_max_m"] = float(np.max(values)) if values else float("nan")
    return out


def evaluate_scene_sensors(path: Path, max_frames: int = 2) -> dict:
    from scenes.capture import read_capture_log
    from sim.data import holdout_frame
    from tasks.eval.evaluate import novel_cameras
    from tasks.pipeline import load_scene, twin_for

    scene = load_scene(path)
    source = scene.meta.get("extra", {}).get("source", {})
    if source.get("kind") != "capture-log":
        raise InputError(Path(path) / "scene.json", "extra.source", "sensor evaluation needs a scene trained on a capture log of the built-in world")
    log = read_capture_log(source["path"])
    every = int(source.get("holdout_every", 10))
    cams = novel_cameras(log, every, max_frames)
    trained = [log.camera(f, c.name) for f in log.frames if not holdout_frame(f.index, every) for c in log.cameras]
    return evaluate_sensors(scene.model, twin_for(scene), log, scene.graph, cams, training_views=trained)
