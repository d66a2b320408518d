"""A gymnasium environment that drives through a scene served by `nerfsim serve` (tasks/server.py):
the stack-side half of a closed loop over HTTP. The server renders; this side integrates the ego's
dynamics (`tasks.nav.dynamics`, a kinematic car by default), asks for the rig camera's images at
the new ego pose and time, and checks the body against the actors' boxes the server reports
(``GET /actors``, so edits made on the server count).

    client = RenderClient("http://127.0.0.1:8000")
    env = RemoteDriveEnv(client)
    obs, info = env.reset()
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Observations: ``rgb`` uint8 ``[H, W, 3]`` and ``depth`` float32 ``[H, W]`` (metres, capped at
``max_depth``) of the rig camera, ``state`` (`AgentState.vector`). Reward: metres gained along the
start heading in the step, ``collision_penalty`` on a collision, which ends the episode. The
background is not checked here (the server has no density endpoint): ``info["min_depth"]`` gives
the nearest depth the camera sees, for a stack's own safety rules.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces

from scenes.errors import InputError
from scenes.transforms import yaw_of
from tasks.nav.dynamics import AgentState, make_dynamics
from tasks.nav.scene import sphere_box_gap


class RemoteDriveEnv(gymnasium.Env):
    """Driving through a served scene (module docstring)."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, client, camera: str | None = None, dynamics: str = "bicycle", dt: float = 0.1, max_steps: int = 100,
                 max_depth: float = 80.0, collision_penalty: float = 10.0, render_mode: str | None = None):
        info = client.scene()
        if not info.get("rig"):
            raise InputError("server /scene", "rig", "this scene has no rig (not trained from a capture log): nothing to drive")
        cams = {c["name"]: c for c in info["rig"]["cameras"]}
        self.camera = camera or next(iter(cams))
        if self.camera not in cams:
            raise InputError("remote environment", "camera", f"unknown rig camera {self.camera!r}; the rig has {sorted(cams)}")
        if dt <= 0 or max_steps <= 0:
            raise InputError("remote environment", "dt/max_steps", "must be positive")
        self.client, self.dt, self.max_steps = client, dt, max_steps
        self.max_depth, self.collision_penalty, self.render_mode = max_depth, collision_penalty, render_mode
        self.dynamics = make_dynamics(dynamics)
        W, H = cams[self.camera]["model"]["width"], cams[self.camera]["model"]["height"]
        self.observation_space = spaces.Dict({
            "rgb": spaces.Box(0, 255, (H, W, 3), np.uint8),
            "depth": spaces.Box(0.0, max_depth, (H, W), np.float32),
            "state": spaces.Box(-np.inf, np.inf, (8,), np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (self.dynamics.action_dim,), np.float32)
        self.state: AgentState | None = None
        self.t, self.steps, self.heading, self.sizes, self._last = 0.0, 0, np.zeros(3), {}, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        info = self.client.scene()  # again: edits on the server may have added or removed actors
        self.sizes = {a["actor_id"]: a["size"] for a in info["actors"]}
        T = np.asarray((options or {}).get("T_world_ego", info["start_T_world_ego"]), dtype=np.float64)
        self.state = AgentState(T[:3, 3].copy(), yaw_of(T[:3, :3]), np.zeros(3))
        self.t = float((options or {}).get("time", info["start_time"]))
        self.heading = np.array([np.cos(self.state.yaw), np.sin(self.state.yaw), 0.0])
        self.steps = 0
        return self._observe(), {"time": self.t, "collision": None}

    def step(self, action):
        if self.state is None:
            raise InputError("remote environment", "step", "call reset() first")
        before = self.state.position
        self.state = self.dynamics.step(self.state, action, self.dt)[-1]
        self.t += self.dt
        self.steps += 1
        hit = self.collision()
        obs = self._observe()
        reward = float(np.dot(self.state.position - before, self.heading)) - (self.collision_penalty if hit else 0.0)
        info = {"time": self.t, "collision": hit, "min_depth": float(obs["depth"].min())}
        return obs, reward, hit is not None, self.steps >= self.max_steps, info

    def collision(self) -> str | None:
        """``"actor:<id>"`` when the body reaches into an actor's box at the current time (from the
        server), else None."""
        centres, radii = self.dynamics.body_points(self.state)
        for a in self.client.actors(self.t):
            if a["actor_id"] in self.sizes and (sphere_box_gap(centres, radii, np.asarray(a["T_world_actor"]), self.sizes[a["actor_id"]]) < 0).any():
                return f"actor:{a['actor_id']}"
        return None

    def _observe(self) -> dict:
        images = self.client.render(self.camera, self.state.T_world_ego, self.t, ("rgb", "depth"))
        depth = np.minimum(np.nan_to_num(images["depth"], nan=self.max_depth, posinf=self.max_depth), self.max_depth)
        self._last = {"rgb": (np.clip(images["rgb"], 0, 1) * 255 + 0.5).astype(np.uint8), "depth": depth.astype(np.float32),
                      "state": self.state.vector()}
        return self._last

    def render(self):
        return None if self._last is None else self._last["rgb"]
