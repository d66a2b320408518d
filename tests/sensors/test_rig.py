"""Rigs: sensors posed by the ego, captured at the rig time plus each sensor's offset."""

import numpy as np
import pytest

from scenes.errors import InputError
from scenes.transforms import invert_pose, look_at, make_pose, transform_points
from sensors.frame import capture_rig_camera
from scenes.lens import CameraModel
from sensors.renderers import TwinRenderer
from sensors.rig import CameraSensor, Rig


def _pixel_of_actor_centre(model: CameraModel, T_world_cam: np.ndarray, state, actor_id: str) -> np.ndarray:
    actor = next(a for a in state.actors if a.actor_id == actor_id)
    p_cam = transform_points(invert_pose(T_world_cam), actor.T_world_actor[:3, 3][None])
    uv, in_view = model.project(p_cam)
    assert in_view.all()
    return uv[0]


def test_rig_camera_pose_and_time_offset(box_world):
    # A side view of the moving car's lane: its motion along +x (1 m/s) crosses the image.
    T_ego_cam = look_at(np.array([0.0, 0.0, 1.5]), np.array([0.0, 10.0, 0.75]))
    model = CameraModel("pinhole", 64, 48, 40.0, 40.0, 32.0, 24.0)
    sensor = CameraSensor("side", model, T_ego_cam, time_offset=1.0)
    T_world_ego = make_pose(np.eye(3), (7.0, -8.0, 0.0))
    f = capture_rig_camera(TwinRenderer(box_world.twin), sensor, T_world_ego, box_world.graph.at, t=0.5, products=("rgb", "depth"))
    assert f.time == 1.5 and f.name == "side"
    assert np.allclose(f.T_world_cam, T_world_ego @ T_ego_cam)
    # The moving car is drawn where it is at 1.5 s (rig time + offset), not at the rig time 0.5 s:
    # its instance mask is centred on the projection of its 1.5 s box centre.
    mask = f.instance == 1
    assert mask.sum() > 100
    v, u = np.nonzero(mask)
    centroid = np.array([u.mean(), v.mean()]) + 0.5  # pixel centres at integer + 0.5
    at_capture = _pixel_of_actor_centre(model, f.T_world_cam, box_world.graph.at(1.5), "car_0")
    at_rig_time = _pixel_of_actor_centre(model, f.T_world_cam, box_world.graph.at(0.5), "car_0")
    assert np.linalg.norm(at_capture - at_rig_time) > 4.0  # the two poses are told apart in this image
    assert np.linalg.norm(centroid - at_capture) < 1.5
    assert np.linalg.norm(centroid - at_rig_time) > 3.0


def test_rig_lookup_and_validation():
    cam = CameraSensor("a", CameraModel("pinhole", 8, 8, 4.0, 4.0, 4.0, 4.0))
    rig = Rig((cam,))
    assert rig.camera("a") is cam
    with pytest.raises(InputError, match="no camera 'b'"):
        rig.camera("b")
    with pytest.raises(InputError, match="T_ego_cam"):
        CameraSensor("bad", cam.model, np.full((4, 4), np.nan))
