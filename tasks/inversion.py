"""iNeRF: camera pose (localisation) and actor 6-DoF pose from an image, by gradient descent through
the composed scene.

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

import numpy as np
import torch

from scenes.errors import InputError
from scenes.graph import SceneState
from scenes.transforms import invert_pose, rotation_angle_deg
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
    rays: int = 1024
    """Pixels rendered per step."""
    sampling: str = "interest_regions"
    """random | interest_points | interest_regions."""
    lr: float = 0.01
    """Initial learning rate of the rotation part of the twist (radians). 0.03 made the street's
    camera wander off (0.7 deg -> 17 deg); 0.01 brought it to 0.04 deg."""
    lr_translation: float = 0.03
    """Initial learning rate of the translation part (scene units). lego-200, 150 steps: 0.01 left a
    0.7 deg / 0.21 start at 1.7 deg / 0.11, 0.03 brought it to 0.24 deg / 0.014."""
    lr_final: float = 0.1
    """Learning rates at the last step, as a fraction of the initial ones (exponential decay)."""
    """Learning rate at the last step (exponential decay)."""
    huber_delta: float = 0.1
    """Huber loss transition (RGB units); robust to unexplained pixels."""
    coarse_to_fine: float = 0.0
    """Fraction of the run over which the fine hash-grid levels fade in (0 = all levels from the
    start). Off by default: the fields were trained with every level, and fading levels of a trained
    field changes its density rather than blurring it (lego-200: no better at 0.5 than at 0)."""
    start_levels: float = 4.0
    """Hash-grid levels fully on at the first step of coarse-to-fine."""
    hypotheses: int = 3
    """Starts in all: the given pose, then perturbed ones while the photometric check fails."""
    restart_rotation_deg: float = 20.0
    restart_translation: float = 0.1
    """Perturbation of the extra starts (rotation about a random axis; translation per axis, scene units)."""
    converged_psnr: float = 20.0
    """A hypothesis converged when the PSNR of ``check_rays`` random pixels reaches this."""
    check_rays: int = 4096
    seed: int = 0


@dataclass
class InversionResult:
    T: np.ndarray
    """The estimated pose (``T_world_cam`` or ``T_world_actor``)."""
    losses: list
    """Loss per step of the winning hypothesis."""
    trajectory: np.ndarray
    """Pose after every step ``[iterations + 1, 4, 4]`` of the winning hypothesis (step 0 = its start)."""
    iterations: int
    seconds: float
    converged: bool
    psnr: float
    hypotheses: int
    all_psnr: list = field(default_factory=list)


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

    def render(self, T_world_cam: torch.Tensor, idx: np.ndarray, actors) -> torch.Tensor:
        d = self.d_cam[idx] @ T_world_cam[:3, :3].T
        o = T_world_cam[:3, 3].expand_as(d)
        far = None if self.far is None else self.far.expand_as(d)
        return self.model.render_rays(o, d, actors, far_rgb=far)["rgb"]

    def psnr(self, T_world_cam: torch.Tensor, actors, rng) -> float:
        idx = self.valid_idx[rng.integers(len(self.valid_idx), size=self.cfg.check_rays)]
        with torch.no_grad():
            mse = float(((self.render(T_world_cam, idx, actors).clamp(0, 1) - self.target[idx]) ** 2).mean())
        return float(-10 * np.log10(max(mse, 1e-10)))


def _optimise(problem: _Problem, pose_of, start: np.ndarray, cfg: InversionConfig, rng) -> tuple:
    """Adam on the twist of ``start``; ``pose_of(T) -> (T_world_cam, actors)`` renders a candidate."""
    T0 = torch.as_tensor(start, dtype=torch.float32)
    rho, phi = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([{"params": [rho], "lr": cfg.lr_translation}, {"params": [phi], "lr": cfg.lr}])
    gamma = cfg.lr_final ** (1.0 / max(cfg.iterations, 1))
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma)
    losses, trajectory = [], [start.copy()]
    for it in range(cfg.iterations):
        _set_coarse_to_fine(problem.model, it / cfg.iterations, cfg)
        idx = _draw_pixels(problem.mask_idx, len(problem.target), cfg.rays, rng)
        idx = idx[np.isin(idx, problem.valid_idx)] if len(problem.valid_idx) < len(problem.target) else idx
        xi = torch.cat([rho, phi])
        T_cam, actors = pose_of(T0 @ se3_exp(xi))
        loss = _huber(problem.render(T_cam, idx, actors), problem.target[idx], cfg.huber_delta)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        trajectory.append((T0 @ se3_exp(torch.cat([rho, phi]))).detach().double().numpy())
    _set_coarse_to_fine(problem.model, 1.0, cfg)
    T_final = torch.as_tensor(trajectory[-1], dtype=torch.float32)
    return trajectory[-1], losses, np.stack(trajectory), problem.psnr(*pose_of(T_final), rng)


def _run(problem: _Problem, pose_of, T_init: np.ndarray, cfg: InversionConfig, restart_translation_axes=(0, 1, 2)) -> InversionResult:
    rng = np.random.default_rng(cfg.seed)
    model = problem.model
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    t0 = time.perf_counter()
    best, tried = None, []
    try:
        for h in range(max(1, cfg.hypotheses)):
            start = np.array(T_init, dtype=np.float64)
            if h > 0:  # another hypothesis: the start perturbed in its own frame
                delta = np.eye(4)
                delta[:3, :3] = _random_rotation(rng, cfg.restart_rotation_deg)
                for a in restart_translation_axes:
                    delta[a, 3] = rng.uniform(-cfg.restart_translation, cfg.restart_translation)
                start = start @ delta
            T, losses, traj, psnr = _optimise(problem, pose_of, start, cfg, rng)
            tried.append(psnr)
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
    return InversionResult(T, losses, traj, cfg.iterations * len(tried), time.perf_counter() - t0, psnr >= cfg.converged_psnr,
                           psnr, len(tried), tried)


def invert_camera_pose(model: NeuralScene, image: np.ndarray, lens: CameraModel, T_init: np.ndarray,
                       state: SceneState = SceneState(0.0), cfg: InversionConfig = InversionConfig(),
                       far_rgb=None) -> InversionResult:
    """Localise a camera: the ``T_world_cam`` whose render of ``state`` matches ``image``
    (float ``[H, W, 3]`` in [0, 1], the lens' size), starting from ``T_init``. ``far_rgb``: colour
    beyond the scene (e.g. the white background of Blender data) when the model has no sky."""
    problem = _Problem(model, image, lens, state, far_rgb, cfg)
    return _run(problem, lambda T: (T, problem.actors), T_init, cfg)


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
    return _run(problem, pose_of, T_init, cfg, restart_translation_axes=(0, 1))


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


def pose_errors(T_est: np.ndarray, T_true: np.ndarray) -> tuple[float, float]:
    """Rotation error (degrees) and translation error (scene units) between two poses."""
    return rotation_angle_deg(T_est[:3, :3], T_true[:3, :3]), float(np.linalg.norm(T_est[:3, 3] - T_true[:3, 3]))


def write_localization(out, res: InversionResult, view) -> None:
    """``result.json``, ``cameras.json`` (the estimated pose, `tasks.cameras` format) and ``loss.png``."""
    import json
    from pathlib import Path

    from scenes.files import atomic_write, atomic_write_text

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"T_world_cam": res.T.tolist(), "converged": res.converged, "psnr": res.psnr, "iterations": res.iterations,
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
