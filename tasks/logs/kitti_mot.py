"""KITTI tracking (KITTI-MOT, the layout MARS reads) to and from nerfsim capture logs.

Layout (one sequence ``SEQ`` of ``training/`` or ``testing/``)::

    image_02/SEQ/000000.png    left colour camera (rectified)       image_03/SEQ/...  right, optional
    calib/SEQ.txt              P0..P3 (3x4), R_rect (3x3), Tr_velo_cam, Tr_imu_velo (3x4), row-major
    label_02/SEQ.txt           frame track_id type truncated occluded alpha bbox(4) h w l x y z rotation_y
    oxts/SEQ.txt               per frame 30 numbers: lat lon alt roll pitch yaw vn ve vf vl vu ...
    velodyne/SEQ/000000.bin    float32 [N, 4] x y z reflectance in the Velodyne frame

Conventions, KITTI's:

- Frames are 10 Hz (the tracking benchmark ships no timestamps): frame ``i`` is at ``i / 10`` s.
- The ego frame is the OXTS IMU's (x forward, y left, z up: nerfsim's ego axes; its origin is the
  IMU, not the ground). Ego poses follow the KITTI devkit (``convertOxtsToPose``, pykitti): Mercator
  with the scale of the first frame's latitude, ``R = Rz(yaw) Ry(pitch) Rx(roll)``, world x east,
  y north, z up, origin at the first frame's IMU position.
- ``Tr_imu_velo``: IMU -> Velodyne; ``Tr_velo_cam``: Velodyne -> camera 0; ``R_rect``: camera 0 ->
  rectified camera 0; ``P_k = K_k [I | b_k]`` projects rectified camera-0 points into image ``k``,
  so camera ``k`` sits at ``-b_k`` in the rectified camera-0 frame with its axes.
- Labels are in the rectified camera-0 frame: ``location`` the bottom-face centre, ``(h, w, l)``,
  ``rotation_y`` about the camera's y (down) axis (`sensors.boxes.kitti_box_to_cam`). Pixel centres
  are at integers in KITTI files (nerfsim's are at + 0.5: ``cx``, ``cy`` and boxes shift by 0.5).
- Classes: Car, Van, Truck -> car; Pedestrian, Person_sitting -> pedestrian; Cyclist, Tram, Misc,
  DontCare are not actors (counted in the import summary).

Semantic labels come from KITTI-STEP (the panoptic labels of the tracking sequences, for
``image_02``): ``panoptic_maps/{train,val}/SEQ/000000.png``, RGB, red the class (Cityscapes' 19
train ids: 0 road, 1 sidewalk, 2 building, 3 wall, 5 pole, 8 vegetation, 10 sky, 11 person, 13 car,
14 truck, 15 bus...; 255 void), green * 256 + blue the instance. `STEP_CLASSES` maps them to
nerfsim's; a frame without a map, and classes nerfsim has none for, are unlabelled.

The exporter writes a capture log's pinhole camera as ``image_02`` (the rectified camera 0 itself:
``R_rect`` = I, ``P2 = [K | 0]``), the ego poses as OXTS, every actor whose box is in the image as a
label line (6 decimals; ``occluded`` 3 = unknown, no rendering here), the LiDAR returns as Velodyne
points (reflectance 0), and a log's semantic labels as KITTI-STEP panoptic maps in
``kitti-step/panoptic_maps/train/SEQ/`` beside ``training/`` (lane markings as road: STEP has no
such class; instance 0).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from scenes.camera import Intrinsics
from scenes.capture import CaptureCamera, CaptureLog, CaptureLogWriter
from scenes.errors import InputError
from scenes.graph import Actor, SceneGraph
from scenes.progress import JobProgress
from scenes.transforms import make_pose
from sensors.boxes import BoxLabel, amodal_box, kitti_box_to_cam, kitti_pose
from scenes.classes import UNLABELLED
from tasks.logs.common import (ImportSummary, SceneExtent, actor_from_boxes, class_lut, export_atomically, label_lut, read_point_file,
                               read_rgb, rpy_matrix)
from tasks.scenarios.labels import kitti_tracking_lines, parse_kitti_tracking_line

FPS = 10.0
EARTH_RADIUS = 6378137.0
CLASS_MAP = {"Car": "car", "Van": "car", "Truck": "car", "Pedestrian": "pedestrian", "Person_sitting": "pedestrian"}
HDL64 = {"n_beams": 64, "min_elevation_deg": -24.9, "max_elevation_deg": 2.0, "n_azimuth": 2048, "max_range": 120.0,
         "elevations_deg": None}
"""The scan pattern of KITTI's Velodyne HDL-64E (what LiDAR renders of an imported drive use)."""
STEP_CLASSES = {0: "road", 1: "sidewalk", 2: "building", 3: "building", 5: "pole", 8: "tree", 10: "sky", 11: "pedestrian",
                13: "car", 14: "car", 15: "car"}
"""nerfsim class of each KITTI-STEP class id (walls count as buildings); the rest (fence, traffic
light and sign, terrain, rider, train, motorcycle, bicycle, 255 void) is unlabelled."""
STEP_ID_OF_CLASS = {"road": 0, "lane_marking": 0, "sidewalk": 1, "building": 2, "pole": 5, "tree": 8, "sky": 10, "pedestrian": 11, "car": 13}
"""What the exporter writes for each nerfsim class."""


# ---- OXTS <-> poses (KITTI devkit convention) -------------------------------------------------------
def _mercator(lat: float, lon: float, scale: float) -> tuple[float, float]:
    return scale * lon * np.pi * EARTH_RADIUS / 180.0, scale * EARTH_RADIUS * np.log(np.tan((90.0 + lat) * np.pi / 360.0))


def oxts_to_poses(oxts: np.ndarray) -> np.ndarray:
    """``T_world_imu [N, 4, 4]`` of OXTS rows ``[N, >= 6]`` (lat, lon, alt, roll, pitch, yaw), as
    the KITTI devkit computes them (module docstring)."""
    scale = np.cos(oxts[0, 0] * np.pi / 180.0)
    origin = None
    poses = []
    for lat, lon, alt, roll, pitch, yaw in oxts[:, :6]:
        t = np.array([*_mercator(lat, lon, scale), alt])
        origin = t if origin is None else origin
        poses.append(make_pose(rpy_matrix(roll, pitch, yaw), t - origin))
    return np.stack(poses)


def poses_to_oxts(T_world_ego: np.ndarray, lat0: float = 49.0, lon0: float = 8.4) -> np.ndarray:
    """OXTS rows ``[N, 30]`` whose `oxts_to_poses` are ``T_world_ego`` moved so the first frame is at
    the origin (the first frame at latitude ``lat0``, longitude ``lon0``; x east, y north).
    Velocities, accelerations and the status fields are zeros (not simulated)."""
    scale = np.cos(lat0 * np.pi / 180.0)
    mx0, my0 = _mercator(lat0, lon0, scale)
    rows = np.zeros((len(T_world_ego), 30))
    p0 = T_world_ego[0][:3, 3]
    for i, T in enumerate(T_world_ego):
        x, y, z = T[:3, 3] - p0 + [mx0, my0, 0.0]
        R = T[:3, :3]
        rows[i, 0] = np.degrees(2.0 * np.arctan(np.exp(y / (scale * EARTH_RADIUS)))) - 90.0
        rows[i, 1] = x * 180.0 / (np.pi * EARTH_RADIUS * scale)
        rows[i, 2] = z
        rows[i, 3] = np.arctan2(R[2, 1], R[2, 2])  # roll
        rows[i, 4] = np.arcsin(-np.clip(R[2, 0], -1.0, 1.0))  # pitch
        rows[i, 5] = np.arctan2(R[1, 0], R[0, 0])  # yaw
    return rows


# ---- calibration ------------------------------------------------------------------------------------
def parse_tracking_calib(path: Path) -> dict[str, np.ndarray]:
    """A KITTI tracking calib file: keys with or without a colon (``P2:``, ``R_rect``; the object
    benchmark's ``R0_rect`` / ``Tr_velo_to_cam`` / ``Tr_imu_to_velo`` are accepted too) as 4x4
    transforms (``R_rect`` padded) and 3x4 ``P*``."""
    aliases = {"R0_rect": "R_rect", "Tr_velo_to_cam": "Tr_velo_cam", "Tr_imu_to_velo": "Tr_imu_velo"}
    out = {}
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        tokens = line.replace(":", " ").split()
        if not tokens:
            continue
        key = aliases.get(tokens[0], tokens[0])
        try:
            values = np.array([float(t) for t in tokens[1:]])
        except ValueError:
            raise InputError(path, f"line {n} ({tokens[0]})", "expected numbers after the key") from None
        want = 9 if key == "R_rect" else 12
        if len(values) != want:
            raise InputError(path, key, f"expected {want} numbers, got {len(values)}")
        if key.startswith("P"):
            out[key] = values.reshape(3, 4)
        else:
            T = np.eye(4)
            if key == "R_rect":
                T[:3, :3] = values.reshape(3, 3)
            else:
                T[:3, :4] = values.reshape(3, 4)
            out[key] = T
    for key in ("P2", "R_rect", "Tr_velo_cam", "Tr_imu_velo"):
        if key not in out:
            raise InputError(path, key, "missing")
    return out


def camera_from_projection(P: np.ndarray, width: int, height: int) -> tuple[Intrinsics, np.ndarray]:
    """Intrinsics (nerfsim pixel centres) and ``T_cam_rect0`` of ``P = K [I | b]``."""
    K = P[:, :3]
    b = np.linalg.solve(K, P[:, 3])
    K_ours = Intrinsics(width, height, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5)
    return K_ours, make_pose(np.eye(3), b)


def _calib_text(K: Intrinsics, T_cam_lidar: np.ndarray, T_lidar_ego: np.ndarray) -> str:
    P = np.array([[K.fx, 0.0, K.cx - 0.5, 0.0], [0.0, K.fy, K.cy - 0.5, 0.0], [0.0, 0.0, 1.0, 0.0]])
    rows = [*(f"P{i}: " + " ".join(f"{v:.12e}" for v in P.ravel()) for i in range(4)),
            "R_rect " + " ".join(f"{v:.12e}" for v in np.eye(3).ravel()),
            "Tr_velo_cam " + " ".join(f"{v:.12e}" for v in T_cam_lidar[:3].ravel()),
            "Tr_imu_velo " + " ".join(f"{v:.12e}" for v in T_lidar_ego[:3].ravel())]
    return "\n".join(rows) + "\n"


# ---- export -----------------------------------------------------------------------------------------
def export_kitti_mot(log: CaptureLog, out: str | Path, camera: str = "front", sequence: str = "0000") -> Path:
    """Write ``log`` as KITTI tracking sequence ``sequence`` under ``out/training`` (module
    docstring); ``camera``: the rig camera that becomes ``image_02``. Atomic: ``out`` appears whole."""
    spec = next((c for c in log.cameras if c.name == camera), None)
    if spec is None:
        raise InputError(log.root / "log.json", "cameras", f"no camera '{camera}'; the log has {[c.name for c in log.cameras]}")
    return export_atomically(log, [spec], out, "KITTI", lambda tmp: _write_sequence(log, spec, tmp / "training", sequence))


def _write_sequence(log: CaptureLog, spec: CaptureCamera, root: Path, sequence: str) -> None:
    for sub in (f"image_02/{sequence}", f"velodyne/{sequence}", "calib", "label_02", "oxts"):
        (root / sub).mkdir(parents=True)
    T_ego_lidar = np.asarray(log.lidar["T_ego_lidar"], dtype=np.float64)
    T_cam_lidar = np.linalg.inv(spec.T_ego_cam) @ T_ego_lidar
    (root / "calib" / f"{sequence}.txt").write_text(_calib_text(spec.intrinsics, T_cam_lidar, np.linalg.inv(T_ego_lidar)))
    labels, track_ids = [], {a.actor_id: a.instance_id - 1 for a in log.scene.actors}  # KITTI track ids start at 0
    for i, f in enumerate(log.frames):
        shutil.copyfile(f.image_paths[spec.name], root / "image_02" / sequence / f"{i:06d}.png")
        scan = np.load(f.lidar_path).astype(np.float64)
        hit = np.isfinite(scan[:, 3])
        pts = np.concatenate([scan[hit, :3] * scan[hit, 3:4], np.zeros((hit.sum(), 1))], axis=1).astype(np.float32)
        pts.tofile(root / "velodyne" / sequence / f"{i:06d}.bin")
        labels += kitti_tracking_lines(i, _frame_boxes(log, f, spec), track_ids, decimals=6)
    (root / "label_02" / f"{sequence}.txt").write_text("".join(line + "\n" for line in labels))
    if log.has_semantics:
        _write_panoptic_maps(log, spec, root.parent / "kitti-step" / "panoptic_maps" / "train" / sequence)
    oxts = poses_to_oxts(np.stack([f.T_world_ego for f in log.frames]))
    (root / "oxts" / f"{sequence}.txt").write_text("".join(" ".join(repr(float(v)) for v in row) + "\n" for row in oxts))


def _write_panoptic_maps(log: CaptureLog, spec: CaptureCamera, folder: Path) -> None:
    """The log's labels of camera ``spec`` as KITTI-STEP panoptic maps (red the class, instance 0)."""
    import imageio.v3 as iio

    lut = label_lut(STEP_ID_OF_CLASS, 255)
    folder.mkdir(parents=True)
    for i, f in enumerate(log.frames):
        red = lut[log.load_semantic(f.semantic_paths[spec.name])]
        iio.imwrite(folder / f"{i:06d}.png", np.stack([red, np.zeros_like(red), np.zeros_like(red)], axis=-1))


def _frame_boxes(log: CaptureLog, frame, spec: CaptureCamera) -> list[BoxLabel]:
    """The frame's actors whose box projects into the camera, as KITTI-convention labels."""
    model = log.camera(frame, spec.name).model
    T_cam_world = np.linalg.inv(frame.T_world_cams[spec.name])
    boxes = []
    for a in log.scene.at(frame.time).actors:
        T_cam_box = T_cam_world @ a.T_world_actor
        box2d, truncation = amodal_box(model, a.size, T_cam_box)
        if box2d is None:
            continue
        dims, loc, ry, alpha = kitti_pose(a.size, T_cam_box)
        box2d = tuple(v - 0.5 for v in box2d)  # KITTI pixel centres are at integers
        boxes.append(BoxLabel(a.actor_id, a.instance_id, a.class_name, a.size, tuple(T_cam_box[:3, 3]), T_cam_box[:3, :3].tolist(),
                              dims, loc, ry, alpha, box2d, None, truncation, float("nan"), 1))
    return boxes


# ---- import -----------------------------------------------------------------------------------------
def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputError(path, None, "file missing")
    return path.read_text()


def _split_root(src: Path) -> Path:
    """``src`` itself when it holds ``calib/``, else its ``training/`` (the usual download layout)."""
    for root in (src, src / "training", src / "testing"):
        if (root / "calib").is_dir():
            return root
    raise InputError(src, None, "not a KITTI tracking folder: expected calib/, image_02/, oxts/ (or training/ holding them)")


def import_kitti_mot(src: str | Path, out: str | Path, sequence: str = "0000", cameras: tuple[str, ...] = ("image_02",),
                     start: float = 0.0, duration: float | None = None, overwrite: bool = False,
                     panoptic: str | Path | None = None) -> ImportSummary:
    """Read KITTI tracking sequence ``sequence`` into a capture log at ``out`` (module docstring for
    the conventions): the chosen cameras (``image_02``, ``image_03``), OXTS ego poses, Velodyne
    returns as LiDAR, label tracks as actors (SLERP-interpolated between labelled frames).
    ``start`` / ``duration`` (seconds) cut a part of the drive. ``panoptic``: KITTI-STEP's folder
    (holding ``panoptic_maps/``, or that folder itself), whose maps of the sequence become
    ``image_02``'s semantic labels (the other camera's are unlabelled)."""
    root = _split_root(Path(src))
    calib = parse_tracking_calib(root / "calib" / f"{sequence}.txt")
    oxts_path = root / "oxts" / f"{sequence}.txt"
    try:
        oxts = np.loadtxt(oxts_path, ndmin=2)
    except (ValueError, OSError) as e:
        raise InputError(oxts_path, None, f"expected rows of 30 numbers ({e})") from None
    if oxts.shape[1] < 6:
        raise InputError(oxts_path, "columns", f"expected 30 numbers a row (lat lon alt roll pitch yaw ...), got {oxts.shape[1]}")
    T_world_imu = oxts_to_poses(oxts)
    T_rect0_imu = calib["R_rect"] @ calib["Tr_velo_cam"] @ calib["Tr_imu_velo"]
    rig = [_camera(root, sequence, name, calib, T_rect0_imu) for name in cameras]
    n = min(len(T_world_imu), *(count for _, count in rig))
    times = np.arange(n) / FPS
    keep = np.flatnonzero((times >= start - 1e-9) & (times <= (start + duration if duration is not None else np.inf) + 1e-9))
    if len(keep) == 0:
        raise InputError("--start/--duration", None, f"no frame in [{start}, {start + (duration or 0)}] s (the sequence lasts {times[-1]:g} s)")
    t0 = times[keep[0]]
    actors, skipped = _tracks(root / "label_02" / f"{sequence}.txt", T_world_imu, np.linalg.inv(T_rect0_imu), keep, t0)
    T_ego_lidar = np.linalg.inv(calib["Tr_imu_velo"])
    lidar = {"T_ego_lidar": T_ego_lidar, **HDL64, "returns_only": True}
    specs = [spec for spec, _ in rig]
    maps = None if panoptic is None else _panoptic_folder(Path(panoptic), sequence, keep)
    extent = SceneExtent()
    with CaptureLogWriter(out, f"kitti-mot {sequence}", specs, lidar, {}, overwrite, semantics=maps is not None) as writer, \
            JobProgress(f"import kitti-mot {sequence}", len(keep)) as bar:
        for n, i in enumerate(keep):
            images = {s.name: read_rgb(root / s.name / sequence / f"{i:06d}.png", s.intrinsics.width, s.intrinsics.height) for s in specs}
            labels = None if maps is None else {s.name: _step_classes(maps / f"{i:06d}.png", s) for s in specs}
            scan = _velodyne(root, sequence, i)
            extent.add(T_world_imu[i] @ T_ego_lidar, T_world_imu[i][:3, 3], scan)
            writer.add_frame(times[i] - t0, T_world_imu[i], images, scan, semantics=labels)
            bar.update(n + 1)
        graph = SceneGraph(actors=tuple(actors), aabb=extent.aabb())
        path = writer.close(graph)
    return ImportSummary(path, len(keep), [s.name for s in specs], len(actors), skipped)


def _panoptic_folder(src: Path, sequence: str, keep: np.ndarray) -> Path:
    """The folder of sequence ``sequence``'s KITTI-STEP maps under ``src`` (train or val split),
    checked to hold a map of at least one of the frames ``keep``."""
    base = src if src.name == "panoptic_maps" else src / "panoptic_maps"
    for split in ("train", "val"):
        folder = base / split / sequence
        if folder.is_dir():
            if not any((folder / f"{i:06d}.png").is_file() for i in keep):
                raise InputError(folder, None, f"no panoptic map of the imported frames ({keep[0]:06d}.png ... {keep[-1]:06d}.png)")
            return folder
    raise InputError(base, None, f"no KITTI-STEP panoptic maps of sequence {sequence} (expected train/{sequence}/ or val/{sequence}/)")


def _step_classes(path: Path, spec: CaptureCamera) -> np.ndarray:
    """nerfsim class ids of a KITTI-STEP map for ``image_02`` (all unlabelled for another camera, or
    a frame without a map)."""
    K = spec.intrinsics
    if spec.name != "image_02" or not path.is_file():
        return np.full((K.height, K.width), UNLABELLED, np.uint8)
    rgb = read_rgb(path, K.width, K.height)
    return class_lut(STEP_CLASSES)[rgb[..., 0]]


def _camera(root: Path, sequence: str, name: str, calib: dict, T_rect0_imu: np.ndarray) -> tuple[CaptureCamera, int]:
    """The rig camera ``image_0k`` (pose in the IMU frame from ``P_k``) and its number of frames."""
    if name not in ("image_02", "image_03"):
        raise InputError("--cameras", None, f"expected image_02 and/or image_03, got '{name}'")
    folder = root / name / sequence
    files = sorted(folder.glob("*.png"))
    if not files:
        raise InputError(folder, None, "no PNG images")
    for i, f in enumerate(files):
        if f.stem != f"{i:06d}":
            raise InputError(f, None, f"frames must be numbered 000000.png, 000001.png... without gaps; expected {i:06d}.png")
    width, height = _png_size(files[0])
    P = calib.get(f"P{name[-1]}")
    if P is None:
        raise InputError(root / "calib" / f"{sequence}.txt", f"P{name[-1]}", "missing")
    K, T_cam_rect0 = camera_from_projection(P, width, height)
    return CaptureCamera(name, K, np.linalg.inv(T_cam_rect0 @ T_rect0_imu)), len(files)


def _png_size(path: Path) -> tuple[int, int]:
    import imageio.v3 as iio

    try:
        meta = iio.improps(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
        raise InputError(path, None, f"unreadable image ({e})") from None
    return int(meta.shape[1]), int(meta.shape[0])


def _velodyne(root: Path, sequence: str, i: int) -> np.ndarray:
    """LiDAR returns of frame ``i`` as ``[N, 4]`` unit directions + ranges (none when the sequence
    has no velodyne/ folder)."""
    if not (root / "velodyne").is_dir():
        return np.zeros((0, 4), np.float32)
    return read_point_file(root / "velodyne" / sequence / f"{i:06d}.bin", ("x", "y", "z", "reflectance"))


def _tracks(path: Path, T_world_imu: np.ndarray, T_imu_rect0: np.ndarray, keep: np.ndarray, t0: float) -> tuple[list[Actor], dict]:
    """Actors of the label file: one per track id of an actor class, keyframed at its labelled frames
    among ``keep`` (times from ``t0``), its size the median of its boxes."""
    if not path.is_file():
        return [], {}
    frames = set(int(i) for i in keep)
    per_track: dict[int, list] = {}
    skipped: dict[str, int] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        lab = parse_kitti_tracking_line(line, f"{path}: line {n}")
        if lab["type"] not in CLASS_MAP:
            skipped[lab["type"]] = skipped.get(lab["type"], 0) + 1
            continue
        if lab["frame"] not in frames:
            continue
        if lab["frame"] >= len(T_world_imu):
            raise InputError(path, f"line {n}: frame", f"frame {lab['frame']} is past the last OXTS row ({len(T_world_imu) - 1})")
        T_world_box = T_world_imu[lab["frame"]] @ T_imu_rect0 @ kitti_box_to_cam(lab["dimensions"], lab["location"], lab["rotation_y"])
        per_track.setdefault(lab["track_id"], []).append((lab["frame"] / FPS - t0, T_world_box, lab))
    actors = []
    for tid, rows in sorted(per_track.items()):
        cls = CLASS_MAP[rows[0][2]["type"]]
        boxes = [(t, T, tuple(lab["dimensions"][::-1])) for t, T, lab in rows]  # KITTI (h, w, l) -> (l, w, h)
        actors.append(actor_from_boxes(f"{cls}_{tid:03d}", cls, tid + 1, boxes, path, f"track {tid}"))
    return actors, skipped
