"""`NavEnv`: a gymnasium environment in which an agent drives or flies through a neural scene.

Each step the agent's action moves it (`tasks.nav.dynamics`), the scene advances in time (actors
follow their tracks), collisions are checked against the actors' boxes and the background's density
at the agent's body (`tasks.nav.scene`), and the agent's sensors are rendered from the neural scene.

Observation (a ``Dict``; the sensors are chosen with ``NavConfig.observations``):
- ``rgb``: uint8 ``[H, W, 3]`` forward camera;
- ``depth``: float32 ``[H, W]`` z-depth in metres, ``max_depth`` where nothing is closer;
- ``lidar``: float32 ``[beams, azimuths]`` ranges in metres, ``lidar_range`` where nothing returns;
- ``state``: float32 ``[11]``: ``x, y, z, cos yaw, sin yaw, vx, vy, vz`` (world) and the goal in the
  ego frame ``dx, dy, dz``.

Action: ``Box(-1, 1)`` per component of the dynamics model (`tasks.nav.dynamics`).

Reward per step: progress towards the goal (decrease of the straight-line distance, metres)
``- step_cost``; ``+ goal_reward`` on reaching the goal (within ``goal_radius``); ``+ collision_reward``
(negative) on a collision or on leaving the scene. Those three end the episode (``terminated``);
``max_steps`` truncates it.

``info``: ``time``, ``position``, ``distance_to_goal``, ``collision`` (None, ``"background"``,
``"actor:<id>"`` or ``"out_of_bounds"``), ``collision_truth`` (ground-truth twin's verdict: the body
inside a mesh; None without a twin), ``clearance`` (metres from the body to the nearest obstacle:
blocked density cell or actor box), ``ttc`` (seconds to collision at constant velocities; inf if
none ahead), ``reached``, ``nearby_actors`` (list of dicts: ``actor_id, class_name, instance_id,
center, size, yaw, velocity``) within ``nearby_radius``.

Conventions: world z up, metres, seconds; OpenCV camera axes; ego x forward, y left, z up.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Annotated, Literal

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from scenes.camera import Intrinsics
from scenes.errors import InputError
from scenes.settings import ANY_FINITE, AT_LEAST_ONE, POSITIVE, Range
from scenes.transforms import make_pose, rot_z
from sensors.lidar import LidarConfig
from scenes.lens import CameraModel
from sim.render import render_ray_batch
from tasks.nav.dynamics import AgentState, Dynamics, make_dynamics, still
from tasks.nav.scene import DENSITY_THRESHOLD, NavScene, sphere_box_distance, sphere_box_gap, sphere_probe_points
from tasks.nav.startgoal import sample_start_goal

OBSERVATIONS = ("rgb", "depth", "lidar")
STATE_BOUND = 1e4
"""Bound of the ``state`` observation's entries (metres, m/s): scenes are far smaller."""


@dataclass
class NavConfig:
    """One navigation environment: the scene, the agent, its sensors and the episode rules."""

    scene: str = ""
    """Trained scene folder (``nerfsim train`` / ``nerfsim demo``'s ``scene/``)."""
    dynamics: Literal["unicycle", "bicycle", "quadrotor"] = "unicycle"
    """Agent model: 'unicycle' (ground robot), 'bicycle' (car) or 'quadrotor' (drone)."""
    observations: tuple[Literal["rgb", "depth", "lidar"], ...] = ("rgb", "depth")
    """Sensor products in the observation (any of rgb, depth, lidar; ``state`` is always there)."""
    width: Annotated[int, AT_LEAST_ONE] = 128
    """Camera image width, pixels."""
    height: Annotated[int, AT_LEAST_ONE] = 72
    """Camera image height, pixels."""
    hfov_deg: Annotated[float, Range(lo=1.0, hi=179.0, strict_lo=True)] = 90.0
    """Camera horizontal field of view, degrees (pinhole)."""
    max_depth: Annotated[float, POSITIVE] = 80.0
    """Depth written where the camera sees nothing closer (sky), metres."""
    lidar_beams: Annotated[int, AT_LEAST_ONE] = 16
    """LiDAR beams (elevations from -15 to +15 degrees)."""
    lidar_azimuths: Annotated[int, AT_LEAST_ONE] = 180
    """LiDAR azimuth steps per revolution."""
    lidar_range: Annotated[float, POSITIVE] = 40.0
    """LiDAR range, metres (farther returns read as this)."""
    dt: Annotated[float, POSITIVE] = 0.1
    """Step length, seconds (10 Hz control)."""
    max_steps: Annotated[int, AT_LEAST_ONE] = 600
    """Steps before the episode is truncated (60 s at 0.1 s)."""
    goal_radius: Annotated[float, POSITIVE] = 1.0
    """The goal is reached within this distance of the ego origin, metres."""
    start_time: float = 0.0
    """Scene time at reset, seconds."""
    moving_actors: bool = True
    """Actors follow their tracks as the episode runs; False freezes the scene at ``start_time``."""
    density_threshold: Annotated[float, POSITIVE] = DENSITY_THRESHOLD
    """Background density (per metre) that counts as solid."""
    min_distance: Annotated[float, POSITIVE] = 10.0
    """Smallest straight-line start-goal distance of sampled episodes, metres."""
    max_distance: Annotated[float, POSITIVE] = 35.0
    """Largest straight-line start-goal distance of sampled episodes, metres."""
    flight_heights: tuple[float, float] = (1.5, 4.0)
    """Heights above ground between which drone starts and goals are sampled, metres."""
    nearby_radius: float = 30.0
    """Actors within this distance are listed in ``info['nearby_actors']``, metres."""
    step_cost: Annotated[float, ANY_FINITE] = 0.01
    """Reward lost per step."""
    goal_reward: Annotated[float, ANY_FINITE] = 10.0
    """Reward for reaching the goal."""
    collision_reward: Annotated[float, ANY_FINITE] = -10.0
    """Reward for a collision or for leaving the scene."""
    map_cell: Annotated[float, POSITIVE] = 0.1
    """Cell size of the density map used for clearance and start/goal sampling, metres."""
    scenario: str = ""
    """A scenario (template name or YAML file) whose actors replace the scene's; the agent takes the
    scripted ego's place: it starts where and as fast as the ego starts, its goal is where the ego ends."""
    scenario_variant: int = 0
    """Which variant of the scenario (its random draws)."""

    def __post_init__(self):
        unknown = set(self.observations) - set(OBSERVATIONS)
        if unknown:
            raise InputError("navigation config", "observations", f"unknown {sorted(unknown)}; known: {list(OBSERVATIONS)}")
        if self.width <= 0 or self.height <= 0 or not 1 < self.hfov_deg < 179:
            raise InputError("navigation config", "width/height/hfov_deg", "expected positive size and 1 < hfov_deg < 179")
        if self.dt <= 0 or self.max_steps <= 0:
            raise InputError("navigation config", "dt/max_steps", "must be positive")


def _scene_for(scene) -> NavScene:
    """A `NavScene` from an object or a path; loaded scenes are shared by the environments of a process."""
    from tasks.pipeline import shared_scene

    if isinstance(scene, NavScene):
        return scene
    if not scene:
        raise InputError("navigation config", "scene", "give the folder of a trained scene (e.g. demo_out/scene)")
    return shared_scene(scene, NavScene.load)


class NavEnv(gymnasium.Env):
    """Closed-loop navigation in a neural scene (see the module docstring for spaces and reward)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, scene: NavScene | str | None = None, config: NavConfig | None = None, render_mode: str | None = None,
                 **overrides):
        cfg = config or NavConfig()
        known = {f.name for f in fields(NavConfig)}
        bad = set(overrides) - known
        if bad:
            raise InputError("navigation environment", ", ".join(sorted(bad)), f"unknown option; known: {sorted(known)}")
        self.cfg = replace(cfg, **overrides)
        self.scene = _scene_for(scene if scene is not None else self.cfg.scene)
        if self.cfg.scenario:
            self.scene = self.scene.with_scenario(self.cfg.scenario, self.cfg.scenario_variant)
        self.dynamics: Dynamics = make_dynamics(self.cfg.dynamics)
        if render_mode not in (None, "rgb_array"):
            raise InputError("navigation environment", "render_mode", f"expected None or 'rgb_array', got {render_mode!r}")
        self.render_mode = render_mode
        self.lens_intrinsics = _intrinsics(self.cfg)
        self.lens = CameraModel.from_intrinsics(self.lens_intrinsics)
        self._d_cam = self.lens.pixel_directions()[0].reshape(-1, 3)
        # Samples as sparse as the camera's pixels are wide (never denser than the scene's own cone).
        self.step_cone = max(self.scene.model.cfg.step_cone, np.radians(self.cfg.hfov_deg) / self.cfg.width)
        self.lidar = LidarConfig(n_beams=self.cfg.lidar_beams, n_azimuth=self.cfg.lidar_azimuths, min_elevation_deg=-15.0,
                                 max_elevation_deg=15.0, max_range=self.cfg.lidar_range)
        self.observation_space = self._observation_space()
        self.action_space = spaces.Box(-1.0, 1.0, (self.dynamics.action_dim,), np.float32)
        self.map = self.scene.density_map(self.body_band(), self.cfg.map_cell, self.cfg.density_threshold)
        self.state: AgentState | None = None
        self.goal = np.zeros(3)
        self.t = 0.0
        self.steps = 0
        self.trajectory: list[np.ndarray] = []
        self._last_obs: dict | None = None
        self._states: dict = {}

    # ---- spaces --------------------------------------------------------------------------------
    def _observation_space(self) -> spaces.Dict:
        H, W, c = self.cfg.height, self.cfg.width, self.cfg
        sp = {"state": spaces.Box(-STATE_BOUND, STATE_BOUND, (11,), np.float32)}
        if "rgb" in c.observations:
            sp["rgb"] = spaces.Box(0, 255, (H, W, 3), np.uint8)
        if "depth" in c.observations:
            sp["depth"] = spaces.Box(0.0, c.max_depth, (H, W), np.float32)
        if "lidar" in c.observations:
            sp["lidar"] = spaces.Box(0.0, c.lidar_range, (c.lidar_beams, c.lidar_azimuths), np.float32)
        return spaces.Dict(sp)

    def body_band(self) -> tuple[float, float]:
        """Heights (world z) the body sweeps: a ground agent's body above the ground; all flight heights for a drone."""
        dyn, g = self.dynamics, self.scene.ground_z
        if dyn.ground:
            lo = min(z - 0.85 * r for _, _, z, r in dyn.body_spheres)
            hi = max(z + 0.85 * r for _, _, z, r in dyn.body_spheres)
            return g + lo, g + hi
        r = dyn.footprint_radius
        return g + self.cfg.flight_heights[0] - r, g + self.cfg.flight_heights[1] + r

    # ---- gymnasium API -------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        self.t = float(options.get("start_time", self.cfg.start_time))
        speed = 0.0
        if "start" in options and "goal" in options:
            start, yaw, goal = _start_goal_from_options(options, self.scene.ground_z, self.dynamics.ground)
        elif self.scene.scenario_ego is not None:
            start, yaw, goal, speed = self._scenario_start_goal()
        else:
            start, yaw, goal = sample_start_goal(self, self.np_random)
        self.state, self.goal = still(start, yaw), np.asarray(goal, dtype=np.float64)
        self.state = replace(self.state, velocity=speed * np.array([np.cos(yaw), np.sin(yaw), 0.0]))
        self.steps, self.trajectory = 0, [self.state.position.copy()]
        obs = self._observe()
        return obs, self._info(None, None)

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        before = self.distance_to_goal(self.state)
        collision, truth = None, None
        h = self.cfg.dt / self.dynamics.substeps
        substates = self.dynamics.step(self.state, action, self.cfg.dt)
        verdicts = self.collisions(substates, [self.t + (k + 1) * h for k in range(len(substates))])
        for s, collision in zip(substates, verdicts):
            self.state = s
            if collision:  # the body stops where it first hits
                break
        self.t += self.cfg.dt
        self.steps += 1
        self.trajectory.append(self.state.position.copy())
        if self.scene.twin is not None:
            truth = self.collision_truth(self.state, self.t)
        dist = self.distance_to_goal(self.state)
        reached = collision is None and dist <= self.cfg.goal_radius
        reward = (before - dist) - self.cfg.step_cost
        reward += self.cfg.goal_reward if reached else 0.0
        reward += self.cfg.collision_reward if collision else 0.0
        terminated = bool(reached or collision)
        truncated = bool(not terminated and self.steps >= self.cfg.max_steps)
        return self._observe(), float(reward), terminated, truncated, self._info(collision, truth)

    def _scenario_start_goal(self):
        """The scripted ego's start (pose, speed) and end, for this agent's ego origin (the body's
        centre sits where the scripted ego's centre was)."""
        ego, t0 = self.scene.scenario_ego, self.t
        centre = np.mean(np.asarray(self.dynamics.body_spheres)[:, :2], axis=0)
        T0, T1 = ego.pose_at(t0), ego.pose_at(float(ego.times[-1]))
        yaw = float(np.arctan2(T0[1, 0], T0[0, 0]))
        back = lambda T: T[:3, 3] - T[:3, :2] @ centre  # noqa: E731
        speed = float(np.linalg.norm(ego.pose_at(t0 + 0.1)[:2, 3] - T0[:2, 3]) / 0.1)
        return back(T0), yaw, back(T1), speed

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        from tasks.nav.topdown import episode_frame

        return (np.clip(episode_frame(self), 0, 1) * 255 + 0.5).astype(np.uint8)

    # ---- scene queries -------------------------------------------------------------------------
    def scene_state(self, t: float | None = None):
        """The scene at time ``t`` (default: now). Memoised: collisions, clearance, time-to-collision
        and the nearby actors all ask for the same few instants each step."""
        t = self.t if t is None else t
        key = round(t if self.cfg.moving_actors else self.cfg.start_time, 9)
        if key not in self._states:
            if len(self._states) > 64:
                self._states.clear()
            self._states[key] = self.scene.graph.at(key)
        return self._states[key]

    def collisions(self, states: list[AgentState], times: list[float]) -> list[str | None]:
        """What the body hits at each state and its time: None, 'out_of_bounds', 'actor:<id>' or
        'background'. The background's density at every body's probe points is evaluated in one
        batch (one field call per step, not per substep)."""
        bodies = [self.dynamics.body_points(s) for s in states]
        probes = [sphere_probe_points(c, r) for c, r in bodies]
        density = np.split(self.scene.density(np.concatenate(probes)), np.cumsum([len(p) for p in probes])[:-1])
        return [self._verdict(centres, radii, t, sigma) for (centres, radii), t, sigma in zip(bodies, times, density)]

    def _verdict(self, centres: np.ndarray, radii: np.ndarray, t: float, sigma: np.ndarray) -> str | None:
        """One body's collision at time ``t``, given the density ``sigma`` at its probe points."""
        lo, hi = self.scene.aabb
        if ((centres[:, :2] < lo[:2]) | (centres[:, :2] > hi[:2])).any() or (centres[:, 2] > hi[2]).any():
            return "out_of_bounds"
        gaps, ids = sphere_box_distance(centres, radii, self.scene_state(t))
        if gaps.size and gaps.min() < 0:
            return f"actor:{ids[int(np.argmin(gaps.min(0)))]}"
        return "background" if sigma.max() > self.cfg.density_threshold else None

    def collision_truth(self, state: AgentState, t: float) -> bool:
        """The ground-truth twin's verdict: a body sphere reaches into a mesh (background or actor)."""
        centres, radii = self.dynamics.body_points(state)
        dist = self.scene.twin.distance_to_surface(centres, self.scene_state(t))
        return bool((dist < radii).any())

    def clearance(self, state: AgentState, t: float) -> float:
        """Metres between the body and the nearest blocked density cell or actor box."""
        centres, radii = self.dynamics.body_points(state)
        gap_bg = float((self.map.clearance_at(centres[:, :2]) - radii).min())  # drone: any blocked height counts
        gaps, _ = sphere_box_distance(centres, radii, self.scene_state(t))
        return min(gap_bg, float(gaps.min()) if gaps.size else np.inf)

    def time_to_collision(self, state: AgentState, t: float, horizon: float = 5.0, background: bool = True,
                          moving_only: bool = False) -> float:
        """Seconds until the body reaches an obstacle if everything keeps its velocity (actors: their
        track velocity now, only those moving with ``moving_only``; background, unless ``background``
        is False: along the agent's velocity in the density map); inf beyond ``horizon``."""
        v = state.velocity
        ttc = np.inf
        if background and np.linalg.norm(v[:2]) > 1e-3:
            free = self.map.ray_distance(state.position[:2], v[:2], max_dist=horizon * np.linalg.norm(v[:2]) + 1.0)
            ttc = max(free - self.dynamics.footprint_radius, 0.0) / np.linalg.norm(v[:2])
        actors = [a for a in self.nearby_actors(state, t) if not moving_only or np.linalg.norm(a["velocity"]) > 0.1]
        if actors:
            centres, radii = self.dynamics.body_points(state)
            contact = first_contact(centres, radii, v, actors, np.arange(0.0, min(ttc, horizon), 0.1))
            if contact is not None:
                return contact
        return float(ttc) if ttc <= horizon else float("inf")

    def nearby_actors(self, state: AgentState, t: float) -> list[dict]:
        now, later = self.scene_state(t), self.scene_state(t + 0.1)
        out = []
        for a, b in zip(now.actors, later.actors):
            c = a.T_world_actor[:3, 3]
            if np.linalg.norm(c[:2] - state.position[:2]) > self.cfg.nearby_radius:
                continue
            vel = (b.T_world_actor[:3, 3] - c) / 0.1 if self.cfg.moving_actors else np.zeros(3)
            out.append({"actor_id": a.actor_id, "class_name": a.class_name, "instance_id": a.instance_id,
                        "center": c.copy(), "size": np.asarray(a.size), "velocity": vel,
                        "yaw": float(np.arctan2(a.T_world_actor[1, 0], a.T_world_actor[0, 0]))})
        return out

    # ---- observation / info --------------------------------------------------------------------
    def distance_to_goal(self, state: AgentState) -> float:
        d = self.goal - state.position
        return float(np.linalg.norm(d if not self.dynamics.ground else d[:2]))

    def goal_in_ego(self) -> np.ndarray:
        T = self.state.T_world_ego
        return (self.goal - T[:3, 3]) @ T[:3, :3]

    def _observe(self) -> dict:
        cfg, state = self.cfg, self.state
        obs = {"state": np.concatenate([state.vector(), self.goal_in_ego()]).astype(np.float32)}
        sensors = self.render_sensors(cfg.observations)
        H, W = cfg.height, cfg.width
        if "rgb" in cfg.observations:
            obs["rgb"] = (np.clip(sensors["rgb"], 0, 1) * 255 + 0.5).astype(np.uint8).reshape(H, W, 3)
        if "depth" in cfg.observations:
            obs["depth"] = np.minimum(np.nan_to_num(sensors["depth"], posinf=cfg.max_depth), cfg.max_depth).astype(np.float32).reshape(H, W)
        if "lidar" in cfg.observations:
            rng = np.minimum(np.nan_to_num(sensors["lidar"], posinf=cfg.lidar_range), cfg.lidar_range)
            obs["lidar"] = rng.astype(np.float32).reshape(cfg.lidar_beams, cfg.lidar_azimuths)
        self._last_obs = obs
        return obs

    def render_sensors(self, products) -> dict[str, np.ndarray]:
        """The agent's camera (``rgb [H*W, 3]``, z-``depth [H*W]``) and LiDAR (``lidar`` ranges) now,
        rendered from the neural scene in one batch; ``inf`` where nothing is hit."""
        state = self.state
        want_cam = bool({"rgb", "depth"} & set(products))
        T_cam = state.T_world_ego @ self.dynamics.T_ego_cam
        dirs, origins = [], []
        if want_cam:
            dirs.append(self._d_cam @ T_cam[:3, :3].T)
            origins.append(np.broadcast_to(T_cam[:3, 3], dirs[-1].shape))
        if "lidar" in products:
            T_lidar = state.T_world_ego.copy()
            T_lidar[:3, 3] += T_lidar[:3, :3] @ np.array([0.0, 0.0, self.dynamics.camera_height + 0.1])
            dirs.append(self.lidar.directions() @ T_lidar[:3, :3].T)
            origins.append(np.broadcast_to(T_lidar[:3, 3], dirs[-1].shape))
        if not dirs:
            return {}
        r = render_ray_batch(self.scene.model, torch.tensor(np.concatenate(origins), dtype=torch.float32),
                             torch.tensor(np.concatenate(dirs), dtype=torch.float32), self.scene_state(), semantics=False,
                             step_cone=self.step_cone)
        rgb, dist = r["rgb"].numpy(), r["ray_dist_median"].numpy()
        n_cam = len(self._d_cam) if want_cam else 0
        out = {"lidar": dist[n_cam:]} if "lidar" in products else {}
        if want_cam:
            out |= {"rgb": rgb[:n_cam], "depth": dist[:n_cam] * self._d_cam[:, 2]}
        return out

    def _info(self, collision: str | None, truth: bool | None) -> dict:
        s, t = self.state, self.t
        return {"time": t, "position": s.position.copy(), "distance_to_goal": self.distance_to_goal(s),
                "collision": collision, "collision_truth": truth, "clearance": self.clearance(s, t),
                "ttc": self.time_to_collision(s, t), "reached": collision is None and self.distance_to_goal(s) <= self.cfg.goal_radius,
                "nearby_actors": self.nearby_actors(s, t)}


def _intrinsics(cfg: NavConfig) -> Intrinsics:
    return Intrinsics.from_fov(cfg.width, cfg.height, cfg.hfov_deg)


def _start_goal_from_options(options: dict, ground_z: float, ground: bool):
    start = np.asarray(options["start"], dtype=np.float64).reshape(-1)
    goal = np.asarray(options["goal"], dtype=np.float64).reshape(-1)
    if start.shape not in ((3,), (4,)) or goal.shape not in ((2,), (3,)):
        raise InputError("reset options", "start/goal", "expected start (x, y, yaw) or (x, y, z, yaw) and goal (x, y) or (x, y, z)")
    pos = np.array([start[0], start[1], ground_z if (ground or len(start) == 3) else start[2]])
    goal3 = np.array([goal[0], goal[1], ground_z if (ground or len(goal) == 2) else goal[2]])
    return pos, float(start[-1]), goal3


def first_contact(centres: np.ndarray, radii: np.ndarray, velocity: np.ndarray, actors: list[dict], taus: np.ndarray) -> float | None:
    """The first of the times ``taus`` (s, increasing) at which the body spheres, moving at
    ``velocity``, touch an actor box moving at its own velocity; None if they never do. All times at
    once, in the box's moving frame (the body moves at the velocity relative to the box)."""
    gap = np.full(len(taus), np.inf)
    for a in actors:
        moved = centres[None] + (velocity - a["velocity"])[None, None] * taus[:, None, None]  # [N, S, 3]
        gap = np.minimum(gap, sphere_box_gap(moved, radii, make_pose(rot_z(a["yaw"]), a["center"]), a["size"]).min(-1))
    hit = np.flatnonzero(gap < 0)
    return float(taus[hit[0]]) if len(hit) else None
