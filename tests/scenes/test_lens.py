"""Camera models: projection and unprojection are inverses, rays agree with nerfstudio's cameras."""

import numpy as np
import pytest
import torch

from scenes.errors import InputError
from scenes.lens import CameraModel

MODELS = {
    "pinhole": CameraModel("pinhole", 64, 48, 50.0, 52.0, 31.0, 25.0),
    "opencv": CameraModel("opencv", 64, 48, 50.0, 52.0, 31.0, 25.0, (-0.12, 0.03, 0.001, -0.002, 0.004)),
    "fisheye": CameraModel("fisheye", 64, 64, 20.0, 20.0, 32.0, 32.0, (0.02, -0.01, 0.003, -0.001), max_fov_deg=190.0),
    "fisheye_equidistant": CameraModel("fisheye", 64, 64, 20.0, 20.0, 32.0, 32.0),
    "equirectangular": CameraModel.equirectangular(64),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_project_inverts_unproject(name):
    m = MODELS[name]
    rng = np.random.default_rng(0)
    uv = rng.uniform([1, 1], [m.width - 1, m.height - 1], size=(500, 2))
    d, valid = m.pixel_directions(uv)
    assert np.allclose(np.linalg.norm(d, axis=-1), 1.0)
    depth = rng.uniform(0.5, 30.0, size=(500, 1))
    uv2, ok = m.project(d * depth)
    assert ok[valid].all()
    assert np.abs(uv2 - uv)[valid].max() < 1e-6


def test_pinhole_rays_are_the_intrinsics():
    m = MODELS["pinhole"]
    d, _ = m.pixel_directions()
    # the pixel centre (u, v) = (0.5, 0.5) sees (0.5 - cx) / fx, (0.5 - cy) / fy on the z = 1 plane
    assert np.allclose(d[0, 0, :2] / d[0, 0, 2], [(0.5 - 31.0) / 50.0, (0.5 - 25.0) / 52.0])


def test_points_behind_or_outside_are_flagged():
    m = MODELS["pinhole"]
    _, ok = m.project(np.array([[0.0, 0.0, -1.0], [100.0, 0.0, 1.0], [0.0, 0.0, 1.0]]))
    assert ok.tolist() == [False, False, True]
    fe = MODELS["fisheye_equidistant"]
    _, ok = fe.project(np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.01]]))  # straight behind; 89 deg off-axis
    assert ok.tolist() == [False, True]


def _nerfstudio_dirs(m: CameraModel) -> np.ndarray:
    from nerfstudio.cameras.camera_utils import get_distortion_params
    from nerfstudio.cameras.cameras import Cameras, CameraType

    kind = {"pinhole": CameraType.PERSPECTIVE, "opencv": CameraType.PERSPECTIVE, "fisheye": CameraType.FISHEYE,
            "equirectangular": CameraType.EQUIRECTANGULAR}[m.kind]
    dist = None
    if m.kind == "opencv":
        k1, k2, p1, p2, k3 = m.distortion
        dist = get_distortion_params(k1=k1, k2=k2, k3=k3, p1=p1, p2=p2)[None]
    fx, fy, cx, cy = (m.width / 2, float(m.height), m.width / 2, m.height / 2) if m.kind == "equirectangular" else (m.fx, m.fy, m.cx, m.cy)
    cams = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=fx, fy=fy, cx=cx, cy=cy, width=m.width, height=m.height,
                   distortion_params=dist, camera_type=kind)
    d = cams.generate_rays(camera_indices=0).directions.numpy().astype(np.float64)
    return d * np.array([1.0, -1.0, -1.0])  # OpenGL (y up, z backward) -> OpenCV


@pytest.mark.parametrize("name", ["pinhole", "opencv", "fisheye_equidistant", "equirectangular"])
def test_rays_agree_with_nerfstudio(name):
    m = MODELS[name]
    ours, valid = m.pixel_directions()
    ref = _nerfstudio_dirs(m)
    ang = np.degrees(np.arccos(np.clip(np.einsum("...i,...i->...", ours, ref), -1, 1)))
    assert ang[valid].max() < 0.05, ang.max()


def test_bad_models_name_the_field():
    with pytest.raises(InputError, match="distortion"):
        CameraModel("opencv", 10, 10, 5.0, 5.0, 5.0, 5.0, (0.1, 0.2))
    with pytest.raises(InputError, match="kind"):
        CameraModel("orthographic", 10, 10)
    with pytest.raises(InputError, match="fx"):
        CameraModel.from_dict({"kind": "pinhole", "width": 10, "height": 10, "fx": -1, "fy": 1})
    assert CameraModel.from_dict(MODELS["opencv"].to_dict()) == MODELS["opencv"]
