"""Box labels of every actor in a camera frame: 3D (OpenCV camera frame and KITTI), 2D amodal and
modal, truncation, occlusion, visible pixels.

Conventions:
- Actor box frame: centre of the box, x forward (length), y left (width), z up (height).
- ``center_cam``/``R_cam_box``: the box centre and rotation in the camera frame (OpenCV axes).
- KITTI (camera frame = OpenCV axes): ``dimensions = (h, w, l)``, ``location`` = bottom-face centre,
  ``rotation_y`` = heading about the camera y axis, 0 when the box's forward axis is the camera's
  +x, in [-pi, pi); ``alpha`` = observation angle ``rotation_y - atan2(x, z)`` of the centre.
- 2D boxes ``(u_min, v_min, u_max, v_max)`` in pixels (continuous coordinates, pixel centres at +0.5).
  Amodal: the projection of the whole 3D box (its edges sampled densely, so distorted lenses are
  right too), clipped to the image; None when no part of the box is in view. Modal: the extent of the
  actor's visible pixels in the instance mask; None when it has no visible pixel.
- ``truncation``: fraction of the amodal 2D box area outside the image (KITTI's definition).
- ``occlusion``: fraction of the actor's own silhouette (rendered alone, inside the image) hidden
  by something in front of it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from scenes.graph import ActorState, SceneState

_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=np.float64)
_EDGES = [(i, j) for i in range(8) for j in range(i + 1, 8) if np.abs(_CORNER_SIGNS[i] - _CORNER_SIGNS[j]).sum() == 2]
_NEAR = 0.05  # metres: box points closer to the camera plane than this are not projected


@dataclass
class BoxLabel:
    actor_id: str
    instance_id: int
    class_name: str
    size: tuple[float, float, float]
    """(length, width, height), metres."""
    center_cam: tuple[float, float, float]
    R_cam_box: list
    """3x3 rotation box -> camera."""
    kitti_dimensions: tuple[float, float, float]
    kitti_location: tuple[float, float, float]
    kitti_rotation_y: float
    kitti_alpha: float
    box2d_amodal: tuple[float, float, float, float] | None
    box2d_modal: tuple[float, float, float, float] | None
    truncation: float
    occlusion: float
    visible_pixels: int

    def to_dict(self) -> dict:
        return asdict(self)


def box_corners(size, T_cam_box: np.ndarray) -> np.ndarray:
    """The 8 corners ``[8, 3]`` of a box of ``size`` posed by ``T_cam_box`` (any target frame)."""
    c = _CORNER_SIGNS * np.asarray(size, dtype=np.float64) / 2
    return c @ T_cam_box[:3, :3].T + T_cam_box[:3, 3]


def kitti_pose(size, T_cam_box: np.ndarray) -> tuple[tuple, tuple, float, float]:
    """KITTI ``(dimensions (h, w, l), location (bottom centre), rotation_y, alpha)`` of a box in an
    OpenCV camera frame (exact for boxes upright in the camera frame; otherwise the heading of the
    box's forward axis projected on the camera x-z plane)."""
    length, width, height = (float(v) for v in size)
    R, t = T_cam_box[:3, :3], T_cam_box[:3, 3]
    bottom = t - R[:, 2] * height / 2  # box z axis is up
    fwd = R[:, 0]
    ry = _wrap(float(np.arctan2(-fwd[2], fwd[0])))
    alpha = _wrap(ry - float(np.arctan2(t[0], t[2])))
    return (height, width, length), tuple(float(v) for v in bottom), ry, alpha


def kitti_box_to_cam(dimensions, location, rotation_y: float) -> np.ndarray:
    """Inverse of `kitti_pose` for upright boxes: ``T_cam_box`` (box frame x forward, y left, z up)
    from KITTI's dimensions, bottom-centre location and rotation_y."""
    h = dimensions[0]
    c, s = np.cos(rotation_y), np.sin(rotation_y)
    # The box axes in the camera frame: forward (cos ry, 0, -sin ry), up = -y_cam, left = up x forward.
    fwd = np.array([c, 0.0, -s])
    up = np.array([0.0, -1.0, 0.0])
    left = np.cross(up, fwd)
    T = np.eye(4)
    T[:3, :3] = np.stack([fwd, left, up], axis=1)
    T[:3, 3] = np.asarray(location, dtype=np.float64) + up * h / 2
    return T


def _wrap(a: float) -> float:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _edge_points(size, T_cam_box: np.ndarray, per_edge: int = 32) -> np.ndarray:
    corners = box_corners(size, T_cam_box)
    s = np.linspace(0.0, 1.0, per_edge)[:, None]
    return np.concatenate([corners[i] * (1 - s) + corners[j] * s for i, j in _EDGES])


def amodal_box(model, size, T_cam_box: np.ndarray) -> tuple[tuple | None, float]:
    """Amodal 2D box clipped to the image and the truncation ratio (see module docstring)."""
    pts = _edge_points(size, T_cam_box)
    if model.kind in ("pinhole", "opencv"):
        pts = _clip_near(size, T_cam_box, pts)
    if len(pts) == 0:
        return None, 1.0
    uv, ok = model.project(pts)
    # Points the lens can see (in front / inside its field of view), inside the image or not.
    in_lens = _in_lens(model, pts)
    if not in_lens.any():
        return None, 1.0
    uv = uv[in_lens]
    u0, v0 = uv.min(0)
    u1, v1 = uv.max(0)
    full = max(u1 - u0, 0.0) * max(v1 - v0, 0.0)
    cu0, cv0 = np.clip([u0, v0], 0, [model.width, model.height])
    cu1, cv1 = np.clip([u1, v1], 0, [model.width, model.height])
    clipped = max(cu1 - cu0, 0.0) * max(cv1 - cv0, 0.0)
    if clipped <= 0:
        return None, 1.0
    return (float(cu0), float(cv0), float(cu1), float(cv1)), float(1.0 - clipped / full) if full > 0 else 0.0


def _in_lens(model, pts: np.ndarray) -> np.ndarray:
    if model.kind in ("pinhole", "opencv"):
        return pts[:, 2] > _NEAR
    if model.kind == "fisheye":
        return np.arctan2(np.hypot(pts[:, 0], pts[:, 1]), pts[:, 2]) <= np.radians(model.max_fov_deg) / 2
    return np.linalg.norm(pts, axis=1) > 1e-9


def _clip_near(size, T_cam_box: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Add the points where box edges cross the near plane (edges partly behind a perspective camera
    project to rays reaching the image border)."""
    corners = box_corners(size, T_cam_box)
    extra = []
    for i, j in _EDGES:
        zi, zj = corners[i, 2] - _NEAR, corners[j, 2] - _NEAR
        if zi * zj < 0:
            s = zi / (zi - zj)
            p = corners[i] + s * (corners[j] - corners[i])
            p[2] = _NEAR * 1.0001
            extra.append(p)
    return np.concatenate([pts] + ([np.array(extra)] if extra else []))


def modal_box(instance: np.ndarray, instance_id: int) -> tuple[tuple | None, int]:
    """Extent of an instance's pixels (pixel edges, not centres) and its pixel count."""
    vs, us = np.nonzero(instance == instance_id)
    if len(us) == 0:
        return None, 0
    return (float(us.min()), float(vs.min()), float(us.max() + 1), float(vs.max() + 1)), int(len(us))


def box_labels(renderer, frame, state: SceneState) -> list[BoxLabel]:
    """Labels of every actor of ``state`` seen (or not) by the camera of ``frame`` (needs its
    instance mask). Actors with an amodal box are rendered alone inside it for the occlusion ratio."""
    T_cam_world = np.linalg.inv(frame.T_world_cam)
    labels = []
    for a in state.actors:
        T_cam_box = T_cam_world @ np.asarray(a.T_world_actor, dtype=np.float64)
        box2d, trunc = amodal_box(frame.model, a.size, T_cam_box)
        modal, visible = modal_box(frame.instance, a.instance_id)
        occlusion = 1.0
        if box2d is not None:
            alone = _silhouette_pixels(renderer, frame, a, state.time, box2d)
            occlusion = float(np.clip(1.0 - visible / alone, 0.0, 1.0)) if alone > 0 else 1.0
        dims, loc, ry, alpha = kitti_pose(a.size, T_cam_box)
        labels.append(BoxLabel(a.actor_id, a.instance_id, a.class_name, tuple(float(v) for v in a.size),
                               tuple(float(v) for v in T_cam_box[:3, 3]), T_cam_box[:3, :3].tolist(), dims, loc, ry, alpha,
                               box2d, modal, trunc, occlusion, visible))
    return labels


def _silhouette_pixels(renderer, frame, actor: ActorState, time: float, box2d) -> int:
    """Pixels of the actor rendered alone (no background, no other actor) inside its amodal box."""
    u0, v0, u1, v1 = (int(np.floor(box2d[0])), int(np.floor(box2d[1])), int(np.ceil(box2d[2])), int(np.ceil(box2d[3])))
    uu, vv = np.meshgrid(np.arange(u0, u1) + 0.5, np.arange(v0, v1) + 0.5)
    uv = np.stack([uu, vv], -1).reshape(-1, 2)
    d_cam, ok = frame.model.pixel_directions(uv)
    ok &= frame.valid[vv.reshape(-1).astype(int), uu.reshape(-1).astype(int)]
    d_w = d_cam[ok] @ frame.T_world_cam[:3, :3].T
    o_w = np.broadcast_to(frame.T_world_cam[:3, 3], d_w.shape)
    r = renderer.cast(o_w, d_w, SceneState(time, (actor,)), background=False)
    return int((r["instance"] == actor.instance_id).sum())
