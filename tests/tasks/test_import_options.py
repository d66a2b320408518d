"""What `nerfsim import` can do beyond reading a dataset: ego masks (`tasks.logs.ego_mask`,
capture-log ``masks/<cam>.png``: the format round trip, that training never samples a masked pixel,
masked metrics, the import / ego-mask commands) and the static-scene import (parked vehicles left
to the background)."""

from __future__ import annotations

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from scenes.camera import pixel_rays
from scenes.capture import read_capture_log, set_camera_masks
from scenes.errors import InputError
from scenes.world import WorldConfig, build_world
from sensors.lidar import LidarConfig
from sensors.recording import CaptureConfig, generate_capture_log
from sim.data import bank_from_capture_log
from tasks.cli import main
from tasks.eval.metrics import psnr, ssim

W, H = 192, 108


def hood(width: int = W, height: int = H) -> np.ndarray:
    """bool ``[H, W]``: a car hood seen from a roof camera, an arc rising to 22% of the image height."""
    u = (np.arange(width) + 0.5) / width - 0.5
    top = height * (1.0 - 0.22 * np.sqrt(np.clip(1.0 - (2 * u) ** 2, 0.0, None)))
    return (np.arange(height)[:, None] + 0.5) >= np.maximum(top, height - 6)[None, :]


@pytest.fixture(scope="module")
def street_log(tmp_path_factory):
    """The tiny world recorded at 192x108 (2 s, the ego drives 8 m): no camera sees the ego."""
    cfg = CaptureConfig(name="ego", width=W, height=H, lidar=LidarConfig(n_beams=8, n_azimuth=64))
    return generate_capture_log(build_world(WorldConfig.tiny()), cfg, tmp_path_factory.mktemp("ego") / "log", progress=False)


def test_masks_round_trip_through_the_log_and_are_checked(street_log, tmp_path):
    dst = tmp_path / "log"
    shutil.copytree(street_log, dst)
    log = set_camera_masks(dst, {"front": ~hood()})
    front = next(c for c in log.cameras if c.name == "front")
    assert np.array_equal(front.mask, ~hood()) and all(c.mask is None for c in log.cameras if c.name != "front")
    assert json.loads((dst / "log.json").read_text())["cameras"][0]["mask"] == "masks/front.png"
    with pytest.raises(InputError, match="expected 192x108"):
        set_camera_masks(dst, {"front": np.ones((10, 10), bool)})
    with pytest.raises(InputError, match="masks out every pixel"):
        set_camera_masks(dst, {"front": np.zeros((H, W), bool)})
    with pytest.raises(InputError, match="no camera 'rear'"):
        set_camera_masks(dst, {"rear": ~hood()})
    assert np.array_equal(read_capture_log(dst).cameras[0].mask, ~hood())  # the refused calls changed nothing
    assert set_camera_masks(dst, {"front": None}).cameras[0].mask is None
    set_camera_masks(dst, {"front": ~hood()})
    iio.imwrite(dst / "masks" / "front.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match=r"masks/front.png.*cameras\[0\].mask.*mask is 5x5"):
        read_capture_log(dst)


def test_training_never_samples_a_masked_pixel(street_log, tmp_path):
    dst = tmp_path / "log"
    shutil.copytree(street_log, dst)
    log = set_camera_masks(dst, {"front": ~hood()})
    bank = bank_from_capture_log(log, holdout_every=10)
    gen = torch.Generator().manual_seed(0)
    batch = bank.sample_pixels(200_000, gen, actor_fraction=0.3)
    view, pix = batch["view"], batch["pixel"] - bank.offsets[batch["view"]]
    front = torch.tensor([c.name == "front" for c in bank_cameras(log)])[view]
    v, u = pix // W, pix % W
    assert not torch.from_numpy(hood())[v[front], u[front]].any()
    # uniform over the valid pixels: the front camera's share of samples is its share of valid pixels
    n_front, n_other = (~hood()).sum(), H * W
    expected = n_front / (n_front + 2 * n_other)
    uniform = slice(0, len(pix) - 60_000)  # the batch's first part: drawn over all pixels, not near actors
    assert float(front[uniform].float().mean()) == pytest.approx(expected, abs=0.01)
    # each sampled ray is its pixel's (`scenes.camera.pixel_rays`), with that pixel's colour
    views = [(log.camera(f, c.name), f.image_paths[c.name]) for f in log.frames if f.index % 10 != 5 for c in log.cameras]
    for i in range(0, 200_000, 20_011):
        (cam, path), row, col = views[int(view[i])], int(v[i]), int(u[i])
        o, d, _ = pixel_rays(cam.intrinsics, cam.T_world_cam)
        assert np.allclose(batch["origins"][i].numpy(), o[row, col], atol=1e-5)
        assert np.allclose(batch["dirs"][i].numpy(), d[row, col], atol=1e-5)
        assert np.allclose(batch["rgb"][i].numpy(), log.load_image(path)[row, col], atol=1e-6)
    plain = bank_from_capture_log(read_capture_log(street_log), holdout_every=10)
    assert plain.n_rays == bank.n_rays and not plain.masked and bank.masked


def bank_cameras(log):
    return [c for f in log.frames if f.index % 10 != 5 for c in log.cameras]


def test_masked_metrics_ignore_the_masked_pixels():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(H, W, 3))
    b = a.copy()
    b[hood()] = 1.0 - b[hood()]
    assert psnr(a, b, ~hood()) > 100 and psnr(a, b) < 20
    assert ssim(a, b, ~hood()) > ssim(a, b) and ssim(a, b, ~hood()) > 0.95


def test_import_with_ego_masks_and_the_ego_mask_command(native, tmp_path, capsys):
    """A KITTI-MOT round trip imported with a given mask PNG: the log has it; a PNG of the wrong
    size is refused naming it and leaves no log; `nerfsim ego-mask --clear` removes it."""
    assert main(["export-log", str(native), "--format", "kitti-mot", "--out", str(tmp_path / "kitti")]) == 0
    log = read_capture_log(native)
    K = next(c for c in log.cameras if c.name == "front").intrinsics
    png = tmp_path / "hood.png"
    iio.imwrite(png, np.where(hood(K.width, K.height), 0, 255).astype(np.uint8))
    out = tmp_path / "imported"
    args = ["import", "kitti-mot", str(tmp_path / "kitti"), "--out", str(out), "--ego-mask", f"image_02={png}"]
    assert main(args) == 0
    cams = read_capture_log(out).cameras
    assert np.array_equal(cams[0].mask, ~hood(K.width, K.height))
    bad = tmp_path / "bad.png"
    iio.imwrite(bad, np.zeros((4, 4), np.uint8))
    capsys.readouterr()
    assert main([*args[:3], "--out", str(tmp_path / "other"), "--ego-mask", f"image_02={bad}"]) != 0
    err = capsys.readouterr().err
    assert "bad.png" in err and "is 4x4" in err
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".other*"))
    assert main(["ego-mask", str(out), "--clear", "--preview", str(tmp_path / "preview.png")]) == 0
    assert read_capture_log(out).cameras[0].mask is None and (tmp_path / "preview.png").exists()
    capsys.readouterr()
    assert main([*args[:3], "--out", str(tmp_path / "between"), "--between-sweeps"]) != 0  # av2's option
    assert "--between-sweeps" in capsys.readouterr().err and not (tmp_path / "between").exists()


def test_parked_vehicles_can_be_left_to_the_background(native, tmp_path, capsys):
    """The tiny world has one parked car, one moving car and a pedestrian; through nuScenes (a box
    per key frame, so the parked car has a key per frame) and back with --parked-in-background, the
    parked car is no actor and the others are."""
    pytest.importorskip("nuscenes")
    assert main(["export-log", str(native), "--format", "nuscenes", "--out", str(tmp_path / "nus")]) == 0
    log = read_capture_log(native)
    parked = [a for a in log.scene.actors if len(a.track.times) == 1 and a.class_name == "car"]
    assert len(parked) == 1
    base = ["import", "nuscenes", str(tmp_path / "nus")]
    assert main([*base, "--out", str(tmp_path / "all")]) == 0
    assert main([*base, "--out", str(tmp_path / "static"), "--parked-in-background"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    every, static = read_capture_log(tmp_path / "all").scene, read_capture_log(tmp_path / "static").scene
    assert len(every.actors) == len(log.scene.actors) and len(static.actors) == len(every.actors) - 1
    dropped = [a for a in every.actors if a.actor_id not in {b.actor_id for b in static.actors}]
    assert report["parked_in_background"] == [dropped[0].actor_id] and np.ptp(dropped[0].track.positions, axis=0).max() < 0.01
    P = parked[0].track.pose_at(0.0)[:3, 3]
    assert np.linalg.norm(dropped[0].track.pose_at(0.0)[:3, 3] - P) < 1e-3  # it is the parked car
