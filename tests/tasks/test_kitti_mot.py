"""KITTI tracking (KITTI-MOT) export and import: a built-in log goes out in KITTI's layout and comes
back with the same poses, calibration, images, LiDAR and tracks; KITTI's OXTS convention against
hand-computed numbers; broken sequences stop with the file and field named, writing nothing."""

import shutil

import numpy as np
import pytest

from scenes.capture import read_capture_log
from scenes.errors import InputError
from scenes.transforms import rotation_angle_deg
from tasks.logs.kitti_mot import EARTH_RADIUS, export_kitti_mot, import_kitti_mot, oxts_to_poses, parse_tracking_calib, poses_to_oxts
from tasks.scenarios.labels import parse_kitti_tracking_line


@pytest.fixture(scope="module")
def exported(native, tmp_path_factory):
    return export_kitti_mot(read_capture_log(native), tmp_path_factory.mktemp("kitti") / "KITTI", "front", "0003")


def test_oxts_convention_against_hand_computed_poses():
    # Frame 0 at 49 N 8.4 E, 100 m; frame 1 1e-5 deg north, 2e-5 deg east, 1 m up, other attitude.
    rows = np.zeros((2, 30))
    rows[0, :6] = [49.0, 8.4, 100.0, 0.1, -0.05, 1.2]
    rows[1, :6] = [49.0 + 1e-5, 8.4 + 2e-5, 101.0, 0.0, 0.0, -0.3]
    T = oxts_to_poses(rows)
    assert np.allclose(T[0][:3, 3], 0.0)
    north = 1e-5 * np.pi / 180 * EARTH_RADIUS  # Mercator at the reference latitude: metres per degree of latitude
    east = 2e-5 * np.pi / 180 * EARTH_RADIUS * np.cos(np.radians(49.0))
    assert np.allclose(T[1][:3, 3], [east, north, 1.0], atol=2e-4)
    cr, sr, cp, sp, cy, sy = np.cos(0.1), np.sin(0.1), np.cos(-0.05), np.sin(-0.05), np.cos(1.2), np.sin(1.2)
    R = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]]) @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]]) @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    assert np.allclose(T[0][:3, :3], R)
    # poses_to_oxts is its inverse (up to the first frame's position).
    back = oxts_to_poses(poses_to_oxts(T, 49.0, 8.4))
    assert np.allclose(back, T, atol=1e-6)


def test_export_writes_kitti_layout(native, exported):
    log = read_capture_log(native)
    root = exported / "training"
    assert len(list((root / "image_02" / "0003").glob("*.png"))) == len(log.frames)
    calib = parse_tracking_calib(root / "calib" / "0003.txt")
    K = log.cameras[0].intrinsics
    assert np.allclose(calib["P2"][:, :3], [[K.fx, 0, K.cx - 0.5], [0, K.fy, K.cy - 0.5], [0, 0, 1]])
    lines = (root / "label_02" / "0003.txt").read_text().splitlines()
    labels = [parse_kitti_tracking_line(line) for line in lines]
    assert labels and {lab["type"] for lab in labels} <= {"Car", "Pedestrian"}
    assert {lab["frame"] for lab in labels} <= set(range(len(log.frames)))
    scan = np.fromfile(root / "velodyne" / "0003" / "000002.bin", np.float32).reshape(-1, 4)
    ranges = np.load(log.frames[2].lidar_path)[:, 3]
    assert len(scan) == np.isfinite(ranges).sum()


def test_round_trip_poses_calibration_images_lidar_tracks(native, exported, tmp_path):
    log = read_capture_log(native)
    summary = import_kitti_mot(exported, tmp_path / "back", "0003")
    back = read_capture_log(summary.log)
    assert summary.frames == len(log.frames) == len(back.frames) and summary.cameras == ["image_02"]
    p0 = log.frames[0].T_world_ego[:3, 3]
    shift = np.eye(4)
    shift[:3, 3] = p0  # the import's world starts at the first frame (KITTI devkit convention)
    for f, g in zip(log.frames, back.frames):
        assert abs(f.time - g.time) < 1e-9
        assert np.allclose(shift @ g.T_world_ego, f.T_world_ego, atol=1e-4)  # OXTS text: ~0.1 mm
        T_f, T_g = f.T_world_cams["front"], shift @ g.T_world_cams["image_02"]
        assert np.linalg.norm(T_f[:3, 3] - T_g[:3, 3]) < 1e-3 and rotation_angle_deg(T_f[:3, :3], T_g[:3, :3]) < 0.01
        assert np.array_equal(log.load_image(f.image_paths["front"]), back.load_image(g.image_paths["image_02"]))
    K, K2 = log.cameras[0].intrinsics, back.cameras[0].intrinsics
    assert np.allclose([K.fx, K.fy, K.cx, K.cy], [K2.fx, K2.fy, K2.cx, K2.cy]) and (K.width, K.height) == (K2.width, K2.height)
    o, d, r = log.lidar_rays(4)
    o2, d2, r2 = back.lidar_rays(4)
    hit = np.isfinite(r)
    assert np.allclose(np.sort(r[hit]), np.sort(r2), atol=1e-3)
    assert np.allclose(o[hit] + d[hit] * r[hit, None] - p0, o2 + d2 * r2[:, None], atol=2e-3)
    # Every actor seen by the camera comes back with its class, size and pose (1 mm, 0.01 deg).
    assert summary.actors >= 1
    for actor in back.scene.actors:
        truth = next(a for a in log.scene.actors if a.instance_id == actor.instance_id)
        assert actor.class_name == truth.class_name
        assert np.allclose(actor.size, truth.size, atol=1e-5)
        for t in actor.track.times:
            T_true, T_back = truth.track.pose_at(t), shift @ actor.track.pose_at(t)
            assert np.linalg.norm(T_true[:3, 3] - T_back[:3, 3]) < 1e-3
            assert rotation_angle_deg(T_true[:3, :3], T_back[:3, :3]) < 0.01


STEP_ID = {0: 10, 1: 0, 2: 0, 3: 1, 4: 2, 5: 5, 6: 8, 7: 13, 8: 11}
"""nerfsim class id (sky, road, lane_marking, sidewalk, building, pole, tree, car, pedestrian) -> KITTI-STEP's
(sky 10, road 0 (lane markings too: STEP has no such class), sidewalk 1, building 2, pole 5, vegetation 8,
car 13, person 11)."""


def test_semantic_labels_go_out_as_kitti_step_panoptic_maps_and_come_back(native, exported, tmp_path):
    import imageio.v3 as iio

    from scenes.classes import CLASS_IDS

    log = read_capture_log(native)
    maps = exported / "kitti-step" / "panoptic_maps" / "train" / "0003"
    assert len(list(maps.glob("*.png"))) == len(log.frames)
    for i in (0, 11):
        labels = log.load_semantic(log.frames[i].semantic_paths["front"])
        rgb = np.asarray(iio.imread(maps / f"{i:06d}.png"))
        assert np.array_equal(rgb[..., 0], np.vectorize(STEP_ID.get)(labels)) and not rgb[..., 1:].any()
    back = read_capture_log(import_kitti_mot(exported, tmp_path / "back", "0003", panoptic=exported / "kitti-step").log)
    for f, g in zip(log.frames, back.frames):
        expected = log.load_semantic(f.semantic_paths["front"]).copy()
        expected[expected == CLASS_IDS["lane_marking"]] = CLASS_IDS["road"]
        assert np.array_equal(back.load_semantic(g.semantic_paths["image_02"]), expected)
    assert not read_capture_log(import_kitti_mot(exported, tmp_path / "none", "0003").log).has_semantics


def test_kitti_step_classes_map_to_nerfsim_and_missing_maps_are_unlabelled(exported, tmp_path):
    """Hand-made maps: a truck (14, instance 3) is a car, a wall (3) a building, a rider (12) and void
    (255) unlabelled; a frame without a map is unlabelled; a map of the wrong size or of no frame of
    the sequence is refused naming the file."""
    import imageio.v3 as iio

    from scenes.classes import CLASS_IDS, UNLABELLED

    src = tmp_path / "src"
    shutil.copytree(exported, src)
    maps = src / "kitti-step" / "panoptic_maps" / "train" / "0003"
    h, w = np.asarray(iio.imread(maps / "000000.png")).shape[:2]
    hand = np.zeros((h, w, 3), np.uint8)  # road
    hand[:5, :, 0], hand[5:10, :, 0], hand[5:10, :, 2], hand[10:15, :, 0], hand[15:20, :, 0], hand[20:25, :, 0] = 3, 14, 3, 12, 255, 10
    iio.imwrite(maps / "000000.png", hand)
    (maps / "000001.png").unlink()
    back = read_capture_log(import_kitti_mot(src, tmp_path / "back", "0003", duration=0.2, panoptic=src / "kitti-step" / "panoptic_maps").log)
    first = back.load_semantic(back.frames[0].semantic_paths["image_02"])
    assert (first[:5] == CLASS_IDS["building"]).all() and (first[5:10] == CLASS_IDS["car"]).all()
    assert (first[10:20] == UNLABELLED).all() and (first[20:25] == CLASS_IDS["sky"]).all() and (first[25:] == CLASS_IDS["road"]).all()
    assert (back.load_semantic(back.frames[1].semantic_paths["image_02"]) == UNLABELLED).all()
    iio.imwrite(maps / "000002.png", hand[:8])
    with pytest.raises(InputError, match="000002.png.*calibration says"):
        import_kitti_mot(src, tmp_path / "small", "0003", panoptic=src / "kitti-step")
    assert not (tmp_path / "small").exists()
    with pytest.raises(InputError, match="no KITTI-STEP panoptic maps of sequence 0003"):
        import_kitti_mot(src, tmp_path / "elsewhere", "0003", panoptic=tmp_path)
    with pytest.raises(InputError, match="no panoptic map of the imported frames"):
        import_kitti_mot(src, tmp_path / "later", "0003", start=0.1, duration=0.0, panoptic=src / "kitti-step")


def test_start_and_duration_cut_the_drive(exported, tmp_path):
    summary = import_kitti_mot(exported, tmp_path / "cut", "0003", start=0.5, duration=0.6)
    back = read_capture_log(summary.log)
    assert summary.frames == 7 and back.frames[0].time == 0.0
    assert all(a.track.times.min() >= 0 for a in back.scene.actors)


def _drop_line(path, key):
    path.write_text("".join(line + "\n" for line in path.read_text().splitlines() if not line.startswith(key)))


BROKEN = {
    "calib_key": (lambda r: _drop_line(r / "calib/0003.txt", "Tr_velo_cam"), "0003.txt", "Tr_velo_cam"),
    "calib_numbers": (lambda r: (r / "calib/0003.txt").write_text((r / "calib/0003.txt").read_text().replace("P2: ", "P2: 1 2 ")), "0003.txt", "P2"),
    "oxts_columns": (lambda r: (r / "oxts/0003.txt").write_text("49.0 8.4 100\n"), "0003.txt", "columns"),
    "image_missing": (lambda r: (r / "image_02/0003/000004.png").unlink(), "image_02", None),
    "label_fields": (lambda r: (r / "label_02/0003.txt").write_text("0 1 Car 0 0\n"), "0003.txt", "field count"),
    "not_kitti": (lambda r: shutil.rmtree(r / "calib"), "not a KITTI tracking folder", None),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_sequences_name_file_and_field_and_write_nothing(name, exported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    breaking, file_part, field = BROKEN[name]
    breaking(src / "training")
    with pytest.raises(InputError) as exc:
        import_kitti_mot(src, tmp_path / "out", "0003")
    msg = str(exc.value)
    assert file_part in msg and (field is None or field in msg), msg
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp*"))


def test_the_rig_of_an_imported_log_has_its_lidar_and_cameras(exported, tmp_path):
    from sensors.rig import Rig

    rig = Rig.from_capture_log(read_capture_log(import_kitti_mot(exported, tmp_path / "back", "0003").log))
    assert [c.name for c in rig.cameras] == ["image_02"] and rig.lidars[0].pattern.n_beams == 64
