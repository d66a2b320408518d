"""Pose conventions and interpolation, property-tested."""

import numpy as np
from hypothesis import given, strategies as st

from scenes.graph import ActorTrack
from scenes.transforms import (invert_pose, look_at, make_pose, matrix_to_quat, opengl_to_opencv, quat_to_matrix,
                               rotation_angle_deg, rot_z, slerp, yaw_of)

quat = st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(lambda q: np.linalg.norm(q) > 0.1).map(lambda q: np.asarray(q) / np.linalg.norm(q))
vec = st.lists(st.floats(-100, 100), min_size=3, max_size=3).map(np.asarray)


@given(quat)
def test_quat_matrix_roundtrip_is_a_rotation(q):
    R = quat_to_matrix(q)
    assert np.allclose(R.T @ R, np.eye(3), atol=1e-9) and np.isclose(np.linalg.det(R), 1.0)
    q2 = matrix_to_quat(R)
    assert np.allclose(q2, q, atol=1e-7) or np.allclose(q2, -q, atol=1e-7)


@given(quat, vec, vec)
def test_pose_inverse_and_composition(q, t, p):
    T = make_pose(quat_to_matrix(q), t)
    assert np.allclose(invert_pose(T) @ T, np.eye(4), atol=1e-9)
    # T maps p then T^-1 maps it back
    pw = T[:3, :3] @ p + T[:3, 3]
    assert np.allclose(invert_pose(T)[:3, :3] @ pw + invert_pose(T)[:3, 3], p, atol=1e-7)


@given(quat, quat, st.floats(0, 1))
def test_slerp_endpoints_and_constant_speed(q0, q1, s):
    R0, R1 = quat_to_matrix(q0), quat_to_matrix(q1)
    assert rotation_angle_deg(quat_to_matrix(slerp(q0, q1, 0.0)), R0) < 1e-4
    assert rotation_angle_deg(quat_to_matrix(slerp(q0, q1, 1.0)), R1) < 1e-4
    total = rotation_angle_deg(R0, R1)
    Rs = quat_to_matrix(slerp(q0, q1, s))
    # Constant angular speed along the shortest arc: angles from both ends add up to the total.
    assert abs(rotation_angle_deg(R0, Rs) - s * total) < 1e-3 * max(1.0, total)
    assert abs(rotation_angle_deg(Rs, R1) - (1 - s) * total) < 1e-3 * max(1.0, total)


@given(st.floats(-1e-6, 1e-6))
def test_slerp_near_identity_is_stable(eps):
    q0 = np.array([1.0, 0, 0, 0])
    q1 = np.array([np.cos(eps / 2), 0, 0, np.sin(eps / 2)])
    q = slerp(q0, q1, 0.5)
    assert np.all(np.isfinite(q)) and np.isclose(np.linalg.norm(q), 1.0)


def test_track_interpolates_position_linearly_and_yaw_by_slerp():
    track = ActorTrack.from_poses([0.0, 2.0], [make_pose(rot_z(0.0), [0, 0, 0]), make_pose(rot_z(1.0), [4, 2, 0])])
    T = track.pose_at(0.5)
    assert np.allclose(T[:3, 3], [1, 0.5, 0])
    assert np.isclose(yaw_of(T[:3, :3]), 0.25)
    assert np.allclose(track.pose_at(-5), track.pose_at(0)) and np.allclose(track.pose_at(9), track.pose_at(2))


def test_look_at_is_opencv_and_gl_conversion_flips_y_z():
    T = look_at([0, 0, 1], [5, 0, 1])
    assert np.allclose(T[:3, 2], [1, 0, 0])  # camera z forward
    assert np.allclose(T[:3, 1], [0, 0, -1])  # camera y down
    T_gl = T @ np.diag([1, -1, -1, 1])
    assert np.allclose(opengl_to_opencv(T_gl), T)
