"""Argoverse 2 sensor-dataset logs to and from nerfsim capture logs (the files read with pyarrow;
the official ``av2`` API reads what the exporter writes, tests/tasks/test_av2.py).

An AV2 sensor log is a folder ``<split>/<log_id>/`` (split train / val / test, log id a UUID)::

    city_SE3_egovehicle.feather         timestamp_ns qw qx qy qz tx_m ty_m tz_m: ego -> city, a row per sensor timestamp
    calibration/egovehicle_SE3_sensor.feather   sensor_name qw qx qy qz tx_m ty_m tz_m: sensor -> ego
    calibration/intrinsics.feather      sensor_name fx_px fy_px cx_px cy_px k1 k2 k3 height_px width_px
    sensors/cameras/<camera>/<timestamp_ns>.jpg   ring_front_center, ring_front_left, ... (20 Hz), stereo_front_left / _right
    sensors/lidar/<timestamp_ns>.feather          x y z intensity laser_number offset_ns: one sweep, ego frame (10 Hz)
    annotations.feather                 timestamp_ns track_uuid category length_m width_m height_m qw qx qy qz tx_m ty_m tz_m
                                        num_interior_pts: boxes in the ego frame at LiDAR timestamps
    map/                                the HD map (neither read nor written)

Conventions, AV2's (as ``av2`` reads them):

- the city frame: metres, z up (an imported log's world is the city frame as it is); the ego frame x
  forward, y left, z up (nerfsim's axes; AV2's origin is the rear axle's centre); quaternions
  (w, x, y, z); times integer nanoseconds, every sensor reading with its own;
- cameras: OpenCV axes (x right, y down, z forward), so ``egovehicle_SE3_sensor`` of a camera is
  nerfsim's ``T_ego_cam``; intrinsics with pixel centres at integers (nerfsim's are at + 0.5). ``av2``
  projects with the pinhole K and no distortion, and so does the importer (k1..k3 are not applied;
  the exporter writes zeros and takes pinhole cameras only);
- LiDAR: two stacked VLP-32C, ``up_lidar`` and ``down_lidar`` (laser numbers 0-31 and 32-63), one
  sweep's returns of both in the ego frame at the sweep's timestamp;
- a box: centre ``t``, orientation ``q`` (box -> ego) at a LiDAR timestamp, length along its x axis
  (nerfsim's actor frame);
- classes: REGULAR_VEHICLE, LARGE_VEHICLE, BOX_TRUCK, TRUCK, TRUCK_CAB, BUS, ARTICULATED_BUS,
  SCHOOL_BUS, VEHICULAR_TRAILER -> car; PEDESTRIAN, OFFICIAL_SIGNALER -> pedestrian; the rest
  (bicycles, riders, cones, signs, animals...) is counted, not imported.

Import: a frame per LiDAR sweep, with each camera's image nearest to it (within 25 ms, ``av2``'s
synchronisation tolerance) at that image's own time; the ego pose at any time is the pose table's row
at that timestamp, or SLERP between its neighbours. Both LiDARs' returns become rays from
``up_lidar`` (the capture log's one LiDAR): down_lidar returns keep their exact end points, their
rays start centimetres from where they did; the upward beams' empty rays (the sky) are rebuilt
from the returns' ``laser_number`` (`tasks.logs.common.sky_misses`). Annotations become an actor
track per ``track_uuid`` in the city frame (SLERP between annotated sweeps). The ring cameras fire at 20 Hz, twice per
sweep: ``between_sweeps`` also imports the images between two sweeps (outside both sweeps' 25 ms),
as frames of their own without a LiDAR sweep (a frame per such image of the first camera, with
every camera's image nearest to it).

Export: every frame of a capture log is a LiDAR sweep at ``BASE_NS`` + its time, every image is
written at its own time, with an ego pose row at each of those timestamps; images as JPEG (what
``av2`` reads) at quality 100 without chroma subsampling; ``up_lidar`` and ``down_lidar`` both at
``T_ego_lidar``; LiDAR x y z as float32 (AV2 ships float16, centimetres at 50 m; ``av2`` reads
either), intensity 0, laser_number the beam of a full-pattern sweep (else 0), offset_ns 0 (an
instantaneous sweep); a box for every car / pedestrian actor within ``ANNOTATION_RANGE`` of the ego
at every sweep, with the sweep's returns inside it. The exported ego frame is nerfsim's (origin on
the ground under the vehicle's centre).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from scenes.camera import Intrinsics
from scenes.capture import CaptureCamera, CaptureLog, CaptureLogWriter
from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.progress import JobProgress
from scenes.transforms import invert_pose, make_pose, matrix_to_quat, quat_to_matrix
from tasks.logs.common import ImportSummary, SceneExtent, actor_from_boxes, export_atomically, read_rgb, sky_misses

POSES = "city_SE3_egovehicle.feather"
EXTRINSICS = "calibration/egovehicle_SE3_sensor.feather"
INTRINSICS = "calibration/intrinsics.feather"
ANNOTATIONS = "annotations.feather"
RING = ("ring_front_center", "ring_front_left", "ring_front_right", "ring_side_left", "ring_side_right", "ring_rear_left",
        "ring_rear_right")
STEREO = ("stereo_front_left", "stereo_front_right")
RIG_NAMES = {"front": "ring_front_center", "front_left": "ring_front_left", "front_right": "ring_front_right",
             "left": "ring_side_left", "side_left": "ring_side_left", "right": "ring_side_right", "side_right": "ring_side_right",
             "rear_left": "ring_rear_left", "rear_right": "ring_rear_right"}
"""A rig camera's AV2 name (the exporter's default; a camera already named as in AV2 keeps its name)."""
CLASSES = {"car": "REGULAR_VEHICLE", "pedestrian": "PEDESTRIAN"}
VEHICLES = ("REGULAR_VEHICLE", "LARGE_VEHICLE", "BOX_TRUCK", "TRUCK", "TRUCK_CAB", "BUS", "ARTICULATED_BUS", "SCHOOL_BUS",
            "VEHICULAR_TRAILER")
PEOPLE = ("PEDESTRIAN", "OFFICIAL_SIGNALER")
BASE_NS = 315_970_000_000_000_000
"""Time 0 of an exported log, in nanoseconds (AV2-like: its timestamps are about 3.16e17)."""
SYNC_NS = 25_000_000
"""The farthest an image may be from its sweep (``av2``'s synchronisation: half the cameras' 50 ms interval)."""
ANNOTATION_RANGE = 150.0
"""Metres from the ego within which the exporter writes boxes (AV2's detection evaluation range)."""
VLP32C = {"n_beams": 32, "min_elevation_deg": -25.0, "max_elevation_deg": 15.0, "n_azimuth": 1800, "max_range": 200.0,
          "elevations_deg": None}
"""The scan pattern of AV2's Velodyne VLP-32C (what LiDAR renders of an imported drive use)."""
QUAT, TRANS = ("qw", "qx", "qy", "qz"), ("tx_m", "ty_m", "tz_m")


def nerfsim_class(category: str) -> str | None:
    """nerfsim's class of an AV2 annotation category (None: not an actor class)."""
    return "car" if category in VEHICLES else "pedestrian" if category in PEOPLE else None


# ---- feather tables ---------------------------------------------------------------------------------
def _read_table(path: Path, columns: dict[str, str]) -> dict[str, np.ndarray]:
    """Columns of a feather table, ``name -> kind``: 'int' (integers), 'float' (finite numbers) or
    'str'; `InputError` naming the file and the column when one is missing or wrong."""
    import pyarrow as pa
    from pyarrow import feather

    if not path.is_file():
        raise InputError(path, None, "table missing")
    try:
        table = feather.read_table(path, memory_map=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(path, None, f"not a readable feather table ({type(e).__name__}: {e})") from None
    out = {}
    for name, kind in columns.items():
        if name not in table.column_names:
            raise InputError(path, name, f"column missing (the table has {', '.join(table.column_names)})")
        col = table.column(name)
        if col.null_count:
            raise InputError(path, name, f"row {int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])}: no value")
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if kind == "int":
            if not pa.types.is_integer(t):
                raise InputError(path, name, f"expected integers, got {col.type}")
            out[name] = col.to_numpy().astype(np.int64)
        elif kind == "float":
            if not (pa.types.is_floating(t) or pa.types.is_integer(t)):
                raise InputError(path, name, f"expected numbers, got {col.type}")
            values = col.to_numpy().astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise InputError(path, name, f"row {bad[0]}: expected a finite number, got {values[bad[0]]}")
            out[name] = values
        else:
            if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
                raise InputError(path, name, f"expected text, got {col.type}")
            out[name] = np.asarray(col.to_pylist(), dtype=object)
    return out


def _write_table(path: Path, columns: dict[str, np.ndarray | list]) -> None:
    import pyarrow as pa
    from pyarrow import feather

    path.parent.mkdir(parents=True, exist_ok=True)
    text = {k for k, v in columns.items() if isinstance(v, list) and (not v or isinstance(v[0], str))}
    feather.write_feather(pa.table({k: pa.array(v, type=pa.string() if k in text else None) for k, v in columns.items()}), str(path))


def _poses_of(path: Path, c: dict) -> np.ndarray:
    """``[N, 4, 4]`` of the q / t columns, `InputError` for a quaternion that is not unit length."""
    q = np.stack([c[k] for k in QUAT], axis=1)
    norm = np.linalg.norm(q, axis=1)
    bad = np.flatnonzero(np.abs(norm - 1.0) > 1e-2)
    if bad.size:
        raise InputError(path, "qw, qx, qy, qz", f"row {bad[0]}: expected a unit quaternion, its length is {norm[bad[0]]:.6g}")
    return make_pose(quat_to_matrix(q), np.stack([c[k] for k in TRANS], axis=1))


def _pose_columns(T: np.ndarray) -> dict:
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    q = np.stack([matrix_to_quat(R) for R in T[:, :3, :3]])
    return {**{k: q[:, i] for i, k in enumerate(QUAT)}, **{k: T[:, i, 3] for i, k in enumerate(TRANS)}}


POSE_SPEC = {k: "float" for k in QUAT + TRANS}


class EgoPoses:
    """``city_SE3_egovehicle.feather``: the ego pose at any timestamp between its first and last row
    (the row itself, or SLERP / linear between its neighbours)."""

    def __init__(self, path: Path):
        c = _read_table(path, {"timestamp_ns": "int", **POSE_SPEC})
        ts = c["timestamp_ns"]
        if not len(ts):
            raise InputError(path, "timestamp_ns", "no rows")
        bad = np.flatnonzero(np.diff(ts) <= 0)
        if bad.size:
            i = bad[0] + 1
            raise InputError(path, "timestamp_ns", f"row {i}: {ts[i]} does not come after row {i - 1}'s {ts[i - 1]} "
                                                   "(timestamps out of order or repeated)")
        T = _poses_of(path, c)
        self.path, self.ts = path, ts
        self.track = ActorTrack.from_poses((ts - ts[0]) / 1e9, T)

    def at(self, ts: int, what: str) -> np.ndarray:
        """``T_world_ego`` at ``ts`` ns; ``what`` (e.g. "LiDAR sweep 315...") names the reading in an error."""
        if not self.ts[0] <= ts <= self.ts[-1]:
            raise InputError(self.path, "timestamp_ns", f"no ego pose at or around {what} ({ts} ns): the rows cover "
                                                        f"{self.ts[0]}..{self.ts[-1]}")
        return self.track.pose_at((ts - self.ts[0]) / 1e9)


# ---- export -----------------------------------------------------------------------------------------
def av2_camera_names(log: CaptureLog, cameras: dict | None = None) -> dict[str, str]:
    """Rig camera -> AV2 camera name: ``cameras`` where it says, else `RIG_NAMES`, else the rig name
    when it is an AV2 name already."""
    names = {}
    for c in log.cameras:
        name = (cameras or {}).get(c.name) or RIG_NAMES.get(c.name) or c.name
        if name not in RING + STEREO:
            raise InputError(log.root / "log.json", f"cameras.{c.name}", f"no AV2 camera name for it: name it with one of {RING + STEREO}")
        names[c.name] = name
    if len(set(names.values())) < len(names):
        raise InputError(log.root / "log.json", "cameras", f"two rig cameras would share an AV2 name: {names}")
    return names


def _nanos(t: float) -> int:
    return BASE_NS + int(round(t * 1e9))


def export_av2(log: CaptureLog, out: str | Path, split: str = "val", log_id: str | None = None,
               cameras: dict | None = None, progress: bool = True) -> Path:
    """Write ``log`` as AV2 sensor log ``out/split/log_id`` (module docstring), atomically: ``out``
    appears whole or not at all. ``log_id`` defaults to a UUID made from the log's name; ``cameras``
    maps rig camera names to AV2 ones (default `RIG_NAMES`). Cameras must be pinhole. Returns the log
    folder (``out/split/log_id``)."""
    names = av2_camera_names(log, cameras)
    log_id = log_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"nerfsim:{log.name}"))
    export_atomically(log, log.cameras, out, "AV2", lambda tmp: _write_log(log, names, tmp / split / log_id, progress))
    return Path(out) / split / log_id


def _write_log(log: CaptureLog, names: dict[str, str], root: Path, progress: bool) -> None:
    T_ego_lidar = np.asarray(log.lidar["T_ego_lidar"], dtype=np.float64)
    poses: dict[int, np.ndarray] = {}

    def pose_row(ts: int, T: np.ndarray, what: str) -> None:
        if ts in poses and not np.allclose(poses[ts], T, atol=1e-9):
            raise InputError(log.root / "log.json", what, f"a different ego pose at the same time ({ts} ns) as another reading")
        poses[ts] = T

    for name in names.values():
        (root / "sensors" / "cameras" / name).mkdir(parents=True)
    (root / "sensors" / "lidar").mkdir(parents=True)
    boxes = []
    with JobProgress(f"export av2 {log.name}", len(log.frames), enabled=progress) as bar:
        for i, f in enumerate(log.frames):
            ts = _nanos(f.time)
            pose_row(ts, f.T_world_ego, f"frames[{i}].T_world_ego")
            for c in log.cameras:
                ts_img = _nanos(f.image_times.get(c.name, f.time))
                pose_row(ts_img, f.T_world_cams[c.name] @ invert_pose(c.T_ego_cam), f"frames[{i}].images.{c.name}")
                img = np.asarray(iio.imread(f.image_paths[c.name]))[..., :3]
                iio.imwrite(root / "sensors" / "cameras" / names[c.name] / f"{ts_img}.jpg", img, quality=100, subsampling=0)
            pts, beams = _sweep_points(log, f, T_ego_lidar)
            _write_table(root / "sensors" / "lidar" / f"{ts}.feather", {
                "x": pts[:, 0].astype(np.float32), "y": pts[:, 1].astype(np.float32), "z": pts[:, 2].astype(np.float32),
                "intensity": np.zeros(len(pts), np.uint8), "laser_number": beams.astype(np.uint8),
                "offset_ns": np.zeros(len(pts), np.uint32)})
            boxes += _boxes(log, f, ts, pts)
            bar.update(i + 1)
    order = sorted(poses)
    _write_table(root / POSES, {"timestamp_ns": np.asarray(order, np.int64), **_pose_columns(np.stack([poses[t] for t in order]))})
    sensors = {names[c.name]: c.T_ego_cam for c in log.cameras} | {"up_lidar": T_ego_lidar, "down_lidar": T_ego_lidar}
    _write_table(root / EXTRINSICS, {"sensor_name": list(sensors), **_pose_columns(np.stack(list(sensors.values())))})
    K = [c.intrinsics for c in log.cameras]
    _write_table(root / INTRINSICS, {
        "sensor_name": [names[c.name] for c in log.cameras], "fx_px": [k.fx for k in K], "fy_px": [k.fy for k in K],
        "cx_px": [k.cx - 0.5 for k in K], "cy_px": [k.cy - 0.5 for k in K], "k1": [0.0] * len(K), "k2": [0.0] * len(K),
        "k3": [0.0] * len(K), "height_px": np.array([k.height for k in K], np.int64), "width_px": np.array([k.width for k in K], np.int64)})
    cols = ("timestamp_ns", "track_uuid", "category", "length_m", "width_m", "height_m", *QUAT, *TRANS, "num_interior_pts")
    table = {k: [b[k] for b in boxes] for k in cols}
    for k in ("timestamp_ns", "num_interior_pts"):
        table[k] = np.asarray(table[k], np.int64)
    for k in cols[3:-1]:
        table[k] = np.asarray(table[k], np.float64)
    _write_table(root / ANNOTATIONS, table)


def _sweep_points(log: CaptureLog, f, T_ego_lidar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The frame's LiDAR returns in the ego frame ``[N, 3]`` and each one's beam (0 for a point cloud
    of returns, whose rows are no scan pattern)."""
    scan = np.load(f.lidar_path).astype(np.float64)
    hit = np.isfinite(scan[:, 3])
    pts = (scan[hit, :3] * scan[hit, 3:4]) @ T_ego_lidar[:3, :3].T + T_ego_lidar[:3, 3]
    n_az = log.lidar.get("n_azimuth")
    full = not log.lidar.get("returns_only") and n_az and len(scan) == int(log.lidar["n_beams"]) * int(n_az)
    beams = np.arange(len(scan)) // int(n_az) if full else np.zeros(len(scan), np.int64)
    return pts, beams[hit]


def _boxes(log: CaptureLog, f, ts: int, pts_ego: np.ndarray) -> list[dict]:
    """Annotation rows of the frame's car / pedestrian actors within range, in the ego frame."""
    T_ego_world = invert_pose(f.T_world_ego)
    rows = []
    for a in log.scene.actors:
        if a.class_name not in CLASSES:
            continue
        T = T_ego_world @ a.track.pose_at(f.time)
        if np.linalg.norm(T[:3, 3]) > ANNOTATION_RANGE:
            continue
        local = (pts_ego - T[:3, 3]) @ T[:3, :3]
        inside = np.all(np.abs(local) <= np.asarray(a.size) / 2, axis=1)
        pose = {k: float(v[0]) for k, v in _pose_columns(T).items()}
        rows.append({"timestamp_ns": ts, "track_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"nerfsim:{log.name}:{a.actor_id}")),
                     "category": CLASSES[a.class_name], "length_m": a.size[0], "width_m": a.size[1], "height_m": a.size[2],
                     **pose, "num_interior_pts": int(inside.sum())})
    return rows


# ---- import -----------------------------------------------------------------------------------------
def _is_log(d: Path) -> bool:
    return (d / POSES).is_file() or (d / "calibration").is_dir() or (d / "sensors").is_dir()


def find_log(src: Path, log_id: str | None) -> Path:
    """The log folder: ``src`` itself, or the log named ``log_id`` (default: the only one) in
    ``src`` or a split folder of it."""
    if not src.is_dir():
        raise InputError(src, None, "no such folder")
    if _is_log(src) and log_id in (None, src.name):
        return src
    found = [d for d in sorted(src.glob("*")) + sorted(src.glob("*/*")) if d.is_dir() and _is_log(d)]
    ids = [d.name for d in found]
    if log_id is not None:
        match = [d for d in found if d.name == log_id]
        if not match:
            raise InputError("--log-id", None, f"no log '{log_id}' under {src} (logs: {ids[:10] or 'none'})")
        return match[0]
    if len(found) != 1:
        raise InputError(src, "--log-id", f"expected one AV2 log to pick, found {ids[:10] if found else 'none'} (a log folder "
                                          f"holds {POSES}, calibration/ and sensors/)")
    return found[0]


def _timestamps(folder: Path, suffix: str) -> np.ndarray:
    """Sorted timestamps of the ``<timestamp_ns><suffix>`` files of a sensor folder."""
    if not folder.is_dir():
        raise InputError(folder, None, "sensor folder missing")
    out = []
    for p in folder.glob(f"*{suffix}"):
        if not p.name[: -len(suffix)].isdigit():
            raise InputError(p, None, f"expected a file named <timestamp_ns>{suffix}")
        out.append(int(p.name[: -len(suffix)]))
    return np.asarray(sorted(out), dtype=np.int64)


def _rig(root: Path, names: list[str]) -> tuple[list[CaptureCamera], np.ndarray]:
    """The chosen cameras (intrinsics + ``T_ego_cam``) and ``T_ego_lidar`` (up_lidar's pose)."""
    path = root / EXTRINSICS
    c = _read_table(path, {"sensor_name": "str", **POSE_SPEC})
    poses = dict(zip(c["sensor_name"], _poses_of(path, c)))
    for name in names + ["up_lidar"]:
        if name not in poses:
            raise InputError(path, "sensor_name", f"no row for {name} (rows: {', '.join(poses)})")
    path = root / INTRINSICS
    k = _read_table(path, {"sensor_name": "str", "fx_px": "float", "fy_px": "float", "cx_px": "float", "cy_px": "float",
                           "height_px": "int", "width_px": "int"})
    rows = {n: i for i, n in enumerate(k["sensor_name"])}
    rig = []
    for name in names:
        if name not in rows:
            raise InputError(path, "sensor_name", f"no row for {name}")
        i = rows[name]
        for col in ("fx_px", "fy_px", "height_px", "width_px"):
            if k[col][i] <= 0:
                raise InputError(path, col, f"row {i} ({name}): expected a positive value, got {k[col][i]}")
        intr = Intrinsics(int(k["width_px"][i]), int(k["height_px"][i]), float(k["fx_px"][i]), float(k["fy_px"][i]),
                          float(k["cx_px"][i]) + 0.5, float(k["cy_px"][i]) + 0.5)
        rig.append(CaptureCamera(name, intr, poses[name]))
    return rig, poses["up_lidar"]


def _sweep(path: Path, T_lidar_ego: np.ndarray) -> np.ndarray:
    """A sweep (ego-frame points) as capture-log rows ``[N, 4]`` from the LiDAR at ``T_lidar_ego``
    (points at the sensor itself are dropped), then its upward beams' empty rays rebuilt from the
    returns' ``laser_number`` (`tasks.logs.common.sky_misses`; both LiDARs' lasers seen from
    up_lidar, as ``av2``'s own range view takes them)."""
    c = _read_table(path, {"x": "float", "y": "float", "z": "float", "laser_number": "int"})
    xyz = np.stack([c["x"], c["y"], c["z"]], axis=1) @ T_lidar_ego[:3, :3].T + T_lidar_ego[:3, 3]
    r = np.linalg.norm(xyz, axis=1)
    ok = r > 1e-3
    dirs = xyz[ok] / r[ok, None]
    returns = np.concatenate([dirs, r[ok, None]], axis=1).astype(np.float32)
    return np.concatenate([returns, sky_misses(dirs, c["laser_number"][ok])])


def import_av2(src: str | Path, out: str | Path, log_id: str | None = None, cameras: tuple[str, ...] | None = None,
               start: float = 0.0, duration: float | None = None, overwrite: bool = False, progress: bool = True,
               between_sweeps: bool = False) -> ImportSummary:
    """Read an AV2 sensor log into a capture log at ``out`` (module docstring). ``src``: the log
    folder, a split folder or the dataset root (``log_id`` picks the log: default the only one);
    ``cameras``: AV2 camera names (default every ring camera the log has); ``start`` / ``duration``
    (seconds from the first LiDAR sweep) cut a part of it; ``between_sweeps``: also the images
    between sweeps, as frames without a sweep."""
    root = find_log(Path(src), log_id)
    lidar_dir, cam_dir = root / "sensors" / "lidar", root / "sensors" / "cameras"
    sweeps = _timestamps(lidar_dir, ".feather")
    if not len(sweeps):
        raise InputError(lidar_dir, None, "no LiDAR sweeps (<timestamp_ns>.feather)")
    have = [d.name for d in sorted(cam_dir.iterdir()) if d.is_dir()] if cam_dir.is_dir() else []
    names = [n for n in RING if n in have] if cameras is None else list(cameras)
    if not names:
        raise InputError(cam_dir, None, f"no ring camera folders ({', '.join(RING)})")
    for n in names:
        if n not in have:
            raise InputError("--cameras", None, f"no camera '{n}' in {cam_dir} (cameras: {have or 'none'})")
    rel = (sweeps - sweeps[0]) / 1e9
    end = np.inf if duration is None else start + duration
    keep = sweeps[(rel >= start - 1e-6) & (rel <= end + 1e-6)]
    if not len(keep):
        raise InputError("--start/--duration", None, f"no LiDAR sweep in that part of the log (it lasts {rel[-1]:g} s)")
    rig, T_ego_lidar = _rig(root, names)
    poses = EgoPoses(root / POSES)
    shots: list[dict] = [{} for _ in keep]  # per kept sweep: camera -> its image's timestamp
    images_of = {name: _timestamps(cam_dir / name, ".jpg") for name in names}
    for name, ts in images_of.items():
        if not len(ts):
            raise InputError(cam_dir / name, None, "no images (<timestamp_ns>.jpg)")
        for n, (sweep, shot) in enumerate(zip(keep, _nearest(ts, keep))):
            if abs(int(shot) - int(sweep)) > SYNC_NS:
                raise InputError(cam_dir / name, None, f"no image within {SYNC_NS / 1e6:g} ms of the LiDAR sweep at {sweep} ns "
                                                       f"(nearest: {shot}.jpg)")
            shots[n][name] = int(shot)
    frames = [(int(sweep), shot, True) for sweep, shot in zip(keep, shots)]  # (time ns, camera -> image, has a sweep)
    if between_sweeps:
        frames = sorted(frames + _frames_between_sweeps(keep, images_of, names), key=lambda f: f[0])
    base = int(keep[0])
    actors, skipped = _tracks(root / ANNOTATIONS, poses, int(keep[0]), int(keep[-1]), base)
    lidar = {"T_ego_lidar": T_ego_lidar, **VLP32C, "returns_only": True}
    extent = SceneExtent()
    T_lidar_ego = invert_pose(T_ego_lidar)
    with CaptureLogWriter(out, f"av2 {root.name}", rig, lidar, {}, overwrite) as writer, \
            JobProgress(f"import av2 {root.name}", len(frames), enabled=progress) as bar:
        for n, (t_ns, frame_shots, has_sweep) in enumerate(frames):
            images, times, ego = {}, {}, {}
            for spec in rig:
                shot = frame_shots[spec.name]
                images[spec.name] = read_rgb(cam_dir / spec.name / f"{shot}.jpg", spec.intrinsics.width, spec.intrinsics.height)
                times[spec.name] = (shot - base) / 1e9
                ego[spec.name] = poses.at(shot, f"image {spec.name}/{shot}.jpg")
            T_world_ego = poses.at(t_ns, f"LiDAR sweep {t_ns}" if has_sweep else f"image {rig[0].name}/{t_ns}.jpg")
            scan = _sweep(lidar_dir / f"{t_ns}.feather", T_lidar_ego) if has_sweep else np.zeros((0, 4), np.float32)
            extent.add(T_world_ego @ T_ego_lidar, T_world_ego[:3, 3], scan)
            writer.add_frame((t_ns - base) / 1e9, T_world_ego, images, scan, image_times=times, image_ego_poses=ego)
            bar.update(n + 1)
        path = writer.close(SceneGraph(actors=tuple(actors), aabb=extent.aabb()))
    return ImportSummary(path, len(frames), names, len(actors), skipped)


def _nearest(ts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The timestamp of sorted ``ts`` nearest to each of ``targets``."""
    j = np.clip(np.searchsorted(ts, targets), 1, max(len(ts) - 1, 1))
    before, after = ts[j - 1], ts[np.minimum(j, len(ts) - 1)]
    return np.where(np.abs(targets - before) <= np.abs(after - targets), before, after)


def _frames_between_sweeps(sweeps: np.ndarray, images_of: dict, names: list[str]) -> list[tuple]:
    """Frames without a sweep: each image of the first camera ``names[0]`` strictly between two
    sweeps and outside both their `SYNC_NS` windows, with every camera's image nearest to it (which
    must be outside those windows too; a slot where one is missing is skipped)."""
    out = []
    for s0, s1 in zip(sweeps[:-1], sweeps[1:]):
        lo, hi = int(s0) + SYNC_NS, int(s1) - SYNC_NS
        first = images_of[names[0]]
        for t in first[(first > lo) & (first < hi)]:
            shots = {name: int(_nearest(images_of[name], np.array([t]))[0]) for name in names}
            if all(lo < shot < hi for shot in shots.values()):
                out.append((int(t), shots, False))
    return out


def _tracks(path: Path, poses: EgoPoses, first: int, last: int, base: int) -> tuple[list[Actor], dict]:
    """One actor per ``track_uuid`` of an actor class, keyframed at its boxes between the ``first``
    and ``last`` kept sweeps (times from ``base``). No annotations file (AV2's test split): none."""
    if not path.exists():
        return [], {}
    c = _read_table(path, {"timestamp_ns": "int", "track_uuid": "str", "category": "str", "length_m": "float", "width_m": "float",
                           "height_m": "float", **POSE_SPEC})
    for col in ("length_m", "width_m", "height_m"):
        bad = np.flatnonzero(c[col] <= 0)
        if bad.size:
            raise InputError(path, col, f"row {bad[0]}: expected a positive size in metres, got {c[col][bad[0]]}")
    T_ego_box = _poses_of(path, c)
    per_track: dict[str, list] = {}
    skipped: dict[str, int] = {}
    for i in np.flatnonzero((c["timestamp_ns"] >= first) & (c["timestamp_ns"] <= last)):
        category, ts = c["category"][i], int(c["timestamp_ns"][i])
        cls = nerfsim_class(category)
        if cls is None:
            skipped[category] = skipped.get(category, 0) + 1
            continue
        T_world_box = poses.at(ts, f"{ANNOTATIONS} row {i}") @ T_ego_box[i]
        size = (c["length_m"][i], c["width_m"][i], c["height_m"][i])
        per_track.setdefault(c["track_uuid"][i], []).append(((ts - base) / 1e9, T_world_box, size, cls))
    actors = []
    for n, (token, rows) in enumerate(sorted(per_track.items(), key=lambda kv: min(r[0] for r in kv[1])), start=1):
        classes = {r[3] for r in rows}
        if len(classes) > 1:
            raise InputError(path, "category", f"track {token} changes class ({sorted(classes)})")
        cls = rows[0][3]
        actors.append(actor_from_boxes(f"{cls}_{n:03d}", cls, n, [r[:3] for r in rows], path, f"track_uuid {token}"))
    return actors, skipped
