"""scenes.datasets: lego-200 through nerfstudio's Blender parser, synthetic nerfstudio / instant-ngp
transforms.json folders, and every bad-input case raising InputError naming file and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from scenes.datasets import StaticDataset, file_to_world_pose, load_static_dataset, world_to_file_pose
from scenes.errors import InputError
from scenes.transforms import look_at, opengl_to_opencv

LEGO = Path(__file__).parents[2].parent / "shared/data/lego-200"
needs_lego = pytest.mark.skipif(not LEGO.is_dir(), reason=f"lego-200 not found at {LEGO} (shared data folder absent)")


@pytest.fixture(scope="module")
def lego_train() -> StaticDataset:
    if not LEGO.is_dir():
        pytest.skip(f"lego-200 not found at {LEGO}")
    return load_static_dataset(LEGO, "train")


# ------------------------------------------------------------------------------------------ lego


@needs_lego
def test_lego_train_shapes_and_meta(lego_train):
    ds = lego_train
    assert len(ds) == 100 and ds.images.shape == (100, 200, 200, 3) and ds.images.dtype == np.float32
    assert ds.alphas is not None and ds.alphas.shape == (100, 200, 200) and ds.alphas.dtype == np.float32
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert 0.05 < ds.alphas.mean() < 0.95  # a real object on a transparent background
    assert ds.aabb == ((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))
    assert ds.background == (1.0, 1.0, 1.0)
    assert ds.meta["kind"] == "blender" and ds.meta["dataparser_scale"] == 1.0
    np.testing.assert_allclose(ds.meta["dataparser_transform"], np.eye(4))
    assert all(c.time == 0.0 for c in ds.cameras)


@needs_lego
def test_lego_test_split():
    ds = load_static_dataset(LEGO, "test")
    assert len(ds) == 25 and ds.images.shape == (25, 200, 200, 3) and ds.alphas.shape == (25, 200, 200)


@needs_lego
def test_lego_cameras_look_at_origin_and_focal(lego_train):
    angle = json.loads((LEGO / "transforms_train.json").read_text())["camera_angle_x"]
    f = 0.5 * 200 / np.tan(0.5 * angle)
    for cam in lego_train.cameras:
        T = cam.T_world_cam
        to_centre = -T[:3, 3] / np.linalg.norm(T[:3, 3])
        assert T[:3, 2] @ to_centre > 0.999, cam.name  # OpenCV +z looks at the origin
        assert T[:3, 1] @ np.array([0, 0, 1.0]) < 0  # image "down" points down in the z-up world
        K = cam.intrinsics
        assert (K.width, K.height) == (200, 200)
        assert K.fx == pytest.approx(f, rel=1e-6) and K.fy == pytest.approx(f, rel=1e-6)
        assert (K.cx, K.cy) == (100.0, 100.0)


@needs_lego
def test_lego_poses_are_json_poses_with_y_z_flipped(lego_train):
    frames = json.loads((LEGO / "transforms_train.json").read_text())["frames"]
    assert [c.name for c in lego_train.cameras] == [Path(fr["file_path"]).name for fr in frames]
    for cam, fr in zip(lego_train.cameras, frames):
        expected = np.array(fr["transform_matrix"], dtype=np.float64)
        expected[:3, 1] *= -1  # OpenGL y up -> OpenCV y down
        expected[:3, 2] *= -1  # OpenGL z backward -> OpenCV z forward
        np.testing.assert_allclose(cam.T_world_cam, expected, atol=1e-6)


@needs_lego
def test_lego_image_matches_file(lego_train):
    raw = imageio.imread(LEGO / "train/r_0.png").astype(np.float32) / 255.0
    np.testing.assert_allclose(lego_train.images[0], raw[..., :3])
    np.testing.assert_allclose(lego_train.alphas[0], raw[..., 3])


@needs_lego
def test_lego_downscale_box_filters_and_scales_intrinsics(lego_train):
    ds = load_static_dataset(LEGO, "train", downscale=4)
    assert ds.images.shape == (100, 50, 50, 3) and ds.alphas.shape == (100, 50, 50)
    K, K0 = ds.cameras[3].intrinsics, lego_train.cameras[3].intrinsics
    assert (K.width, K.height) == (50, 50)
    assert K.fx == pytest.approx(K0.fx / 4) and K.cx == pytest.approx(K0.cx / 4)
    np.testing.assert_allclose(ds.cameras[3].T_world_cam, lego_train.cameras[3].T_world_cam)
    full = lego_train.composited()[:5]
    boxed = full.reshape(5, 50, 4, 50, 4, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(ds.composited()[:5], boxed, atol=1e-5)


# ------------------------------------------------------------------ synthetic transforms.json


def _write_pngs(folder: Path, names: list[str], w: int, h: int, rgba: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        imageio.imwrite(folder / n, rng.integers(0, 256, (h, w, 4 if rgba else 3), dtype=np.uint8))


def _gl_poses(n: int, centre=(3.0, -2.0, 0.5), radius=4.0) -> list[np.ndarray]:
    """Cameras on a tilted circle around an off-origin centre, as OpenGL camera-to-world matrices."""
    poses = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = np.asarray(centre) + radius * np.array([np.cos(a), np.sin(a), 0.4 + 0.1 * i])
        poses.append(look_at(eye, centre) @ np.diag([1.0, -1, -1, 1]))  # OpenCV -> OpenGL
    return poses


def _nerfstudio_folder(root: Path, n: int = 6, per_frame: bool = False, extra: dict | None = None) -> list:
    names = [f"frame_{i:03d}.png" for i in range(n)]
    _write_pngs(root / "images", names, 8, 6)
    intr = {"fl_x": 7.5, "fl_y": 7.0, "cx": 4.25, "cy": 2.75, "w": 8, "h": 6}
    poses = _gl_poses(n)
    frames = [{"file_path": f"images/{nm}", "transform_matrix": T.tolist()} for nm, T in zip(names, poses)]
    meta = {"camera_model": "OPENCV", "frames": frames, **(extra or {})}
    if per_frame:
        for fr in frames:
            fr.update(intr)
    else:
        meta.update(intr)
    (root / "transforms.json").write_text(json.dumps(meta))
    return poses


def _check_maps_back(ds: StaticDataset, root: Path) -> None:
    by_name = {Path(fr["file_path"]).stem: np.array(fr["transform_matrix"])
               for fr in json.loads((root / "transforms.json").read_text())["frames"]}
    for cam in ds.cameras:
        T_file = opengl_to_opencv(by_name[cam.name])
        np.testing.assert_allclose(world_to_file_pose(cam.T_world_cam, ds.meta), T_file, atol=1e-5)
        np.testing.assert_allclose(file_to_world_pose(T_file, ds.meta), cam.T_world_cam, atol=1e-5)


@pytest.mark.parametrize("per_frame", [False, True])
def test_nerfstudio_format_intrinsics_and_poses_map_back(tmp_path, per_frame):
    _nerfstudio_folder(tmp_path, per_frame=per_frame)
    ds = load_static_dataset(tmp_path, split="all")
    assert ds.meta["kind"] == "nerfstudio" and len(ds) == 6
    assert ds.images.shape == (6, 6, 8, 3) and ds.alphas is None and ds.background is None
    K = ds.cameras[0].intrinsics
    assert (K.width, K.height, K.fx, K.fy, K.cx, K.cy) == (8, 6, 7.5, 7.0, 4.25, 2.75)
    # nerfstudio really moved the poses (centred, scaled into [-1, 1]); the record undoes it
    assert ds.meta["dataparser_scale"] != pytest.approx(1.0)
    centres = np.array([c.T_world_cam[:3, 3] for c in ds.cameras])
    assert np.abs(centres).max() == pytest.approx(1.0, abs=1e-5)
    _check_maps_back(ds, tmp_path)
    # and the OpenCV +z of every camera still looks at the (mapped) scene centre
    T_centre = np.eye(4)
    T_centre[:3, 3] = (3.0, -2.0, 0.5)  # the circle's centre in the file, see _gl_poses
    centre_w = file_to_world_pose(T_centre, ds.meta)[:3, 3]
    for cam in ds.cameras:
        d = centre_w - cam.T_world_cam[:3, 3]
        assert cam.T_world_cam[:3, 2] @ d / np.linalg.norm(d) > 0.999


def test_nerfstudio_format_with_applied_transform_and_splits(tmp_path):
    A = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]
    _nerfstudio_folder(tmp_path, n=10, extra={"applied_transform": A, "applied_scale": 2.0})
    train = load_static_dataset(tmp_path, "train")
    val = load_static_dataset(tmp_path, "val")
    assert len(train) == 9 and len(val) == 1  # nerfstudio's default 0.9 fraction split
    assert not {c.name for c in train.cameras} & {c.name for c in val.cameras}
    _check_maps_back(train, tmp_path)
    _check_maps_back(val, tmp_path)


def test_instant_ngp_format(tmp_path):
    names = [f"f{i}.png" for i in range(5)]
    _write_pngs(tmp_path / "imgs", names, 10, 8, rgba=True)
    poses = _gl_poses(5)
    angle = 1.1
    meta = {"camera_angle_x": angle, "aabb_scale": 4,
            "frames": [{"file_path": f"imgs/{Path(n).stem}", "transform_matrix": T.tolist()}
                       for n, T in zip(names, poses)]}
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    ds = load_static_dataset(tmp_path / "transforms.json", split="all")
    assert ds.meta["kind"] == "instant-ngp" and len(ds) == 5 and ds.alphas.shape == (5, 8, 10)
    K = ds.cameras[0].intrinsics
    assert K.fx == pytest.approx(0.5 * 10 / np.tan(0.5 * angle)) and (K.cx, K.cy) == (5.0, 4.0)
    assert ds.aabb == ((-2.0, -2.0, -2.0), (2.0, 2.0, 2.0))
    _check_maps_back(ds, tmp_path)


# ------------------------------------------------------------------------------ bad inputs


def _blender_folder(root: Path, n: int = 2) -> dict:
    _write_pngs(root / "train", [f"r_{i}.png" for i in range(n)], 4, 4, rgba=True)
    meta = {"camera_angle_x": 0.7,
            "frames": [{"file_path": f"./train/r_{i}", "transform_matrix": T.tolist()}
                       for i, T in enumerate(_gl_poses(n))]}
    (root / "transforms_train.json").write_text(json.dumps(meta))
    return meta


def test_tiny_blender_folder_loads(tmp_path):
    _blender_folder(tmp_path)
    ds = load_static_dataset(tmp_path)
    assert len(ds) == 2 and ds.images.shape == (2, 4, 4, 3) and ds.background == (1.0, 1.0, 1.0)


def _raises(match_file: str, match_field: str | None, *args, **kw) -> InputError:
    with pytest.raises(InputError) as ei:
        load_static_dataset(*args, **kw)
    msg = str(ei.value)
    assert match_file in msg, msg
    if match_field is not None:
        assert match_field in msg, msg
    return ei.value


def test_missing_path(tmp_path):
    _raises("nope", None, tmp_path / "nope")


def test_no_transforms_file(tmp_path):
    e = _raises(str(tmp_path), None, tmp_path)
    assert "transforms" in e.problem


def test_missing_split(tmp_path):
    _blender_folder(tmp_path)
    _raises("transforms_val.json", "split", tmp_path, "val")


def test_missing_image(tmp_path):
    _blender_folder(tmp_path)
    (tmp_path / "train/r_1.png").unlink()
    e = _raises("transforms_train.json", "frames[1].file_path", tmp_path)
    assert "r_1.png" in e.problem


@pytest.mark.parametrize("bad", [
    [[float("nan")] * 4] * 4,
    [[1, 0, 0], [0, 1, 0]],
    [[2, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
    "identity",
    None,
])
def test_bad_transform_matrix(tmp_path, bad):
    meta = _blender_folder(tmp_path)
    if bad is None:
        del meta["frames"][1]["transform_matrix"]
    else:
        meta["frames"][1]["transform_matrix"] = bad
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    _raises("transforms_train.json", "frames[1].transform_matrix", tmp_path)


@pytest.mark.parametrize("value", ["missing", None, float("inf"), 4.0])
def test_bad_camera_angle_x(tmp_path, value):
    meta = _blender_folder(tmp_path)
    if value == "missing":
        del meta["camera_angle_x"]
    else:
        meta["camera_angle_x"] = value
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    _raises("transforms_train.json", "camera_angle_x", tmp_path)


def test_invalid_json(tmp_path):
    _blender_folder(tmp_path)
    (tmp_path / "transforms_train.json").write_text("{not json")
    e = _raises("transforms_train.json", None, tmp_path)
    assert "JSON" in e.problem


def test_nerfstudio_missing_focal(tmp_path):
    _nerfstudio_folder(tmp_path, per_frame=True)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    del meta["frames"][2]["fl_x"]
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    _raises("transforms.json", "frames[2].fl_x", tmp_path)


@pytest.mark.parametrize("model, coeffs, kind, lens_dist", [
    ("OPENCV", {"k1": -0.3, "k2": 0.1, "p1": 0.001, "p2": -0.002}, "opencv", (-0.3, 0.1, 0.001, -0.002, 0.0)),
    ("OPENCV_FISHEYE", {"k1": 0.05, "k2": -0.01, "k3": 0.002, "k4": 0.0005}, "fisheye", (0.05, -0.01, 0.002, 0.0005)),
])
def test_nerfstudio_distortion_becomes_the_cameras_lens(tmp_path, model, coeffs, kind, lens_dist):
    """The dataset's own distortion is used for the rays (it used to be dropped with a warning)."""
    _nerfstudio_folder(tmp_path, extra={"camera_model": model, **coeffs})
    ds = load_static_dataset(tmp_path, "all")
    lens = ds.cameras[0].lens
    assert lens.kind == kind and np.allclose(lens.distortion, lens_dist)
    assert ds.unbounded  # photographs without alpha: the world goes on past the box


def test_nerfstudio_unknown_camera_model_rejected(tmp_path):
    _nerfstudio_folder(tmp_path, extra={"camera_model": "EQUIRECTANGULAR"})
    _raises("transforms.json", "camera_model", tmp_path, "all")


def test_nerfstudio_bad_split_and_empty_split(tmp_path):
    _nerfstudio_folder(tmp_path, n=4)
    _raises("transforms.json", "split", tmp_path, "validation")
    _raises("transforms.json", "frames", tmp_path, "val")  # 0.9 of 4 frames leaves none for val


def test_nerfstudio_parser_errors_are_wrapped(tmp_path):
    _nerfstudio_folder(tmp_path, extra={"train_filenames": ["images/frame_000.png", "images/absent.png"]})
    e = _raises("transforms.json", None, tmp_path, "train")
    assert "nerfstudio" in e.problem


def test_image_size_disagrees_with_camera(tmp_path):
    _nerfstudio_folder(tmp_path)
    _write_pngs(tmp_path / "images", ["frame_003.png"], 9, 6)
    _raises("frame_003.png", "size", tmp_path, "all")  # one size per dataset
    _write_pngs(tmp_path / "images", ["frame_003.png"], 8, 6)
    meta = json.loads((tmp_path / "transforms.json").read_text())
    meta["w"] = 9
    (tmp_path / "transforms.json").write_text(json.dumps(meta))
    e = _raises("transforms.json", "w/h", tmp_path, "all")
    assert "frame_000.png" in e.problem


def test_instant_ngp_missing_image_and_focal(tmp_path):
    _write_pngs(tmp_path, ["a.png"], 4, 4)
    T = _gl_poses(1)[0].tolist()
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"aabb_scale": 2, "frames": [{"file_path": "a.png", "transform_matrix": T}]}))
    _raises("transforms.json", "camera_angle_x", tmp_path, kind="instant-ngp")
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"camera_angle_x": 1.0, "frames": [{"file_path": "b", "transform_matrix": T}]}))
    _raises("transforms.json", "frames[0].file_path", tmp_path)


def test_bad_downscale_and_kind(tmp_path):
    _blender_folder(tmp_path)
    _raises("load_static_dataset", "downscale", tmp_path, downscale=0)
    _raises("load_static_dataset", "downscale", tmp_path, downscale=8)
    _raises("load_static_dataset", "kind", tmp_path, kind="photogrammetry")
    assert _raises(str(tmp_path), None, tmp_path, kind="colmap").problem.startswith("no COLMAP model")
    _raises("transforms.json", None, tmp_path, kind="nerfstudio")


def test_lego_copy_with_missing_image(tmp_path):
    if not LEGO.is_dir():
        pytest.skip(f"lego-200 not found at {LEGO}")
    shutil.copy(LEGO / "transforms_test.json", tmp_path)
    e = _raises("transforms_test.json", "frames[0].file_path", tmp_path, "test")
    assert "test/r_0.png" in e.problem
