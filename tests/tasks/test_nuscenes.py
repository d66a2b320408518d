"""nuScenes export and import: a built-in log written as a nuScenes dataset opens in the official
devkit with every box, ego pose and calibration equal to the twin's, comes back through the importer
unchanged, and broken datasets stop with the file and field named, writing nothing."""

import json
import shutil

import numpy as np
import pytest

from scenes.capture import read_capture_log
from scenes.errors import InputError
from scenes.transforms import rotation_angle_deg
from tasks.logs.nuscenes import VERSION, channel_of, export_nuscenes, import_nuscenes

pytest.importorskip("nuscenes")


@pytest.fixture(scope="module")
def exported(native, tmp_path_factory):
    return export_nuscenes(read_capture_log(native), tmp_path_factory.mktemp("nus") / "nuscenes")


def test_the_devkit_reads_boxes_poses_and_calibration(native, exported):
    from nuscenes.nuscenes import NuScenes
    from pyquaternion import Quaternion

    log = read_capture_log(native)
    nusc = NuScenes(version=VERSION, dataroot=str(exported), verbose=False)
    assert len(nusc.scene) == 1 and len(nusc.sample) == len(log.frames)
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    for _ in range(5):
        sample = nusc.get("sample", sample["next"])
    f = log.frames[5]
    cam = log.cameras[1]
    path, boxes, K = nusc.get_sample_data(sample["data"][channel_of(cam.name)])
    assert np.allclose(K, [[cam.intrinsics.fx, 0, cam.intrinsics.cx - 0.5], [0, cam.intrinsics.fy, cam.intrinsics.cy - 0.5], [0, 0, 1]])
    assert np.array_equal(log.load_image(path), log.load_image(f.image_paths[cam.name]))
    T_cam_world = np.linalg.inv(f.T_world_cams[cam.name])
    truth = {a.actor_id: a for a in log.scene.at(f.time).actors}
    assert boxes
    for box in boxes:  # in the camera frame, as the devkit gives them
        inst = nusc.get("instance", nusc.get("sample_annotation", box.token)["instance_token"])
        match = [a for a in truth.values() if np.linalg.norm((T_cam_world @ a.T_world_actor)[:3, 3] - box.center) < 1e-3]
        assert len(match) == 1, box
        T = T_cam_world @ match[0].T_world_actor
        assert rotation_angle_deg(T[:3, :3], box.orientation.rotation_matrix) < 0.01
        assert np.allclose(box.wlh, [match[0].size[1], match[0].size[0], match[0].size[2]])
        assert nusc.get("category", inst["category_token"])["name"] in ("vehicle.car", "human.pedestrian.adult")
    # num_lidar_pts counts the sweep's returns inside the box: some boxes hold returns, none more than the sweep.
    counts = [a["num_lidar_pts"] for a in nusc.sample_annotation]
    assert max(counts) > 10 and min(counts) >= 0
    sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    assert np.allclose(pose["translation"], f.T_world_ego[:3, 3], atol=1e-9)
    assert rotation_angle_deg(Quaternion(pose["rotation"]).rotation_matrix, f.T_world_ego[:3, :3]) < 1e-6


def test_round_trip_through_the_importer(native, exported, tmp_path):
    log = read_capture_log(native)
    summary = import_nuscenes(exported, tmp_path / "back")
    back = read_capture_log(summary.log)
    assert summary.frames == len(log.frames) and set(summary.cameras) == {channel_of(c.name) for c in log.cameras}
    for f, g in zip(log.frames, back.frames):
        assert abs(f.time - g.time) < 1e-6 and np.allclose(f.T_world_ego, g.T_world_ego, atol=1e-9)
        for c in log.cameras:
            ch = channel_of(c.name)
            assert np.allclose(f.T_world_cams[c.name], g.T_world_cams[ch], atol=1e-9)
            assert abs(back.camera(g, ch).time - f.time) < 1e-6
            assert np.array_equal(log.load_image(f.image_paths[c.name]), back.load_image(g.image_paths[ch]))
    o, d, r = log.lidar_rays(3)
    o2, d2, r2 = back.lidar_rays(3)
    hit, hit2 = np.isfinite(r), np.isfinite(r2)
    assert np.allclose(o[hit] + d[hit] * r[hit, None], o2[hit2] + d2[hit2] * r2[hit2, None], atol=1e-4)
    # the upward beams' empty rays come back from the returns' ring column (nuScenes keeps returns only)
    pattern = hit.reshape(int(log.lidar["n_beams"]), -1)  # beam-major
    alone = (~pattern & ~np.roll(pattern, 1, axis=1) & ~np.roll(pattern, -1, axis=1)).reshape(-1)
    up_miss = alone & (d @ log.frames[3].T_world_lidar[:3, 2] > np.sin(np.radians(2.0)))
    assert (~hit2).sum() == up_miss.sum() > 0
    assert np.abs(d2[~hit2] @ d[up_miss].T).max(1).min() > 1 - 1e-6  # float32 directions; neighbours are 1e-3 apart
    assert summary.actors == len([a for a in log.scene.actors if a.class_name in ("car", "pedestrian")])
    for actor in back.scene.actors:  # matched by their pose at the first key frame
        T0 = actor.track.pose_at(0.0)
        truth = min(log.scene.actors, key=lambda a: np.linalg.norm(a.track.pose_at(0.0)[:3, 3] - T0[:3, 3]))
        assert actor.class_name == truth.class_name and np.allclose(actor.size, truth.size, atol=1e-6)
        for t in actor.track.times:
            T_true, T_back = truth.track.pose_at(t), actor.track.pose_at(t)
            assert np.linalg.norm(T_true[:3, 3] - T_back[:3, 3]) < 1e-3 and rotation_angle_deg(T_true[:3, :3], T_back[:3, :3]) < 0.01


def _edit_table(root, name, fn):
    path = root / VERSION / f"{name}.json"
    rows = json.loads(path.read_text())
    fn(rows)
    path.write_text(json.dumps(rows))


def _swap_times(rows):
    rows[2]["timestamp"], rows[3]["timestamp"] = rows[3]["timestamp"], rows[2]["timestamp"]


def _dangling(rows):
    rows[4]["calibrated_sensor_token"] = "0" * 32


def _missing_image(root):
    rows = json.loads((root / VERSION / "sample_data.json").read_text())
    (root / next(r["filename"] for r in rows if r["filename"].endswith(".png"))).unlink()


BROKEN = {
    "missing_table": (lambda r: (r / VERSION / "instance.json").unlink(), "instance.json"),
    "dangling_token": (lambda r: _edit_table(r, "sample_data", _dangling), "inconsistent nuScenes tables"),
    "out_of_order": (lambda r: _edit_table(r, "sample", _swap_times), "out of time order"),
    "missing_image": (_missing_image, "image missing"),
    "two_versions": (lambda r: shutil.copytree(r / VERSION, r / "v1.0-other"), "expected one folder of nuScenes tables"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_datasets_name_the_problem_and_write_nothing(name, exported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    breaking, words = BROKEN[name]
    breaking(src)
    with pytest.raises(InputError) as exc:
        import_nuscenes(src, tmp_path / "out")
    assert words in str(exc.value), str(exc.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp*"))


def test_a_version_that_is_not_there_is_named(exported, tmp_path):
    with pytest.raises(InputError, match="no nuScenes tables for version 'v1.0-mini'.*v1.0-nerfsim"):
        import_nuscenes(exported, tmp_path / "out", version="v1.0-mini")


def test_command_line_round_trip(native, tmp_path, capsys):
    from tasks.cli import main

    assert main(["export-log", str(native), "--format", "nuscenes", "--out", str(tmp_path / "nus")]) == 0
    assert main(["import", "nuscenes", str(tmp_path / "nus"), "--cameras", "CAM_FRONT",
                 "--duration", "0.5", "--out", str(tmp_path / "log")]) == 0
    back = read_capture_log(tmp_path / "log")
    assert [c.name for c in back.cameras] == ["CAM_FRONT"] and len(back.frames) == 6
    assert main(["import", "nuscenes", str(tmp_path / "nus"), "--scene", "nope", "--out", str(tmp_path / "x"),
                 "--version", VERSION]) == 2
    assert "no scene 'nope'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def with_sweeps(native, tmp_path_factory):
    """The native log (10 Hz) exported with a key frame every 5th frame (2 Hz, nuScenes' rate) and
    the frames between as sweeps."""
    return export_nuscenes(read_capture_log(native), tmp_path_factory.mktemp("nus_sweeps") / "nuscenes", keyframe_every=5)


def test_sweeps_are_what_the_devkit_calls_sweeps(native, with_sweeps):
    from nuscenes.nuscenes import NuScenes

    log = read_capture_log(native)
    nusc = NuScenes(version=VERSION, dataroot=str(with_sweeps), verbose=False)
    keys = [f for f in log.frames if f.index % 5 == 0]
    assert len(nusc.sample) == len(keys) and len(nusc.sample_data) == len(log.frames) * (len(log.cameras) + 1)
    sweeps = [sd for sd in nusc.sample_data if not sd["is_key_frame"]]
    assert len(sweeps) == (len(log.frames) - len(keys)) * (len(log.cameras) + 1)
    assert all(sd["filename"].startswith("sweeps/") and (with_sweeps / sd["filename"]).is_file() for sd in sweeps)
    assert all(a["sample_token"] in {s["token"] for s in nusc.sample} for a in nusc.sample_annotation)
    # from a key frame, `next` walks through the sweeps to the next key frame (the devkit tutorial's way)
    sd = nusc.get("sample_data", nusc.sample[0]["data"]["CAM_FRONT"])
    walked = [sd]
    while not (walked[-1] is not sd and walked[-1]["is_key_frame"]):
        walked.append(nusc.get("sample_data", walked[-1]["next"]))
    assert len(walked) == 6 and walked[-1]["token"] == nusc.sample[1]["data"]["CAM_FRONT"]


def test_sweeps_import_every_frame_with_boxes_interpolated(native, with_sweeps, tmp_path):
    log = read_capture_log(native)
    keyed = read_capture_log(import_nuscenes(with_sweeps, tmp_path / "keys").log)
    assert [f.time for f in keyed.frames] == pytest.approx([f.time for f in log.frames if f.index % 5 == 0], abs=1e-6)
    summary = import_nuscenes(with_sweeps, tmp_path / "all", sweeps=True)
    back = read_capture_log(summary.log)
    assert summary.frames == len(back.frames) == len(log.frames)
    for f, g in zip(log.frames, back.frames):
        assert abs(f.time - g.time) < 1e-6 and np.allclose(f.T_world_ego, g.T_world_ego, atol=1e-9)
        for c in log.cameras:
            ch = channel_of(c.name)
            assert np.allclose(f.T_world_cams[c.name], g.T_world_cams[ch], atol=1e-9)
            assert np.array_equal(log.load_image(f.image_paths[c.name]), back.load_image(g.image_paths[ch]))
    # boxes exist at key frames only; at the sweeps between they interpolate (the twin's tracks are
    # keyed every 0.5 s, linear between: interpolating 2 Hz key frames gives them back)
    for actor in back.scene.actors:
        truth = min(log.scene.actors, key=lambda a: np.linalg.norm(a.track.pose_at(0.0)[:3, 3] - actor.track.pose_at(0.0)[:3, 3]))
        for f in log.frames:
            T_true, T_back = truth.track.pose_at(f.time), actor.track.pose_at(f.time)
            assert np.linalg.norm(T_true[:3, 3] - T_back[:3, 3]) < 1e-3 and rotation_angle_deg(T_true[:3, :3], T_back[:3, :3]) < 0.01


def test_a_sweep_out_of_order_is_named(with_sweeps, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(with_sweeps, src)

    def swap(rows):
        front = [r for r in rows if "__CAM_FRONT__" in r["filename"]]
        front[1]["timestamp"], front[2]["timestamp"] = front[2]["timestamp"], front[1]["timestamp"]

    _edit_table(src, "sample_data", swap)
    with pytest.raises(InputError, match=r"sample_data.json.*timestamp.*out of time order"):
        import_nuscenes(src, tmp_path / "out", sweeps=True)
    assert not (tmp_path / "out").exists()
