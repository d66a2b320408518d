"""Waymo Open Dataset v2 (the parquet "components" format) to and from nerfsim capture logs, read and
written with pyarrow alone (no TensorFlow, no waymo-open-dataset package).

A v2 dataset is a folder per split (``training/``, ``validation/``, ``testing/``) holding one folder
per component with one parquet file per segment: ``<split>/<component>/<segment>.parquet``. Columns
are named as the official package flattens its dataclasses (`waymo_open_dataset.v2`): keys
``key.segment_context_name``, ``key.frame_timestamp_micros``, ``key.camera_name``,
``key.laser_name``, ``key.laser_object_id``; fields ``[CameraImageComponent].image``,
``[CameraCalibrationComponent].intrinsic.f_u``, ``[VehiclePoseComponent].world_from_vehicle.transform``,
``[LiDARBoxComponent].box.center.x``... Components used: ``camera_image``, ``camera_calibration``,
``vehicle_pose`` (required), ``lidar_box``, ``lidar_calibration``, ``lidar``, ``lidar_pose``,
``camera_segmentation`` (optional: a download may leave them out).

Conventions, Waymo's:

- world ("global") frame z up, metres; vehicle frame x forward, y left, z up, origin on the ground
  under the middle of the rear axle (nerfsim's ego axes): ``world_from_vehicle`` per frame, and per
  camera image ``pose`` (world_from_vehicle at ``pose_timestamp``, seconds since the epoch);
- 4x4 transforms are 16 numbers, row-major; ``extrinsic`` maps sensor -> vehicle;
- cameras: x forward (out of the lens), y left, z up; a point projects at ``u = f_u * (-y / x) + c_u``,
  ``v = f_v * (-z / x) + c_v``, after OpenCV's radial-tangential distortion (k1, k2, p1, p2, k3) of
  the normalised coordinates; pixel 0 is the left edge of the first pixel (nerfsim's convention: the
  centre ``c_u`` is nerfsim's ``cx`` unchanged). ``extrinsic = T_ego_cam @ OPENCV_FROM_WAYMO_CAM``;
- images are JPEG; cameras are rolling shutter (``rolling_shutter_params``); frames (10 Hz) are keyed
  by ``frame_timestamp_micros``, the LiDAR's time;
- boxes (``lidar_box``) are 7-DOF in the frame's vehicle frame: ``center``, ``size`` (x length, y
  width, z height), ``heading`` (yaw about z, in [-pi, pi)); ``type`` 1 vehicle, 2 pedestrian,
  3 sign, 4 cyclist, 0 unknown; ``laser_object_id`` tracks an object across frames;
- LiDAR (``lidar``): range images ``[H, W, 4]`` (range, intensity, elongation, no-label zone) per
  laser (1 TOP, 2 FRONT, 3 SIDE_LEFT, 4 SIDE_RIGHT, 5 REAR); range <= 0 is no return. Row ``r``
  has inclination ``beam_inclination`` (ascending ``values``, or spread evenly between ``min`` and
  ``max`` at row centres) read from the last row up; column ``c`` has azimuth
  ``(2 (W - c - 0.5) / W - 1) pi - atan2(E[1, 0], E[0, 0])`` in the laser frame (``E`` its
  extrinsic). The TOP laser's ``lidar_pose`` gives the vehicle pose (roll, pitch, yaw, x, y, z;
  ``Rz Ry Rx``) per pixel, taking out the vehicle's motion during the sweep.

Import (`import_waymo`): one segment; every camera image at its ``pose_timestamp`` with its own
``pose`` (a global-shutter approximation of the rolling shutter: nerfsim gives an image one time),
OpenCV lenses where the calibration has distortion; the TOP laser's first return (per-pixel poses
applied when ``lidar_pose`` is there) as the LiDAR, in the TOP laser's frame, with the upward pixels
that returned nothing as empty rays (`tasks.logs.waymo_format.range_image_misses`); boxes by
``laser_object_id`` as actor tracks in the world (vehicle -> car, pedestrian -> pedestrian; signs,
cyclists and unknowns are counted in ``not_actors``); where the segment has panoptic labels
(``camera_segmentation``: a 16-bit PNG of ``type * panoptic_label_divisor + instance`` per image),
their types as the log's semantic labels (`tasks.logs.waymo_format.SEGMENTATION_CLASSES`; images
without a label, and types nerfsim has no class for, are unlabelled), and a camera's ego mask where
its labels say TYPE_EGO_VEHICLE in at least half of its labelled images. The world frame is kept as it is. Parquet files
are read by column and by row group, the segment's rows only: images and range images are fetched
frame by frame, never a whole segment at once.

Export (`export_waymo`): camera_image (JPEG, quality 95; ``pose`` / ``pose_timestamp`` the image's
own; ``velocity`` from central differences of the ego poses; a global shutter: ``shutter`` 0 and
trigger = readout time = ``pose_timestamp``, ``rolling_shutter_direction`` 5 GLOBAL_SHUTTER),
camera_calibration (OpenCV lenses with up to 5 coefficients; fisheye and 8-coefficient lenses are
refused), camera_segmentation (a log with semantic labels: every image's classes as panoptic labels
with instance 0, divisor 1000), vehicle_pose, lidar_calibration (one laser, TOP: the log's LiDAR, its beam elevations as
``beam_inclination.values``) and lidar_box (every car / pedestrian within 75 m of the ego, with
``speed`` / ``acceleration`` from the track in the vehicle frame and the LiDAR returns counted in the
box). Range images are not written: a range image fixes each column's azimuth in the vehicle frame,
which a nerfsim LiDAR's azimuths generally miss by up to half a column (a 1.4 degree shift of every
return for 128 columns). The returns go instead into a nerfsim extension component,
``nerfsim_lidar_pointcloud``: per frame, key.segment_context_name, key.frame_timestamp_micros,
key.laser_name (1), ``[NerfsimLiDARPointCloudComponent].points.x / .y / .z`` (list<float>,
vehicle frame at the frame's time, in the sweep's beam order) and ``.misses.x / .y / .z`` (unit
directions in the vehicle frame of the rays that returned nothing: what a range image's empty
pixels say). Waymo's own tools ignore that folder;
`import_waymo` reads it where there is no ``lidar`` component. Timestamps are
1_550_000_000 s + the log's seconds.
"""

from __future__ import annotations

import re
from contextlib import nullcontext
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from scenes.camera import Intrinsics
from scenes.capture import CaptureCamera, CaptureLog, CaptureLogWriter
from scenes.errors import InputError
from scenes.graph import SceneGraph
from scenes.lens import CameraModel
from scenes.progress import JobProgress
from scenes.transforms import make_pose, rot_z
from tasks.logs.common import ImportSummary, SceneExtent, actor_from_boxes, export_atomically
from tasks.logs.waymo_format import (BOX, BOX_TYPES, CAL, CAM, CAMERA_NAMES, GLOBAL_SHUTTER, IMG, INTRINSIC, LASER, LCAL, OBJ,
                                     OPENCV_FROM_WAYMO_CAM, PANOPTIC_DIVISOR, POINTS_COMPONENT, POSE, PTS, SEG, SEGL, TOP, TS, RowIndex,
                                     SegmentationLabels, TopLidar, arrow, component_schemas, flat, panoptic_png, read_component,
                                     transform_of)

CLASS_OF_TYPE = {1: "car", 2: "pedestrian"}
EPOCH_US = 1_550_000_000_000_000
"""Export timestamps: 1_550_000_000 s since the epoch + the log's seconds."""
ANNOTATION_RANGE = 75.0
"""Export: actors farther than this from the ego (metres) get no box in that frame."""


def _micros(t: float) -> int:
    return EPOCH_US + int(round(t * 1e6))


# ---- export -----------------------------------------------------------------------------------------
def camera_ids(cameras: list[CaptureCamera]) -> dict[str, int]:
    """Waymo ``camera_name`` of each rig camera: its own where the name is one of Waymo's
    (``front_left`` -> 2 FRONT_LEFT), else the lowest unused id (6 and up are not in Waymo's enum)."""
    by_name = {v: k for k, v in CAMERA_NAMES.items()}
    ids = {c.name: by_name[c.name.upper()] for c in cameras if c.name.upper() in by_name}
    free = (i for i in range(1, 128) if i not in ids.values())
    return {c.name: ids[c.name] if c.name in ids else next(free) for c in cameras}


def _lens_coefficients(log: CaptureLog, cam: CaptureCamera) -> list[float]:
    """(k1, k2, p1, p2, k3) of a camera's lens; `InputError` for lenses Waymo's model cannot hold."""
    if cam.lens is None or cam.lens.kind == "pinhole" or (cam.lens.kind == "opencv" and not cam.lens.distortion):
        return [0.0] * 5
    if cam.lens.kind != "opencv" or len(cam.lens.distortion) > 5:
        raise InputError(log.root / "log.json", f"cameras.{cam.name}.lens",
                         "Waymo's camera model is OpenCV's with (k1, k2, p1, p2, k3); this lens is not")
    return [float(v) for v in cam.lens.distortion] + [0.0] * (5 - len(cam.lens.distortion))


def export_waymo(log: CaptureLog, out: str | Path, split: str = "training", segment: str | None = None,
                 progress: bool = True) -> Path:
    """Write ``log`` as one segment of a Waymo v2 dataset at ``out`` (``out/split/<component>/
    <segment>.parquet``; module docstring), atomically. ``segment``: its name (default the log's
    name, made file-safe)."""
    segment = segment or re.sub(r"[^A-Za-z0-9_.-]", "_", log.name) or "segment"
    ids = camera_ids(log.cameras)
    lenses = {c.name: _lens_coefficients(log, c) for c in log.cameras}  # before anything is written

    def write(tmp: Path) -> None:
        _write_segment(log, tmp / split, segment, ids, lenses, progress)

    # Waymo calibrations carry OpenCV distortion (checked above), so no camera needs to be a pinhole.
    return export_atomically(log, [], out, "Waymo", write)


def _write_segment(log: CaptureLog, root: Path, segment: str, ids: dict, lenses: dict, progress: bool) -> None:
    pa, pq = arrow()
    schemas = component_schemas()
    if not log.has_semantics:
        schemas.pop("camera_segmentation")
    for name in schemas:
        (root / name).mkdir(parents=True)
    path = lambda name: root / name / f"{segment}.parquet"  # noqa: E731
    table = lambda name, rows: pa.Table.from_pylist(rows, schema=schemas[name])  # noqa: E731
    T_ego_lidar = np.asarray(log.lidar["T_ego_lidar"], dtype=np.float64)
    calib = []
    for c in log.cameras:
        K = c.intrinsics
        calib.append({SEG: segment, CAM: ids[c.name], **{f"{CAL}.intrinsic.{k}": v for k, v in zip(INTRINSIC, [K.fx, K.fy, K.cx, K.cy, *lenses[c.name]])},
                      f"{CAL}.extrinsic.transform": flat(c.T_ego_cam @ OPENCV_FROM_WAYMO_CAM), f"{CAL}.width": K.width,
                      f"{CAL}.height": K.height, f"{CAL}.rolling_shutter_direction": GLOBAL_SHUTTER})
    pq.write_table(table("camera_calibration", calib), path("camera_calibration"))
    incl = np.sort(np.radians(_elevations_deg(log.lidar)))
    pq.write_table(table("lidar_calibration", [{SEG: segment, LASER: TOP, f"{LCAL}.extrinsic.transform": flat(T_ego_lidar),
                                                f"{LCAL}.beam_inclination.min": float(incl[0]), f"{LCAL}.beam_inclination.max": float(incl[-1]),
                                                f"{LCAL}.beam_inclination.values": incl.tolist()}]), path("lidar_calibration"))
    times = np.array([f.time for f in log.frames])
    poses = np.stack([f.T_world_ego for f in log.frames])
    pose_rows, box_rows = [], []
    labels = pq.ParquetWriter(path("camera_segmentation"), schemas["camera_segmentation"]) if log.has_semantics else nullcontext()
    with pq.ParquetWriter(path("camera_image"), schemas["camera_image"]) as images, \
            pq.ParquetWriter(path(POINTS_COMPONENT), schemas[POINTS_COMPONENT]) as points, labels, \
            JobProgress(f"export waymo {segment}", len(log.frames), enabled=progress) as bar:
        for i, f in enumerate(log.frames):
            ts = _micros(f.time)
            pose_rows.append({SEG: segment, TS: ts, f"{POSE}.world_from_vehicle.transform": flat(f.T_world_ego)})
            rows = []
            for c in log.cameras:
                t_img = f.image_times.get(c.name, f.time)
                T_we = f.T_world_cams[c.name] @ np.linalg.inv(c.T_ego_cam)
                v, w = _ego_velocity(times, poses, t_img)
                jpeg = iio.imwrite("<bytes>", iio.imread(f.image_paths[c.name])[..., :3], extension=".jpg", quality=95)
                t_epoch = _micros(t_img) / 1e6
                rows.append({SEG: segment, TS: ts, CAM: ids[c.name], f"{IMG}.image": jpeg, f"{IMG}.pose.transform": flat(T_we),
                             **{f"{IMG}.velocity.linear_velocity.{a}": float(x) for a, x in zip("xyz", v)},
                             **{f"{IMG}.velocity.angular_velocity.{a}": float(x) for a, x in zip("xyz", w)},
                             f"{IMG}.pose_timestamp": t_epoch, f"{IMG}.rolling_shutter_params.shutter": 0.0,
                             f"{IMG}.rolling_shutter_params.camera_trigger_time": t_epoch,
                             f"{IMG}.rolling_shutter_params.camera_readout_done_time": t_epoch})
            images.write_table(table("camera_image", rows))  # one row group per frame
            if log.has_semantics:
                labels.write_table(table("camera_segmentation", [
                    {SEG: segment, TS: ts, CAM: ids[c.name], f"{SEGL}.panoptic_label_divisor": PANOPTIC_DIVISOR,
                     f"{SEGL}.panoptic_label": panoptic_png(log.load_semantic(f.semantic_paths[c.name])), f"{SEGL}.sequence_id": segment}
                    for c in log.cameras]))
            scan = np.load(f.lidar_path).astype(np.float64)
            hit = np.isfinite(scan[:, 3])
            xyz = (scan[hit, :3] * scan[hit, 3:]) @ T_ego_lidar[:3, :3].T + T_ego_lidar[:3, 3]  # vehicle frame
            misses = scan[~hit, :3] @ T_ego_lidar[:3, :3].T  # directions of the rays that returned nothing
            points.write_table(table(POINTS_COMPONENT, [{SEG: segment, TS: ts, LASER: TOP,
                                                         **{f"{PTS}.{what}.{a}": v[:, k].astype(np.float32).tolist()
                                                            for what, v in (("points", xyz), ("misses", misses)) for k, a in enumerate("xyz")}}]))
            box_rows += _frame_boxes(log, f, segment, ts, xyz @ f.T_world_ego[:3, :3].T + f.T_world_ego[:3, 3])
            bar.update(i + 1)
    pq.write_table(table("vehicle_pose", pose_rows), path("vehicle_pose"))
    pq.write_table(table("lidar_box", box_rows), path("lidar_box"))


def _elevations_deg(lidar: dict) -> np.ndarray:
    if lidar.get("elevations_deg") is not None:
        return np.asarray(lidar["elevations_deg"], dtype=np.float64)
    return np.linspace(float(lidar["min_elevation_deg"]), float(lidar["max_elevation_deg"]), int(lidar["n_beams"]))


def _ego_velocity(times: np.ndarray, poses: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear (m/s) and angular (rad/s) velocity of the ego in the world at ``t``: central
    differences of the frame poses around it (one-sided at the ends; zeros for a one-frame log)."""
    from scipy.spatial.transform import Rotation

    if len(times) < 2:
        return np.zeros(3), np.zeros(3)
    i = int(np.clip(np.searchsorted(times, t), 1, len(times) - 1))
    a, b = (i - 1, i + 1) if 0 < i < len(times) - 1 and abs(times[i] - t) < 1e-9 else (i - 1, i)
    dt = times[b] - times[a]
    v = (poses[b][:3, 3] - poses[a][:3, 3]) / dt
    w = Rotation.from_matrix(poses[b][:3, :3] @ poses[a][:3, :3].T).as_rotvec() / dt
    return v, w


def _frame_boxes(log: CaptureLog, f, segment: str, ts: int, returns_world: np.ndarray) -> list[dict]:
    """lidar_box rows of one frame: every car / pedestrian within `ANNOTATION_RANGE` of the ego."""
    T_vehicle_world = np.linalg.inv(f.T_world_ego)
    rows, h = [], 0.05
    for a in log.scene.actors:
        if a.class_name not in ("car", "pedestrian"):
            continue
        T = a.track.pose_at(f.time)
        if np.linalg.norm(T[:3, 3] - f.T_world_ego[:3, 3]) > ANNOTATION_RANGE:
            continue
        T_vb = T_vehicle_world @ T
        p_prev, p_next = a.track.pose_at(f.time - h)[:3, 3], a.track.pose_at(f.time + h)[:3, 3]
        speed = T_vehicle_world[:3, :3] @ ((p_next - p_prev) / (2 * h))
        accel = T_vehicle_world[:3, :3] @ ((p_next - 2 * T[:3, 3] + p_prev) / h ** 2)
        local = (returns_world - T[:3, 3]) @ T[:3, :3]
        n = int(np.all(np.abs(local) <= np.asarray(a.size) / 2, axis=1).sum())
        level = 2 if n <= 5 else 1  # Waymo: boxes with 5 or fewer LiDAR points are LEVEL_2
        rows.append({SEG: segment, TS: ts, OBJ: a.actor_id, **{f"{BOX}.box.center.{k}": float(v) for k, v in zip("xyz", T_vb[:3, 3])},
                     **{f"{BOX}.box.size.{k}": float(v) for k, v in zip("xyz", a.size)},
                     f"{BOX}.box.heading": float(np.arctan2(T_vb[1, 0], T_vb[0, 0])),
                     f"{BOX}.type": 1 if a.class_name == "car" else 2, f"{BOX}.num_lidar_points_in_box": n,
                     f"{BOX}.num_top_lidar_points_in_box": n, **{f"{BOX}.speed.{k}": float(v) for k, v in zip("xyz", speed)},
                     **{f"{BOX}.acceleration.{k}": float(v) for k, v in zip("xyz", accel)},
                     f"{BOX}.difficulty_level.detection": level, f"{BOX}.difficulty_level.tracking": level})
    return rows


def _split_root(src: Path, segment: str | None) -> tuple[Path, str]:
    """The split folder (``src`` itself when it holds camera_image/, else its split sub-folder that
    has ``segment``) and the segment (default: the only / first one there)."""
    if (src / "camera_image").is_dir():
        roots = [src]
    else:
        roots = sorted(p for p in src.iterdir() if (p / "camera_image").is_dir()) if src.is_dir() else []
    if not roots:
        raise InputError(src, None, "not a Waymo v2 dataset: expected camera_image/, camera_calibration/, vehicle_pose/... "
                                    "(or a split folder such as training/ holding them)")
    found = {r: sorted(p.stem for p in (r / "camera_image").glob("*.parquet")) for r in roots}
    if segment is None:
        if len(roots) > 1:
            raise InputError(src, "--segment", f"several splits here ({[r.name for r in roots]}): name the segment")
        if not found[roots[0]]:
            raise InputError(roots[0] / "camera_image", None, "no segment (.parquet) files")
        return roots[0], found[roots[0]][0]
    for r in roots:
        if segment in found[r]:
            return r, segment
    raise InputError("--segment", None, f"no segment '{segment}'; segments: {sorted(s for v in found.values() for s in v)}")


# ---- import -----------------------------------------------------------------------------------------
def import_waymo(src: str | Path, out: str | Path, segment: str | None = None, cameras: tuple[str, ...] | None = None,
                 start: float = 0.0, duration: float | None = None, overwrite: bool = False) -> ImportSummary:
    """Read one segment of a Waymo v2 dataset (``src``: the split folder or the folder holding it;
    ``segment`` default the only / first one) into a capture log at ``out`` (module docstring).
    ``cameras``: Waymo camera names (FRONT, FRONT_LEFT...; default every calibrated camera);
    ``start`` / ``duration`` (seconds from the segment's first frame) cut a part of it."""
    root, segment = _split_root(Path(src), segment)
    comp = lambda name: root / name / f"{segment}.parquet"  # noqa: E731
    poses = _vehicle_poses(comp("vehicle_pose"), segment)
    rig, ids = _cameras(comp("camera_calibration"), segment, cameras)
    images = RowIndex(comp("camera_image"), [TS, CAM], [f"{IMG}.pose.transform", f"{IMG}.pose_timestamp"], [f"{IMG}.image"], segment)
    frames = sorted({ts for ts, cam in images.where if cam in ids.values()})
    if not frames:
        raise InputError(comp("camera_image"), CAM, f"no image of cameras {list(ids)} in segment {segment}")
    base0 = frames[0]
    end = np.inf if duration is None else start + duration
    frames = [ts for ts in frames if start - 1e-6 <= (ts - base0) / 1e6 <= end + 1e-6]
    if not frames:
        raise InputError("--start/--duration", None, "no frame in that part of the segment")
    base = frames[0]
    shots = _image_times_and_poses(comp("camera_image"), images, frames, ids, poses, base)
    lidar = TopLidar(root, segment, poses)
    labels = SegmentationLabels.of(comp("camera_segmentation"), segment, [(ts, ids[c.name]) for ts in frames for c in rig])
    actors, skipped = _tracks(comp("lidar_box"), segment, poses, set(frames), base)
    extent = SceneExtent()
    header = {"T_ego_lidar": lidar.T_ego_lidar, **lidar.pattern, "returns_only": True}
    ego_votes: dict[str, list] = {}
    with CaptureLogWriter(out, segment, rig, header, {}, overwrite, semantics=labels is not None) as writer, \
            JobProgress(f"import waymo {segment}", len(frames)) as bar:
        for n, ts in enumerate(frames):
            pictures = {spec.name: _jpeg(images, comp("camera_image"), ts, ids[spec.name], spec) for spec in rig}
            shot_labels = {} if labels is None else {spec.name: labels.classes(ts, ids[spec.name], spec) for spec in rig}
            for name, (_, ego) in shot_labels.items():
                if ego is not None:  # votes for the ego mask: how often each pixel sees the ego vehicle
                    votes = ego_votes.setdefault(name, [np.zeros(ego.shape, np.int64), 0])
                    votes[0] += ego
                    votes[1] += 1
            scan = lidar.scan(ts)
            T_world_ego = poses[ts]
            extent.add(T_world_ego @ lidar.T_ego_lidar, T_world_ego[:3, 3], scan)
            writer.add_frame((ts - base) / 1e6, T_world_ego, pictures, scan, semantics={name: c for name, (c, _) in shot_labels.items()} or None, image_times={c: shots[ts][c][0] for c in ids},
                             image_ego_poses={c: shots[ts][c][1] for c in ids})
            bar.update(n + 1)
        for name, (count, labelled) in ego_votes.items():
            if (2 * count > labelled).any():  # the ego vehicle in at least half of the camera's labelled images
                writer.set_mask(name, 2 * count <= labelled)
        path = writer.close(SceneGraph(actors=tuple(actors), aabb=extent.aabb()))
    return ImportSummary(path, len(frames), [s.name for s in rig], len(actors), skipped)


def _vehicle_poses(path: Path, segment: str) -> dict[int, np.ndarray]:
    col = f"{POSE}.world_from_vehicle.transform"
    rows = read_component(path, [TS, col], segment)
    poses = {}
    for ts, m in zip(rows[TS], rows[col]):
        if ts in poses:
            raise InputError(path, TS, f"two vehicle poses for frame {ts}")
        poses[ts] = transform_of(m, path, col, f"frame {ts}")
    if not poses:
        raise InputError(path, SEG, f"no vehicle pose of segment {segment}")
    return poses


def _cameras(path: Path, segment: str, names: tuple[str, ...] | None) -> tuple[list[CaptureCamera], dict[str, int]]:
    """The rig (Waymo camera names, ``T_ego_cam`` in OpenCV axes, lenses) and camera name -> id."""
    cols = [CAM, *[f"{CAL}.intrinsic.{k}" for k in INTRINSIC], f"{CAL}.extrinsic.transform", f"{CAL}.width", f"{CAL}.height"]
    rows = read_component(path, cols, segment)
    calib = {}
    for i, cid in enumerate(rows[CAM]):
        name = CAMERA_NAMES.get(cid, f"CAMERA_{cid}")
        if name in calib:
            raise InputError(path, CAM, f"camera {name} calibrated twice")
        calib[name] = {c: rows[c][i] for c in cols}
    if not calib:
        raise InputError(path, SEG, f"no camera calibration of segment {segment}")
    want = sorted(calib, key=lambda n: calib[n][CAM]) if names is None else [n.upper() for n in names]
    rig, ids = [], {}
    for name in want:
        if name not in calib:
            raise InputError("--cameras", None, f"no camera '{name}'; the segment's cameras: {sorted(calib)}")
        r = calib[name]
        f_u, f_v, c_u, c_v, *dist = [r[f"{CAL}.intrinsic.{k}"] for k in INTRINSIC]
        w, h = r[f"{CAL}.width"], r[f"{CAL}.height"]
        if None in (f_u, f_v, c_u, c_v, w, h) or not (f_u > 0 and f_v > 0 and w > 0 and h > 0):
            raise InputError(path, f"{CAL}.intrinsic", f"camera {name}: expected positive f_u, f_v, width, height and a centre")
        dist = tuple(float(k or 0.0) for k in dist)
        K = Intrinsics(int(w), int(h), float(f_u), float(f_v), float(c_u), float(c_v))
        lens = CameraModel("opencv", K.width, K.height, K.fx, K.fy, K.cx, K.cy, dist) if any(dist) else None
        T = transform_of(r[f"{CAL}.extrinsic.transform"], path, f"{CAL}.extrinsic.transform", f"camera {name}")
        rig.append(CaptureCamera(name, K, T @ np.linalg.inv(OPENCV_FROM_WAYMO_CAM), lens))
        ids[name] = r[CAM]
    return rig, ids


def _image_times_and_poses(path: Path, images: RowIndex, frames: list[int], ids: dict, poses: dict, base: int) -> dict:
    """frame -> camera -> (time from ``base`` in s, T_world_ego of the image), checked: every frame
    has a vehicle pose and every camera's image, and each camera's images advance in time."""
    out, last = {}, {}
    for ts in frames:
        if ts not in poses:
            raise InputError(path, TS, f"frame {ts} has images but no vehicle pose (vehicle_pose)")
        out[ts] = {}
        for name, cid in ids.items():
            meta = images.meta.get((ts, cid))
            if meta is None:
                raise InputError(path, CAM, f"frame {ts} has no image of camera {name}")
            t_pose, m = meta[f"{IMG}.pose_timestamp"], meta[f"{IMG}.pose.transform"]
            # pose_timestamp: float seconds since the epoch, whose float64 keeps ~0.2 us: back to Waymo's microseconds
            t = (ts - base) / 1e6 if t_pose is None else (round(t_pose * 1e6) - base) / 1e6
            T = poses[ts] if m is None else transform_of(m, path, f"{IMG}.pose.transform", f"frame {ts} camera {name}")
            if name in last and t <= last[name]:
                raise InputError(path, f"{IMG}.pose_timestamp", f"camera {name}: images out of time order at frame {ts}")
            last[name] = t
            out[ts][name] = (t, T)
    return out


def _jpeg(images: RowIndex, path: Path, ts: int, cid: int, spec: CaptureCamera) -> np.ndarray:
    data = images.get((ts, cid))[f"{IMG}.image"].as_py()
    try:
        img = np.asarray(iio.imread(data, extension=".jpg"))
    except Exception as e:  # noqa: BLE001 - any undecodable image is bad input
        raise InputError(path, f"{IMG}.image", f"frame {ts} camera {spec.name}: not a readable JPEG ({e})") from None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.shape[:2] != (spec.intrinsics.height, spec.intrinsics.width):
        raise InputError(path, f"{IMG}.image", f"frame {ts} camera {spec.name}: image is {img.shape[1]}x{img.shape[0]}, "
                                               f"the calibration says {spec.intrinsics.width}x{spec.intrinsics.height}")
    return img[..., :3].astype(np.uint8)


def _tracks(path: Path, segment: str, poses: dict, frames: set, base: int) -> tuple[list, dict]:
    """Actors of the lidar_box component (none when it is missing): one per ``laser_object_id`` of an
    actor class, keyframed at its boxes in ``frames``, named by order of first appearance."""
    if not path.is_file():
        return [], {}
    cols = [TS, OBJ, *[f"{BOX}.box.{p}.{a}" for p in ("center", "size") for a in "xyz"], f"{BOX}.box.heading", f"{BOX}.type"]
    rows = read_component(path, cols, segment)
    per_object: dict[str, list] = {}
    skipped: dict[str, int] = {}
    for i, ts in enumerate(rows[TS]):
        if ts not in poses:
            raise InputError(path, TS, f"box of object {rows[OBJ][i]} at frame {ts}: no vehicle pose at that time")
        if ts not in frames:
            continue
        kind = rows[f"{BOX}.type"][i]
        if kind not in CLASS_OF_TYPE:
            name = BOX_TYPES.get(kind, f"TYPE_{kind}")
            skipped[name] = skipped.get(name, 0) + 1
            continue
        values = [rows[c][i] for c in cols[2:9]]
        if any(v is None or not np.isfinite(v) for v in values) or min(values[3:6]) <= 0:
            raise InputError(path, f"{BOX}.box", f"object {rows[OBJ][i]} at frame {ts}: expected finite numbers and a positive size")
        cx, cy, cz, sx, sy, sz, heading = values
        T = poses[ts] @ make_pose(rot_z(heading), np.array([cx, cy, cz]))
        per_object.setdefault(rows[OBJ][i], []).append(((ts - base) / 1e6, T, (sx, sy, sz), CLASS_OF_TYPE[kind]))
    order = sorted(per_object, key=lambda k: (min(r[0] for r in per_object[k]), k))
    actors = []
    for n, obj in enumerate(order, start=1):
        cls = per_object[obj][0][3]
        actors.append(actor_from_boxes(f"{cls}_{n:03d}", cls, n, [r[:3] for r in per_object[obj]], path, f"{OBJ} {obj}"))
    return actors, skipped
