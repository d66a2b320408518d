"""The Waymo Open Dataset v2 parquet layer of `tasks.logs.waymo`, with pyarrow alone: the official
column names and arrow types of the components nerfsim reads and writes (as the waymo-open-dataset
package flattens its dataclasses: ``key.*`` keys, ``[XyzComponent].field.sub`` fields), reading a
segment's rows of a component (small ones whole, big ones row by row through `RowIndex`), and the
range-image geometry (Waymo's ``extract_point_cloud_from_range_image`` in numpy). Conventions: the
docstring of `tasks.logs.waymo`."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from scenes.errors import InputError
from scenes.transforms import rigid_pose
from tasks.logs.common import rpy_matrix

SEG, TS, CAM, LASER, OBJ = ("key.segment_context_name", "key.frame_timestamp_micros", "key.camera_name", "key.laser_name",
                            "key.laser_object_id")
IMG, CAL, POSE, BOX, LCAL = ("[CameraImageComponent]", "[CameraCalibrationComponent]", "[VehiclePoseComponent]",
                             "[LiDARBoxComponent]", "[LiDARCalibrationComponent]")
RI, RI_POSE, PTS = "[LiDARComponent]", "[LiDARPoseComponent]", "[NerfsimLiDARPointCloudComponent]"
POINTS_COMPONENT = "nerfsim_lidar_pointcloud"
CAMERA_NAMES = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
BOX_TYPES = {0: "TYPE_UNKNOWN", 1: "TYPE_VEHICLE", 2: "TYPE_PEDESTRIAN", 3: "TYPE_SIGN", 4: "TYPE_CYCLIST"}
TOP = 1
GLOBAL_SHUTTER = 5
INTRINSIC = ("f_u", "f_v", "c_u", "c_v", "k1", "k2", "p1", "p2", "k3")
OPENCV_FROM_WAYMO_CAM = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
"""``p_opencv = OPENCV_FROM_WAYMO_CAM @ p_waymo_cam`` (x right = -y left, y down = -z up, z = x forward)."""

def arrow():
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pa, pq


def flat(T: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(T, dtype=np.float64).reshape(16)]


def component_schemas() -> dict:
    """Component folder name -> arrow schema of what the exporter writes (official names and types;
    `POINTS_COMPONENT` is nerfsim's extension)."""
    pa, _ = arrow()
    f64, f32, i8, mat = pa.float64(), pa.float32(), pa.int8(), pa.list_(pa.float64(), 16)
    xyz = lambda prefix, t: [(f"{prefix}.{a}", t) for a in "xyz"]  # noqa: E731
    return {name: pa.schema(fields) for name, fields in {
        "camera_image": [(SEG, pa.string()), (TS, pa.int64()), (CAM, i8), (f"{IMG}.image", pa.binary()),
                         (f"{IMG}.pose.transform", mat), *xyz(f"{IMG}.velocity.linear_velocity", f32),
                         *xyz(f"{IMG}.velocity.angular_velocity", f64), (f"{IMG}.pose_timestamp", f64),
                         *[(f"{IMG}.rolling_shutter_params.{k}", f64) for k in ("shutter", "camera_trigger_time", "camera_readout_done_time")]],
        "camera_calibration": [(SEG, pa.string()), (CAM, i8), *[(f"{CAL}.intrinsic.{k}", f64) for k in INTRINSIC],
                               (f"{CAL}.extrinsic.transform", mat), (f"{CAL}.width", pa.int32()), (f"{CAL}.height", pa.int32()),
                               (f"{CAL}.rolling_shutter_direction", i8)],
        "vehicle_pose": [(SEG, pa.string()), (TS, pa.int64()), (f"{POSE}.world_from_vehicle.transform", mat)],
        "lidar_calibration": [(SEG, pa.string()), (LASER, i8), (f"{LCAL}.extrinsic.transform", mat),
                              (f"{LCAL}.beam_inclination.min", f64), (f"{LCAL}.beam_inclination.max", f64),
                              (f"{LCAL}.beam_inclination.values", pa.list_(f64))],
        "lidar_box": [(SEG, pa.string()), (TS, pa.int64()), (OBJ, pa.string()), *xyz(f"{BOX}.box.center", f64),
                      *xyz(f"{BOX}.box.size", f64), (f"{BOX}.box.heading", f64), (f"{BOX}.type", i8),
                      (f"{BOX}.num_lidar_points_in_box", pa.int64()), (f"{BOX}.num_top_lidar_points_in_box", pa.int64()),
                      *xyz(f"{BOX}.speed", f64), *xyz(f"{BOX}.acceleration", f64),
                      (f"{BOX}.difficulty_level.detection", i8), (f"{BOX}.difficulty_level.tracking", i8)],
        POINTS_COMPONENT: [(SEG, pa.string()), (TS, pa.int64()), (LASER, i8), *xyz(f"{PTS}.points", pa.list_(f32))],
    }.items()}


def open_component(path: Path, columns: list[str]):
    """The parquet file of a component, its ``columns`` checked to be there."""
    _, pq = arrow()
    if not path.is_file():
        raise InputError(path, None, "component file missing")
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(path, None, f"not a readable parquet file ({e})") from None
    have = set(pf.schema_arrow.names)
    for c in columns:
        if c not in have:
            raise InputError(path, c, "column missing")
    return pf


def read_component(path: Path, columns: list[str], segment: str) -> dict[str, list]:
    """The ``columns`` of a (small) component's rows of ``segment``, as Python lists, row group by row group."""
    pf = open_component(path, [SEG, *columns])
    out = {c: [] for c in columns}
    for g in range(pf.num_row_groups):
        t = pf.read_row_group(g, columns=[SEG, *columns])
        keep = [i for i, s in enumerate(t.column(SEG).to_pylist()) if s == segment]
        for c in columns:
            values = t.column(c).to_pylist()
            out[c] += [values[i] for i in keep]
    return out


class RowIndex:
    """The rows of a (big) component file by key, for one segment: an index pass reads only the key
    and ``meta`` columns; `get` then reads ``columns`` of one row, a row group at a time (the last two
    kept), so images and range images stream."""

    def __init__(self, path: Path, keys: list[str], meta: list[str], columns: list[str], segment: str):
        self.path, self.columns = path, columns
        self.pf = open_component(path, [SEG, *keys, *meta, *columns])
        self.where: dict[tuple, tuple[int, int]] = {}
        self.meta: dict[tuple, dict] = {}
        for g in range(self.pf.num_row_groups):
            t = self.pf.read_row_group(g, columns=[SEG, *keys, *meta])
            cols = {c: t.column(c).to_pylist() for c in [*keys, *meta]}
            for i, s in enumerate(t.column(SEG).to_pylist()):
                if s != segment:
                    continue
                key = tuple(cols[k][i] for k in keys)
                if key in self.where:
                    raise InputError(path, ", ".join(keys), f"two rows for {dict(zip(keys, key))}")
                self.where[key] = (g, i)
                self.meta[key] = {c: cols[c][i] for c in meta}
        self._groups: OrderedDict = OrderedDict()

    def get(self, key: tuple) -> dict:
        g, i = self.where[key]
        if g not in self._groups:
            self._groups[g] = self.pf.read_row_group(g, columns=self.columns)
            while len(self._groups) > 2:
                self._groups.popitem(last=False)
        t = self._groups[g]
        return {c: t.column(c)[i] for c in self.columns}


def transform_of(value, path: Path, column: str, where: str) -> np.ndarray:
    if value is None or len(value) != 16:
        raise InputError(path, column, f"{where}: expected 16 numbers (a row-major 4x4 transform)")
    return rigid_pose(np.asarray(value, dtype=np.float64).reshape(4, 4), path, f"{column} ({where})")


def list_values(cell) -> np.ndarray | None:
    """A list cell (a pyarrow list scalar) as a numpy array, without a Python list between; None when null."""
    return cell.values.to_numpy(zero_copy_only=False) if cell.is_valid else None


def tensor_of(row: dict, prefix: str, path: Path, ts: int) -> np.ndarray:
    """A range-image-like cell pair ``prefix.values`` / ``prefix.shape`` of a `RowIndex` row as an array of that shape."""
    values, shape = list_values(row[f"{prefix}.values"]), row[f"{prefix}.shape"].as_py()
    if values is None or shape is None or len(shape) != 3 or int(np.prod(shape)) != len(values):
        raise InputError(path, f"{prefix}.shape", f"frame {ts}: {0 if values is None else len(values)} values do not fill shape {shape}")
    return np.asarray(values, dtype=np.float32).reshape(shape)


def inclinations_from_range(lo: float, hi: float, height: int) -> np.ndarray:
    """Beam inclinations (radians, ascending) spread evenly between ``lo`` and ``hi`` at row centres
    (Waymo's ``compute_inclination``, when a calibration has no ``values``)."""
    return lo + (np.arange(height) + 0.5) / height * (hi - lo)


def range_image_points(ranges: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray, pixel_pose: np.ndarray | None = None,
                       T_world_vehicle: np.ndarray | None = None) -> np.ndarray:
    """The returns of a range image ``ranges [H, W]`` (<= 0: none) as points ``[N, 3]`` in the vehicle
    frame, row-major (module docstring: Waymo's ``extract_point_cloud_from_range_image``).
    ``inclinations``: ascending, one per beam; ``pixel_pose [H, W, 6]`` (roll, pitch, yaw, x, y, z
    of the vehicle in the world per pixel) moves each return to the vehicle frame of
    ``T_world_vehicle``."""
    rows, cols = np.nonzero(ranges > 0)
    d = _pixel_directions(rows, cols, ranges.shape[1], extrinsic, inclinations)
    p = d * ranges[rows, cols].astype(np.float64)[:, None] + extrinsic[:3, 3]
    if pixel_pose is not None:
        if T_world_vehicle is None:
            raise ValueError("pixel_pose needs the frame's T_world_vehicle")
        pp = pixel_pose[rows, cols].astype(np.float64)
        p_world = np.einsum("nij,nj->ni", rpy_matrix(pp[:, 0], pp[:, 1], pp[:, 2]), p) + pp[:, 3:6]
        T_vw = np.linalg.inv(T_world_vehicle)
        p = p_world @ T_vw[:3, :3].T + T_vw[:3, 3]
    return p


def range_image_misses(ranges: np.ndarray, extrinsic: np.ndarray, inclinations: np.ndarray, min_inclination_deg: float = 2.0) -> np.ndarray:
    """Unit directions ``[M, 3]`` (vehicle frame) of a range image's upward pixels (beam inclination at
    least ``min_inclination_deg``) that returned nothing, and neither did their neighbours in azimuth
    (next to a return, an empty pixel is as likely a dropout as the sky): the rays that tell training
    space is empty. Downward pixels without a return are left out (a black car, a window)."""
    empty = ranges <= 0
    alone = empty & np.roll(empty, 1, axis=1) & np.roll(empty, -1, axis=1)
    up = np.degrees(np.asarray(inclinations, dtype=np.float64)[::-1]) >= min_inclination_deg  # row 0 is the highest beam
    rows, cols = np.nonzero(alone & up[:, None])
    return _pixel_directions(rows, cols, ranges.shape[1], extrinsic, inclinations)


def _pixel_directions(rows: np.ndarray, cols: np.ndarray, width: int, extrinsic: np.ndarray, inclinations: np.ndarray) -> np.ndarray:
    """Unit directions ``[N, 3]`` in the vehicle frame of range-image pixels (module docstring)."""
    az_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    azimuth = ((width - np.arange(width) - 0.5) / width * 2.0 - 1.0) * np.pi - az_correction
    incl = np.asarray(inclinations, dtype=np.float64)[::-1]  # row 0 is the highest beam
    a, e = azimuth[cols], incl[rows]
    d = np.stack([np.cos(a) * np.cos(e), np.sin(a) * np.cos(e), np.sin(e)], axis=1)
    return d @ extrinsic[:3, :3].T
