"""Baseline controllers for `tasks.nav.env.NavEnv`: a NeRF-Nav-style planner and a reactive depth
controller. Both act through ``act(obs, info) -> action`` after ``reset(env)``.

`NerfNavPlanner` (after Adamkiewicz et al., "Vision-Only Robot Navigation in a Neural Radiance
World", 2022): the scene's density is the collision map. A global route comes from a shortest path
over the density map's free cells (footprint-inflated, soft cost near obstacles); the next stretch of
it is optimised as a trajectory (smoothness + a collision cost from the density-derived clearance +
predicted boxes of moving actors), checked against the field's density at the body's probe points
and replanned every ``replan_every`` steps from where the agent is. The agent tracks it with pure
pursuit; when its time-to-collision drops it stops if standing still keeps it clear, else it hurries on.

`DepthReactiveController`: no map; each step it back-projects the depth image, finds the heading in
the camera's view with the most free space near the goal's bearing, and sets speed by the free
distance ahead.

Conventions: world z up, metres, seconds; actions normalised to [-1, 1] (see `tasks.nav.dynamics`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy import ndimage
from skimage.graph import MCP_Geometric

from scenes.errors import InputError
from tasks.nav.scene import sphere_probe_points
from tasks.nav.startgoal import actor_mask, moving_actor_ids


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


@dataclass
class PlannerConfig:
    """NeRF-Nav-style planner settings."""

    margin: float = 0.25
    """Clearance kept beyond the body (metres): the route and the trajectory keep it where they can."""
    horizon: float = 8.0
    """Length of the optimised stretch of the route, metres."""
    waypoints: int = 16
    """Waypoints of the optimised stretch."""
    iterations: int = 40
    """Adam steps of the trajectory optimisation per replan."""
    replan_every: int = 5
    """Environment steps between replans."""
    cruise: float = 0.8
    """Cruise speed as a fraction of the agent's top speed."""
    lookahead: float = 1.2
    """Pure-pursuit lookahead distance, metres (cars: twice this)."""
    brake_ttc: float = 2.5
    """Time-to-collision (seconds) below which the agent reacts: it stops if standing still keeps it
    clear (a car about to cross its path), otherwise it hurries on at top speed (it is in the car's way)."""


class NerfNavPlanner:
    def __init__(self, cfg: PlannerConfig | None = None):
        self.cfg = cfg or PlannerConfig()
        self.plan: np.ndarray | None = None

    # ---- planning ------------------------------------------------------------------------------
    def reset(self, env) -> None:
        env = env.unwrapped
        self.env = env
        self.moving = moving_actor_ids(env.scene.graph) if env.cfg.moving_actors else set()
        static_actors = {a.actor_id for a in env.scene.graph.actors} - self.moving
        self.static_blocked = env.map.blocked_2d | actor_mask(env.map, env.scene_state(env.cfg.start_time), env.body_band(),
                                                              ids=static_actors)
        self.steps, self.plan = 0, None

    def _update_costs(self) -> None:
        """Route costs over the map, with the moving actors where they are now: 1 in the open, up to
        4 inside the margin, impassable where the body does not fit."""
        env, dmap, r = self.env, self.env.map, self.env.dynamics.footprint_radius
        blocked = self.static_blocked
        if self.moving:
            blocked = blocked | actor_mask(dmap, env.scene_state(), env.body_band(), ids=self.moving)
        self.clear = ndimage.distance_transform_edt(~blocked) * dmap.cell if blocked.any() else np.full(dmap.shape, 1e3)
        cost = 1.0 + 3.0 * np.exp(-np.maximum(self.clear - r - self.cfg.margin, 0.0) / 0.3)
        cost[self.clear <= r + 0.5 * dmap.cell] = -1.0
        self.mcp = MCP_Geometric(cost)
        self.to_goal, _ = self.mcp.find_costs([tuple(dmap.index(env.goal[:2]))])

    def _route(self, xy: np.ndarray) -> np.ndarray | None:
        """Shortest route over the map from ``xy`` to the goal (world points ``[K, 2]``); None when
        the goal cannot be reached now (e.g. a car stands on it)."""
        dmap = self.env.map
        start = tuple(dmap.index(xy))
        if not np.isfinite(self.to_goal[start]):  # in a blocked cell (e.g. brushing an obstacle): nearest reachable one
            ok = np.argwhere(np.isfinite(self.to_goal))
            if len(ok) <= 1:  # only the goal cell itself: it is blocked
                return None
            start = tuple(ok[np.argmin(np.linalg.norm(ok - np.array(start), axis=1))])
        cells = np.array(self.mcp.traceback(start))[::-1]
        return dmap.world(cells)

    def _optimise(self, xy: np.ndarray, route: np.ndarray, t0: float) -> np.ndarray:
        """Optimise the first ``horizon`` metres of ``route`` (waypoints; the first is fixed at ``xy``)."""
        cfg, env = self.cfg, self.env
        seg = np.concatenate([xy[None], route])
        length = min(cfg.horizon, _arc_length(seg)[-1])
        if length < 0.3:
            return seg
        q = np.linspace(0, length, cfg.waypoints)
        init = _at_arc_length(seg, q)
        p = torch.tensor(init[1:], dtype=torch.float32, requires_grad=True)
        p0, end = torch.tensor(init[:1], dtype=torch.float32), torch.tensor(init[-1], dtype=torch.float32)
        clear = _ClearanceField(self.clear, env.map.origin, env.map.cell)
        speed = max(cfg.cruise * env.dynamics.top_speed, 0.3)
        ahead = torch.tensor(q[1:], dtype=torch.float32) / speed  # seconds until each waypoint is reached
        actors = [a for a in env.nearby_actors(env.state, t0) if a["actor_id"] in self.moving]  # the rest are in the map
        r = env.dynamics.footprint_radius + cfg.margin
        opt = torch.optim.Adam([p], lr=0.05)
        for _ in range(cfg.iterations):
            pts = torch.cat([p0, p])
            smooth = ((pts[2:] - 2 * pts[1:-1] + pts[:-2]) ** 2).sum()
            stretch = ((pts[1:] - pts[:-1]).norm(dim=1) - length / (cfg.waypoints - 1)).pow(2).sum()
            collide = torch.relu(r - clear(p)).pow(2).sum()
            for a in actors:
                collide = collide + torch.relu(r - _box_distance(p, a, ahead)).pow(2).sum()
            loss = 10.0 * smooth + stretch + 50.0 * collide + (p[-1] - end).pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return np.concatenate([init[:1], p.detach().numpy().astype(np.float64)])

    def _body_clear(self, path: np.ndarray) -> bool:
        """NeRF-Nav's check: the field's density at the body's probe points along ``path`` (heading
        along the path) stays below the threshold."""
        env = self.env
        dense = _at_arc_length(path, np.arange(0.0, _arc_length(path)[-1] + 1e-9, env.map.cell * 2))
        if len(dense) < 2:
            return True
        yaw = np.arctan2(*np.diff(dense, axis=0).T[::-1])
        yaw = np.r_[yaw, yaw[-1]]
        spheres = np.asarray(env.dynamics.body_spheres)
        c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
        x = dense[:, :1] + c * spheres[:, 0] - s * spheres[:, 1]  # [P, S]
        y = dense[:, 1:] + s * spheres[:, 0] + c * spheres[:, 1]
        z = env.state.position[2] + np.broadcast_to(spheres[:, 2], x.shape)
        centres = np.stack([x, y, z], -1).reshape(-1, 3)
        radii = np.broadcast_to(spheres[:, 3], x.shape).reshape(-1)
        return bool(env.scene.density(sphere_probe_points(centres, radii)).max() <= env.cfg.density_threshold)

    def replan(self) -> None:
        env = self.env
        xy = env.state.position[:2]
        if self.moving or self.plan is None:
            self._update_costs()
        route = self._route(xy)
        if route is None:  # wait where we are; the next replan looks again
            self.plan = xy[None].copy()
            return
        plan = self._optimise(xy, route, env.t)
        if not self._body_clear(plan):
            plan = np.concatenate([xy[None], route])
        # Beyond the optimised stretch the route continues to the goal.
        rest = route[np.searchsorted(_arc_length(np.concatenate([xy[None], route]))[1:], self.cfg.horizon):]
        self.plan = np.concatenate([plan, rest]) if len(rest) else plan

    # ---- control -------------------------------------------------------------------------------
    def act(self, obs, info) -> np.ndarray:
        env = self.env
        if self.plan is None or self.steps % self.cfg.replan_every == 0:
            self.replan()
        self.steps += 1
        state, dyn = env.state, env.dynamics
        goal_dist = env.distance_to_goal(state)
        look = self.cfg.lookahead * (2.0 if dyn.name == "bicycle" else 1.0)
        target = _lookahead_point(self.plan, state.position[:2], look)
        speed = self.cfg.cruise * min(1.0, goal_dist / 2.0 + 0.3)
        # Judged on the motion it intends (not the current one: a waiting agent would creep on).
        heading = np.r_[target - state.position[:2], 0.0]
        intended = replace(state, velocity=heading / max(np.linalg.norm(heading), 1e-6) * speed * dyn.top_speed)
        if env.time_to_collision(intended, env.t, self.cfg.brake_ttc, background=False, moving_only=True) < self.cfg.brake_ttc:
            speed = 0.0 if _stopping_helps(env, 2 * self.cfg.brake_ttc) else 1.0
        return track(dyn, state, np.r_[target, env.goal[2]], speed)


def track(dyn, state, target: np.ndarray, speed: float) -> np.ndarray:
    """Normalised action that steers the agent towards world point ``target`` at ``speed`` (fraction of top speed)."""
    d = target[:2] - state.position[:2]
    err = _wrap(np.arctan2(d[1], d[0]) - state.yaw) if np.linalg.norm(d) > 1e-6 else 0.0  # at the target: hold the heading
    fwd = float(np.dot(state.velocity[:2], [np.cos(state.yaw), np.sin(state.yaw)]))
    if dyn.name == "unicycle":
        v = speed * max(np.cos(err), 0.0) if abs(err) < 1.2 else 0.0  # turn on the spot when facing away
        return np.array([v, np.clip(2.5 * err / dyn.max_yaw_rate, -1, 1)], np.float32)
    if dyn.name == "bicycle":
        ld = max(np.linalg.norm(d), 1e-3)
        steer = np.arctan2(2 * dyn.wheelbase * np.sin(err), ld)  # pure pursuit
        v_target = speed * dyn.max_speed * max(np.cos(err), 0.2)
        return np.array([np.clip((v_target - fwd) / dyn.max_accel * 2.0, -1, 1), np.clip(steer / dyn.max_steer, -1, 1)], np.float32)
    # quadrotor: velocity towards the target (3D), accelerations to track it; heading follows.
    d3 = target - state.position
    v_des = d3 / max(np.linalg.norm(d3), 1e-3) * speed * dyn.max_accel / dyn.drag
    acc = 2.0 * (v_des - state.velocity) + dyn.drag * state.velocity
    local = acc @ np.array([[np.cos(state.yaw), -np.sin(state.yaw), 0], [np.sin(state.yaw), np.cos(state.yaw), 0], [0, 0, 1]])
    return np.array([*np.clip(local / dyn.max_accel, -1, 1), np.clip(2.0 * err / dyn.max_yaw_rate, -1, 1)], np.float32)


class _ClearanceField:
    """Bilinear interpolation of a clearance map, differentiable in the query points."""

    def __init__(self, clear: np.ndarray, origin: np.ndarray, cell: float):
        self.grid = torch.tensor(clear, dtype=torch.float32)[None, None]  # [1, 1, nx, ny]
        self.origin, self.cell = torch.tensor(origin, dtype=torch.float32), cell
        self.n = torch.tensor(clear.shape, dtype=torch.float32)

    def __call__(self, xy: torch.Tensor) -> torch.Tensor:
        ij = (xy - self.origin) / self.cell
        g = (2 * ij + 1) / self.n - 1  # align_corners=False pixel centres
        sample = torch.nn.functional.grid_sample(self.grid, g.flip(-1)[None, None], align_corners=False, padding_mode="border")
        return sample.reshape(-1)


def _box_distance(p: torch.Tensor, actor: dict, dt: torch.Tensor) -> torch.Tensor:
    """Ground-plane distance from points ``[K, 2]`` to an actor's box predicted ``dt [K]`` seconds ahead."""
    c = torch.tensor(actor["center"][:2], dtype=torch.float32) + dt[:, None] * torch.tensor(actor["velocity"][:2], dtype=torch.float32)
    cy, sy = np.cos(actor["yaw"]), np.sin(actor["yaw"])
    R = torch.tensor([[cy, -sy], [sy, cy]], dtype=torch.float32)
    local = (p - c) @ R
    excess = local.abs() - torch.tensor(actor["size"][:2] / 2, dtype=torch.float32)
    return torch.relu(excess).norm(dim=1) + torch.clamp(excess.max(dim=1).values, max=0.0)


def _arc_length(path: np.ndarray) -> np.ndarray:
    """Distance along a polyline ``[K, 2]`` at each of its points ``[K]``."""
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])


def _at_arc_length(path: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Points ``[len(q), 2]`` of a polyline at distances ``q`` along it."""
    s = _arc_length(path)
    return np.stack([np.interp(q, s, path[:, 0]), np.interp(q, s, path[:, 1])], 1)


def _lookahead_point(path: np.ndarray, xy: np.ndarray, dist: float) -> np.ndarray:
    """The first point of ``path`` at least ``dist`` from ``xy``, past the path point closest to ``xy``."""
    k = int(np.argmin(np.linalg.norm(path - xy, axis=1)))
    far = np.flatnonzero(np.linalg.norm(path[k:] - xy, axis=1) >= dist)
    return path[k + far[0]] if len(far) else path[-1]


def _stopping_helps(env, horizon: float) -> bool:
    """Whether standing still keeps the agent clear for ``horizon`` seconds (an actor crossing ahead);
    if an actor comes at the agent anyway, stopping would not help and the plan should dodge."""
    s = env.state
    return env.time_to_collision(replace(s, velocity=np.zeros(3)), env.t, horizon, background=False, moving_only=True) > horizon


@dataclass
class ReactiveConfig:
    """Reactive depth controller settings."""

    headings: int = 31
    """Candidate headings across the camera's field of view."""
    range: float = 6.0
    """Free distance that counts as fully open, metres."""
    margin: float = 0.25
    """Clearance kept beyond the body, metres."""
    goal_weight: float = 0.6
    """Weight of the heading's angle to the goal against its free distance."""
    cruise: float = 0.7
    """Top cruise speed as a fraction of the agent's top speed."""


class DepthReactiveController:
    def __init__(self, cfg: ReactiveConfig | None = None):
        self.cfg = cfg or ReactiveConfig()

    def reset(self, env) -> None:
        env = self.env = env.unwrapped
        if "depth" not in env.cfg.observations:
            raise InputError("reactive controller", "observations", "needs the 'depth' observation (e.g. nav-eval --env.observations depth)")
        d_cam = env._d_cam  # unit pixel rays, camera frame
        R = env.dynamics.T_ego_cam[:3, :3]
        self.rays_ego = (d_cam / d_cam[:, 2:3]) @ R.T  # ego-frame offset per metre of z-depth
        self.cam_ego = env.dynamics.T_ego_cam[:3, 3]
        self.band = np.array(env.body_band()) - env.scene.ground_z

    def act(self, obs, info) -> np.ndarray:
        cfg, env, dyn = self.cfg, self.env, self.env.dynamics
        pts = self.cam_ego + obs["depth"].reshape(-1, 1) * self.rays_ego
        z = pts[:, 2] + (env.state.position[2] - env.scene.ground_z if not dyn.ground else 0.0)
        near = pts[(pts[:, 0] > 0) & (pts[:, 0] < cfg.range * 2) & (z > self.band[0]) & (z < self.band[1])][:, :2]
        half_fov = np.radians(env.cfg.hfov_deg) / 2
        thetas = np.linspace(-half_fov, half_fov, cfg.headings)
        goal = obs["state"][8:10]
        goal_bearing = float(np.arctan2(goal[1], goal[0]))
        if abs(goal_bearing) > half_fov + 0.3 and len(near) == 0 or abs(goal_bearing) > np.pi / 2:
            turn = np.array([np.cos(np.sign(goal_bearing) * half_fov), np.sin(np.sign(goal_bearing) * half_fov)])
            return track(dyn, env.state, np.r_[env.state.position[:2] + _rot(env.state.yaw) @ turn, env.goal[2]], 0.0)
        free = np.array([_free_distance(near, th, dyn.footprint_radius + cfg.margin, cfg.range) for th in thetas])
        score = free / cfg.range - cfg.goal_weight * np.abs(_wrap(thetas - goal_bearing)) / np.pi
        best = thetas[int(np.argmax(score))]
        ahead = free[int(np.argmax(score))]
        goal_dist = float(np.linalg.norm(goal))
        speed = cfg.cruise * np.clip((ahead - 0.5) / 3.0, 0.0, 1.0) * min(1.0, goal_dist / 2.0 + 0.3)
        target = env.state.position[:2] + _rot(env.state.yaw) @ (np.array([np.cos(best), np.sin(best)]) * 2.0)
        return track(dyn, env.state, np.r_[target, env.goal[2]], speed)


def _rot(yaw: float) -> np.ndarray:
    return np.array([[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]])


def _free_distance(points: np.ndarray, theta: float, radius: float, cap: float) -> float:
    """Distance along heading ``theta`` (ego frame) before a corridor of ``radius`` meets a point."""
    if len(points) == 0:
        return cap
    u = np.array([np.cos(theta), np.sin(theta)])
    along = points @ u
    across = np.abs(points @ np.array([-u[1], u[0]]))
    hit = (along > 0) & (across < radius)
    return float(min(cap, along[hit].min() - radius)) if hit.any() else cap


CONTROLLERS = {"planner": NerfNavPlanner, "reactive": DepthReactiveController}
