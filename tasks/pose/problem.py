"""The engine of pose inversion (`tasks.pose.inversion`): its settings and result, the pixels each
step renders, one pose optimisation (`PoseProblem`: rays of the image for a pose, the loss and the
photometric check), Adam on an SE(3) twist (`optimise`) and the hypotheses around it
(`run_hypotheses`). Conventions: OpenCV cameras, ``T_world_cam`` camera -> world; a pose is updated
on the right, ``T = T_init @ exp(xi)`` (`sim.lie`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch

from scenes.graph import SceneState
from scenes.settings import ANY_FINITE, AT_LEAST_ONE, POSITIVE, Range
from scenes.lens import CameraModel
from sim.compose import NeuralScene
from sim.field import RadianceField
from sim.lie import se3_exp
from sim.render import actor_rays_for_state
from tasks.eval.metrics import psnr_from_mse

SAMPLING = ("random", "interest_points", "interest_regions")


@dataclass(frozen=True)
class InversionConfig:
    """Pose optimisation settings."""

    iterations: int = 200
    """Adam steps per hypothesis."""
    rays: Annotated[int, AT_LEAST_ONE] = 1024
    """Pixels rendered per step."""
    sampling: Literal["random", "interest_points", "interest_regions"] = "interest_regions"
    """Which pixels each step renders: uniform, keypoints, or keypoints dilated (iNeRF's best)."""
    lr: Annotated[float, POSITIVE] = 0.01
    """Initial learning rate of the rotation part of the twist (radians). 0.03 made the street's
    camera wander off (0.7 deg -> 17 deg); 0.01 brought it to 0.04 deg."""
    lr_translation: Annotated[float, POSITIVE] = 0.03
    """Initial learning rate of the translation part (scene units). lego-200, 150 steps: 0.01 left a
    0.7 deg / 0.21 start at 1.7 deg / 0.11, 0.03 brought it to 0.24 deg / 0.014."""
    lr_final: Annotated[float, POSITIVE] = 0.1
    """Learning rates at the last step, as a fraction of the initial ones (exponential decay)."""
    huber_delta: Annotated[float, POSITIVE] = 0.1
    """Huber loss transition (RGB units); robust to unexplained pixels."""
    coarse_to_fine: Annotated[float, Range(lo=0.0, hi=1.0)] = 0.0
    """Fraction of the run over which the fine hash-grid levels fade in (0 = all levels from the
    start). Off by default: the fields were trained with every level, and fading levels of a trained
    field changes its density rather than blurring it (lego-200: no better at 0.5 than at 0)."""
    start_levels: float = 4.0
    """Hash-grid levels fully on at the first step of coarse-to-fine."""
    hypotheses: Annotated[int, AT_LEAST_ONE] = 3
    """Starts in all: the given pose, then perturbed ones while the photometric check fails."""
    restart_rotation_deg: float = 20.0
    """Rotation of the extra starts about a random axis, degrees."""
    restart_translation: float = 0.1
    """Translation of the extra starts per axis, scene units."""
    match_rounds: int = 2
    """Feature-matching rounds before the photometric descent (0 = off): render the scene at the
    current estimate, match SIFT features of the render and the image, lift the render's to 3D by
    its depth and solve PnP (RANSAC). Wide basin: a start 40 degrees off still shares features with
    the image, where the photometric loss alone is flat."""
    match_canvas: Annotated[float, Range(lo=1.0)] = 1.6
    """The first round renders a canvas this much larger than the image (same focal length), so
    that a start looking away from the scene's part in the image still sees it."""
    match_wide_canvas: Annotated[float, Range(lo=1.0)] = 3.0
    """When the first round finds too few inliers it tries once more on a canvas this much larger,
    at half the resolution (starts looking far away from the image's content)."""
    match_min_inliers: Annotated[int, Range(lo=4)] = 12
    """PnP solutions with fewer RANSAC inliers are ignored."""
    match_reprojection_px: Annotated[float, POSITIVE] = 2.0
    """RANSAC inlier threshold (pixels of the image)."""
    refine_iterations: int = 20
    """Cameras: Adam steps after a successful feature match (instead of ``iterations``): the matched
    pose is within a fraction of a degree, so a short descent at ``refine_lr_scale`` polishes it."""
    refine_lr_scale: Annotated[float, POSITIVE] = 0.1
    """Learning rates of that descent, as a fraction of ``lr`` / ``lr_translation``: the full rates
    step further than the matched pose's error."""
    actor_search_xy: float = 1.0
    """Actors: half-width (scene units) of a grid search over the actor's ground-plane position
    around ``T_init``, in its own x / y, before the descent (both half-widths 0 = no search). Set
    it to the uncertainty of the initial pose (a detector's, a tracker's): the search looks no
    further."""
    actor_search_yaw_deg: float = 30.0
    """Actors: half-width of the same search over yaw (about the actor's z axis)."""
    actor_search_levels: Annotated[int, AT_LEAST_ONE] = 4
    """Levels of that search: a 5x5x5 grid of half-width steps, then 3x3x3 grids, each halving the step."""
    actor_search_branches: Annotated[int, AT_LEAST_ONE] = 8
    """The search refines this many of its first level's best candidates through the finer levels
    and keeps the one that scores best on every pixel of the region: blurred and subsampled, the
    first level's ranking is only rough (a car a few metres away, cut by the image's edge)."""
    actor_search_rays: Annotated[int, AT_LEAST_ONE] = 1024
    """At most this many pixels (a strided grid over the actor's region) score each candidate of
    the search's levels; the line-of-sight slide uses every pixel."""
    actor_refine_iterations: int = 25
    """Actors: Adam steps after the search (above), at the full learning rates: its last grid step
    (6 cm, 2 degrees by default) is about one full-rate step. World bench (bench/RESULTS.md): 25
    steps 76% success at 8.5 s per estimate, 40 steps 80% at 10.4 s."""
    actor_polish_xy: float = 0.04
    """Actors: after the descent, a pattern search of the pose on every pixel of the region, along
    the camera's line of sight, across it (both on the ground plane, steps of this, scene units) and
    in yaw (``actor_polish_yaw_deg``), halving the steps ``actor_polish_levels`` times: the
    descent's random rays stop 10-20 cm short of the best pose where a car's image changes little
    (cut by the image's edge, far away). 0 = off."""
    actor_polish_yaw_deg: float = 1.0
    """Actors: the pattern search's first yaw step, degrees."""
    actor_polish_levels: int = 3
    """Actors: levels of the pattern search (each halves the steps)."""
    converged_psnr: Annotated[float, ANY_FINITE] = 20.0
    """A hypothesis converged when the PSNR of ``check_rays`` random pixels reaches this."""
    check_rays: Annotated[int, AT_LEAST_ONE] = 4096
    """Random pixels of the photometric check."""
    seed: int = 0
    """Seed of the pixel draws and the extra hypotheses."""


@dataclass
class InversionResult:
    T: np.ndarray
    """The estimated pose (``T_world_cam`` or ``T_world_actor``)."""
    losses: list
    """Loss per step of the winning hypothesis."""
    trajectory: np.ndarray
    """Pose after every step of the winning hypothesis: its start, then (with feature matching) the
    matched pose, then one per iteration."""
    iterations: int
    """Adam steps of all hypotheses together."""
    seconds: float
    converged: bool
    psnr: float
    hypotheses: int
    all_psnr: list = field(default_factory=list)
    match_inliers: list = field(default_factory=list)
    """Per hypothesis, what moved its start before the descent: a camera's PnP inliers (0 = the
    feature matching failed and the start stayed), an actor's number of search candidates."""


# ------------------------------------------------------------------------------------ sampling
def interest_mask(image: np.ndarray, kind: str, dilate_px: int = 5, dilate_iterations: int = 2) -> np.ndarray:
    """Pixels to sample ``[H, W]`` bool: keypoints (``interest_points``) or keypoints dilated
    (``interest_regions``); every pixel for ``random``."""
    if kind not in SAMPLING:
        raise ValueError(f"sampling must be one of {SAMPLING}, got '{kind}'")
    if kind == "random":
        return np.ones(image.shape[:2], bool)
    import cv2

    gray = cv2.cvtColor((np.clip(image, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    detector = cv2.SIFT_create() if hasattr(cv2, "SIFT_create") else cv2.ORB_create(nfeatures=2000)
    mask = np.zeros(gray.shape, np.uint8)
    for kp in detector.detect(gray, None):
        u, v = (int(round(c)) for c in kp.pt)
        if 0 <= v < mask.shape[0] and 0 <= u < mask.shape[1]:
            mask[v, u] = 1
    if kind == "interest_regions":
        mask = cv2.dilate(mask, np.ones((dilate_px, dilate_px), np.uint8), iterations=dilate_iterations)
    return mask.astype(bool)


def draw_pixels(mask_idx: np.ndarray, n_pixels: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` flat pixel indices: four fifths from the mask (when it has any), the rest uniform."""
    n_mask = int(0.8 * n) if len(mask_idx) else 0
    return np.concatenate([mask_idx[rng.integers(len(mask_idx), size=n_mask)] if n_mask else np.zeros(0, np.int64),
                           rng.integers(n_pixels, size=n - n_mask)])


# --------------------------------------------------------------------------------------- core
def hash_grid_fields(model: NeuralScene) -> list[RadianceField]:
    """The hash-grid fields of the scene (other field types have no levels to anneal)."""
    return [f for f in [model.background] + [model.actor_field(a) for a in model.asset_ids] if isinstance(f, RadianceField)]


def set_coarse_to_fine(model: NeuralScene, progress: float, cfg: InversionConfig) -> None:
    for fld in hash_grid_fields(model):
        if cfg.coarse_to_fine <= 0 or progress >= cfg.coarse_to_fine:
            fld.set_level_weights(None)
            continue
        L = fld.cfg.grid.n_levels
        alpha = cfg.start_levels + (L - cfg.start_levels) * progress / cfg.coarse_to_fine
        k = torch.arange(L, dtype=torch.float32)
        fld.set_level_weights((1 - torch.cos(torch.pi * (alpha - k).clamp(0, 1))) / 2)


def huber(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.nn.functional.huber_loss(pred, target, delta=delta, reduction="mean")


def random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * np.radians(rng.uniform(0, max_deg))).as_matrix()


class PoseProblem:
    """What one pose optimisation renders: rays of the image's pixels for a pose, and the loss."""

    def __init__(self, model, image, lens: CameraModel, state: SceneState, far_rgb, cfg: InversionConfig,
                 region: np.ndarray | None = None):
        """``region``: pixels to draw most rays from (default: the ``cfg.sampling`` interest mask)."""
        self.model, self.cfg, self.lens = model, cfg, lens
        self.target = torch.as_tensor(image.reshape(-1, 3), dtype=torch.float32)
        d_cam, valid = lens.pixel_directions()
        self.d_cam = torch.as_tensor(d_cam.reshape(-1, 3), dtype=torch.float32)
        self.valid_idx = np.flatnonzero(valid.reshape(-1))
        region = interest_mask(image, cfg.sampling) if region is None else region
        self.mask_idx = np.flatnonzero((region & valid).reshape(-1))
        self.actors, _ = actor_rays_for_state(model, state)
        self.far = None if far_rgb is None else torch.as_tensor(far_rgb, dtype=torch.float32)
        self.features = None
        """The image's SIFT features, once a camera search asked for them (`tasks.pose.camera_search`)."""

    def render(self, T_world_cam: torch.Tensor, idx: np.ndarray, actors) -> torch.Tensor:
        d = self.d_cam[idx] @ T_world_cam[:3, :3].T
        o = T_world_cam[:3, 3].expand_as(d)
        far = None if self.far is None else self.far.expand_as(d)
        return self.model.render_rays(o, d, actors, far_rgb=far)["rgb"]

    @torch.no_grad()
    def render_view(self, T_world_cam: np.ndarray, lens: CameraModel, actors, chunk: int = 1 << 14) -> tuple[np.ndarray, np.ndarray]:
        """RGB ``[H, W, 3]`` and median ray distance ``[H, W]`` (inf where nothing is hit) of a whole view."""
        d_cam, _ = lens.pixel_directions()
        T = torch.as_tensor(T_world_cam, dtype=torch.float32)
        d = torch.as_tensor(d_cam.reshape(-1, 3), dtype=torch.float32) @ T[:3, :3].T
        rgb, dist = [], []
        for s in range(0, len(d), chunk):
            dc = d[s : s + chunk]
            far = None if self.far is None else self.far.expand_as(dc)
            out = self.model.render_rays(T[:3, 3].expand_as(dc), dc, actors, far_rgb=far, median=True)
            rgb.append(out["rgb"].clamp(0, 1))
            dist.append(torch.where(out["accumulation"] > 0.5, out["depth_median"], torch.inf))
        shape = (lens.height, lens.width)
        return torch.cat(rgb).reshape(*shape, 3).numpy(), torch.cat(dist).reshape(shape).numpy()

    def psnr(self, T_world_cam: torch.Tensor, actors, rng) -> float:
        idx = self.valid_idx[rng.integers(len(self.valid_idx), size=self.cfg.check_rays)]
        with torch.no_grad():
            mse = float(((self.render(T_world_cam, idx, actors).clamp(0, 1) - self.target[idx]) ** 2).mean())
        return psnr_from_mse(mse)


def optimise(problem: PoseProblem, pose_of, start: np.ndarray, cfg: InversionConfig, rng,
              refine: tuple[int, float] | None = None) -> tuple:
    """Adam on the twist of ``start``; ``pose_of(T) -> (T_world_cam, actors)`` renders a candidate.
    ``refine``: (iterations, learning-rate scale) of the descent from a matched start, instead of
    ``cfg.iterations`` at the full rates."""
    T0 = torch.as_tensor(start, dtype=torch.float32)
    rho, phi = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    iterations, scale = refine or (cfg.iterations, 1.0)
    opt = torch.optim.Adam([{"params": [rho], "lr": cfg.lr_translation * scale}, {"params": [phi], "lr": cfg.lr * scale}])
    gamma = cfg.lr_final ** (1.0 / max(iterations, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    losses, trajectory = [], [start.copy()]
    for it in range(iterations):
        set_coarse_to_fine(problem.model, it / iterations, cfg)
        idx = draw_pixels(problem.mask_idx, len(problem.target), cfg.rays, rng)
        idx = idx[np.isin(idx, problem.valid_idx)] if len(problem.valid_idx) < len(problem.target) else idx
        xi = torch.cat([rho, phi])
        T_cam, actors = pose_of(T0 @ se3_exp(xi))
        loss = huber(problem.render(T_cam, idx, actors), problem.target[idx], cfg.huber_delta)
        if loss.requires_grad:  # else no drawn ray reached what the pose moves (an actor out of view): it stays
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        trajectory.append((T0 @ se3_exp(torch.cat([rho, phi]))).detach().double().numpy())
    set_coarse_to_fine(problem.model, 1.0, cfg)
    T_final = torch.as_tensor(trajectory[-1], dtype=torch.float32)
    return trajectory[-1], losses, np.stack(trajectory), problem.psnr(*pose_of(T_final), rng)


def run_hypotheses(problem: PoseProblem, pose_of, T_init: np.ndarray, cfg: InversionConfig, *, restart_translation_axes=(0, 1, 2),
                   match=None, refine: tuple[int, float] = (0, 1.0), judge=None, polish=None) -> InversionResult:
    """Hypotheses until one passes the photometric check; ``match(T_start) -> (T, support)``, when
    given, moves each start before the descent, which is then ``refine`` (iterations, learning-rate
    scale) where the support is > 0. ``judge(T) -> error``, when given, keeps the matched pose
    where the descent (random rays each step) ended up worse by it; ``polish(T) -> T``, when given,
    moves the pose last, kept where ``judge`` does not find it worse."""
    rng = np.random.default_rng(cfg.seed)
    model = problem.model
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    t0 = time.perf_counter()
    best, tried, match_inliers, steps = None, [], [], 0
    try:
        for h in range(max(1, cfg.hypotheses)):
            start = np.array(T_init, dtype=np.float64)
            if h > 0:  # another hypothesis: the start perturbed in its own frame
                delta = np.eye(4)
                delta[:3, :3] = random_rotation(rng, cfg.restart_rotation_deg)
                for a in restart_translation_axes:
                    delta[a, 3] = rng.uniform(-cfg.restart_translation, cfg.restart_translation)
                start = start @ delta
            if match is not None:
                matched, inliers = match(start)
                match_inliers.append(inliers)
                T, losses, traj, psnr = optimise(problem, pose_of, matched, cfg, rng, refine if inliers > 0 else None)
                traj = np.concatenate([start[None], traj])  # step 0 = the start, step 1 = the matched pose
                if judge is not None and judge(matched) <= judge(T):
                    T, psnr = matched, problem.psnr(*pose_of(torch.as_tensor(matched, dtype=torch.float32)), rng)
                    traj = np.concatenate([traj, matched[None]])  # the last entry is the pose returned
                if polish is not None:
                    polished = polish(T)
                    if judge is None or judge(polished) <= judge(T):
                        T, psnr = polished, problem.psnr(*pose_of(torch.as_tensor(polished, dtype=torch.float32)), rng)
                    traj = np.concatenate([traj, T[None]])
            else:
                T, losses, traj, psnr = optimise(problem, pose_of, start, cfg, rng)
            tried.append(psnr)
            steps += len(losses)
            if best is None or psnr > best[3]:
                best = (T, losses, traj, psnr)
            if psnr >= cfg.converged_psnr:
                break
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        for fld in hash_grid_fields(model):
            fld.set_level_weights(None)
    T, losses, traj, psnr = best
    return InversionResult(T, losses, traj, steps, time.perf_counter() - t0, psnr >= cfg.converged_psnr,
                           psnr, len(tried), tried, match_inliers)

