"""Small SE(3) / SO(3) helpers in numpy, shared by every package.

Conventions (project-wide, ARCHITECTURE.md):
- World: right-handed, z up, metres. Actor/ego frames: x forward, y left, z up (ISO 8855).
- Cameras: OpenCV (x right, y down, z forward). OpenGL/Blender cameras (x right, y up, z backward)
  are converted once, at load, with `opengl_to_opencv`.
- Poses are 4x4 homogeneous matrices named by what they map: `T_world_cam @ p_cam = p_world`.
- Quaternions are (w, x, y, z), unit norm; `q` and `-q` are the same rotation.
"""

from __future__ import annotations

import numpy as np

#: Maps OpenGL camera coordinates to OpenCV camera coordinates (flip y and z).
T_CV_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def make_pose(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Build a 4x4 pose (or a batch ``[..., 4, 4]``) from rotation ``[..., 3, 3]`` and translation ``[..., 3]``."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    T = np.zeros(R.shape[:-2] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


def invert_pose(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid transform ``[..., 4, 4]`` (uses R^T, never a general inverse)."""
    T = np.asarray(T, dtype=np.float64)
    R = T[..., :3, :3]
    Rt = np.swapaxes(R, -1, -2)
    return make_pose(Rt, -np.einsum("...ij,...j->...i", Rt, T[..., :3, 3]))


def transform_points(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply pose ``T [4, 4]`` to points ``p [..., 3]``."""
    return p @ T[:3, :3].T + T[:3, 3]


def rot_z(yaw: float) -> np.ndarray:
    """Rotation about +z by ``yaw`` radians (counter-clockwise seen from above)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def yaw_of(R: np.ndarray) -> float:
    """Heading of the x axis of ``R`` projected on the ground plane, radians."""
    return float(np.arctan2(R[1, 0], R[0, 0]))


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) ``[..., 4]`` (w, x, y, z) to rotation matrices ``[..., 3, 3]``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=-1,
    )
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix ``[3, 3]`` to unit quaternion (w, x, y, z) with w >= 0 (Shepperd's method)."""
    R = np.asarray(R, dtype=np.float64)
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    # Pick the largest of (w, x, y, z) as pivot for numerical stability.
    cands = np.array([tr, m[0, 0], m[1, 1], m[2, 2]])
    i = int(np.argmax(cands))
    if i == 0:
        s = np.sqrt(1.0 + tr) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif i == 1:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif i == 2:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def yaw_to_quat(yaw: float) -> np.ndarray:
    """Quaternion of a rotation about +z."""
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical linear interpolation from ``q0`` (s=0) to ``q1`` (s=1) along the short arc."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:  # take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: lerp + renormalise avoids dividing by sin(~0)
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    return (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)


def rotation_angle_deg(R_a: np.ndarray, R_b: np.ndarray) -> float:
    """Geodesic angle between two rotations, degrees."""
    c = (np.trace(R_a.T @ R_b) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``T_world_cam`` (OpenCV axes) of a camera at ``eye`` looking at ``target`` with ``up`` roughly up."""
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_pose(np.stack([x, y, z], axis=1), eye)


def opengl_to_opencv(T_world_cam_gl: np.ndarray) -> np.ndarray:
    """Convert a camera-to-world pose with OpenGL/Blender camera axes to OpenCV camera axes."""
    return np.asarray(T_world_cam_gl, dtype=np.float64) @ T_CV_GL


def opencv_to_opengl(T_world_cam: np.ndarray) -> np.ndarray:
    """The inverse of `opengl_to_opencv` (the axis flip is its own inverse)."""
    return np.asarray(T_world_cam, dtype=np.float64) @ T_CV_GL


def is_rigid(T: np.ndarray, atol: float = 1e-4) -> bool:
    """True when ``T`` is a finite 4x4 rigid transform (orthonormal, det +1, last row 0 0 0 1)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4) or not np.all(np.isfinite(T)):
        return False
    R = T[:3, :3]
    return (
        np.allclose(R.T @ R, np.eye(3), atol=atol)
        and abs(np.linalg.det(R) - 1.0) < atol
        and np.allclose(T[3], [0, 0, 0, 1], atol=atol)
    )


def rigid_pose(value, source, field: str | None) -> np.ndarray:
    """``value`` (nested lists / an array) as a 4x4 rigid transform, or `scenes.errors.InputError`
    naming ``source`` and ``field`` and what is wrong: not numbers, not 4x4, not finite, not rigid
    (`is_rigid`). The one check of poses read from files and given to sensors."""
    from scenes.errors import InputError

    try:
        T = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(source, field, "expected a 4x4 matrix of numbers") from None
    if T.shape != (4, 4):
        raise InputError(source, field, f"expected a 4x4 matrix, got shape {T.shape}")
    if not np.all(np.isfinite(T)):
        raise InputError(source, field, "expected a finite 4x4 rigid transform (pose has NaN/inf)")
    if not is_rigid(T):
        raise InputError(source, field, "expected a 4x4 rigid transform (orthonormal rotation with det +1, last row 0 0 0 1)")
    return T
