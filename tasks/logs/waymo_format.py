"""The Waymo Open Dataset v2 parquet layer of `tasks.logs.waymo`, with pyarrow alone: the official
column names and arrow types of the components nerfsim reads and writes (as the waymo-open-dataset
package flattens its dataclasses: ``key.*`` keys, ``[XyzComponent].field.sub`` fields), reading a
segment's rows of a component (small ones whole, big ones row by row through `RowIndex`), the
range-image geometry (Waymo's ``extract_point_cloud_from_range_image`` in numpy) and the TOP laser's
sweeps (`TopLidar`), and the camera_segmentation panoptic labels as nerfsim classes
(`SegmentationLabels`, `panoptic_png`). Conventions: the docstring of `tasks.logs.waymo`."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from scenes.classes import UNLABELLED
from scenes.errors import InputError
from scenes.transforms import rigid_pose
from tasks.logs.common import class_lut, label_lut, points_to_rays, rpy_matrix

SEG, TS, CAM, LASER, OBJ = ("key.segment_context_name", "key.frame_timestamp_micros", "key.camera_name", "key.laser_name",
                            "key.laser_object_id")
IMG, CAL, POSE, BOX, LCAL = ("[CameraImageComponent]", "[CameraCalibrationComponent]", "[VehiclePoseComponent]",
                             "[LiDARBoxComponent]", "[LiDARCalibrationComponent]")
RI, RI_POSE, PTS = "[LiDARComponent]", "[LiDARPoseComponent]", "[NerfsimLiDARPointCloudComponent]"
SEGL = "[CameraSegmentationLabelComponent]"
POINTS_COMPONENT = "nerfsim_lidar_pointcloud"
CAMERA_NAMES = {1: "FRONT", 2: "FRONT_LEFT", 3: "FRONT_RIGHT", 4: "SIDE_LEFT", 5: "SIDE_RIGHT"}
BOX_TYPES = {0: "TYPE_UNKNOWN", 1: "TYPE_VEHICLE", 2: "TYPE_PEDESTRIAN", 3: "TYPE_SIGN", 4: "TYPE_CYCLIST"}
SEGMENTATION_CLASSES = {0: None, 1: None, 2: "car", 3: "car", 4: "car", 5: "car", 6: None, 7: None, 8: "car", 9: "pedestrian",
                        10: None, 11: None, 12: None, 13: None, 14: "pole", 15: "pole", 16: None, 17: None, 18: None,
                        19: "building", 20: "road", 21: "lane_marking", 22: "road", 23: "sidewalk", 24: "tree", 25: "sky",
                        26: None, 27: None, 28: None}
"""nerfsim class of each camera_segmentation type (``CameraSegmentation.Type``: 1 EGO_VEHICLE, 2 CAR, 3 TRUCK,
4 BUS, 5 OTHER_LARGE_VEHICLE, 8 TRAILER, 9 PEDESTRIAN, 14 CONSTRUCTION_CONE_POLE, 15 POLE, 19 BUILDING,
20 ROAD, 21 LANE_MARKER, 22 ROAD_MARKER, 23 SIDEWALK, 24 VEGETATION, 25 SKY...); None: unlabelled
(`scenes.classes.UNLABELLED`: undefined, the ego's own body, bicycles and their riders (not actors
here), animals, signs, traffic lights, bare ground, "dynamic" and "static")."""
SEGMENTATION_TYPE_OF_CLASS = {"sky": 25, "road": 20, "lane_marking": 21, "sidewalk": 23, "building": 19, "pole": 15, "tree": 24,
                              "car": 2, "pedestrian": 9}
"""What the exporter writes for each nerfsim class (each maps back to it)."""
EGO_VEHICLE_TYPE = 1
"""camera_segmentation's TYPE_EGO_VEHICLE: the pixels that see the car the camera is mounted on."""
PANOPTIC_DIVISOR = 1000
"""``panoptic_label = type * divisor + instance`` (the exporter writes instance 0: class labels only)."""
TOP = 1
TOP_PATTERN = {"n_beams": 64, "n_azimuth": 2650, "max_range": 75.0}
"""Waymo's TOP LiDAR: 64 beams, 2650 range-image columns, 75 m (what LiDAR renders of an imported drive use)."""
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
        POINTS_COMPONENT: [(SEG, pa.string()), (TS, pa.int64()), (LASER, i8), *xyz(f"{PTS}.points", pa.list_(f32)),
                           *xyz(f"{PTS}.misses", pa.list_(f32))],
        "camera_segmentation": [(SEG, pa.string()), (TS, pa.int64()), (CAM, i8), (f"{SEGL}.panoptic_label_divisor", pa.int32()),
                                (f"{SEGL}.panoptic_label", pa.binary()), (f"{SEGL}.sequence_id", pa.string())],
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


# ---- camera segmentation (panoptic labels) ----------------------------------------------------------
def panoptic_png(classes: np.ndarray) -> bytes:
    """A 16-bit PNG of ``type * PANOPTIC_DIVISOR`` for nerfsim class ids ``[H, W]`` (unlabelled: TYPE_UNDEFINED)."""
    lut = label_lut({name: t * PANOPTIC_DIVISOR for name, t in SEGMENTATION_TYPE_OF_CLASS.items()}, 0, np.uint16)
    return iio.imwrite("<bytes>", lut[classes], extension=".png")


class SegmentationLabels:
    """The camera_segmentation component of a segment: each image's panoptic label as nerfsim class
    ids (`SEGMENTATION_CLASSES`); an image without a label row (Waymo labels
    some segments, at 5 Hz) is all `scenes.classes.UNLABELLED`."""

    def __init__(self, path: Path, segment: str):
        self.path = path
        self.rows = RowIndex(path, [TS, CAM], [f"{SEGL}.panoptic_label_divisor"], [f"{SEGL}.panoptic_label"], segment)

    @staticmethod
    def of(path: Path, segment: str, keys: list[tuple]) -> "SegmentationLabels | None":
        """The component when it is there and labels one of the images ``keys`` (frame, camera id)."""
        if not path.is_file():
            return None
        labels = SegmentationLabels(path, segment)
        return labels if any(k in labels.rows.where for k in keys) else None

    def classes(self, ts: int, cid: int, spec) -> tuple[np.ndarray, np.ndarray | None]:
        """Image (frame ``ts``, camera ``cid``)'s class ids ``[H, W]`` and where it sees the ego vehicle
        (bool ``[H, W]``; None for an unlabelled image)."""
        shape = (spec.intrinsics.height, spec.intrinsics.width)
        if (ts, cid) not in self.rows.where:
            return np.full(shape, UNLABELLED, np.uint8), None
        where = f"frame {ts} camera {spec.name}"
        divisor = self.rows.meta[(ts, cid)][f"{SEGL}.panoptic_label_divisor"]
        if not isinstance(divisor, int) or divisor <= 0:
            raise InputError(self.path, f"{SEGL}.panoptic_label_divisor", f"{where}: expected a positive integer, got {divisor}")
        try:
            panoptic = np.asarray(iio.imread(self.rows.get((ts, cid))[f"{SEGL}.panoptic_label"].as_py(), extension=".png"))
        except Exception as e:  # noqa: BLE001 - any undecodable label is bad input
            raise InputError(self.path, f"{SEGL}.panoptic_label", f"{where}: not a readable PNG ({e})") from None
        if panoptic.shape != shape:
            raise InputError(self.path, f"{SEGL}.panoptic_label", f"{where}: a {'x'.join(map(str, panoptic.shape[::-1]))} label, "
                                                                  f"the calibration says {shape[1]}x{shape[0]}")
        types = panoptic.astype(np.int64) // divisor
        return class_lut(SEGMENTATION_CLASSES, max(int(types.max()) + 1, 256))[types], types == EGO_VEHICLE_TYPE


# ---- the TOP laser ----------------------------------------------------------------------------------
class TopLidar:
    """The TOP laser of a segment: its calibration (``T_ego_lidar``, the header's scan pattern) and
    its returns per frame, from the ``lidar`` range images (+ ``lidar_pose``) or the nerfsim
    point-cloud extension; no LiDAR component: empty sweeps."""

    def __init__(self, root: Path, segment: str, poses: dict):
        self.poses, self.rows, self.pose_rows, self.points = poses, None, None, None
        path = root / "lidar_calibration" / f"{segment}.parquet"
        self.T_ego_lidar = np.eye(4)
        self.inclinations: np.ndarray | None = None
        self.inclination_range = (np.radians(-17.6), np.radians(2.4))  # the TOP laser's, if the calibration has none
        self.pattern = {**TOP_PATTERN, "min_elevation_deg": -17.6, "max_elevation_deg": 2.4, "elevations_deg": None}
        if path.is_file():
            cols = [LASER, f"{LCAL}.extrinsic.transform", f"{LCAL}.beam_inclination.min", f"{LCAL}.beam_inclination.max"]
            values = f"{LCAL}.beam_inclination.values"
            rows = read_component(path, cols + ([values] if values in open_component(path, cols).schema_arrow.names else []), segment)
            if TOP not in rows[LASER]:
                raise InputError(path, LASER, f"no calibration of the TOP laser ({TOP}) in segment {segment}")
            i = rows[LASER].index(TOP)
            self.T_ego_lidar = transform_of(rows[f"{LCAL}.extrinsic.transform"][i], path, f"{LCAL}.extrinsic.transform", "laser TOP")
            lo, hi = rows[f"{LCAL}.beam_inclination.min"][i], rows[f"{LCAL}.beam_inclination.max"][i]
            if rows.get(values) and rows[values][i]:
                self.inclinations = np.asarray(rows[values][i], dtype=np.float64)
                deg = np.degrees(self.inclinations)
                self.pattern.update(n_beams=len(deg), min_elevation_deg=float(deg.min()), max_elevation_deg=float(deg.max()),
                                    elevations_deg=[float(v) for v in deg])
            elif lo is not None and hi is not None:
                self.inclination_range = (float(lo), float(hi))
                self.pattern.update(min_elevation_deg=float(np.degrees(lo)), max_elevation_deg=float(np.degrees(hi)))
        if (root / "lidar" / f"{segment}.parquet").is_file():
            ri = [f"{RI}.range_image_return1.values", f"{RI}.range_image_return1.shape"]
            self.rows = RowIndex(root / "lidar" / f"{segment}.parquet", [TS, LASER], [], ri, segment)
            if (root / "lidar_pose" / f"{segment}.parquet").is_file():
                rp = [f"{RI_POSE}.range_image_return1.values", f"{RI_POSE}.range_image_return1.shape"]
                self.pose_rows = RowIndex(root / "lidar_pose" / f"{segment}.parquet", [TS, LASER], [], rp, segment)
        elif (root / POINTS_COMPONENT / f"{segment}.parquet").is_file():
            path_points = root / POINTS_COMPONENT / f"{segment}.parquet"
            misses = [f"{PTS}.misses.{a}" for a in "xyz"]
            cols = [f"{PTS}.points.{a}" for a in "xyz"] + (misses if misses[0] in open_component(path_points, []).schema_arrow.names else [])
            self.points = RowIndex(path_points, [TS, LASER], [], cols, segment)
        if (self.rows or self.points) and not path.is_file():
            raise InputError(path, None, "component file missing (the LiDAR data needs its calibration)")

    def scan(self, ts: int) -> np.ndarray:
        """Capture-log rows ``[N, 4]`` (LiDAR frame) of frame ``ts``'s TOP sweep: its returns, then its
        empty rays (range inf)."""
        if self.points is not None:
            xyz, misses = self._extension_points(ts)
        elif self.rows is not None:
            xyz, misses = self._range_image_points(ts)
        else:
            return np.zeros((0, 4), np.float32)
        T = np.linalg.inv(self.T_ego_lidar)
        sky = np.concatenate([misses @ T[:3, :3].T, np.full((len(misses), 1), np.inf)], 1).astype(np.float32)
        return np.concatenate([points_to_rays(xyz @ T[:3, :3].T + T[:3, 3]), sky])

    def _extension_points(self, ts: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``ts``'s returns and empty rays' directions (vehicle frame) from the nerfsim extension
        (`POINTS_COMPONENT`; exports older than its ``misses`` lists have returns only)."""
        if (ts, TOP) not in self.points.where:
            raise InputError(self.points.path, TS, f"frame {ts} has no TOP LiDAR points")
        row = self.points.get((ts, TOP))
        out = []
        for what in ("points", "misses"):
            if f"{PTS}.{what}.x" not in row:
                out.append(np.zeros((0, 3)))
                continue
            xyz = [list_values(row[f"{PTS}.{what}.{a}"]) for a in "xyz"]
            if any(v is None for v in xyz) or len({len(v) for v in xyz}) != 1:
                raise InputError(self.points.path, f"{PTS}.{what}", f"frame {ts}: expected lists x, y, z of one length")
            out.append(np.stack(xyz, axis=1).astype(np.float64).reshape(-1, 3))
        return out[0], out[1]

    def _range_image_points(self, ts: int) -> tuple[np.ndarray, np.ndarray]:
        """Frame ``ts``'s TOP returns (vehicle frame) and its upward empty rays' directions
        (`tasks.logs.waymo_format.range_image_misses`; the vehicle's turn during the sweep, under 2
        deg, is not taken out of them)."""
        path = self.rows.path
        if (ts, TOP) not in self.rows.where:
            raise InputError(path, TS, f"frame {ts} has no TOP range image")
        ri = tensor_of(self.rows.get((ts, TOP)), f"{RI}.range_image_return1", path, ts)
        pixel_pose = None
        if self.pose_rows is not None and (ts, TOP) in self.pose_rows.where:
            pixel_pose = tensor_of(self.pose_rows.get((ts, TOP)), f"{RI_POSE}.range_image_return1", self.pose_rows.path, ts)
            if pixel_pose.shape[:2] != ri.shape[:2] or pixel_pose.shape[2] != 6:
                raise InputError(self.pose_rows.path, f"{RI_POSE}.range_image_return1.shape",
                                 f"frame {ts}: expected [{ri.shape[0]}, {ri.shape[1]}, 6], got {list(pixel_pose.shape)}")
        incl = self.inclinations if self.inclinations is not None else inclinations_from_range(*self.inclination_range, ri.shape[0])
        if len(incl) != ri.shape[0]:
            raise InputError(path, f"{RI}.range_image_return1.shape", f"frame {ts}: {ri.shape[0]} rows, the calibration has {len(incl)} beams")
        return (range_image_points(ri[..., 0], self.T_ego_lidar, incl, pixel_pose, self.poses[ts] if ts in self.poses else None),
                range_image_misses(ri[..., 0], self.T_ego_lidar, incl))
