"""Camera pose inversion's wide-basin step: feature matching. Render the scene from the current
estimate (on a canvas wider than the image first), match SIFT features of the render and the image,
lift the render's by its depth to 3D and solve PnP with RANSAC (`match_camera`). A start 40 degrees
off still shares features with the image, where the photometric loss alone is flat.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scenes.transforms import invert_pose
from scenes.lens import CameraModel
from tasks.pose.problem import InversionConfig, PoseProblem


# ---------------------------------------------------------------------------- feature matching
@dataclass(frozen=True)
class _Features:
    uv: np.ndarray
    """Keypoint positions ``[N, 2]`` (our pixel convention: centres at integer + 0.5)."""
    descriptors: np.ndarray
    """SIFT descriptors ``[N, 128]`` float32."""


def _features(image: np.ndarray, mask: np.ndarray | None = None) -> _Features:
    import cv2

    gray = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    kps, desc = cv2.SIFT_create().detectAndCompute(gray, None if mask is None else mask.astype(np.uint8))
    if desc is None:
        return _Features(np.zeros((0, 2)), np.zeros((0, 128), np.float32))
    return _Features(np.array([kp.pt for kp in kps], np.float64) + 0.5, desc)


def _match(a: _Features, b: _Features, ratio: float = 0.8) -> np.ndarray:
    """Index pairs ``[M, 2]`` of ``a``'s and ``b``'s features that pass Lowe's ratio test both ways."""
    if len(a.uv) < 2 or len(b.uv) < 2:
        return np.zeros((0, 2), np.int64)
    import cv2

    matcher = cv2.BFMatcher(cv2.NORM_L2)

    def best(x, y):
        pairs = matcher.knnMatch(x.descriptors, y.descriptors, k=2)
        return {m.queryIdx: m.trainIdx for m, n in (p for p in pairs if len(p) == 2) if m.distance < ratio * n.distance}

    ab, ba = best(a, b), best(b, a)
    return np.array([(i, j) for i, j in ab.items() if ba.get(j) == i], np.int64).reshape(-1, 2)


def _canvas(lens: CameraModel, scale: float, resolution: float = 1.0) -> CameraModel:
    """A pinhole camera seeing a canvas ``scale`` times larger than ``lens`` (same focal lengths and
    centre ray), sampled at ``resolution`` times ``lens``' pixel density."""
    W, H = int(round(lens.width * scale * resolution)), int(round(lens.height * scale * resolution))
    cx, cy = (lens.cx + (scale - 1) * lens.width / 2) * resolution, (lens.cy + (scale - 1) * lens.height / 2) * resolution
    return CameraModel("pinhole", W, H, lens.fx * resolution, lens.fy * resolution, cx, cy)


def solve_pnp(points_world: np.ndarray, uv: np.ndarray, lens: CameraModel, cfg: InversionConfig) -> tuple[np.ndarray | None, int]:
    """``T_world_cam`` from 3D points and their pixels in the image (RANSAC, then Levenberg-Marquardt
    on the inliers), and the inlier count; None below ``cfg.match_min_inliers``."""
    import cv2

    if len(uv) < max(cfg.match_min_inliers, 6):
        return None, 0
    d, valid = lens.pixel_directions(uv)
    front = valid & (d[:, 2] > 1e-3)
    # Undistorted pixels of an ideal pinhole with the lens' focal lengths: PnP then needs no model.
    xn = d[front, :2] / d[front, 2:3]
    pix = np.stack([lens.fx * xn[:, 0] + lens.cx, lens.fy * xn[:, 1] + lens.cy], -1)
    K = np.array([[lens.fx, 0, lens.cx], [0, lens.fy, lens.cy], [0, 0, 1]], np.float64)
    obj = np.ascontiguousarray(points_world[front], np.float64)
    if len(obj) < max(cfg.match_min_inliers, 6):
        return None, 0
    ok, rvec, tvec, inliers = cv2.solvePnPRansac(obj, np.ascontiguousarray(pix), K, None, iterationsCount=1000,
                                                 reprojectionError=cfg.match_reprojection_px, confidence=0.999,
                                                 flags=cv2.SOLVEPNP_EPNP)
    n = 0 if inliers is None else len(inliers)
    if not ok or n < cfg.match_min_inliers:
        return None, n
    inl = inliers[:, 0]
    rvec, tvec = cv2.solvePnPRefineLM(obj[inl], pix[inl], K, None, rvec, tvec)
    T_cam_world = np.eye(4)
    T_cam_world[:3, :3] = cv2.Rodrigues(rvec)[0]
    T_cam_world[:3, 3] = tvec[:, 0]
    return invert_pose(T_cam_world), n


def match_camera(problem: PoseProblem, T_start: np.ndarray, cfg: InversionConfig) -> tuple[np.ndarray, int]:
    """``cfg.match_rounds`` of render -> match -> PnP from ``T_start``; the pose of the last round
    that found enough inliers (``T_start`` if none) and its inlier count."""
    T, best_inliers = np.asarray(T_start, np.float64), 0
    for r in range(cfg.match_rounds):
        if r == 0:  # the start may look far from the image's content: a wider canvas, then wider still
            canvases = [_canvas(problem.lens, cfg.match_canvas), _canvas(problem.lens, cfg.match_wide_canvas, 0.5)]
        else:
            canvases = [problem.lens]
        for lens in canvases:
            T_new, inliers = _match_view(problem, T, lens, cfg)
            if T_new is not None:
                break
        if T_new is None:
            break
        T, best_inliers = T_new, inliers
    return T, best_inliers


def _match_view(problem: PoseProblem, T_world_cam: np.ndarray, lens: CameraModel, cfg: InversionConfig) -> tuple[np.ndarray | None, int]:
    """One round: render ``lens``' view from ``T_world_cam``, match it to the image, lift the
    render's matched features to world points by its depth and solve PnP for the image's pose."""
    if lens.kind != "pinhole":  # renders are pinhole canvases; the image's own lens may be anything
        lens = _canvas(lens, 1.0)
    target = _image_features(problem)
    rgb, dist = problem.render_view(T_world_cam, lens, problem.actors)
    rendered = _features(rgb)
    pairs = _match(rendered, target)
    if len(pairs) == 0:
        return None, 0
    uv = rendered.uv[pairs[:, 0]]
    px = np.clip(uv.astype(np.int64), 0, [lens.width - 1, lens.height - 1])
    depth = dist[px[:, 1], px[:, 0]]
    hit = np.isfinite(depth)
    d_cam, _ = lens.pixel_directions(uv[hit])
    points = (d_cam * depth[hit, None]) @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
    return solve_pnp(points, target.uv[pairs[hit, 1]], problem.lens, cfg)



def _image_features(problem: PoseProblem) -> _Features:
    """The image's features, computed once per problem."""
    if problem.features is None:
        problem.features = _features(problem.target.reshape(problem.lens.height, problem.lens.width, 3).numpy())
    return problem.features
