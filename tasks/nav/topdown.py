"""Pictures of navigation episodes: a top-down map (blocked density cells, actor boxes, trajectory,
goal) beside what the agent's camera sees; video frames and overview images.

Map image axes: world +x to the right, +y up, one pixel per density-map cell (``scale`` times that).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tasks.media import label

FREE, BLOCKED = (0.93, 0.93, 0.9), (0.25, 0.25, 0.28)


class MapCanvas:
    """Draws world geometry onto an image of a `DensityMap`."""

    def __init__(self, dmap, scale: int = 2):
        self.dmap, self.scale = dmap, scale
        base = np.where(dmap.blocked_2d.T[::-1, :, None], np.array(BLOCKED), np.array(FREE)).astype(np.float32)
        big = np.kron(base, np.ones((scale, scale, 1), np.float32))
        self.image = Image.fromarray((big * 255).astype(np.uint8))
        self.draw = ImageDraw.Draw(self.image)

    def px(self, xy: np.ndarray) -> list[tuple[float, float]]:
        ij = (np.asarray(xy, dtype=np.float64).reshape(-1, 2) - self.dmap.origin) / self.dmap.cell
        ny = self.dmap.shape[1]
        return [((i + 0.5) * self.scale, (ny - 0.5 - j) * self.scale) for i, j in ij]

    def boxes(self, state, color=(60, 110, 220)) -> None:
        for a in state.actors:
            T, (hl, hw, _) = a.T_world_actor, np.asarray(a.size) / 2
            corners = np.array([[hl, hw], [hl, -hw], [-hl, -hw], [-hl, hw]]) @ T[:2, :2].T + T[:2, 3]
            self.draw.polygon(self.px(corners), outline=color, fill=tuple(c // 2 + 100 for c in color))

    def path(self, points: np.ndarray, color, width: int = 2) -> None:
        if len(points) >= 2:
            self.draw.line(self.px(np.asarray(points)[:, :2]), fill=color, width=width)

    def disc(self, xy, radius_m: float, color) -> None:
        (u, v), r = self.px(xy)[0], max(2.0, radius_m / self.dmap.cell * self.scale)
        self.draw.ellipse([u - r, v - r, u + r, v + r], outline=color, width=2)

    def array(self) -> np.ndarray:
        return np.asarray(self.image).astype(np.float32) / 255.0


def topdown(env, plan: np.ndarray | None = None) -> np.ndarray:
    """The map of ``env`` now: actors, the trajectory so far (red), the plan (orange), the goal (green)."""
    c = MapCanvas(env.map)
    c.boxes(env.scene_state())
    if plan is not None:
        c.path(plan, (240, 150, 20))
    c.path(np.array(env.trajectory), (220, 30, 30))
    c.disc(env.goal[:2], env.cfg.goal_radius, (20, 160, 40))
    c.disc(env.state.position[:2], env.dynamics.footprint_radius, (220, 30, 30))
    return c.array()


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    w = max(1, round(img.shape[1] * height / img.shape[0]))
    pil = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).resize((w, height), Image.NEAREST)
    return np.asarray(pil).astype(np.float32) / 255.0


def episode_frame(env, plan: np.ndarray | None = None) -> np.ndarray:
    """The agent's camera beside the top-down map, with time and distance to the goal (the camera is
    rendered for the picture when RGB is not among the observations)."""
    m = topdown(env, plan)
    obs = env._last_obs or {}
    if "rgb" in obs:
        view = obs["rgb"].astype(np.float32) / 255.0
    else:
        view = env.render_sensors(("rgb",))["rgb"].reshape(env.cfg.height, env.cfg.width, 3).astype(np.float32)
    view = _fit_height(view, m.shape[0])
    text = f"t={env.t:.1f}s  goal {env.distance_to_goal(env.state):.1f} m"
    pad = np.ones((m.shape[0], 4, 3), np.float32)
    return np.concatenate([label(view, text), pad, m], axis=1)
