"""Actor pose inversion's wide-basin steps: a coarse-to-fine grid search over the actor's ground-plane
position and yaw scored photometrically (`search_actor`), a slide along the camera's line of sight,
and the final pattern search on every pixel (`polish_actor`). An actor is composited alone over the
rest of the scene, rendered once (`ActorScore`), so a candidate pose costs only the rays through its
box. Actor frame: x forward, y left, z up; moves are (x, y, yaw) in the actor's own frame.
"""

from __future__ import annotations

import numpy as np
import torch

from scenes.transforms import invert_pose
from scenes.lens import CameraModel
from tasks.pose.problem import InversionConfig, PoseProblem


class ActorScore:
    """Photometric error (MSE) of an actor's pose over pixels ``idx`` of the image: the actor alone
    composited over the rest of the scene, which is rendered once, so a pose costs only the rays
    through the actor's box. With ``shape`` (``idx`` a row-major pixel grid), scores can blur both
    images first (``sigma`` in grid pixels)."""

    @torch.no_grad()
    def __init__(self, problem: PoseProblem, slot: int, pose_of, T_ref: np.ndarray, idx: np.ndarray, shape=None):
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


def moved(T: np.ndarray, xyyaw: np.ndarray) -> np.ndarray:
    """``T`` moved by (x, y, yaw in degrees) in its own frame."""
    delta = np.eye(4)
    c, s = np.cos(np.radians(xyyaw[2])), np.sin(np.radians(xyyaw[2]))
    delta[:2, :2] = [[c, -s], [s, c]]
    delta[:2, 3] = xyyaw[:2]
    return T @ delta


def search_actor(problem: PoseProblem, slot: int, pose_of, T_start: np.ndarray, cfg: InversionConfig,
                  full: ActorScore) -> tuple[np.ndarray, int]:
    """Coarse-to-fine grid search of an actor's x, y and yaw (its own frame) around ``T_start``:
    a 5x5x5 grid, then from each of its ``actor_search_branches`` best candidates
    (``actor_search_levels`` - 1) 3x3x3 grids, each halving the step around the best so far, scored
    (`ActorScore`) on a pixel grid of at most ``actor_search_rays`` over ``full``'s region (wherever
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
    score = ActorScore(problem, slot, pose_of, T_start, (rows[:, None] * W + cols[None, :]).reshape(-1), (len(rows), len(cols)))
    depth = (invert_pose(np.asarray(score.T_cam, np.float64)) @ T_start)[2, 3]
    px_per_unit = max(problem.lens.fx, problem.lens.fy) / max(depth, 1e-3) / stride  # search-grid pixels per scene unit

    step0 = np.array([cfg.actor_search_xy / 2, cfg.actor_search_xy / 2, cfg.actor_search_yaw_deg / 2])
    k = np.arange(-2, 3)
    grid = [step0 * (i, j, m) for i in k for j in k for m in k]
    ranked = sorted(grid, key=lambda c: score(moved(T_start, c), step0[0] * px_per_unit))
    n = len(grid)
    finalists = []
    for best in ranked[: cfg.actor_search_branches]:
        step = step0 / 2
        for level in range(1, cfg.actor_search_levels):
            grid = [best + step * (i, j, m) for i in (-1, 0, 1) for j in (-1, 0, 1) for m in (-1, 0, 1)]
            best = min(grid, key=lambda c: score(moved(T_start, c), step[0] * px_per_unit))  # scores compare within a level only
            n += len(grid)
            step = step / 2
        finalists.append(best)
    best = min(finalists, key=lambda c: full(moved(T_start, c)))
    n += len(finalists)
    T, n_line = _line_of_sight_search(moved(T_start, best), cfg, full)
    # Distance along the line of sight and yaw trade off: one more fine level on every pixel around
    # the slid pose, then slide again.
    grid = [step * (i, j, m) for i in (-1, 0, 1) for j in (-1, 0, 1) for m in (-1, 0, 1)]
    T, n_line2 = _line_of_sight_search(moved(T, min(grid, key=lambda c: full(moved(T, c)))), cfg, full)
    return T, n + n_line + len(grid) + n_line2


def _line_of_sight_search(T: np.ndarray, cfg: InversionConfig, score: ActorScore) -> tuple[np.ndarray, int]:
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


def polish_actor(T: np.ndarray, cfg: InversionConfig, score: ActorScore, max_moves: int = 8) -> tuple[np.ndarray, int]:
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
            candidates = [moved(T, sign * axis * scale) for axis in axes for sign in (-1.0, 1.0)]
            scores = [score(c) for c in candidates]
            n += len(candidates)
            if min(scores) >= best:
                break
            T, best = candidates[int(np.argmin(scores))], min(scores)
        scale = scale / 2
    return T, n



def box_region(lens: CameraModel, T_world_cam: np.ndarray, size, T_world_actor: np.ndarray, grow: float = 0.5) -> np.ndarray:
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


