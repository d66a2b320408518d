"""Capture logs: generate a tiny log, read it back, and reject corrupt logs with clear errors."""

import json
import shutil
from dataclasses import replace

import imageio.v3 as iio
import numpy as np
import pytest

from scenes.capture import read_capture_log
from sensors import recording
from sensors.recording import CaptureConfig, generate_capture_log
from scenes.errors import InputError
from scenes.twin import Twin
from scenes.world import WorldConfig, build_world


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig.tiny())


@pytest.fixture(scope="module")
def log_dir(world, tmp_path_factory):
    return generate_capture_log(world, CaptureConfig.tiny(), tmp_path_factory.mktemp("cap") / "log", progress=False)


def test_round_trip(world, log_dir):
    log = read_capture_log(log_dir)
    cfg = CaptureConfig.tiny()
    assert (log_dir / "README.md").read_text().count("lidar/<frame>.npy") == 1
    assert len(log.frames) == int(world.duration * cfg.fps) + 1
    assert [c.name for c in log.cameras] == ["front", "front_left", "front_right"]
    assert log.scene.to_dict()["actors"] == world.graph.to_dict()["actors"]
    for f in log.frames:
        assert np.allclose(f.T_world_ego, world.T_world_ego(f.time))
        for c in log.cameras:
            assert np.allclose(f.T_world_cams[c.name], f.T_world_ego @ c.T_ego_cam, atol=1e-9)
    views = log.views()
    assert len(views) == 3 * len(log.frames)
    cam, path = views[4]
    img = log.load_image(path)
    assert img.shape == (cfg.height, cfg.width, 3) and img.dtype == np.float32 and img.max() <= 1.0
    assert cam.time == log.frames[1].time and cam.name == "front_left"


def test_front_camera_looks_forward_and_images_match_the_twin(world, log_dir):
    log = read_capture_log(log_dir)
    f = log.frames[5]
    cam = log.camera(f, "front")
    assert np.allclose(cam.T_world_cam[:3, 2], f.T_world_ego[:3, 0])  # optical axis = ego x
    assert np.allclose(cam.T_world_cam[:3, 1], [0, 0, -1])  # image down = world down
    ref = Twin(world).render(cam, world.graph.at(f.time))["rgb"]
    img = log.load_image(f.image_paths["front"])
    assert np.abs(img - ref).max() <= 0.5 / 255 + 1e-6


LENS = (-0.3, 0.08, 0.001, -0.002)


@pytest.fixture(scope="module")
def real_camera_log(world, tmp_path_factory):
    """A short tiny log through a distorted lens with a different exposure on every image."""
    cfg = replace(CaptureConfig.tiny(), duration=0.3, distortion=LENS, exposure_jitter=0.3, exposure_seed=3)
    return generate_capture_log(world, cfg, tmp_path_factory.mktemp("cap") / "real", progress=False)


def test_lens_and_exposure_are_recorded_and_read_back(world, real_camera_log):
    log = read_capture_log(real_camera_log)
    gains = [f.exposures[c.name] for f in log.frames for c in log.cameras]
    assert len(gains) == 3 * len(log.frames) and 0.7 <= min(gains) and max(gains) <= 1.3 and np.std(gains) > 0.05
    f = log.frames[2]
    cam = log.camera(f, "front_left")
    assert cam.lens is not None and cam.lens.kind == "opencv" and cam.lens.distortion == LENS
    # The image is the twin seen through that lens, times the recorded gain (before 8-bit clipping).
    ref = Twin(world).render(cam, world.graph.at(f.time))["rgb"] * f.exposures["front_left"]
    img = log.load_image(f.image_paths["front_left"])
    unclipped = ref < 1.0
    assert unclipped.mean() > 0.5
    assert np.abs(img - ref)[unclipped].max() <= 0.5 / 255 + 1e-6
    assert np.allclose(img[~unclipped], 1.0)
    # ...and not the pinhole image: the lens bends the periphery.
    pinhole = Twin(world).render(replace(cam, lens=None), world.graph.at(f.time))["rgb"] * f.exposures["front_left"]
    assert np.abs(np.clip(pinhole, 0, 1) - img).mean() > 0.02


def test_novel_cameras_of_a_distorted_log_keep_its_lens(real_camera_log):
    from tasks.eval.evaluate import novel_cameras

    log = read_capture_log(real_camera_log)
    cams = novel_cameras(log, holdout_every=2, max_frames=1)
    assert cams and all(c.lens is not None and c.lens.distortion == LENS for c in cams)
    rig_positions = np.array([f.T_world_cams[n][:3, 3] for f in log.frames for n in f.T_world_cams])
    for c in cams:  # 1 m up or 1 m to the left of a held-out rig camera
        assert abs(np.linalg.norm(rig_positions - c.T_world_cam[:3, 3], axis=1).min() - 1.0) < 1e-6


def test_bad_recording_settings_are_refused():
    with pytest.raises(InputError, match="exposure_jitter"):
        CaptureConfig(exposure_jitter=1.5)
    with pytest.raises(InputError, match="distortion"):
        CaptureConfig(distortion=(-0.3, 0.1, 0.0))


def _lens_focal(d):
    d["cameras"][0]["lens"]["fx"] += 5.0


def test_corrupt_lens_and_exposure_entries(real_camera_log, tmp_path):
    cases = {"lens_focal": (_lens_focal, "cameras[0].lens"),
             "lens_kind": (lambda d: d["cameras"][1]["lens"].update(kind="orthographic"), "kind"),
             "exposure": (lambda d: d["frames"][1]["images"]["front"].update(exposure=-1.0), "frames[1].images.front.exposure")}
    for name, (edit, field) in cases.items():
        root = tmp_path / name
        shutil.copytree(real_camera_log, root)
        _edit_json(root, edit)
        with pytest.raises(InputError) as exc:
            read_capture_log(root)
        assert "log.json" in str(exc.value) and field in str(exc.value), (name, str(exc.value))


def test_lidar_rays(world, log_dir):
    log = read_capture_log(log_dir)
    f = log.frames[3]
    origins, dirs, ranges = log.lidar_rays(3)
    assert np.allclose(origins, f.T_world_lidar[:3, 3]) and np.allclose(np.linalg.norm(dirs, axis=1), 1, atol=1e-6)
    assert np.allclose(f.T_world_lidar, f.T_world_ego @ log.lidar["T_ego_lidar"])
    ref = Twin(world).cast_rays(origins, dirs, world.graph.at(f.time), max_range=log.lidar["max_range"])
    hit = np.isfinite(ref["dist"])
    assert hit.mean() > 0.3
    assert np.all(np.isfinite(ranges[hit])) and np.all(np.isinf(ranges[~hit]))
    assert np.allclose(ranges[hit], ref["dist"][hit], atol=1e-4)


def test_write_is_atomic(world, tmp_path, monkeypatch):
    calls = []

    def boom(*args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")

    monkeypatch.setattr(recording, "_write_frame", boom)
    out = tmp_path / "log"
    with pytest.raises(RuntimeError):
        generate_capture_log(world, CaptureConfig.tiny(), out, progress=False)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite(world, log_dir):
    with pytest.raises(InputError, match="exists"):
        generate_capture_log(world, CaptureConfig.tiny(), log_dir, progress=False)


def _edit_json(root, fn):
    d = json.loads((root / "log.json").read_text())
    fn(d)
    (root / "log.json").write_text(json.dumps(d))


def _set_nan(d):
    d["frames"][1]["images"]["front"]["T_world_cam"][0][3] = float("nan")


def _scale_pose(d):
    d["frames"][2]["T_world_ego"][0][0] = 2.0


CORRUPTIONS = {
    "no_log_json": (lambda r: (r / "log.json").unlink(), "log.json", None),
    "bad_json": (lambda r: (r / "log.json").write_text("{not json"), "log.json", "not valid JSON"),
    "wrong_format": (lambda r: _edit_json(r, lambda d: d.update(format="other")), "log.json", "format"),
    "wrong_version": (lambda r: _edit_json(r, lambda d: d.update(format_version=7)), "log.json", "format_version"),
    "missing_field": (lambda r: _edit_json(r, lambda d: d["frames"][0].pop("T_world_ego")), "log.json", "frames[0].T_world_ego"),
    "missing_intrinsics": (lambda r: _edit_json(r, lambda d: d["cameras"][1]["intrinsics"].pop("fx")), "log.json", "fx"),
    "nan_pose": (lambda r: _edit_json(r, _set_nan), "log.json", "frames[1].images.front.T_world_cam"),
    "non_rigid": (lambda r: _edit_json(r, _scale_pose), "log.json", "frames[2].T_world_ego"),
    "missing_image": (lambda r: (r / "images/front_left/000002.png").unlink(), "000002.png", "frames[2].images.front_left.path"),
    "wrong_image_size": (lambda r: iio.imwrite(r / "images/front/000001.png", np.zeros((10, 12, 3), np.uint8)),
                         "000001.png", "frames[1].images.front.path"),
    "wrong_lidar_shape": (lambda r: np.save(r / "lidar/000001.npy", np.zeros((10, 3), np.float32)),
                          "000001.npy", "frames[1].lidar.path"),
    "missing_folder": (lambda r: shutil.rmtree(r), "copy", None),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupt_logs_raise_input_error(name, log_dir, tmp_path):
    corrupt, file_part, field = CORRUPTIONS[name]
    root = tmp_path / "copy"
    shutil.copytree(log_dir, root)
    corrupt(root)
    with pytest.raises(InputError) as exc:
        read_capture_log(root)
    msg = str(exc.value)
    assert file_part in msg, msg
    if field is not None:
        assert field in msg, msg
