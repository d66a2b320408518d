"""Every evaluation metric in one place: images, depth, normals, masks, boxes, correspondences,
surfaces and poses. Evaluation code (`tasks.eval`), benchmarks and tests import them from here.

Training keeps its own PSNR of a running mean squared error (`sim.train.psnr`, re-exported here as
`psnr_from_mse`): the lower layer cannot import this one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from skimage.metrics import structural_similarity

from scenes.classes import BACKGROUND_CLASSES, CLASS_IDS
from scenes.transforms import rotation_angle_deg
from sim.train import psnr as psnr_from_mse

if TYPE_CHECKING:
    from sensors.frame import Frame

__all__ = ["psnr", "psnr_from_mse", "ssim", "depth_abs_rel", "angular_error_deg", "mask_iou", "box_iou", "chamfer",
           "frame_metrics", "flow_metrics", "pose_errors", "NORMAL_CLASSES"]

NORMAL_CLASSES = ("road", "building", "car")
"""Classes whose normals `frame_metrics` measures (road, facades, cars)."""


# ---- images and depth ---------------------------------------------------------------------------
def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio (dB) of two images in [0, 1] (``mask`` bool ``[H, W]``: over those pixels only)."""
    err = (np.asarray(a, np.float64) - b) ** 2
    return float(-10 * np.log10(max(np.mean(err if mask is None else err[mask]), 1e-12)))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Structural similarity of two RGB images in [0, 1] (scikit-image; ``mask``: the mean of its map
    over those pixels only)."""
    if mask is None:
        return float(structural_similarity(a, b, channel_axis=-1, data_range=1.0))
    _, full = structural_similarity(a, b, channel_axis=-1, data_range=1.0, full=True)
    return float(full.mean(-1)[mask].mean())


def depth_abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean |pred - gt| / gt where both depths are finite and gt > 0 (NaN when none are)."""
    valid = np.isfinite(gt) & np.isfinite(pred) & (gt > 0)
    return float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid])) if valid.any() else float("nan")


# ---- normals, masks, boxes -----------------------------------------------------------------------
def angular_error_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) between vectors ``[..., 3]``, element-wise."""
    cos = np.einsum("...i,...i->...", a, b) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (NaN when both are empty)."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def box_iou(a, b) -> float:
    """Intersection over union of two 2D boxes ``[u_min, v_min, u_max, v_max]`` (0 when either is None)."""
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


# ---- correspondences, surfaces, poses ---------------------------------------------------------------
def flow_metrics(pred, gt, tol_px: float = 2.0) -> dict:
    """Counts to pool over frame pairs: co-visible pixels, those whose flow is within ``tol_px`` of
    the truth, and the true / all positives of the visibility flag (`sensors.flow.Correspondences`)."""
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


def pose_errors(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """Rotation error (degrees) and translation error (scene units) between two poses."""
    return rotation_angle_deg(T_est[:3, :3], T_true[:3, :3]), float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))
