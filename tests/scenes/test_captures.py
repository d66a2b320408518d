"""Real-capture readers (LLFF, COLMAP) against hand-built files with known poses, their errors on
corrupt input, and training rays through distorted lenses."""

from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from scenes.camera import Camera, Intrinsics
from scenes.datasets import file_to_world_pose, load_static_dataset, world_to_file_pose
from scenes.errors import InputError
from scenes.graph import SceneGraph
from scenes.lens import CameraModel
from sim.data import RayBank

FERN = Path(__file__).resolve().parents[3] / "shared" / "data" / "fern-llff"


def _file_poses(n: int, seed: int = 0) -> np.ndarray:
    """``T_file_cam [n, 4, 4]`` (OpenCV axes): cameras on a line looking roughly along the file's -z."""
    rng = np.random.default_rng(seed)
    T = np.tile(np.eye(4), (n, 1, 1))
    for i in range(n):
        look = Rotation.from_euler("xyz", rng.normal(0, 0.1, 3)).as_matrix() @ Rotation.from_euler("x", 180, degrees=True).as_matrix()
        T[i, :3, :3] = look
        T[i, :3, 3] = [i * 0.5 - 2, rng.normal(0, 0.2), rng.normal(0, 0.2)]
    return T


def _write_images(folder: Path, n: int, w: int, h: int) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"img{i:03d}.png" for i in range(n)]
    for i, name in enumerate(names):
        imageio.imwrite(folder / name, np.full((h, w, 3), 10 * i, np.uint8))
    return names


def _llff(tmp: Path, T: np.ndarray, hwf=(300.0, 400.0, 320.0), downscale: int = 2) -> Path:
    n = len(T)
    P = np.zeros((n, 17))
    R = T[:, :3, :3]
    # LLFF columns: [down, right, back] = [y, x, -z] of the OpenCV camera.
    mat = np.concatenate([R[:, :, 1:2], R[:, :, 0:1], -R[:, :, 2:3], T[:, :3, 3:4], np.tile(np.asarray(hwf)[None, :, None], (n, 1, 1))], 2)
    P[:, :15] = mat.reshape(n, 15)
    P[:, 15], P[:, 16] = 5.0, 50.0
    np.save(tmp / "poses_bounds.npy", P)
    _write_images(tmp / f"images_{downscale}", n, int(hwf[1]) // downscale, int(hwf[0]) // downscale)
    return tmp


def _assert_same_rig(world_cams: list[Camera], T_file: np.ndarray, meta: dict) -> None:
    """The cameras, mapped back to the file's frame, are the file's poses."""
    for cam, T in zip(world_cams, T_file):
        assert np.allclose(world_to_file_pose(cam.T_world_cam, meta), T, atol=1e-9)
        assert np.allclose(file_to_world_pose(T, meta), cam.T_world_cam, atol=1e-9)


def test_llff_reader_poses_split_and_intrinsics(tmp_path):
    T = _file_poses(10)
    ds_train = load_static_dataset(_llff(tmp_path, T), "train")
    ds_test = load_static_dataset(tmp_path, "test")
    assert [c.name for c in ds_test.cameras] == ["img000", "img008"]  # LLFF protocol: every 8th
    assert len(ds_train) == 8 and ds_train.images.shape == (8, 150, 200, 3)
    K = ds_train.cameras[0].intrinsics
    assert (K.width, K.height, K.fx, K.fy, K.cx, K.cy) == (200, 150, 160.0, 160.0, 100.0, 75.0)  # focal / 2
    assert ds_train.meta["kind"] == "llff" and ds_train.unbounded and ds_train.meta["file_scale"] > 0
    _assert_same_rig(ds_train.cameras, np.delete(T, [0, 8], 0), ds_train.meta)
    _assert_same_rig(ds_test.cameras, T[[0, 8]], ds_test.meta)
    # World: mean camera up (-y of OpenCV cameras) is +z, cameras centred, inner box 2 across.
    cams = ds_train.cameras + ds_test.cameras
    up = -np.mean([c.T_world_cam[:3, 1] for c in cams], 0)
    assert np.allclose(up / np.linalg.norm(up), [0, 0, 1], atol=1e-9)
    assert np.allclose(np.mean([c.T_world_cam[:3, 3] for c in cams], 0), 0, atol=1e-9)
    lo, hi = np.asarray(ds_train.aabb)
    assert np.isclose((hi - lo).max(), 2.0) and np.all([(c.T_world_cam[:3, 3] > lo).all() and (c.T_world_cam[:3, 3] < hi).all() for c in cams])
    assert np.isclose(ds_train.near, 5.0 * ds_train.meta["file_scale"])


@pytest.mark.parametrize("corrupt, field", [
    (lambda p: np.save(p, np.zeros((4, 15))), None),
    (lambda p: p.write_bytes(p.read_bytes()[:60]), None),
    (lambda p: np.save(p, np.concatenate([np.eye(3, 5).reshape(1, 15) * 2, [[5.0, 50.0]]], 1)), "row 0"),
    (lambda p: np.save(p, np.load(p) * np.r_[np.ones(15), 1.0, 0.01]), "near/far"),  # far < near
])
def test_llff_corrupt_files_name_file_and_field(tmp_path, corrupt, field):
    _llff(tmp_path, _file_poses(4))
    corrupt(tmp_path / "poses_bounds.npy")
    with pytest.raises(InputError) as e:
        load_static_dataset(tmp_path, "train")
    assert "poses_bounds.npy" in str(e.value) and (field is None or field in str(e.value))


def _colmap(tmp: Path, T: np.ndarray, model="OPENCV", params=(320.0, 330.0, 200.0, 150.0, -0.2, 0.05, 0.001, -0.002), ext=".bin") -> Path:
    from nerfstudio.data.utils import colmap_parsing_utils as cp

    names = _write_images(tmp / "images", len(T), 400, 300)
    cams = {1: cp.Camera(id=1, model=model, width=400, height=300, params=np.asarray(params))}
    images, points = {}, {}
    rng = np.random.default_rng(1)
    for pid in range(1, 200):  # points 4-10 units in front of the cameras (file frame: -z)
        points[pid] = cp.Point3D(id=pid, xyz=np.array([rng.uniform(-3, 3), rng.uniform(-2, 2), -rng.uniform(4, 10)]),
                                 rgb=np.zeros(3, np.uint8), error=0.5, image_ids=np.array([1]), point2D_idxs=np.array([0]))
    for i, (name, T_fc) in enumerate(zip(names, T), start=1):
        T_cf = np.linalg.inv(T_fc)
        images[i] = cp.Image(id=i, qvec=cp.rotmat2qvec(T_cf[:3, :3]), tvec=T_cf[:3, 3], camera_id=1, name=name,
                             xys=np.zeros((199, 2)), point3D_ids=np.arange(1, 200))
    (tmp / "sparse" / "0").mkdir(parents=True)
    cp.write_model(cams, images, points, str(tmp / "sparse" / "0"), ext=ext)
    return tmp


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_colmap_reader_poses_lens_and_near(tmp_path, ext):
    T = _file_poses(9)
    ds = load_static_dataset(_colmap(tmp_path, T, ext=ext), "train")
    assert ds.meta["kind"] == "colmap" and len(ds) == 7 and ds.unbounded
    _assert_same_rig(ds.cameras, np.delete(T, [0, 8], 0), ds.meta)
    lens = ds.cameras[0].lens
    assert lens.kind == "opencv" and np.allclose(lens.distortion, (-0.2, 0.05, 0.001, -0.002))
    assert (lens.fx, lens.fy, lens.cx, lens.cy) == (320.0, 330.0, 200.0, 150.0)
    # Nearest points ~4 units in front (z), as a low percentile of each image's point depths.
    assert 3.0 < ds.near / ds.meta["file_scale"] < 5.0


def test_colmap_models_map_to_lenses(tmp_path):
    from scenes.captures import colmap_lens

    K, lens = colmap_lens("SIMPLE_RADIAL", 400, 300, [300.0, 200.0, 150.0, 0.1], tmp_path, 1)
    assert lens.kind == "opencv" and lens.distortion == (0.1, 0.0, 0.0, 0.0) and K.fx == K.fy == 300.0
    _, lens = colmap_lens("OPENCV_FISHEYE", 400, 300, [300.0, 310.0, 200.0, 150.0, 0.1, 0.01, 0.0, 0.0], tmp_path, 1)
    assert lens.kind == "fisheye" and lens.distortion == (0.1, 0.01, 0.0, 0.0)
    assert colmap_lens("PINHOLE", 400, 300, [300.0, 310.0, 200.0, 150.0], tmp_path, 1)[1] is None
    _, lens = colmap_lens("FULL_OPENCV", 400, 300, [300.0, 300.0, 200.0, 150.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.05, 0.0, 0.0], tmp_path, 1)
    assert len(lens.distortion) == 8
    with pytest.raises(InputError, match="FOV.*unsupported|unsupported"):
        colmap_lens("FOV", 400, 300, [300.0, 300.0, 200.0, 150.0, 0.9], tmp_path / "cameras.bin", 1)


def test_colmap_truncated_file_and_photos_without_poses(tmp_path):
    _colmap(tmp_path / "cap", _file_poses(3))
    f = tmp_path / "cap" / "sparse" / "0" / "images.bin"
    f.write_bytes(f.read_bytes()[:100])
    with pytest.raises(InputError, match="images.bin"):
        load_static_dataset(tmp_path / "cap", "train")
    _write_images(tmp_path / "photos", 3, 40, 30)
    with pytest.raises(InputError, match="3 photos but no camera poses.*COLMAP"):
        load_static_dataset(tmp_path / "photos", "train")


@pytest.mark.parametrize("lens", [
    CameraModel("opencv", 320, 240, 250.0, 255.0, 161.0, 118.0, (-0.35, 0.12, 0.001, -0.002)),
    CameraModel("opencv", 320, 240, 250.0, 255.0, 161.0, 118.0, (-0.3, 0.08, 0.001, 0.002, -0.01)),
    CameraModel("opencv", 320, 240, 250.0, 255.0, 161.0, 118.0, (-0.3, 0.05, 0.001, 0.002, 0.0, 0.02, 0.0, 0.0)),
    CameraModel("fisheye", 320, 240, 120.0, 120.0, 160.0, 120.0, (0.05, -0.01, 0.002, 0.0)),
], ids=["opencv4", "opencv5", "opencv8", "fisheye"])
def test_training_rays_through_a_distorted_lens_project_back_to_their_pixels(lens):
    K = Intrinsics(lens.width, lens.height, lens.fx, lens.fy, lens.cx, lens.cy)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [0.3, -0.2, 0.5]).as_matrix()
    T[:3, 3] = [1.0, 2.0, 0.5]
    cams = [Camera(K, T, 0.0, "a", lens), Camera(K, np.eye(4), 0.0, "b")]  # one distorted, one pinhole view
    bank = RayBank(cams, [np.zeros((240, 320, 3), np.uint8)] * 2, SceneGraph(aabb=((-1, -1, -1), (1, 1, 1))))
    b = bank.sample_pixels(4000, torch.Generator().manual_seed(0))
    view = (b["pixel"] >= bank.offsets[1]).long()
    pix = b["pixel"] - bank.offsets[view]
    uv = torch.stack([pix % 320, pix // 320], -1).double().numpy() + 0.5
    for v, cam in enumerate(cams):
        sel = (view == v).numpy()
        d_cam = b["dirs"][sel].double().numpy() @ cam.T_world_cam[:3, :3]  # R^T d
        proj, ok = cam.model.project(d_cam)
        assert ok.all() and np.abs(proj - uv[sel]).max() < 0.01
    # Rendering rays through the same lens agree with the training rays (one source of truth).
    from sim.rays import camera_rays

    _, d, _ = camera_rays(cams[0])
    first = int(pix[view == 0][0])
    assert torch.allclose(d[first], b["dirs"][view == 0][0], atol=1e-6)


@pytest.mark.skipif(not FERN.exists(), reason="../shared/data/fern-llff not present")
def test_fern_loads_with_the_llff_protocol():
    train, test = load_static_dataset(FERN, "train"), load_static_dataset(FERN, "test")
    assert len(train) == 17 and [c.name for c in test.cameras] == ["image000", "image008", "image016"]
    K = train.cameras[0].intrinsics
    assert (K.width, K.height) == (504, 378) and np.isclose(K.fx, 3260.526 / 8, atol=0.01)
    assert train.aabb == test.aabb and np.isclose(train.near, test.near)
