"""Sensor rigs: cameras and LiDARs mounted on the ego vehicle.

Conventions: ego frame x forward, y left, z up, origin on the ground under the vehicle centre;
``T_ego_cam`` maps camera (OpenCV) coordinates to ego coordinates, ``T_ego_lidar`` LiDAR coordinates
(x forward, y left, z up) to ego. Each sensor carries a ``time_offset`` (seconds): a rig captured
"at time t" samples sensor s at ``t + s.time_offset`` (e.g. cameras triggered one after another).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenes.errors import InputError
from scenes.transforms import is_rigid
from scenes.twin import LidarConfig
from sensors.lens import CameraModel


def _rigid(T, source: str, name: str) -> np.ndarray:
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not is_rigid(T):
        raise InputError(source, name, "expected a finite 4x4 rigid transform")
    return T


@dataclass(frozen=True)
class CameraSensor:
    """A camera of a rig."""

    name: str
    model: CameraModel
    T_ego_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    time_offset: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "T_ego_cam", _rigid(self.T_ego_cam, f"camera '{self.name}'", "T_ego_cam"))

    def pose(self, T_world_ego: np.ndarray) -> np.ndarray:
        """``T_world_cam`` for an ego pose."""
        return np.asarray(T_world_ego, dtype=np.float64) @ self.T_ego_cam


@dataclass(frozen=True)
class LidarSensor:
    """A spinning LiDAR of a rig (its scan pattern is a `scenes.twin.LidarConfig`)."""

    name: str = "lidar"
    pattern: LidarConfig = field(default_factory=LidarConfig)
    T_ego_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    time_offset: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "T_ego_lidar", _rigid(self.T_ego_lidar, f"lidar '{self.name}'", "T_ego_lidar"))

    def pose(self, T_world_ego: np.ndarray) -> np.ndarray:
        return np.asarray(T_world_ego, dtype=np.float64) @ self.T_ego_lidar


@dataclass(frozen=True)
class Rig:
    """Cameras and LiDARs with their extrinsics to the ego frame."""

    cameras: tuple[CameraSensor, ...] = ()
    lidars: tuple[LidarSensor, ...] = ()

    def camera(self, name: str) -> CameraSensor:
        for c in self.cameras:
            if c.name == name:
                return c
        raise InputError("rig", "cameras", f"no camera '{name}'; known: {[c.name for c in self.cameras]}")

    @staticmethod
    def from_capture_log(log) -> "Rig":
        """The rig a `scenes.capture.CaptureLog` was recorded with (pinhole cameras + its LiDAR)."""
        cams = tuple(CameraSensor(c.name, CameraModel.from_intrinsics(c.intrinsics), c.T_ego_cam) for c in log.cameras)
        lidars = ()
        if log.lidar:
            fields = {k: v for k, v in log.lidar.items() if k != "T_ego_lidar"}
            lidars = (LidarSensor("lidar", LidarConfig(**fields), log.lidar["T_ego_lidar"]),)
        return Rig(cams, lidars)

