"""Rigs: sensors posed by the ego, captured at the rig time plus each sensor's offset."""

import numpy as np
import pytest

from scenes.errors import InputError
from scenes.transforms import look_at
from sensors.frame import capture_rig_camera
from scenes.lens import CameraModel
from sensors.renderers import TwinRenderer
from sensors.rig import CameraSensor, Rig


def test_rig_camera_pose_and_time_offset(box_world):
    T_ego_cam = look_at(np.array([0.5, 0.0, 1.5]), np.array([10.0, 0.0, 1.0]))  # ego frame = world at the origin
    sensor = CameraSensor("front", CameraModel("pinhole", 32, 24, 20.0, 20.0, 16.0, 12.0), T_ego_cam, time_offset=0.5)
    T_world_ego = np.eye(4)
    T_world_ego[:3, 3] = (1.0, 0.0, 0.0)
    f = capture_rig_camera(TwinRenderer(box_world.twin), sensor, T_world_ego, box_world.graph.at, t=1.0, products=("rgb", "depth"))
    assert f.time == 1.5 and f.name == "front"
    assert np.allclose(f.T_world_cam, T_world_ego @ T_ego_cam)
    # the moving car is rendered where it is at 1.5 s, not at 1.0 s
    car = next(a for a in box_world.graph.at(1.5).actors if a.actor_id == "car_0")
    assert np.isclose(car.T_world_actor[0, 3], 7.5)
    assert (f.instance == 1).any()


def test_rig_lookup_and_validation():
    cam = CameraSensor("a", CameraModel("pinhole", 8, 8, 4.0, 4.0, 4.0, 4.0))
    rig = Rig((cam,))
    assert rig.camera("a") is cam
    with pytest.raises(InputError, match="no camera 'b'"):
        rig.camera("b")
    with pytest.raises(InputError, match="T_ego_cam"):
        CameraSensor("bad", cam.model, np.full((4, 4), np.nan))
