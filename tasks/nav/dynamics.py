"""Agent dynamics of the navigation environment: kinematic bicycle (car), unicycle (ground robot) and
point-mass quadrotor (drone), each with its body (collision spheres) and camera mount.

Conventions: world z up, metres, seconds; the agent's ego frame has x forward, y left, z up with its
origin on the ground under the body centre (ground agents) or at the body centre (the drone).
Actions are normalised to [-1, 1] per component (gymnasium ``Box``) and scaled by each model's
limits, so one policy network fits every model's action space shape.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scenes.errors import InputError
from scenes.transforms import make_pose, rot_z


@dataclass(frozen=True)
class AgentState:
    """Where the agent is and how it moves (world frame)."""

    position: np.ndarray
    """``[3]`` ego-frame origin in the world, metres."""
    yaw: float
    """Heading about +z, radians (0 = +x)."""
    velocity: np.ndarray
    """``[3]`` world velocity, m/s."""

    @property
    def speed(self) -> float:
        return float(np.linalg.norm(self.velocity))

    @property
    def T_world_ego(self) -> np.ndarray:
        return make_pose(rot_z(self.yaw), self.position)

    def vector(self) -> np.ndarray:
        """``[x, y, z, cos yaw, sin yaw, vx, vy, vz]`` float32 (the ``state`` observation's head)."""
        return np.array([*self.position, np.cos(self.yaw), np.sin(self.yaw), *self.velocity], dtype=np.float32)


@dataclass(frozen=True)
class Dynamics:
    """Base: the body, the camera mount and the integration step shared by the models."""

    name = ""
    action_names: tuple[str, ...] = ()
    ground: bool = True
    """True: the agent stays on the ground plane (z = the scene's ground height); False: it flies."""
    body_spheres: tuple[tuple[float, float, float, float], ...] = ()
    """Collision body: spheres ``(x, y, z, radius)`` in the ego frame."""
    camera_height: float = 1.0
    """Camera height above the ego origin, metres (forward-looking, on the body centre line)."""
    camera_forward: float = 0.0
    """Camera position ahead of the ego origin, metres."""
    substeps: int = 4
    """Euler substeps per environment step (keeps fast turns accurate)."""

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def top_speed(self) -> float:
        """Fastest the agent goes, m/s."""
        return float(getattr(self, "max_speed"))

    @property
    def footprint_radius(self) -> float:
        """Radius of the body's ground-plane footprint around the ego origin (for planning maps)."""
        return max(float(np.hypot(x, y) + r) for x, y, _, r in self.body_spheres)

    @property
    def T_ego_cam(self) -> np.ndarray:
        """Forward-looking camera (OpenCV: z along ego x, x along ego -y, y along ego -z)."""
        R = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
        return make_pose(R, (self.camera_forward, 0.0, self.camera_height))

    def body_points(self, state: AgentState) -> tuple[np.ndarray, np.ndarray]:
        """World sphere centres ``[S, 3]`` and radii ``[S]`` of the body at ``state``."""
        s = np.asarray(self.body_spheres, dtype=np.float64)
        T = state.T_world_ego
        return s[:, :3] @ T[:3, :3].T + T[:3, 3], s[:, 3]

    def step(self, state: AgentState, action: np.ndarray, dt: float) -> list[AgentState]:
        """The states at the end of each of the ``substeps`` (the last one is the new state): the
        environment checks collisions at every one of them, so fast agents do not tunnel."""
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if a.shape != (self.action_dim,) or not np.isfinite(a).all():
            raise InputError(f"{self.name} action", None, f"expected {self.action_dim} finite numbers {self.action_names}, got {action!r}")
        h = dt / self.substeps
        states = []
        for _ in range(self.substeps):
            state = self._derivative_step(state, a, h)
            states.append(state)
        return states

    def _derivative_step(self, state: AgentState, a: np.ndarray, h: float) -> AgentState:
        raise NotImplementedError


def _planar(state: AgentState, speed: float, yaw_rate: float, h: float) -> AgentState:
    """Advance a ground agent moving at ``speed`` along its heading while turning at ``yaw_rate``:
    the exact arc for inputs held over ``h`` (no Euler drift on long turns)."""
    yaw = state.yaw + yaw_rate * h
    if abs(yaw_rate) > 1e-9:
        dx = speed / yaw_rate * np.array([np.sin(yaw) - np.sin(state.yaw), np.cos(state.yaw) - np.cos(yaw), 0.0])
    else:
        dx = speed * h * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    v = speed * np.array([np.cos(yaw), np.sin(yaw), 0.0])
    return AgentState(state.position + dx, float(np.arctan2(np.sin(yaw), np.cos(yaw))), v)


@dataclass(frozen=True)
class Unicycle(Dynamics):
    """Differential-drive ground robot: action ``[speed, yaw_rate]`` (velocity commands, tracked with
    a first-order lag of ``tau`` seconds)."""

    name = "unicycle"
    action_names: tuple[str, ...] = ("speed", "yaw_rate")
    max_speed: float = 1.5
    """Top speed forwards, m/s (reverse: half of it)."""
    max_yaw_rate: float = 1.5
    """rad/s."""
    tau: float = 0.15
    """Velocity-tracking time constant, seconds."""
    body_spheres: tuple = ((0.0, 0.0, 0.55, 0.3), (0.0, 0.0, 0.85, 0.3))
    camera_height: float = 0.9

    def _derivative_step(self, state, a, h):
        target = a[0] * self.max_speed * (1.0 if a[0] >= 0 else 0.5)
        speed = float(np.dot(state.velocity[:2], [np.cos(state.yaw), np.sin(state.yaw)]))
        speed += (target - speed) * min(1.0, h / self.tau)
        return _planar(state, speed, a[1] * self.max_yaw_rate, h)


@dataclass(frozen=True)
class Bicycle(Dynamics):
    """Kinematic bicycle (car), rear-axle reference: action ``[acceleration, steering angle]``."""

    name = "bicycle"
    action_names: tuple[str, ...] = ("acceleration", "steering")
    wheelbase: float = 2.7
    """Metres."""
    max_accel: float = 3.0
    """Acceleration and braking limit, m/s^2."""
    max_steer: float = 0.5
    """Steering angle limit, radians."""
    max_speed: float = 8.0
    """m/s; the car does not reverse."""
    # The ego origin is the rear axle on the ground; the 4.6 x 1.9 m body reaches 3.6 m ahead and 1 m behind.
    body_spheres: tuple = tuple((x, 0.0, 1.0, 0.95) for x in (-0.05, 0.85, 1.75, 2.65))
    camera_height: float = 1.5
    camera_forward: float = 1.8

    def _derivative_step(self, state, a, h):
        speed = float(np.dot(state.velocity[:2], [np.cos(state.yaw), np.sin(state.yaw)]))
        speed = float(np.clip(speed + a[0] * self.max_accel * h, 0.0, self.max_speed))
        return _planar(state, speed, speed / self.wheelbase * np.tan(a[1] * self.max_steer), h)


@dataclass(frozen=True)
class PointMassQuadrotor(Dynamics):
    """Drone as a point mass with linear drag: action ``[forward, left, up, yaw_rate]`` accelerations
    in the heading frame (gravity compensated by the attitude controller it abstracts)."""

    name = "quadrotor"
    action_names: tuple[str, ...] = ("accel_forward", "accel_left", "accel_up", "yaw_rate")
    ground: bool = False
    max_accel: float = 4.0
    """m/s^2 per axis."""
    max_yaw_rate: float = 1.5
    """rad/s."""
    drag: float = 1.0
    """Linear drag, 1/s (top speed = max_accel / drag)."""
    body_spheres: tuple = ((0.0, 0.0, 0.0, 0.35),)
    camera_height: float = 0.0

    @property
    def top_speed(self) -> float:
        return self.max_accel / self.drag

    def _derivative_step(self, state, a, h):
        yaw = state.yaw + a[3] * self.max_yaw_rate * h
        acc = rot_z(yaw) @ (a[:3] * self.max_accel) - self.drag * state.velocity
        v = state.velocity + acc * h
        return AgentState(state.position + v * h, float(np.arctan2(np.sin(yaw), np.cos(yaw))), v)


DYNAMICS: dict[str, type[Dynamics]] = {"unicycle": Unicycle, "bicycle": Bicycle, "quadrotor": PointMassQuadrotor}


def make_dynamics(name: str, **overrides) -> Dynamics:
    if name not in DYNAMICS:
        raise InputError("navigation config", "dynamics", f"unknown dynamics {name!r}; known: {sorted(DYNAMICS)}")
    return replace(DYNAMICS[name](), **overrides) if overrides else DYNAMICS[name]()


def still(position, yaw: float) -> AgentState:
    """An agent at rest."""
    return AgentState(np.asarray(position, dtype=np.float64), float(yaw), np.zeros(3))
