"""Waymo Open Dataset v2 export and import: a built-in log written as v2 parquet components reads back
with plain pyarrow, by the official column names, with every ego pose, calibration and box equal to
the log's and the twin's; it comes back through the importer unchanged (semantic labels and LiDAR
misses included); range images decode as
Waymo's geometry says; headings crossing +-pi interpolate the short way; broken segments stop with
the file and column named, writing nothing."""

import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest

from scenes.capture import read_capture_log
from scenes.errors import InputError
from scenes.transforms import make_pose, rot_z, rotation_angle_deg
from tasks.logs.waymo import CLASS_OF_TYPE, export_waymo, import_waymo
from tasks.logs.waymo_format import inclinations_from_range, range_image_misses, range_image_points

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SEGMENT = "tiny"
NAMES = {"front": "FRONT", "front_left": "FRONT_LEFT", "front_right": "FRONT_RIGHT"}
IMG, CAL, POSE, BOX = "[CameraImageComponent]", "[CameraCalibrationComponent]", "[VehiclePoseComponent]", "[LiDARBoxComponent]"
SEGL = "[CameraSegmentationLabelComponent]"
TS = "key.frame_timestamp_micros"


@pytest.fixture(scope="module")
def exported(native, tmp_path_factory):
    return export_waymo(read_capture_log(native), tmp_path_factory.mktemp("waymo") / "waymo", progress=False)


@pytest.fixture(scope="module")
def imported(exported, tmp_path_factory):
    return import_waymo(exported, tmp_path_factory.mktemp("waymo_back") / "back")


def _rows(root, component):
    return pq.read_table(root / "training" / component / f"{SEGMENT}.parquet").to_pylist()


def _rewrite(root, component, fn):
    path = root / "training" / component / f"{SEGMENT}.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows = fn(rows) or rows
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)


def _m(values):
    return np.asarray(values, dtype=np.float64).reshape(4, 4)


def _waymo_project(row, p_vehicle):
    """A vehicle-frame point in a Waymo camera, as Waymo's model states it: camera x forward, y left,
    z up; u = f_u * (-y / x) + c_u after OpenCV distortion of the normalised coordinates."""
    p = np.linalg.inv(_m(row[f"{CAL}.extrinsic.transform"])) @ np.append(p_vehicle, 1.0)
    x, y = -p[1] / p[0], -p[2] / p[0]
    k1, k2, p1, p2, k3 = (row[f"{CAL}.intrinsic.{k}"] for k in ("k1", "k2", "p1", "p2", "k3"))
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
    xd, yd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return p[0], np.array([row[f"{CAL}.intrinsic.f_u"] * xd + row[f"{CAL}.intrinsic.c_u"], row[f"{CAL}.intrinsic.f_v"] * yd + row[f"{CAL}.intrinsic.c_v"]])


# ---- (a) the export, read with plain pyarrow by the official column names ---------------------------
def test_pyarrow_reads_poses_calibration_images_and_lidar(native, exported):
    log = read_capture_log(native)
    assert sorted(p.name for p in (exported / "training").iterdir()) == [
        "camera_calibration", "camera_image", "camera_segmentation", "lidar_box", "lidar_calibration", "nerfsim_lidar_pointcloud",
        "vehicle_pose"]
    poses = sorted(_rows(exported, "vehicle_pose"), key=lambda r: r[TS])
    assert len(poses) == len(log.frames) and {r["key.segment_context_name"] for r in poses} == {SEGMENT}
    assert np.allclose(np.diff([r[TS] for r in poses]), 100_000)  # 10 Hz, in microseconds
    for r, f in zip(poses, log.frames):
        assert np.allclose(_m(r[f"{POSE}.world_from_vehicle.transform"]), f.T_world_ego, atol=1e-9)
    calib = {r["key.camera_name"]: r for r in _rows(exported, "camera_calibration")}
    assert sorted(calib) == [1, 2, 3]  # FRONT, FRONT_LEFT, FRONT_RIGHT
    ids = {"front": 1, "front_left": 2, "front_right": 3}
    images = {(r[TS], r["key.camera_name"]): r for r in _rows(exported, "camera_image")}
    assert len(images) == 3 * len(log.frames)
    for c in log.cameras:
        row, K = calib[ids[c.name]], c.intrinsics
        assert (row[f"{CAL}.width"], row[f"{CAL}.height"]) == (K.width, K.height)
        assert np.allclose([row[f"{CAL}.intrinsic.{k}"] for k in ("f_u", "f_v", "c_u", "c_v")], [K.fx, K.fy, K.cx, K.cy])
        E = _m(row[f"{CAL}.extrinsic.transform"])
        # Waymo camera axes: x out of the lens (OpenCV z), y left (-OpenCV x), z up (-OpenCV y).
        assert np.allclose(E[:3, 0], c.T_ego_cam[:3, 2]) and np.allclose(E[:3, 1], -c.T_ego_cam[:3, 0])
        assert np.allclose(E[:3, 2], -c.T_ego_cam[:3, 1]) and np.allclose(E[:3, 3], c.T_ego_cam[:3, 3])
        f = log.frames[7]
        img = images[(poses[7][TS], ids[c.name])]
        T_we = _m(img[f"{IMG}.pose.transform"])
        assert np.allclose(T_we @ c.T_ego_cam, f.T_world_cams[c.name], atol=1e-9)
        assert abs(img[f"{IMG}.pose_timestamp"] - poses[7][TS] / 1e6) < 1e-6
        a = np.asarray(iio.imread(img[f"{IMG}.image"], extension=".jpg"), dtype=np.float32) / 255
        b = log.load_image(f.image_paths[c.name])
        assert a.shape == b.shape and 10 * np.log10(1 / np.mean((a - b) ** 2)) > 30
        # Every actor in view lands on the same pixel through Waymo's camera model as through nerfsim's.
        seen = 0
        for actor in log.scene.at(f.time).actors:
            depth, uv = _waymo_project(row, (np.linalg.inv(T_we) @ actor.T_world_actor[:, 3])[:3])
            uv2, ok = log.camera(f, c.name).model.project((np.linalg.inv(f.T_world_cams[c.name]) @ actor.T_world_actor[:, 3])[:3])
            if depth > 0:
                assert np.allclose(uv, uv2, atol=1e-6)
                seen += bool(ok)
        assert seen or c.name != "front"
    lidar = _rows(exported, "lidar_calibration")
    assert len(lidar) == 1 and lidar[0]["key.laser_name"] == 1
    assert np.allclose(_m(lidar[0]["[LiDARCalibrationComponent].extrinsic.transform"]), log.lidar["T_ego_lidar"])
    assert np.allclose(np.degrees(lidar[0]["[LiDARCalibrationComponent].beam_inclination.values"]),
                       np.linspace(log.lidar["min_elevation_deg"], log.lidar["max_elevation_deg"], log.lidar["n_beams"]))
    clouds = {r[TS]: r for r in _rows(exported, "nerfsim_lidar_pointcloud")}
    o, d, r = log.lidar_rays(4)
    hit = np.isfinite(r)
    pts = np.stack([clouds[poses[4][TS]][f"[NerfsimLiDARPointCloudComponent].points.{a}"] for a in "xyz"], 1)
    assert len(pts) == hit.sum() and np.allclose(pts @ log.frames[4].T_world_ego[:3, :3].T + log.frames[4].T_world_ego[:3, 3],
                                                 o[hit] + d[hit] * r[hit, None], atol=1e-3)
    misses = np.stack([clouds[poses[4][TS]][f"[NerfsimLiDARPointCloudComponent].misses.{a}"] for a in "xyz"], 1)
    assert len(misses) == (~hit).sum() and np.allclose(misses @ log.frames[4].T_world_ego[:3, :3].T, d[~hit], atol=1e-6)


def test_boxes_are_the_twins_boxes_in_the_vehicle_frame(native, exported):
    log = read_capture_log(native)
    poses = {r[TS]: _m(r[f"{POSE}.world_from_vehicle.transform"]) for r in _rows(exported, "vehicle_pose")}
    times = {ts: (ts - min(poses)) / 1e6 for ts in poses}
    boxes = _rows(exported, "lidar_box")
    assert len(boxes) == sum(1 for f in log.frames for a in log.scene.actors if a.class_name in ("car", "pedestrian"))
    for b in boxes:
        truth = {a.actor_id: a for a in log.scene.at(times[b[TS]]).actors}[b["key.laser_object_id"]]
        T = poses[b[TS]] @ make_pose(rot_z(b[f"{BOX}.box.heading"]), np.array([b[f"{BOX}.box.center.{a}"] for a in "xyz"]))
        assert np.linalg.norm(T[:3, 3] - truth.T_world_actor[:3, 3]) < 1e-3
        assert rotation_angle_deg(T[:3, :3], truth.T_world_actor[:3, :3]) < 0.01
        assert np.allclose([b[f"{BOX}.box.size.{a}"] for a in "xyz"], truth.size)  # x length, y width, z height
        assert CLASS_OF_TYPE[b[f"{BOX}.type"]] == truth.class_name and -np.pi <= b[f"{BOX}.box.heading"] <= np.pi
    counts = [b[f"{BOX}.num_lidar_points_in_box"] for b in boxes]
    assert max(counts) > 10 and min(counts) >= 0
    moving = [b for b in boxes if np.linalg.norm([b[f"{BOX}.speed.{a}"] for a in "xyz"]) > 0.5]
    assert moving  # the world's actors drive and walk


WAYMO_TYPE = {0: 25, 1: 20, 2: 21, 3: 23, 4: 19, 5: 15, 6: 24, 7: 2, 8: 9}
"""nerfsim class id (sky, road, lane_marking, sidewalk, building, pole, tree, car, pedestrian) -> Waymo
CameraSegmentation.Type (SKY, ROAD, LANE_MARKER, SIDEWALK, BUILDING, POLE, VEGETATION, CAR, PEDESTRIAN)."""


def test_semantic_labels_go_out_as_waymo_panoptic_labels(native, exported):
    log = read_capture_log(native)
    rows = {(r[TS], r["key.camera_name"]): r for r in _rows(exported, "camera_segmentation")}
    assert len(rows) == 3 * len(log.frames)
    ts0 = min(t for t, _ in rows)
    for i in (0, 13):
        f = log.frames[i]
        for c, cid in (("front", 1), ("front_right", 3)):
            r = rows[(ts0 + 100_000 * i, cid)]
            panoptic = np.asarray(iio.imread(r[f"{SEGL}.panoptic_label"], extension=".png"))
            labels = log.load_semantic(f.semantic_paths[c])
            assert panoptic.dtype == np.uint16 and panoptic.shape == labels.shape
            expected = np.vectorize(WAYMO_TYPE.get)(labels)
            assert np.array_equal(panoptic // r[f"{SEGL}.panoptic_label_divisor"], expected)
            assert len(np.unique(labels)) >= 4  # sky, road, buildings... are in view


# ---- (b) back through the importer ------------------------------------------------------------------
def test_round_trip_cameras_times_poses_images_lidar_tracks(native, imported):
    log, back = read_capture_log(native), read_capture_log(imported.log)
    assert imported.frames == len(log.frames) == len(back.frames) and imported.cameras == ["FRONT", "FRONT_LEFT", "FRONT_RIGHT"]
    assert imported.not_actors == {}
    for c in log.cameras:
        K, K2 = c.intrinsics, next(x for x in back.cameras if x.name == NAMES[c.name]).intrinsics
        assert (K.width, K.height, K.fx, K.fy, K.cx, K.cy) == (K2.width, K2.height, K2.fx, K2.fy, K2.cx, K2.cy)
    for f, g in zip(log.frames, back.frames):
        assert abs(f.time - g.time) < 1e-6 and np.allclose(f.T_world_ego, g.T_world_ego, atol=1e-9)
        for c in log.cameras:
            assert np.allclose(f.T_world_cams[c.name], g.T_world_cams[NAMES[c.name]], atol=1e-9)
            assert back.camera(g, NAMES[c.name]).time == pytest.approx(f.time, abs=1e-9)  # microseconds, not float epoch seconds
            a, b = log.load_image(f.image_paths[c.name]), back.load_image(g.image_paths[NAMES[c.name]])
            assert np.abs(a - b).mean() < 0.02 and 10 * np.log10(1 / np.mean((a - b) ** 2)) > 30  # JPEG quality 95
    for i in (0, 9, 20):
        o, d, r = log.lidar_rays(i)
        o2, d2, r2 = back.lidar_rays(i)
        hit, hit2 = np.isfinite(r), np.isfinite(r2)
        assert hit2.sum() == hit.sum() and np.allclose(o[hit] + d[hit] * r[hit, None], o2[hit2] + d2[hit2] * r2[hit2, None], atol=1e-3)
        assert (~hit).sum() > 100 and np.allclose(d[~hit], d2[~hit2], atol=1e-6)  # the rays that returned nothing, too
    assert np.allclose(back.lidar["elevations_deg"], np.linspace(log.lidar["min_elevation_deg"], log.lidar["max_elevation_deg"], log.lidar["n_beams"]))
    assert back.has_semantics and all(np.array_equal(log.load_semantic(f.semantic_paths[c.name]), back.load_semantic(g.semantic_paths[NAMES[c.name]]))
                                      for f, g in zip(log.frames, back.frames) for c in log.cameras)
    assert imported.actors == len(log.scene.actors) == len(back.scene.actors)
    for actor in back.scene.actors:  # matched by their pose at the first frame
        truth = min(log.scene.actors, key=lambda a: np.linalg.norm(a.track.pose_at(0.0)[:3, 3] - actor.track.pose_at(0.0)[:3, 3]))
        assert actor.class_name == truth.class_name and np.allclose(actor.size, truth.size, atol=1e-6)
        assert len(actor.track.times) == len(log.frames)
        for t in actor.track.times:
            T_true, T_back = truth.track.pose_at(t), actor.track.pose_at(t)
            assert np.linalg.norm(T_true[:3, 3] - T_back[:3, 3]) < 1e-3 and rotation_angle_deg(T_true[:3, :3], T_back[:3, :3]) < 0.01


def test_rows_in_any_order_and_classes_that_are_not_actors(exported, imported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    _rewrite(src, "vehicle_pose", lambda rows: rows[::-1])
    _rewrite(src, "camera_image", lambda rows: rows[::-1])
    obj = _rows(src, "lidar_box")[0]["key.laser_object_id"]
    cyclist = lambda rows: [{**r, f"{BOX}.type": 4} if r["key.laser_object_id"] == obj else r for r in rows]  # noqa: E731
    _rewrite(src, "lidar_box", cyclist)
    summary = import_waymo(src / "training", tmp_path / "out")
    back, first = read_capture_log(summary.log), read_capture_log(imported.log)
    assert summary.actors == imported.actors - 1 and summary.not_actors == {"TYPE_CYCLIST": 21}
    assert [f.time for f in back.frames] == [f.time for f in first.frames]
    assert all(np.allclose(f.T_world_ego, g.T_world_ego) for f, g in zip(back.frames, first.frames))


def test_an_export_without_the_misses_lists_imports_its_returns(exported, imported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    for a in "xyz":
        _drop_column(src, "nerfsim_lidar_pointcloud", f"[NerfsimLiDARPointCloudComponent].misses.{a}")
    back, full = read_capture_log(import_waymo(src, tmp_path / "out", duration=0.3).log), read_capture_log(imported.log)
    for i in range(len(back.frames)):
        r, r_full = back.lidar_rays(i)[2], full.lidar_rays(i)[2]
        assert np.isfinite(r).all() and np.array_equal(r, r_full[np.isfinite(r_full)])


def test_start_duration_and_cameras_cut_the_segment(exported, tmp_path):
    summary = import_waymo(exported, tmp_path / "cut", cameras=("front_left",), start=0.5, duration=0.6)
    back = read_capture_log(summary.log)
    assert summary.frames == 7 and back.frames[0].time == 0.0 and [c.name for c in back.cameras] == ["FRONT_LEFT"]
    assert all(a.track.times.min() >= 0 and a.track.times.max() <= 0.6 + 1e-9 for a in back.scene.actors)


def test_waymo_panoptic_types_map_to_nerfsim_classes_and_unlabelled_images_stay_unlabelled(exported, tmp_path):
    """Hand-made labels: a truck's pixels (type 3, instance 7) are car, the ego's own body (1) and a
    sign (17) unlabelled, and the body becomes the cameras' ego mask; frames Waymo left unlabelled
    (its labels come at 5 Hz) are unlabelled images, and with no label at all the log has none."""
    from scenes.classes import CLASS_IDS, UNLABELLED

    src = tmp_path / "src"
    shutil.copytree(exported, src)
    ts0 = min(r[TS] for r in _rows(src, "camera_segmentation"))

    def hand_made(rows):
        out = []
        for r in rows:
            if (r[TS] - ts0) % 200_000:  # every other frame
                continue
            types = np.full((54, 96), 20, np.uint16)  # road
            types[:10], types[10:20, :20], types[30:, 40:] = 25, 3 * 1000 + 7, 1
            types[10:20, 20:30] = 17
            panoptic = np.where(types > 100, types, types * 1000).astype(np.uint16)
            out.append({**r, f"{SEGL}.panoptic_label": iio.imwrite("<bytes>", panoptic, extension=".png")})
        return out

    _rewrite(src, "camera_segmentation", hand_made)
    back = read_capture_log(import_waymo(src, tmp_path / "out").log)
    assert back.has_semantics
    even = back.load_semantic(back.frames[2].semantic_paths["FRONT"])
    assert (even[:10] == CLASS_IDS["sky"]).all() and (even[10:20, :20] == CLASS_IDS["car"]).all()
    assert (even[10:20, 20:30] == UNLABELLED).all() and (even[30:, 40:] == UNLABELLED).all()
    assert (even[20:30] == CLASS_IDS["road"]).all()
    assert (back.load_semantic(back.frames[1].semantic_paths["FRONT_LEFT"]) == UNLABELLED).all()
    ego = np.zeros((54, 96), bool)
    ego[30:, 40:] = True  # TYPE_EGO_VEHICLE in every labelled image: the camera's ego mask
    assert all(np.array_equal(c.mask, ~ego) for c in back.cameras)
    (src / "training" / "camera_segmentation" / f"{SEGMENT}.parquet").unlink()
    assert not read_capture_log(import_waymo(src, tmp_path / "none").log).has_semantics


def test_lens_distortion_goes_out_and_comes_back(native, tmp_path):
    src = tmp_path / "distorted"
    shutil.copytree(native, src)
    meta = json.loads((src / "log.json").read_text())
    k = (-0.2, 0.05, 0.001, -0.002, 0.01)
    for c in meta["cameras"]:
        K = c["intrinsics"]
        c["lens"] = {"kind": "opencv", "width": K["width"], "height": K["height"], "fx": K["fx"], "fy": K["fy"], "cx": K["cx"],
                     "cy": K["cy"], "distortion": list(k)}
    (src / "log.json").write_text(json.dumps(meta))
    out = export_waymo(read_capture_log(src), tmp_path / "waymo", progress=False)
    row = next(r for r in _rows(out, "camera_calibration") if r["key.camera_name"] == 2)
    assert [row[f"{CAL}.intrinsic.{n}"] for n in ("k1", "k2", "p1", "p2", "k3")] == list(k)
    back = read_capture_log(import_waymo(out, tmp_path / "back").log)
    cam = next(c for c in back.cameras if c.name == "FRONT_LEFT")
    assert cam.lens.kind == "opencv" and cam.lens.distortion == k
    p_vehicle = np.array([8.0, 9.0, 1.2])  # ahead and to the left: in FRONT_LEFT's view
    depth, uv = _waymo_project(row, p_vehicle)
    uv2, ok = cam.lens.project((np.linalg.inv(cam.T_ego_cam) @ np.append(p_vehicle, 1))[:3])
    assert depth > 0 and ok and np.allclose(uv, uv2, atol=1e-6)
    meta["cameras"][0]["lens"] = {**meta["cameras"][0]["lens"], "kind": "fisheye", "distortion": [0.1, 0, 0, 0]}
    (src / "log.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="cameras.front.lens"):
        export_waymo(read_capture_log(src), tmp_path / "fish", progress=False)
    assert not (tmp_path / "fish").exists() and not list(tmp_path.glob("fish.tmp*"))


# ---- range images ---------------------------------------------------------------------------------
def test_range_image_geometry_by_hand():
    # 2 beams (inclinations -0.1, 0.05 rad: row 0 is the upper one) x 4 columns, whose azimuths are
    # 3/4 pi, 1/4 pi, -1/4 pi, -3/4 pi in the vehicle frame; the laser 2 m up.
    ranges = np.array([[0.0, 10.0, 0.0, -1.0], [0.0, 0.0, 0.0, 4.0]])
    E = make_pose(np.eye(3), [0.0, 0.0, 2.0])
    p = range_image_points(ranges, E, np.array([-0.1, 0.05]))
    c = np.cos
    assert np.allclose(p, [[10 * c(0.05) * c(np.pi / 4), 10 * c(0.05) * np.sin(np.pi / 4), 2 + 10 * np.sin(0.05)],
                           [4 * c(-0.1) * c(-3 * np.pi / 4), 4 * c(-0.1) * np.sin(-3 * np.pi / 4), 2 + 4 * np.sin(-0.1)]])
    # A laser yawed by 90 degrees: the columns keep their azimuths in the vehicle frame.
    E2 = make_pose(rot_z(np.pi / 2), [1.0, 0.0, 2.0])
    q = range_image_points(ranges, E2, np.array([-0.1, 0.05])) - [1.0, 0.0, 2.0]
    assert np.allclose(np.arctan2(q[:, 1], q[:, 0]), [np.pi / 4, -3 * np.pi / 4])
    # Per-pixel poses: the vehicle 1 m further along world x when the first return was taken.
    T_frame = make_pose(rot_z(0.5), [100.0, 50.0, 0.0])
    pose = np.zeros((2, 4, 6))
    pose[..., 2], pose[..., 3:] = 0.5, [100.0, 50.0, 0.0]
    pose[0, 1, 3] += 1.0
    moved = range_image_points(ranges, E, np.array([-0.1, 0.05]), pose, T_frame)
    assert np.allclose(moved[0], p[0] + rot_z(0.5).T @ [1.0, 0.0, 0.0]) and np.allclose(moved[1], p[1])
    assert np.allclose(inclinations_from_range(-0.2, 0.2, 4), [-0.15, -0.05, 0.05, 0.15])
    # Empty rays: only the upper beam (0.05 rad = 2.9 deg up) and only column 3 (-3/4 pi), the one
    # whose neighbours (columns 2 and 0, around the turn) are empty too; column 0 and 2 border the return.
    miss = range_image_misses(ranges, E, np.array([-0.1, 0.05]))
    assert np.allclose(miss, [[c(0.05) * c(-3 * np.pi / 4), c(0.05) * np.sin(-3 * np.pi / 4), np.sin(0.05)]])


def test_lidar_range_images_are_imported(exported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    shutil.rmtree(src / "training" / "nerfsim_lidar_pointcloud")
    calib = _rows(src, "lidar_calibration")[0]
    E, incl = _m(calib["[LiDARCalibrationComponent].extrinsic.transform"]), calib["[LiDARCalibrationComponent].beam_inclination.values"]
    rng = np.random.default_rng(0)
    images = {}
    for ts in sorted(r[TS] for r in _rows(src, "vehicle_pose")):
        ri = np.zeros((len(incl), 40, 4), np.float32)
        ri[..., 0] = np.where(rng.random((len(incl), 40)) < 0.7, rng.uniform(2, 60, (len(incl), 40)), -1.0)
        images[ts] = ri
    schema = pa.schema([("key.segment_context_name", pa.string()), (TS, pa.int64()), ("key.laser_name", pa.int8()),
                        ("[LiDARComponent].range_image_return1.values", pa.list_(pa.float32())),
                        ("[LiDARComponent].range_image_return1.shape", pa.list_(pa.int32(), 3))])
    rows = [{"key.segment_context_name": SEGMENT, TS: ts, "key.laser_name": 1, "[LiDARComponent].range_image_return1.values": ri.ravel().tolist(),
             "[LiDARComponent].range_image_return1.shape": list(ri.shape)} for ts, ri in images.items()]
    (src / "training" / "lidar").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), src / "training" / "lidar" / f"{SEGMENT}.parquet", row_group_size=5)
    back = read_capture_log(import_waymo(src, tmp_path / "out").log)
    ts = sorted(images)[6]
    want = range_image_points(images[ts][..., 0], E, np.asarray(incl))  # vehicle frame
    o, d, r = back.lidar_rays(6)
    T = back.frames[6].T_world_ego
    hit = np.isfinite(r)
    assert hit.sum() == (images[ts][..., 0] > 0).sum()
    assert np.allclose(o[hit] + d[hit] * r[hit, None], want @ T[:3, :3].T + T[:3, 3], atol=1e-3)
    # the upward pixels that returned nothing, nor did their azimuth neighbours, come in as empty rays
    empty = images[ts][..., 0] <= 0
    alone = empty & np.roll(empty, 1, axis=1) & np.roll(empty, -1, axis=1)
    up_rows = np.degrees(np.asarray(incl))[::-1] >= 2.0
    assert (~hit).sum() == (alone & up_rows[:, None]).sum() > 0
    assert np.allclose(d[~hit], range_image_misses(images[ts][..., 0], E, np.asarray(incl)) @ T[:3, :3].T, atol=1e-6)
    rows[3]["[LiDARComponent].range_image_return1.shape"] = [len(incl), 41, 4]  # does not match its values
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), src / "training" / "lidar" / f"{SEGMENT}.parquet")
    with pytest.raises(InputError, match=r"lidar/tiny.parquet: field '\[LiDARComponent\].range_image_return1.shape'"):
        import_waymo(src, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


# ---- (d) a heading crossing +-pi --------------------------------------------------------------------
def test_heading_across_pi_interpolates_the_short_way(exported, tmp_path):
    """An object turning at 0.1 rad/s through yaw pi (its Waymo heading jumps from +pi to -pi):
    between frames its track turns the short way, as the motion did."""
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    poses = {r[TS]: _m(r[f"{POSE}.world_from_vehicle.transform"]) for r in _rows(src, "vehicle_pose")}
    t0 = min(poses)
    yaw = lambda t: np.pi - 0.1 + 0.1 * t  # noqa: E731 - world yaw, crosses pi at t = 1 s
    obj = _rows(src, "lidar_box")[0]["key.laser_object_id"]

    def turn(rows):
        out = []
        for r in rows:
            if r["key.laser_object_id"] == obj:
                T_vb = np.linalg.inv(poses[r[TS]]) @ make_pose(rot_z(yaw((r[TS] - t0) / 1e6)), [30.0, 3.0, 0.8])
                r = {**r, f"{BOX}.box.heading": float(np.arctan2(T_vb[1, 0], T_vb[0, 0])),
                     **{f"{BOX}.box.center.{a}": float(v) for a, v in zip("xyz", T_vb[:3, 3])}}
            out.append(r)
        return out

    _rewrite(src, "lidar_box", turn)
    headings = [r[f"{BOX}.box.heading"] for r in _rows(src, "lidar_box") if r["key.laser_object_id"] == obj]
    assert max(headings) > 3.1 and min(headings) < -3.1  # the stored heading wraps
    back = read_capture_log(import_waymo(src, tmp_path / "out").log)
    actor = next(a for a in back.scene.actors if np.allclose(a.track.pose_at(0.0)[:3, 3], [30.0, 3.0, 0.8], atol=1e-6))
    for t in np.arange(0.05, 2.0, 0.1):  # midway between frames
        T = actor.track.pose_at(t)
        assert rotation_angle_deg(T[:3, :3], rot_z(yaw(t))) < 0.01, t
        assert np.allclose(T[:3, 3], [30.0, 3.0, 0.8], atol=1e-6)


# ---- (c) broken segments ----------------------------------------------------------------------------
def _one_image_pose_timestamp_swapped(rows):
    front = sorted((r for r in rows if r["key.camera_name"] == 1), key=lambda r: r[TS])
    a, b = front[3], front[4]
    a[f"{IMG}.pose_timestamp"], b[f"{IMG}.pose_timestamp"] = b[f"{IMG}.pose_timestamp"], a[f"{IMG}.pose_timestamp"]


def _drop_column(root, component, column):
    path = root / "training" / component / f"{SEGMENT}.parquet"
    table = pq.read_table(path)
    pq.write_table(table.drop_columns([column]), path)


def _box_off_the_frames(rows):
    rows[5][TS] += 1


def _garbage_image(rows):
    rows[2][f"{IMG}.image"] = b"not a jpeg"


BROKEN = {  # what to break, the file named, the column named (None: the file alone), words of the message
    "missing_component": (lambda r: (r / "training/vehicle_pose/tiny.parquet").unlink(), "vehicle_pose/tiny.parquet", None, "component file missing"),
    "missing_column": (lambda r: _drop_column(r, "vehicle_pose", f"{POSE}.world_from_vehicle.transform"), "vehicle_pose/tiny.parquet",
                       f"{POSE}.world_from_vehicle.transform", "column missing"),
    "images_out_of_order": (lambda r: _rewrite(r, "camera_image", _one_image_pose_timestamp_swapped), "camera_image/tiny.parquet",
                            f"{IMG}.pose_timestamp", "out of time order"),
    "box_without_pose": (lambda r: _rewrite(r, "lidar_box", _box_off_the_frames), "lidar_box/tiny.parquet", TS, "no vehicle pose"),
    "frame_without_pose": (lambda r: _rewrite(r, "vehicle_pose", lambda rows: rows[:4] + rows[5:]), "camera_image/tiny.parquet", TS,
                           "no vehicle pose"),
    "pose_twice": (lambda r: _rewrite(r, "vehicle_pose", lambda rows: rows + rows[2:3]), "vehicle_pose/tiny.parquet", TS, "two vehicle poses"),
    "garbage_image": (lambda r: _rewrite(r, "camera_image", _garbage_image), "camera_image/tiny.parquet", f"{IMG}.image", "not a readable JPEG"),
    "bad_transform": (lambda r: _rewrite(r, "camera_calibration", lambda rows: [{**rows[0], f"{CAL}.extrinsic.transform": [2.0] * 16}, *rows[1:]]),
                      "camera_calibration/tiny.parquet", f"{CAL}.extrinsic.transform", "rigid"),
    "not_parquet": (lambda r: (r / "training/lidar_box/tiny.parquet").write_text("hello"), "lidar_box/tiny.parquet", None, "parquet"),
    "not_waymo": (lambda r: shutil.rmtree(r / "training/camera_image"), "src", None, "not a Waymo v2 dataset"),
    "garbage_label": (lambda r: _rewrite(r, "camera_segmentation", lambda rows: [{**rows[3], f"{SEGL}.panoptic_label": b"no png"}, *rows[4:]]),
                      "camera_segmentation/tiny.parquet", f"{SEGL}.panoptic_label", "not a readable PNG"),
    "label_size": (lambda r: _rewrite(r, "camera_segmentation", lambda rows: [
        {**rows[0], f"{SEGL}.panoptic_label": iio.imwrite("<bytes>", np.zeros((8, 8), np.uint16), extension=".png")}, *rows[1:]]),
                   "camera_segmentation/tiny.parquet", f"{SEGL}.panoptic_label", "a 8x8 label, the calibration says 96x54"),
    "label_divisor": (lambda r: _rewrite(r, "camera_segmentation", lambda rows: [{**rows[0], f"{SEGL}.panoptic_label_divisor": 0}, *rows[1:]]),
                      "camera_segmentation/tiny.parquet", f"{SEGL}.panoptic_label_divisor", "expected a positive integer, got 0"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_segments_name_file_and_column_and_write_nothing(name, exported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    breaking, file_part, column, words = BROKEN[name]
    breaking(src)
    with pytest.raises(InputError) as exc:
        import_waymo(src, tmp_path / "out")
    msg = str(exc.value)
    assert file_part in msg and words in msg and (column is None or f"field '{column}" in msg), msg
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp*"))


def test_export_failing_midway_leaves_nothing(native, tmp_path, monkeypatch):
    import tasks.logs.waymo as waymo

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(waymo, "_frame_boxes", boom)
    with pytest.raises(RuntimeError):
        export_waymo(read_capture_log(native), tmp_path / "w", progress=False)
    assert not (tmp_path / "w").exists() and list(tmp_path.iterdir()) == []


def test_command_line_round_trip(native, tmp_path, capsys):
    from tasks.cli import main

    assert main(["export-log", str(native), "--format", "waymo", "--out", str(tmp_path / "wod"), "--segment", "seg-1"]) == 0
    assert (tmp_path / "wod" / "training" / "camera_image" / "seg-1.parquet").is_file()
    assert main(["import", "waymo", str(tmp_path / "wod"), "--cameras", "FRONT", "--duration", "0.5", "--out", str(tmp_path / "log")]) == 0
    back = read_capture_log(tmp_path / "log")
    assert [c.name for c in back.cameras] == ["FRONT"] and len(back.frames) == 6
    assert main(["import", "waymo", str(tmp_path / "wod"), "--segment", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "no segment 'nope'" in capsys.readouterr().err and not (tmp_path / "x").exists()
