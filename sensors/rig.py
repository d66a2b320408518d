"""Sensor rigs: cameras and LiDARs mounted on the ego vehicle.

Conventions: ego frame x forward, y left, z up, origin on the ground under the vehicle centre;
``T_ego_cam`` maps camera (OpenCV) coordinates to ego coordinates, ``T_ego_lidar`` LiDAR coordinates
(x forward, y left, z up) to ego. Each sensor carries a ``time_offset`` (seconds): a rig captured
"at time t" samples sensor s at ``t + s.time_offset`` (e.g. cameras triggered one after another).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from scenes.errors import InputError
from scenes.transforms import rigid_pose
from sensors.lidar import LidarConfig
from scenes.lens import CameraModel


def _rigid(T, source: str, name: str) -> np.ndarray:
    return rigid_pose(T, source, name)


class _Mounted:
    """A sensor fixed to the ego by its extrinsic (the dataclass field named ``_extrinsic``)."""

    _extrinsic = ""

    def __post_init__(self):
        T = _rigid(getattr(self, self._extrinsic), f"sensor '{self.name}'", self._extrinsic)
        object.__setattr__(self, self._extrinsic, T)

    def pose(self, T_world_ego: np.ndarray) -> np.ndarray:
        """The sensor's world pose (``T_world_cam`` / ``T_world_lidar``) for an ego pose."""
        return np.asarray(T_world_ego, dtype=np.float64) @ getattr(self, self._extrinsic)


@dataclass(frozen=True)
class CameraSensor(_Mounted):
    """A camera of a rig."""

    _extrinsic = "T_ego_cam"
    name: str
    model: CameraModel
    T_ego_cam: np.ndarray = field(default_factory=lambda: np.eye(4))
    time_offset: float = 0.0


@dataclass(frozen=True)
class LidarSensor(_Mounted):
    """A spinning LiDAR of a rig (its scan pattern is a `sensors.lidar.LidarConfig`)."""

    _extrinsic = "T_ego_lidar"
    name: str = "lidar"
    pattern: LidarConfig = field(default_factory=LidarConfig)
    T_ego_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    time_offset: float = 0.0


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
        """The rig a `scenes.capture.CaptureLog` was recorded with (its cameras' lenses + its LiDAR's
        scan pattern)."""
        cams = tuple(CameraSensor(c.name, c.lens or CameraModel.from_intrinsics(c.intrinsics), c.T_ego_cam) for c in log.cameras)
        lidars = ()
        if log.lidar:
            known = {f.name for f in dataclasses.fields(LidarConfig)}
            fields = {k: v for k, v in log.lidar.items() if k in known}
            lidars = (LidarSensor("lidar", LidarConfig(**fields), log.lidar["T_ego_lidar"]),)
        return Rig(cams, lidars)

