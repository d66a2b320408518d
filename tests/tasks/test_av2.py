"""Argoverse 2 export and import: a built-in log (one camera firing 20 ms after the others, as a
recorded rig does) written as an AV2 sensor log opens in the official ``av2`` API with every ego
pose, calibration, box and sweep equal to the log's, comes back through the importer unchanged
(images up to JPEG; the upward beams' empty rays rebuilt from the laser numbers), and broken logs stop with the file and field named, writing nothing."""

import shutil
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest

from scenes.camera import Intrinsics
from scenes.capture import CaptureCamera, CaptureLogWriter, read_capture_log
from scenes.errors import InputError
from scenes.graph import ActorTrack
from scenes.transforms import rotation_angle_deg
from tasks.logs.av2 import ANNOTATIONS, BASE_NS, EXTRINSICS, INTRINSICS, POSES, RIG_NAMES, av2_camera_names, export_av2, import_av2
from tasks.logs.common import SKY_MIN_ELEVATION_DEG

pytest.importorskip("pyarrow")
LAG = 0.02  # front_left fires this many seconds after the LiDAR and the other cameras


def _close(T_a, T_b, mm=1.0, deg=0.01) -> bool:
    return np.linalg.norm(T_a[:3, 3] - T_b[:3, 3]) < mm * 1e-3 and rotation_angle_deg(T_a[:3, :3], T_b[:3, :3]) < deg


def _image_time(f, cam: str) -> float:
    return f.image_times.get(cam, f.time)


@pytest.fixture(scope="module")
def staggered(native, tmp_path_factory):
    """The built-in log with front_left's images taken ``LAG`` later, each with its own time and the
    ego pose then (SLERP between the frames' poses)."""
    log = read_capture_log(native)
    ego = ActorTrack.from_poses([f.time for f in log.frames], [f.T_world_ego for f in log.frames])
    out = tmp_path_factory.mktemp("staggered") / "log"
    with CaptureLogWriter(out, f"{log.name}-staggered", log.cameras, log.lidar, log.world) as writer:
        for f in log.frames:
            images = {c.name: iio.imread(f.image_paths[c.name]) for c in log.cameras}
            t = f.time + LAG
            writer.add_frame(f.time, f.T_world_ego, images, np.load(f.lidar_path), image_times={"front_left": t},
                             image_ego_poses={"front_left": ego.pose_at(t)})
        writer.close(log.scene)
    return out


@pytest.fixture(scope="module")
def exported(staggered, tmp_path_factory):
    """The AV2 log folder ``<root>/val/<log_id>`` of the staggered log."""
    return export_av2(read_capture_log(staggered), tmp_path_factory.mktemp("av2") / "av2", progress=False)


def _boxes_expected(log) -> int:
    return sum(1 for f in log.frames for a in log.scene.at(f.time).actors
               if a.class_name in ("car", "pedestrian") and np.linalg.norm(a.T_world_actor[:3, 3] - f.T_world_ego[:3, 3]) <= 150)


def test_av2_reads_poses_calibration_boxes_and_sweeps(staggered, exported):
    pytest.importorskip("av2")
    from av2.datasets.sensor.av2_sensor_dataloader import AV2SensorDataLoader
    from av2.structures.sweep import Sweep
    from av2.utils.io import read_feather, read_img

    log = read_capture_log(staggered)
    log_id = exported.name
    loader = AV2SensorDataLoader(data_dir=exported.parent, labels_dir=exported.parent)
    assert loader.get_log_ids() == [log_id]
    sweeps = loader.get_ordered_log_lidar_timestamps(log_id)
    assert sweeps == [BASE_NS + round(f.time * 1e9) for f in log.frames]
    cams = {}
    for c in log.cameras:
        cam = cams[c.name] = loader.get_log_pinhole_camera(log_id, RIG_NAMES[c.name])
        assert _close(cam.ego_SE3_cam.transform_matrix, c.T_ego_cam, mm=1e-6, deg=1e-6)
        K = c.intrinsics
        assert np.allclose(cam.intrinsics.K, [[K.fx, 0, K.cx - 0.5], [0, K.fy, K.cy - 0.5], [0, 0, 1]])
        assert (cam.width_px, cam.height_px) == (K.width, K.height)
    counts = read_feather(exported / ANNOTATIONS)
    boxes = 0
    for i, (f, ts) in enumerate(zip(log.frames, sweeps)):
        T_we = loader.get_city_SE3_ego(log_id, ts).transform_matrix
        assert _close(T_we, f.T_world_ego, mm=1e-6, deg=1e-6)
        for c in log.cameras:  # each image at its own time, with the ego pose then
            path = loader.get_closest_img_fpath(log_id, RIG_NAMES[c.name], ts)
            assert int(path.stem) == BASE_NS + round(_image_time(f, c.name) * 1e9)
            T_wc = loader.get_city_SE3_ego(log_id, int(path.stem)).transform_matrix @ cams[c.name].ego_SE3_cam.transform_matrix
            assert _close(T_wc, f.T_world_cams[c.name], mm=1e-6, deg=1e-6)
            if i % 7 == 0:  # JPEG at quality 100, no chroma subsampling: a level or two off
                diff = np.abs(read_img(path).astype(int) - iio.imread(f.image_paths[c.name])[..., :3].astype(int))
                assert diff.mean() < 1.0 and diff.max() <= 8, (diff.mean(), diff.max())
        o, d, r = log.lidar_rays(f)
        hit = np.isfinite(r)
        truth_ego = (o[hit] + d[hit] * r[hit, None] - f.T_world_ego[:3, 3]) @ f.T_world_ego[:3, :3]
        sweep = Sweep.from_feather(loader.get_lidar_fpath(log_id, ts))
        assert np.allclose(sweep.xyz, truth_ego, atol=1e-4)
        truth = log.scene.at(f.time).actors
        for cuboid in loader.get_labels_at_lidar_timestamp(log_id, ts):
            T = T_we @ cuboid.dst_SE3_object.transform_matrix
            match = [a for a in truth if np.linalg.norm(a.T_world_actor[:3, 3] - T[:3, 3]) < 1e-3]
            assert len(match) == 1 and _close(T, match[0].T_world_actor)
            assert np.allclose([cuboid.length_m, cuboid.width_m, cuboid.height_m], match[0].size)
            assert cuboid.category == {"car": "REGULAR_VEHICLE", "pedestrian": "PEDESTRIAN"}[match[0].class_name]
            row = counts[(counts.timestamp_ns == ts) & np.isclose(counts.tx_m, cuboid.dst_SE3_object.translation[0])]
            assert len(row) == 1 and row.num_interior_pts.iloc[0] == cuboid.compute_interior_points(sweep.xyz)[1].sum()
            boxes += 1
    assert boxes == _boxes_expected(log) > 0
    assert counts.num_interior_pts.max() > 10


def test_round_trip_through_the_importer(staggered, exported, tmp_path):
    log = read_capture_log(staggered)
    summary = import_av2(exported.parent.parent, tmp_path / "back", progress=False)  # the dataset root: its one log
    back = read_capture_log(summary.log)
    names = {c.name: RIG_NAMES[c.name] for c in log.cameras}
    assert summary.frames == len(log.frames) == len(back.frames) and summary.cameras == list(names.values())
    for c in log.cameras:
        c2 = next(x for x in back.cameras if x.name == names[c.name])
        assert c2.intrinsics == c.intrinsics and _close(c2.T_ego_cam, c.T_ego_cam, mm=1e-6, deg=1e-6)
    for f, g in zip(log.frames, back.frames):
        assert abs(f.time - g.time) < 1e-9 and _close(f.T_world_ego, g.T_world_ego, mm=1e-6, deg=1e-6)
        for c in log.cameras:
            assert abs(back.camera(g, names[c.name]).time - _image_time(f, c.name)) < 1e-9
            assert _close(f.T_world_cams[c.name], g.T_world_cams[names[c.name]], mm=1e-6, deg=1e-6)
            diff = np.abs(log.load_image(f.image_paths[c.name]) - back.load_image(g.image_paths[names[c.name]]))
            assert diff.mean() < 1 / 255 and diff.max() <= 8 / 255
        o, d, r = log.lidar_rays(f)
        o2, d2, r2 = back.lidar_rays(g)
        hit, hit2 = np.isfinite(r), np.isfinite(r2)
        assert np.allclose(r[hit], r2[hit2], atol=1e-3) and np.allclose(d[hit], d2[hit2], atol=1e-5)
        assert np.allclose(o[hit] + d[hit] * r[hit, None], o2[hit2] + d2[hit2] * r2[hit2, None], atol=1e-3)
        # the upward beams' empty rays come back from the returns' laser_number (AV2 keeps returns only)
        pattern = hit.reshape(int(log.lidar["n_beams"]), -1)  # beam-major
        alone = (~pattern & ~np.roll(pattern, 1, axis=1) & ~np.roll(pattern, -1, axis=1)).reshape(-1)
        up_miss = alone & (d @ f.T_world_lidar[:3, 2] > np.sin(np.radians(SKY_MIN_ELEVATION_DEG)))
        assert (~hit2).sum() == up_miss.sum() > 0
        assert np.abs(d2[~hit2] @ d[up_miss].T).max(1).min() > 1 - 1e-6
    assert summary.actors == len(back.scene.actors) == len([a for a in log.scene.actors if a.class_name in ("car", "pedestrian")])
    for actor in back.scene.actors:  # matched by their pose at the first sweep
        T0 = actor.track.pose_at(0.0)
        truth = min(log.scene.actors, key=lambda a: np.linalg.norm(a.track.pose_at(0.0)[:3, 3] - T0[:3, 3]))
        assert actor.class_name == truth.class_name and np.allclose(actor.size, truth.size, atol=1e-6)
        assert len(actor.track.times) == len(log.frames)
        for t in actor.track.times:
            assert _close(truth.track.pose_at(t), actor.track.pose_at(t))


def _edit(path, fn):
    """Rewrite a feather table: ``fn(columns dict) -> columns dict``."""
    import pyarrow as pa
    from pyarrow import feather

    table = feather.read_table(path)
    cols = fn({k: table.column(k).to_pylist() for k in table.column_names})
    feather.write_feather(pa.table(cols), str(path))


def test_image_ego_poses_between_pose_rows_are_interpolated(staggered, exported, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    sweeps = sorted(int(p.stem) for p in (src / "sensors" / "lidar").glob("*.feather"))

    def only_sweeps(c):  # keep the rows of the sweeps (and any after the last: nothing to interpolate from there)
        keep = [i for i, t in enumerate(c["timestamp_ns"]) if t in sweeps or t > sweeps[-1]]
        return {k: [v[i] for i in keep] for k, v in c.items()}

    from pyarrow import feather

    rows = feather.read_table(src / POSES).num_rows
    _edit(src / POSES, only_sweeps)
    assert feather.read_table(src / POSES).num_rows == len(sweeps) + 1 < rows
    back = read_capture_log(import_av2(src, tmp_path / "back", progress=False).log)
    log = read_capture_log(staggered)
    for f, g in zip(log.frames[:-1], back.frames[:-1]):
        assert _close(f.T_world_cams["front_left"], g.T_world_cams["ring_front_left"])
        assert abs(back.camera(g, "ring_front_left").time - (f.time + LAG)) < 1e-9


def test_images_between_sweeps_come_in_as_frames_without_a_sweep(staggered, exported, tmp_path):
    """The ring cameras fire at 20 Hz: images 50 ms after the first three sweeps (front_left 20 ms
    later still) become frames of their own, with no LiDAR, the ego pose of their time and exactly
    those images; without ``between_sweeps`` they are left out."""
    src = tmp_path / "src"
    shutil.copytree(exported, src)
    sweeps = sorted(int(p.stem) for p in (src / "sensors" / "lidar").glob("*.feather"))
    written = {}
    for s0, s1 in zip(sweeps[:3], sweeps[1:4]):
        for cam_dir in (src / "sensors" / "cameras").iterdir():
            t = s0 + 50_000_000 + (int(LAG * 1e9) if cam_dir.name == "ring_front_left" else 0)
            later = min(cam_dir.glob("*.jpg"), key=lambda p: abs(int(p.stem) - s1))  # an image of the next sweep, as the new one
            shutil.copy(later, cam_dir / f"{t}.jpg")
            written[(s0, cam_dir.name)] = (t, later)
    assert len(read_capture_log(import_av2(src, tmp_path / "plain", progress=False).log).frames) == len(sweeps)
    summary = import_av2(src, tmp_path / "back", progress=False, between_sweeps=True)
    back, log = read_capture_log(summary.log), read_capture_log(staggered)
    assert summary.frames == len(back.frames) == len(sweeps) + 3
    ego = ActorTrack.from_poses([f.time for f in log.frames], [f.T_world_ego for f in log.frames])
    for k, s0 in enumerate(sweeps[:3]):
        g = back.frames[2 * k + 1]
        t_frame = (s0 + 50_000_000 - sweeps[0]) / 1e9
        assert abs(g.time - t_frame) < 1e-9 and len(np.load(g.lidar_path)) == 0
        assert _close(g.T_world_ego, ego.pose_at(t_frame))
        for cam, (t, source) in ((c, written[(s0, c)]) for c in ("ring_front_center", "ring_front_left")):
            assert abs(back.camera(g, cam).time - (t - sweeps[0]) / 1e9) < 1e-9
            assert np.array_equal(np.asarray(iio.imread(g.image_paths[cam]))[..., :3], np.asarray(iio.imread(source))[..., :3])
        assert len(np.load(back.frames[2 * k].lidar_path)) > 100  # the sweeps keep theirs


def test_start_and_duration_cut_the_log(exported, tmp_path):
    summary = import_av2(exported, tmp_path / "cut", start=0.5, duration=0.6, cameras=("ring_front_center",), progress=False)
    back = read_capture_log(summary.log)
    assert summary.frames == len(back.frames) == 7 and back.frames[0].time == 0.0 and summary.cameras == ["ring_front_center"]
    assert all(0.0 <= a.track.times.min() and a.track.times.max() <= 0.6 + 1e-9 for a in back.scene.actors)


def _swap_pose_times(c):
    c["timestamp_ns"][2], c["timestamp_ns"][3] = c["timestamp_ns"][3], c["timestamp_ns"][2]
    return c


def _set(column, row, value):
    def fn(c):
        c[column][row] = value
        return c
    return fn


def _drop(column):
    return lambda c: {k: v for k, v in c.items() if k != column}


def _first(folder, suffix):
    return sorted(folder.glob(f"*{suffix}"))[4]


BROKEN = {  # what breaks the log, and the file and field the error must name
    "missing_table": (lambda r: (r / INTRINSICS).unlink(), "intrinsics.feather", "table missing"),
    "missing_column": (lambda r: _edit(r / EXTRINSICS, _drop("tz_m")), "egovehicle_SE3_sensor.feather", "field 'tz_m'"),
    "missing_image": (lambda r: _first(r / "sensors/cameras/ring_front_left", ".jpg").unlink(), "ring_front_left", "no image within"),
    "out_of_order": (lambda r: _edit(r / POSES, _swap_pose_times), POSES, "field 'timestamp_ns'"),
    "bad_size": (lambda r: _edit(r / ANNOTATIONS, _set("length_m", 3, -1.0)), ANNOTATIONS, "field 'length_m'"),
    "bad_rotation": (lambda r: _edit(r / ANNOTATIONS, _set("qw", 5, float("nan"))), ANNOTATIONS, "field 'qw'"),
    "bad_quaternion": (lambda r: _edit(r / POSES, _set("qz", 1, 3.0)), POSES, "field 'qw, qx, qy, qz'"),
    "text_timestamp": (lambda r: _edit(r / ANNOTATIONS, lambda c: {**c, "timestamp_ns": [str(t) for t in c["timestamp_ns"]]}),
                       ANNOTATIONS, "field 'timestamp_ns'"),
    "broken_sweep": (lambda r: _first(r / "sensors/lidar", ".feather").write_bytes(b"not arrow"), ".feather", "not a readable feather"),
    "sweep_name": (lambda r: (r / "sensors/lidar/latest.feather").write_bytes(b""), "latest.feather", "<timestamp_ns>.feather"),
    "repeated_box": (lambda r: _edit(r / ANNOTATIONS, lambda c: {k: v + v[:1] for k, v in c.items()}), ANNOTATIONS,
                     "two boxes at one time"),
    "no_up_lidar": (lambda r: _edit(r / EXTRINSICS, lambda c: {k: v[:-2] for k, v in c.items()}), "egovehicle_SE3_sensor.feather",
                    "no row for up_lidar"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_logs_name_file_and_field_and_write_nothing(name, exported, tmp_path):
    src = tmp_path / "val" / exported.name
    shutil.copytree(exported, src)
    breaking, file_part, words = BROKEN[name]
    breaking(src)
    with pytest.raises(InputError) as exc:
        import_av2(tmp_path / "val", tmp_path / "out", progress=False)
    msg = str(exc.value)
    assert file_part in msg and words in msg, msg
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.tmp*"))


def test_picking_a_log(exported, tmp_path):
    root = tmp_path / "av2"
    shutil.copytree(exported.parent.parent, root)
    shutil.copytree(exported, root / "train" / "other-log")
    with pytest.raises(InputError, match="expected one AV2 log to pick"):
        import_av2(root, tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="no log 'nope'"):
        import_av2(root, tmp_path / "out", log_id="nope", progress=False)
    assert import_av2(root, tmp_path / "out", log_id="other-log", duration=0.2, progress=False).frames == 3
    with pytest.raises(InputError, match="no camera 'ring_rear_left'"):
        import_av2(root, tmp_path / "out2", log_id="other-log", cameras=("ring_rear_left",), progress=False)


def test_export_names_cameras_as_av2_does_and_refuses_others(tmp_path):
    cam = CaptureCamera("roof", Intrinsics(8, 8, 4.0, 4.0, 4.0, 4.0), np.eye(4))
    fake = SimpleNamespace(root=tmp_path / "log", cameras=[cam])
    with pytest.raises(InputError, match=r"cameras\.roof.*no AV2 camera name"):
        av2_camera_names(fake)
    assert av2_camera_names(fake, {"roof": "ring_rear_left"}) == {"roof": "ring_rear_left"}
    twins = SimpleNamespace(root=tmp_path / "log", cameras=[cam, CaptureCamera("front", cam.intrinsics, np.eye(4))])
    with pytest.raises(InputError, match="share an AV2 name"):
        av2_camera_names(twins, {"roof": "ring_front_center"})


def test_command_line_round_trip(native, tmp_path, capsys):
    from tasks.cli import main

    assert main(["export-log", str(native), "--format", "av2", "--out", str(tmp_path / "av2"), "--log-id", "drive-1"]) == 0
    assert (tmp_path / "av2" / "val" / "drive-1" / POSES).is_file()
    assert main(["import", "av2", str(tmp_path / "av2"), "--cameras", "ring_front_center", "--duration", "0.5",
                 "--out", str(tmp_path / "log")]) == 0
    back = read_capture_log(tmp_path / "log")
    assert [c.name for c in back.cameras] == ["ring_front_center"] and len(back.frames) == 6
    assert main(["import", "av2", str(tmp_path / "av2"), "--log-id", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "no log 'nope'" in capsys.readouterr().err and not (tmp_path / "x").exists()
