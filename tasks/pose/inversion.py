"""iNeRF: camera pose (localisation) and actor 6-DoF pose from an image, by gradient descent through
the composed scene, from a start that a wide-basin step has moved first.

The photometric loss of a NeRF has a narrow basin (a start 15-40 degrees off mostly does not
converge), so each start is first moved:

- cameras, by feature matching: render the scene from the start (on a canvas wider than the image,
  then at the image's size), match SIFT features of the render and the image, lift the render's by
  its depth to 3D and solve PnP with RANSAC (`match_rounds`); a short gentle descent polishes it;
- actors, by a coarse-to-fine grid search over ground-plane position and yaw (`actor_search_xy`,
  `actor_search_yaw_deg`: the initial pose's uncertainty), scored photometrically with the actor
  alone composited over the rest of the scene rendered once, blurred by each level's step, the
  first level's few best candidates each refined and the best on every pixel kept
  (`actor_search_branches`); then a slide along the camera's line of sight on every pixel (the
  direction a far actor's image barely shows); then the descent, whose result is kept only where it
  renders the region better; last, a pattern search on every pixel along and across the line of
  sight and in yaw (`actor_polish_xy`), which the descent's random rays stop short of.

Conventions: OpenCV cameras, ``T_world_cam`` camera -> world; actor frame x forward, y left, z up.
A pose is updated on the right, ``T = T_init @ exp(xi)`` (`sim.lie`), so ``xi`` is a perturbation in
the pose's own frame; Adam on the 6 twist coordinates, learning rate decayed exponentially.

Each iteration renders ``rays`` pixels of the image: ``random``, ``interest_points`` (SIFT/ORB
keypoints, OpenCV) or ``interest_regions`` (the keypoints dilated, iNeRF's best); a fifth of the
rays stays random so textureless images still work. Coarse to fine: the fields' finest hash-grid
levels fade in over the first part of the run (BARF), so the first steps see a smooth scene with a
wide basin (`coarse_to_fine`, off by default: see its note). Loss: Huber on RGB (robust to what the scene cannot explain). When the final photometric
check fails, more hypotheses start from perturbed initial poses and the best one wins.
The fields' parameters are frozen: only the pose gets gradients.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
import torch

from scenes.errors import InputError
from scenes.graph import SceneState
from scenes.settings import ANY_FINITE, AT_LEAST_ONE, POSITIVE, Range
from scenes.transforms import invert_pose
from sensors.lens import CameraModel
from sim.compose import ActorRays, NeuralScene
from sim.field import RadianceField
from sim.lie import se3_exp
from sim.render import actor_rays_for_state

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


def _draw_pixels(mask_idx: np.ndarray, n_pixels: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` flat pixel indices: four fifths from the mask (when it has any), the rest uniform."""
    n_mask = int(0.8 * n) if len(mask_idx) else 0
    return np.concatenate([mask_idx[rng.integers(len(mask_idx), size=n_mask)] if n_mask else np.zeros(0, np.int64),
                           rng.integers(n_pixels, size=n - n_mask)])


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


def _solve_pnp(points_world: np.ndarray, uv: np.ndarray, lens: CameraModel, cfg: InversionConfig) -> tuple[np.ndarray | None, int]:
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


# --------------------------------------------------------------------------------------- core
def _fields(model: NeuralScene) -> list[RadianceField]:
    """The hash-grid fields of the scene (other field types have no levels to anneal)."""
    return [f for f in [model.background] + [model.actor_field(a) for a in model.asset_ids] if isinstance(f, RadianceField)]


def _set_coarse_to_fine(model: NeuralScene, progress: float, cfg: InversionConfig) -> None:
    for fld in _fields(model):
        if cfg.coarse_to_fine <= 0 or progress >= cfg.coarse_to_fine:
            fld.set_level_weights(None)
            continue
        L = fld.cfg.grid.n_levels
        alpha = cfg.start_levels + (L - cfg.start_levels) * progress / cfg.coarse_to_fine
        k = torch.arange(L, dtype=torch.float32)
        fld.set_level_weights((1 - torch.cos(torch.pi * (alpha - k).clamp(0, 1))) / 2)


def _huber(pred: torch.Tensor, target: torch.Tensor, delta: float) -> torch.Tensor:
    return torch.nn.functional.huber_loss(pred, target, delta=delta, reduction="mean")


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return Rotation.from_rotvec(axis * np.radians(rng.uniform(0, max_deg))).as_matrix()


class _Problem:
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
        self._features: _Features | None = None

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

    def image_features(self) -> _Features:
        if self._features is None:
            self._features = _features(self.target.reshape(self.lens.height, self.lens.width, 3).numpy())
        return self._features

    def psnr(self, T_world_cam: torch.Tensor, actors, rng) -> float:
        idx = self.valid_idx[rng.integers(len(self.valid_idx), size=self.cfg.check_rays)]
        with torch.no_grad():
            mse = float(((self.render(T_world_cam, idx, actors).clamp(0, 1) - self.target[idx]) ** 2).mean())
        return float(-10 * np.log10(max(mse, 1e-10)))


def _match_camera(problem: _Problem, T_start: np.ndarray, cfg: InversionConfig) -> tuple[np.ndarray, int]:
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


def _match_view(problem: _Problem, T_world_cam: np.ndarray, lens: CameraModel, cfg: InversionConfig) -> tuple[np.ndarray | None, int]:
    """One round: render ``lens``' view from ``T_world_cam``, match it to the image, lift the
    render's matched features to world points by its depth and solve PnP for the image's pose."""
    if lens.kind != "pinhole":  # renders are pinhole canvases; the image's own lens may be anything
        lens = _canvas(lens, 1.0)
    target = problem.image_features()
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
    return _solve_pnp(points, target.uv[pairs[hit, 1]], problem.lens, cfg)


class _ActorScore:
    """Photometric error (MSE) of an actor's pose over pixels ``idx`` of the image: the actor alone
    composited over the rest of the scene, which is rendered once, so a pose costs only the rays
    through the actor's box. With ``shape`` (``idx`` a row-major pixel grid), scores can blur both
    images first (``sigma`` in grid pixels)."""

    @torch.no_grad()
    def __init__(self, problem: _Problem, slot: int, pose_of, T_ref: np.ndarray, idx: np.ndarray, shape=None):
        self.problem, self.slot, self.pose_of, self.shape, self.idx = problem, slot, pose_of, shape, idx
        self.T_cam, actors = pose_of(torch.as_tensor(T_ref, dtype=torch.float32))
        self.rest = problem.render(self.T_cam, idx, [a for i, a in enumerate(actors) if i != slot])
        self.d = problem.d_cam[idx] @ self.T_cam[:3, :3].T
        self.o = self.T_cam[:3, 3].expand_as(self.d)
        self.target = problem.target[idx]
        self._blurred: dict[float, np.ndarray] = {}

    def _blur(self, rgb: torch.Tensor, sigma: float) -> np.ndarray:
        import cv2

        return cv2.GaussianBlur(rgb.reshape(*self.shape, 3).numpy(), (0, 0), sigma)

    @torch.no_grad()
    def __call__(self, T: np.ndarray, sigma: float = 0.0) -> float:
        actor = self.pose_of(torch.as_tensor(T, dtype=torch.float32))[1][self.slot]
        out = self.problem.model.render_rays(self.o, self.d, [actor], background=False, far_rgb=torch.zeros(3))
        composite = out["rgb"] + (1 - out["accumulation"])[:, None] * self.rest
        if sigma < 0.5:
            return float(((composite - self.target) ** 2).mean())
        if sigma not in self._blurred:
            self._blurred[sigma] = self._blur(self.target, sigma)
        return float(((self._blur(composite, sigma) - self._blurred[sigma]) ** 2).mean())


def _moved(T: np.ndarray, xyyaw: np.ndarray) -> np.ndarray:
    """``T`` moved by (x, y, yaw in degrees) in its own frame."""
    delta = np.eye(4)
    c, s = np.cos(np.radians(xyyaw[2])), np.sin(np.radians(xyyaw[2]))
    delta[:2, :2] = [[c, -s], [s, c]]
    delta[:2, 3] = xyyaw[:2]
    return T @ delta


def _search_actor(problem: _Problem, slot: int, pose_of, T_start: np.ndarray, cfg: InversionConfig,
                  full: _ActorScore) -> tuple[np.ndarray, int]:
    """Coarse-to-fine grid search of an actor's x, y and yaw (its own frame) around ``T_start``:
    a 5x5x5 grid, then from each of its ``actor_search_branches`` best candidates
    (``actor_search_levels`` - 1) 3x3x3 grids, each halving the step around the best so far, scored
    (`_ActorScore`) on a pixel grid of at most ``actor_search_rays`` over ``full``'s region (wherever
    the search may put the actor), both images blurred by the level's step as seen in the image: a
    car's photometric basin is a few pixels wide, and unblurred, candidates half a metre apart that
    all miss it rank at random. The branch that ``full`` (every pixel) scores best goes on to
    `_line_of_sight_search`. Returns the pose and the number of poses scored."""
    W = problem.lens.width
    region = np.zeros(len(problem.target), bool)
    region[full.idx] = True
    rows, cols = np.nonzero(region.reshape(-1, W).any(1))[0], np.nonzero(region.reshape(-1, W).any(0))[0]
    stride = max(1, int(np.ceil(np.sqrt(len(rows) * len(cols) / cfg.actor_search_rays))))
    rows, cols = np.arange(rows[0], rows[-1] + 1, stride), np.arange(cols[0], cols[-1] + 1, stride)
    score = _ActorScore(problem, slot, pose_of, T_start, (rows[:, None] * W + cols[None, :]).reshape(-1), (len(rows), len(cols)))
    depth = (invert_pose(np.asarray(score.T_cam, np.float64)) @ T_start)[2, 3]
    px_per_unit = max(problem.lens.fx, problem.lens.fy) / max(depth, 1e-3) / stride  # search-grid pixels per scene unit

    step0 = np.array([cfg.actor_search_xy / 2, cfg.actor_search_xy / 2, cfg.actor_search_yaw_deg / 2])
    k = np.arange(-2, 3)
    grid = [step0 * (i, j, m) for i in k for j in k for m in k]
    ranked = sorted(grid, key=lambda c: score(_moved(T_start, c), step0[0] * px_per_unit))
    n = len(grid)
    finalists = []
    for best in ranked[: cfg.actor_search_branches]:
        step = step0 / 2
        for level in range(1, cfg.actor_search_levels):
            grid = [best + step * (i, j, m) for i in (-1, 0, 1) for j in (-1, 0, 1) for m in (-1, 0, 1)]
            best = min(grid, key=lambda c: score(_moved(T_start, c), step[0] * px_per_unit))  # scores compare within a level only
            n += len(grid)
            step = step / 2
        finalists.append(best)
    best = min(finalists, key=lambda c: full(_moved(T_start, c)))
    n += len(finalists)
    T, n_line = _line_of_sight_search(_moved(T_start, best), cfg, full)
    # Distance along the line of sight and yaw trade off: one more fine level on every pixel around
    # the slid pose, then slide again.
    grid = [step * (i, j, m) for i in (-1, 0, 1) for j in (-1, 0, 1) for m in (-1, 0, 1)]
    T, n_line2 = _line_of_sight_search(_moved(T, min(grid, key=lambda c: full(_moved(T, c)))), cfg, full)
    return T, n + n_line + len(grid) + n_line2


def _line_of_sight_search(T: np.ndarray, cfg: InversionConfig, score: _ActorScore) -> tuple[np.ndarray, int]:
    """Slide the actor along the camera's line of sight through its centre (on the ground plane),
    scored on every pixel of its region: that direction only changes the actor's size in the image
    (1% for 17 cm at 17 m), which a subsampled or blurred score and the descent's random rays miss.
    Two passes of 9 offsets: +-4 steps of 10% of the search width, then of a quarter of that."""
    ray = T[:3, 3] - np.asarray(score.T_cam[:3, 3], np.float64)
    ray[2] = 0.0
    ray /= max(np.linalg.norm(ray), 1e-9)

    def at(offset: float) -> np.ndarray:
        out = T.copy()
        out[:3, 3] += offset * ray
        return out

    best, step = 0.0, 0.1 * max(cfg.actor_search_xy, 0.1)
    for _ in range(2):
        best = min((best + k * step for k in range(-4, 5)), key=lambda off: score(at(off)))
        step /= 4
    return at(best), 18


def _polish_actor(T: np.ndarray, cfg: InversionConfig, score: _ActorScore, max_moves: int = 8) -> tuple[np.ndarray, int]:
    """Pattern search of ``T`` on ``score`` (every pixel): steps along the camera's line of sight
    and across it on the ground plane, and in yaw, taken while they lower the score (at most
    ``max_moves`` per level), each level halving the steps. Returns the pose and the poses scored."""
    ray = T[:3, 3] - np.asarray(score.T_cam[:3, 3], np.float64)
    ray[2] = 0.0
    ray /= max(np.linalg.norm(ray), 1e-9)
    along = T[:3, :3].T @ ray  # the line of sight in the actor's frame (x, y)
    across = np.array([-along[1], along[0], 0.0])
    axes = [np.array([along[0], along[1], 0.0]), across, np.array([0.0, 0.0, 1.0])]
    scale = np.array([cfg.actor_polish_xy, cfg.actor_polish_xy, cfg.actor_polish_yaw_deg])
    best, n = score(T), 1
    for _ in range(cfg.actor_polish_levels):
        for _ in range(max_moves):
            candidates = [_moved(T, sign * axis * scale) for axis in axes for sign in (-1.0, 1.0)]
            scores = [score(c) for c in candidates]
            n += len(candidates)
            if min(scores) >= best:
                break
            T, best = candidates[int(np.argmin(scores))], min(scores)
        scale = scale / 2
    return T, n


def _optimise(problem: _Problem, pose_of, start: np.ndarray, cfg: InversionConfig, rng,
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
        _set_coarse_to_fine(problem.model, it / iterations, cfg)
        idx = _draw_pixels(problem.mask_idx, len(problem.target), cfg.rays, rng)
        idx = idx[np.isin(idx, problem.valid_idx)] if len(problem.valid_idx) < len(problem.target) else idx
        xi = torch.cat([rho, phi])
        T_cam, actors = pose_of(T0 @ se3_exp(xi))
        loss = _huber(problem.render(T_cam, idx, actors), problem.target[idx], cfg.huber_delta)
        if loss.requires_grad:  # else no drawn ray reached what the pose moves (an actor out of view): it stays
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        trajectory.append((T0 @ se3_exp(torch.cat([rho, phi]))).detach().double().numpy())
    _set_coarse_to_fine(problem.model, 1.0, cfg)
    T_final = torch.as_tensor(trajectory[-1], dtype=torch.float32)
    return trajectory[-1], losses, np.stack(trajectory), problem.psnr(*pose_of(T_final), rng)


def _run(problem: _Problem, pose_of, T_init: np.ndarray, cfg: InversionConfig, *, restart_translation_axes=(0, 1, 2),
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
                delta[:3, :3] = _random_rotation(rng, cfg.restart_rotation_deg)
                for a in restart_translation_axes:
                    delta[a, 3] = rng.uniform(-cfg.restart_translation, cfg.restart_translation)
                start = start @ delta
            if match is not None:
                matched, inliers = match(start)
                match_inliers.append(inliers)
                T, losses, traj, psnr = _optimise(problem, pose_of, matched, cfg, rng, refine if inliers > 0 else None)
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
                T, losses, traj, psnr = _optimise(problem, pose_of, start, cfg, rng)
            tried.append(psnr)
            steps += len(losses)
            if best is None or psnr > best[3]:
                best = (T, losses, traj, psnr)
            if psnr >= cfg.converged_psnr:
                break
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        for fld in _fields(model):
            fld.set_level_weights(None)
    T, losses, traj, psnr = best
    return InversionResult(T, losses, traj, steps, time.perf_counter() - t0, psnr >= cfg.converged_psnr,
                           psnr, len(tried), tried, match_inliers)


def invert_camera_pose(model: NeuralScene, image: np.ndarray, lens: CameraModel, T_init: np.ndarray,
                       state: SceneState = SceneState(0.0), cfg: InversionConfig = InversionConfig(),
                       far_rgb=None) -> InversionResult:
    """Localise a camera: the ``T_world_cam`` whose render of ``state`` matches ``image``
    (float ``[H, W, 3]`` in [0, 1], the lens' size), starting from ``T_init``. ``far_rgb``: colour
    beyond the scene (e.g. the white background of Blender data) when the model has no sky."""
    problem = _Problem(model, image, lens, state, far_rgb, cfg)
    match = (lambda T: _match_camera(problem, T, cfg)) if cfg.match_rounds > 0 else None
    return _run(problem, lambda T: (T, problem.actors), T_init, cfg, match=match, refine=(cfg.refine_iterations, cfg.refine_lr_scale))


def invert_actor_pose(model: NeuralScene, image: np.ndarray, lens: CameraModel, T_world_cam: np.ndarray,
                      state: SceneState, actor_id: str, T_init: np.ndarray, cfg: InversionConfig = InversionConfig(),
                      far_rgb=None) -> InversionResult:
    """Object pose: the ``T_world_actor`` of ``actor_id`` that explains ``image`` seen from the
    known camera, the rest of ``state`` fixed. Rays are drawn around the actor's initial box."""
    slot = next((i for i, a in enumerate(state.actors) if a.actor_id == actor_id), None)
    if slot is None:
        raise InputError("invert_actor_pose", "actor_id", f"no actor '{actor_id}' at this time; known: {[a.actor_id for a in state.actors]}")
    region = _box_region(lens, T_world_cam, state.actors[slot].size, T_init)
    problem = _Problem(model, image, lens, state, far_rgb, cfg, region)
    T_cam = torch.as_tensor(T_world_cam, dtype=torch.float32)
    base = problem.actors

    def pose_of(T_world_actor: torch.Tensor):
        R, t = T_world_actor[:3, :3], T_world_actor[:3, 3]
        T_actor_world = torch.eye(4).clone()
        T_actor_world[:3, :3] = R.T
        T_actor_world[:3, 3] = -(R.T @ t)
        a = base[slot]
        moved = ActorRays(a.asset_id, a.instance_id, a.size, T_actor_world[None])
        return T_cam, [moved if i == slot else b for i, b in enumerate(base)]

    # Restarts perturb the ground-plane position only (x, y): a car stays on the road.
    # The score on every pixel looks wherever the search may put the actor: a region around the
    # start alone would cut off an actor that is really a metre away and pull it towards the start.
    reach = np.asarray(state.actors[slot].size, np.float64) + [2 * cfg.actor_search_xy, 2 * cfg.actor_search_xy, 0.0]
    wide = _box_region(lens, T_world_cam, reach, T_init).reshape(-1)
    wide_idx = np.intersect1d(np.flatnonzero(wide), problem.valid_idx)
    full = _ActorScore(problem, slot, pose_of, T_init, wide_idx)

    @torch.no_grad()
    def judge(T: np.ndarray) -> float:
        """The whole scene rendered (not composited: exact where the actor touches the ground)."""
        T_cam, actors = pose_of(torch.as_tensor(T, dtype=torch.float32))
        return float(((problem.render(T_cam, wide_idx, actors) - problem.target[wide_idx]) ** 2).mean())

    search = cfg.actor_search_xy > 0 or cfg.actor_search_yaw_deg > 0
    match = (lambda T: _search_actor(problem, slot, pose_of, T, cfg, full)) if search else None
    polish = (lambda T: _polish_actor(T, cfg, full)[0]) if search and cfg.actor_polish_xy > 0 else None
    return _run(problem, pose_of, T_init, cfg, restart_translation_axes=(0, 1), match=match,
                refine=(cfg.actor_refine_iterations, 1.0), judge=judge, polish=polish)


def _box_region(lens: CameraModel, T_world_cam: np.ndarray, size, T_world_actor: np.ndarray, grow: float = 0.5) -> np.ndarray:
    """Pixels of the box's projected 2D extent, grown by ``grow`` of its size on every side."""
    from sensors.boxes import amodal_box

    box, _ = amodal_box(lens, size, invert_pose(T_world_cam) @ T_world_actor)
    mask = np.zeros((lens.height, lens.width), bool)
    if box is None:
        return mask | True
    u0, v0, u1, v1 = box
    du, dv = (u1 - u0) * grow, (v1 - v0) * grow
    mask[max(0, int(v0 - dv)) : int(np.ceil(v1 + dv)), max(0, int(u0 - du)) : int(np.ceil(u1 + du))] = True
    return mask


def write_localization(out, res: InversionResult, view) -> None:
    """``result.json``, ``cameras.json`` (the estimated pose, `tasks.cli.camera_files` format) and ``loss.png``."""
    import json
    from pathlib import Path

    from scenes.files import atomic_write, atomic_write_text

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"T_world_cam": res.T.tolist(), "converged": res.converged, "psnr": res.psnr, "iterations": res.iterations,
              "match_inliers": res.match_inliers,
              "hypotheses": res.hypotheses, "hypothesis_psnr": res.all_psnr, "seconds": res.seconds, "losses": res.losses}
    camera = {"cameras": [{"name": view.name, "time": view.time, "model": view.model.to_dict(), "T_world_cam": res.T.tolist()}]}
    for name, doc in (("result.json", result), ("cameras.json", camera)):
        atomic_write_text(out / name, json.dumps(doc, indent=1))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy(res.losses)
    ax.set_xlabel("iteration")
    ax.set_ylabel("Huber loss")
    ax.set_title(f"final PSNR {res.psnr:.1f} dB, {'converged' if res.converged else 'not converged'}")
    fig.tight_layout()
    atomic_write(out / "loss.png", lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
