"""Dense correspondences between two captures (two cameras, two times, or before / after an edit).

For each pixel of frame A: the 3D point it sees (from A's depth), carried along with its actor when
the pixel belongs to one (the actor's pose in state B, which may be moved or gone), projected into
camera B. Stored as ``flow [H, W, 2]`` (``uv_B - uv_A`` in pixels; NaN where there is none) and
masks ``in_view`` (lands inside B's image, in front of its lens) and ``visible`` (and is not
occluded in B: B's own first-surface distance along that pixel agrees with the point's distance).

`sampled_correspondences` is the NeRF-Supervision variant: instead of one depth per pixel, it draws
distances from the rendering-weight distribution along A's ray (robust where density is multimodal,
e.g. thin or semi-transparent structures) and gives one flow per draw.

Conventions: OpenCV cameras, pixel centres at integer + 0.5, world z up, metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.files import atomic_write
from scenes.graph import SceneState
from sensors.frame import Frame


@dataclass
class Correspondence:
    flow: np.ndarray
    """``[H, W, 2]`` float32: location in B minus location in A (pixels); NaN where undefined."""
    in_view: np.ndarray
    """``[H, W]`` bool: the point lands inside B's image and field of view."""
    visible: np.ndarray
    """``[H, W]`` bool: in view and not occluded in B."""

    def save(self, path) -> None:
        """``.npz`` with ``flow`` (float32 [H, W, 2]), ``in_view`` and ``visible`` (bool [H, W]); atomic."""
        atomic_write(path, lambda tmp: np.savez_compressed(tmp, flow=self.flow, in_view=self.in_view, visible=self.visible))


def carry_points(points: np.ndarray, instance: np.ndarray, state_a: SceneState, state_b: SceneState) -> tuple[np.ndarray, np.ndarray]:
    """Move world points ``[N, 3]`` seen on actors (``instance [N]``) from their pose in ``state_a``
    to their pose in ``state_b``. Returns the points and a mask of those that still exist in B
    (points of an actor absent from B have none)."""
    out = points.copy()
    exists = np.ones(len(points), bool)
    b_by_id = {a.instance_id: a for a in state_b.actors}
    for a in state_a.actors:
        sel = instance == a.instance_id
        if not sel.any():
            continue
        b = b_by_id.get(a.instance_id)
        if b is None:
            exists[sel] = False
            continue
        T = np.asarray(b.T_world_actor, dtype=np.float64) @ np.linalg.inv(np.asarray(a.T_world_actor, dtype=np.float64))
        out[sel] = points[sel] @ T[:3, :3].T + T[:3, 3]
    return out, exists


def _project_and_check(points_b: np.ndarray, frame_b: Frame, abs_tol: float, rel_tol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel in B ``[N, 2]``, in-view and visible masks of world points."""
    T_cam_world = np.linalg.inv(frame_b.T_world_cam)
    finite = np.isfinite(points_b).all(1)  # pixels that saw sky have no point
    p_cam = np.where(finite[:, None], points_b, 0.0) @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    p_cam[~finite] = 1.0
    uv, in_view = frame_b.model.project(p_cam)
    in_view &= finite
    px = np.clip(np.floor(uv).astype(np.int64), 0, [frame_b.model.width - 1, frame_b.model.height - 1])
    in_view &= frame_b.valid[px[:, 1], px[:, 0]]
    dist_point = np.linalg.norm(p_cam, axis=1)
    dist_b = frame_b.ray_dist_median[px[:, 1], px[:, 0]]
    visible = in_view & (np.abs(dist_b - dist_point) <= abs_tol + rel_tol * dist_point)
    return uv, in_view, visible


def correspondences(frame_a: Frame, state_a: SceneState, frame_b: Frame, state_b: SceneState,
                    abs_tol: float = 0.1, rel_tol: float = 0.02, median: bool = True) -> Correspondence:
    """Flow from A to B from A's depth (first surface when ``median``) and B's depth for occlusion."""
    H, W = frame_a.shape
    pts = frame_a.points_world(median=median).reshape(-1, 3)
    pts_b, exists = carry_points(pts, frame_a.instance.reshape(-1), state_a, state_b)
    uv_b, in_view, visible = _project_and_check(pts_b, frame_b, abs_tol, rel_tol)
    in_view &= exists & np.isfinite(pts).all(1)
    visible &= in_view
    return Correspondence(_flow(uv_b, in_view, H, W), in_view.reshape(H, W), visible.reshape(H, W))


def _flow(uv_b: np.ndarray, ok: np.ndarray, H: int, W: int) -> np.ndarray:
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    uv_a = np.stack([u, v], -1).reshape(-1, 2)
    flow = np.where(ok[:, None], uv_b - uv_a, np.nan)
    return flow.reshape(H, W, 2).astype(np.float32)


def sampled_correspondences(sample_distances, frame_a: Frame, state_a: SceneState, frame_b: Frame, state_b: SceneState,
                            n_draws: int = 4, seed: int = 0, abs_tol: float = 0.1, rel_tol: float = 0.02) -> list[Correspondence]:
    """NeRF-Supervision correspondences: ``n_draws`` flows, each from distances drawn along A's rays
    in proportion to the rendering weights. ``sample_distances(origins, dirs, state, n, seed) ->
    [N, n]`` is `sensors.renderers.NeuralRenderer.sample_distances` (inf where a ray hit nothing)."""
    H, W = frame_a.shape
    o, d = frame_a.pixel_rays_world()
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    t = sample_distances(o, d, state_a, n_draws, seed)
    out = []
    for k in range(n_draws):
        pts = o + d * t[:, k : k + 1]
        pts_b, exists = carry_points(pts, frame_a.instance.reshape(-1), state_a, state_b)
        uv_b, in_view, visible = _project_and_check(pts_b, frame_b, abs_tol, rel_tol)
        in_view &= exists & np.isfinite(t[:, k]) & frame_a.valid.reshape(-1)
        out.append(Correspondence(_flow(uv_b, in_view, H, W), in_view.reshape(H, W), (visible & in_view).reshape(H, W)))
    return out
