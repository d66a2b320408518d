"""nuScenes to and from nerfsim capture logs, through the official nuscenes-devkit.

A nuScenes dataset is a folder ``DATAROOT`` with ``VERSION/*.json`` (the 13 tables: scene, sample,
sample_data, ego_pose, calibrated_sensor, sensor, sample_annotation, instance, category, attribute,
visibility, log, map) and the sensor files under ``samples/`` (key frames) and ``sweeps/``.

Conventions, nuScenes':

- global frame: metres, z up; ``ego_pose`` maps the ego frame (x forward, y left, z up: nerfsim's
  ego axes, origin at the rear axle) to global, one per sensor reading (cameras fire apart: every
  image keeps its own timestamp and ego pose, `scenes.capture`'s per-image ``time``);
- ``calibrated_sensor``: sensor -> ego (``translation``, ``rotation`` quaternion w, x, y, z); cameras
  are x right, y down, z forward (OpenCV), ``camera_intrinsic`` a 3x3 K with pixel centres at
  integers (nerfsim's are at + 0.5);
- timestamps in microseconds; LiDAR ``.pcd.bin`` float32 ``[N, 5]`` x y z intensity ring in the
  sensor frame;
- a box: centre ``translation`` (global), ``size`` = (width, length, height), ``rotation`` (global),
  length along its x axis (nerfsim's actor frame).
- classes: ``vehicle.car / truck / bus.* / construction / emergency.* / trailer`` -> car,
  ``human.pedestrian.*`` -> pedestrian; the rest (bicycles, motorcycles, barriers, cones...) is
  counted, not imported.

Import: the key frames (samples, 2 Hz in nuScenes) of one scene, each camera's key-frame image at its
own time and ego pose, the key-frame LIDAR_TOP sweep (its returns and, from their ``ring`` column,
the upward beams' empty rays: `tasks.logs.common.sky_misses`), and each instance's annotations as
an actor track (SLERP between key frames). With ``sweeps`` (``nerfsim import nuscenes --sweeps``) also the
readings between key frames (``sweeps/``, 12 Hz images, 20 Hz LiDAR): a frame per image of the
first camera, with the other cameras' images and the LIDAR_TOP sweep nearest to it (`_sweep_frames`),
six times the key frames' images; the boxes (annotated at key frames only) interpolate to every
image's own time.
Export: every frame of a capture log is a sample (key frame) with all its cameras and LIDAR_TOP,
every actor an instance annotated at every frame where it lies within 80 m of the ego (a full
scan pattern's beam index as each return's ``ring``); with
``keyframe_every`` n, only every n-th frame is a key frame and the ones between are sweeps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from scenes.camera import Intrinsics
from scenes.capture import CaptureCamera, CaptureLog, CaptureLogWriter
from scenes.errors import InputError
from scenes.graph import Actor, SceneGraph
from scenes.progress import JobProgress
from scenes.transforms import make_pose, matrix_to_quat, quat_to_matrix
from tasks.logs.common import ImportSummary, SceneExtent, actor_from_boxes, export_atomically, read_point_file, read_rgb

VERSION = "v1.0-nerfsim"
LIDAR = "LIDAR_TOP"
CATEGORIES = {"car": "vehicle.car", "pedestrian": "human.pedestrian.adult"}
ANNOTATION_RANGE = 80.0
VISIBILITY = [("1", "v0-40"), ("2", "v40-60"), ("3", "v60-80"), ("4", "v80-100")]


def nerfsim_class(category: str) -> str | None:
    """nerfsim's class of a nuScenes category name (None: not an actor class)."""
    if category.startswith("human.pedestrian."):
        return "pedestrian"
    if category in ("vehicle.car", "vehicle.truck", "vehicle.construction", "vehicle.trailer") or category.startswith(
            ("vehicle.bus.", "vehicle.emergency.")):
        return "car"
    return None


def channel_of(camera: str) -> str:
    """nuScenes channel of a rig camera: ``front_left`` -> ``CAM_FRONT_LEFT``."""
    return "CAM_" + camera.upper()


def _token(*parts) -> str:
    return hashlib.md5(":".join(str(p) for p in parts).encode()).hexdigest()


def _pose_fields(T: np.ndarray) -> dict:
    return {"translation": [float(v) for v in T[:3, 3]], "rotation": [float(v) for v in matrix_to_quat(T[:3, :3])]}


def _pose_of(record: dict) -> np.ndarray:
    return make_pose(quat_to_matrix(np.asarray(record["rotation"], dtype=np.float64)), np.asarray(record["translation"], dtype=np.float64))


def _micros(t: float) -> int:
    return int(round(t * 1e6)) + 1_500_000_000_000_000  # nuScenes-like epoch microseconds


# ---- export -----------------------------------------------------------------------------------------
def export_nuscenes(log: CaptureLog, out: str | Path, version: str = VERSION, keyframe_every: int = 1) -> Path:
    """Write ``log`` as a one-scene nuScenes dataset at ``out`` (tables in ``out/version``), atomically.
    Cameras must be pinhole (nuScenes images are undistorted). ``keyframe_every``: every n-th frame
    (from the first) is a key frame (a sample, annotated, files under ``samples/``); the frames
    between are sweeps (``is_key_frame`` false, files under ``sweeps/``, no annotations), as
    nuScenes' 12 Hz images and 20 Hz LiDAR between its 2 Hz key frames."""
    if keyframe_every < 1:
        raise InputError("--keyframe-every", None, f"expected a positive number of frames, got {keyframe_every}")

    def write(tmp: Path) -> None:
        tables = _export_tables(log, tmp, keyframe_every)
        (tmp / version).mkdir(parents=True)
        for name, rows in tables.items():
            (tmp / version / f"{name}.json").write_text(json.dumps(rows, indent=0))

    return export_atomically(log, log.cameras, out, "nuScenes", write)


def _export_tables(log: CaptureLog, root: Path, keyframe_every: int = 1) -> dict[str, list]:
    channels = {c.name: channel_of(c.name) for c in log.cameras}
    t = {k: [] for k in ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose",
                         "log", "scene", "sample", "sample_data", "sample_annotation", "map")}
    log_token, scene_token = _token("log", log.name), _token("scene", log.name)
    t["log"].append({"token": log_token, "logfile": log.name, "vehicle": "nerfsim-ego", "date_captured": "2026-12-02",
                     "location": "nerfsim"})
    t["map"].append({"token": _token("map"), "log_tokens": [log_token], "category": "semantic_prior", "filename": ""})
    t["visibility"] = [{"token": tok, "level": level, "description": f"visibility {level}"} for tok, level in VISIBILITY]
    t["category"] = [{"token": _token("category", c), "name": c, "description": c} for c in CATEGORIES.values()]
    calib = {}
    for c in log.cameras:
        K = c.intrinsics
        calib[c.name] = _token("calibrated_sensor", c.name)
        t["sensor"].append({"token": _token("sensor", c.name), "channel": channels[c.name], "modality": "camera"})
        t["calibrated_sensor"].append({"token": calib[c.name], "sensor_token": _token("sensor", c.name), **_pose_fields(c.T_ego_cam),
                                       "camera_intrinsic": [[K.fx, 0.0, K.cx - 0.5], [0.0, K.fy, K.cy - 0.5], [0.0, 0.0, 1.0]]})
    T_ego_lidar = np.asarray(log.lidar["T_ego_lidar"], dtype=np.float64)
    t["sensor"].append({"token": _token("sensor", LIDAR), "channel": LIDAR, "modality": "lidar"})
    t["calibrated_sensor"].append({"token": _token("calibrated_sensor", LIDAR), "sensor_token": _token("sensor", LIDAR),
                                   **_pose_fields(T_ego_lidar), "camera_intrinsic": []})
    keys = [i for i in range(len(log.frames)) if i % keyframe_every == 0]
    for ch in list(channels.values()) + [LIDAR]:
        for folder in ("samples", "sweeps") if len(keys) < len(log.frames) else ("samples",):
            (root / folder / ch).mkdir(parents=True)
    samples = [_token("sample", log.frames[i].index) for i in keys]
    chains: dict[str, list] = {}
    returns: list[np.ndarray] = []  # each key frame's LiDAR returns in the world
    for n, i in enumerate(keys):
        t["sample"].append({"token": samples[n], "timestamp": _micros(log.frames[i].time), "scene_token": scene_token,
                            "prev": samples[n - 1] if n else "", "next": samples[n + 1] if n + 1 < len(samples) else ""})
    for i, f in enumerate(log.frames):
        key = i % keyframe_every == 0
        folder = "samples" if key else "sweeps"
        sample = samples[min(range(len(keys)), key=lambda n: abs(keys[n] - i))]  # a sweep's: the nearest key frame's (nuScenes')
        for c in log.cameras:
            t_img = f.image_times.get(c.name, f.time)
            name = f"{folder}/{channels[c.name]}/{log.name}__{channels[c.name]}__{_micros(t_img)}.png"
            shutil.copyfile(f.image_paths[c.name], root / name)
            T_we = f.T_world_cams[c.name] @ np.linalg.inv(c.T_ego_cam)
            chains.setdefault(c.name, []).append(_sample_data(t, sample, calib[c.name], T_we, t_img, name, "png", key, c.intrinsics))
        scan = np.load(f.lidar_path).astype(np.float64)
        hit = np.isfinite(scan[:, 3])
        pts = np.zeros((hit.sum(), 5), np.float32)
        pts[:, :3] = scan[hit, :3] * scan[hit, 3:4]
        if not log.lidar.get("returns_only"):  # a full scan pattern, beam-major: the ring is the beam
            pts[:, 4] = np.flatnonzero(hit) // int(log.lidar["n_azimuth"])
        if key:
            returns.append(pts[:, :3].astype(np.float64) @ f.T_world_lidar[:3, :3].T + f.T_world_lidar[:3, 3])
        name = f"{folder}/{LIDAR}/{log.name}__{LIDAR}__{_micros(f.time)}.pcd.bin"
        pts.tofile(root / name)
        chains.setdefault(LIDAR, []).append(_sample_data(t, sample, _token("calibrated_sensor", LIDAR), f.T_world_ego, f.time, name, "pcd", key))
    for rows in chains.values():  # prev / next along each sensor's stream, sweeps included
        for a, b in zip(rows, rows[1:]):
            a["next"], b["prev"] = b["token"], a["token"]
    t["scene"].append({"token": scene_token, "log_token": log_token, "nbr_samples": len(samples), "first_sample_token": samples[0],
                       "last_sample_token": samples[-1], "name": log.name, "description": "exported by nerfsim"})
    _export_annotations(log, t, samples, [log.frames[i] for i in keys], returns)
    return t


def _sample_data(t: dict, sample: str, calib: str, T_world_ego: np.ndarray, time: float, filename: str, fmt: str,
                 key_frame: bool, K: Intrinsics | None = None) -> dict:
    token = _token("sample_data", filename)
    t["ego_pose"].append({"token": token, "timestamp": _micros(time), **_pose_fields(T_world_ego)})
    row = {"token": token, "sample_token": sample, "ego_pose_token": token, "calibrated_sensor_token": calib,
           "timestamp": _micros(time), "fileformat": fmt, "is_key_frame": key_frame, "height": K.height if K else 0,
           "width": K.width if K else 0, "filename": filename, "prev": "", "next": ""}
    t["sample_data"].append(row)
    return row


def _export_annotations(log: CaptureLog, t: dict, samples: list[str], frames: list, returns: list[np.ndarray]) -> None:
    """Instances and their annotations at the key ``frames`` (``samples``); ``returns``: each key
    frame's LiDAR returns in the world (for ``num_lidar_pts``)."""
    for a in log.scene.actors:
        if a.class_name not in CATEGORIES:
            continue
        rows = []
        for i, f in enumerate(frames):
            T = a.track.pose_at(f.time)
            if np.linalg.norm(T[:3, 3] - f.T_world_ego[:3, 3]) > ANNOTATION_RANGE:
                continue
            pts = (returns[i] - T[:3, 3]) @ T[:3, :3]
            inside = np.all(np.abs(pts) <= np.asarray(a.size) / 2, axis=1)
            rows.append({"token": _token("ann", a.actor_id, f.index), "sample_token": samples[i], "instance_token": _token("instance", a.actor_id),
                         "attribute_tokens": [], "visibility_token": "", **_pose_fields(T),
                         "size": [a.size[1], a.size[0], a.size[2]], "prev": "", "next": "",
                         "num_lidar_pts": int(inside.sum()), "num_radar_pts": 0})
        if not rows:
            continue
        for x, y in zip(rows, rows[1:]):
            x["next"], y["prev"] = y["token"], x["token"]
        t["sample_annotation"] += rows
        t["instance"].append({"token": _token("instance", a.actor_id), "category_token": _token("category", CATEGORIES[a.class_name]),
                              "nbr_annotations": len(rows), "first_annotation_token": rows[0]["token"],
                              "last_annotation_token": rows[-1]["token"]})


# ---- import -----------------------------------------------------------------------------------------
def _open(dataroot: Path, version: str | None):
    """The devkit's database; ``version`` None: the one version folder of ``dataroot``."""
    from nuscenes.nuscenes import NuScenes

    have = sorted(p.name for p in dataroot.iterdir() if p.is_dir() and (p / "scene.json").exists()) if dataroot.is_dir() else []
    if version is None:
        if len(have) != 1:
            raise InputError(dataroot, "--version", f"expected one folder of nuScenes tables to pick, found {have or 'none'}")
        version = have[0]
    tables = dataroot / version
    if not tables.is_dir():
        raise InputError(tables, None, f"no nuScenes tables for version '{version}' (versions here: {have or 'none'})")
    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except FileNotFoundError as e:
        raise InputError(e.filename or tables, None, "table missing") from None
    except (KeyError, json.JSONDecodeError, AssertionError) as e:
        raise InputError(tables, None, f"inconsistent nuScenes tables ({type(e).__name__}: {e})") from None


def import_nuscenes(dataroot: str | Path, out: str | Path, version: str | None = None, scene: str | None = None,
                    cameras: tuple[str, ...] | None = None, start: float = 0.0, duration: float | None = None,
                    overwrite: bool = False, sweeps: bool = False) -> ImportSummary:
    """Read one nuScenes scene (``scene`` by name; default the only / first one) of tables
    ``version`` (default: the dataroot's only version folder) through the devkit into a capture log
    at ``out`` (module docstring). ``cameras``: channels (default every camera);
    ``start`` / ``duration`` (seconds from the scene's first key frame) cut a part of it;
    ``sweeps``: a frame per image of the first camera between the key frames too (`_sweep_frames`)."""
    dataroot = Path(dataroot)
    nusc = _open(dataroot, version)
    version = nusc.version
    names = [s["name"] for s in nusc.scene]
    if not names:
        raise InputError(dataroot / version / "scene.json", None, "no scenes")
    rec = nusc.scene[0] if scene is None else next((s for s in nusc.scene if s["name"] == scene), None)
    if rec is None:
        raise InputError("--scene", None, f"no scene '{scene}'; scenes: {names}")
    samples = _samples(nusc, rec, dataroot / version)
    t0 = samples[0]["timestamp"]
    end = np.inf if duration is None else start + duration
    samples = [s for s in samples if start - 1e-6 <= (s["timestamp"] - t0) / 1e6 <= end + 1e-6]
    if not samples:
        raise InputError("--start/--duration", None, "no key frame in that part of the scene")
    first = samples[0]
    channels = [ch for ch, tok in first["data"].items() if nusc.get("sample_data", tok)["sensor_modality"] == "camera"]
    channels = sorted(channels) if cameras is None else list(cameras)
    for ch in channels + [LIDAR]:
        if ch not in first["data"]:
            raise InputError(dataroot / version / "sample_data.json", ch, f"the scene's first key frame has no {ch} reading")
    rig = [_camera(nusc, first["data"][ch], ch, dataroot) for ch in channels]
    T_ego_lidar = _pose_of(nusc.get("calibrated_sensor", nusc.get("sample_data", first["data"][LIDAR])["calibrated_sensor_token"]))
    lidar = {"T_ego_lidar": T_ego_lidar, "n_beams": 32, "min_elevation_deg": -30.67, "max_elevation_deg": 10.67,
             "n_azimuth": 1084, "max_range": 70.0, "elevations_deg": None, "returns_only": True}
    base = samples[0]["timestamp"]
    actors, skipped = _tracks(nusc, samples, base)
    readings = (_sweep_frames(nusc, samples, channels, dataroot / version) if sweeps else
                [{ch: nusc.get("sample_data", s["data"][ch]) for ch in channels + [LIDAR]} for s in samples])
    extent = SceneExtent()
    with CaptureLogWriter(out, rec["name"], rig, lidar, {}, overwrite) as writer, JobProgress(f"import {rec['name']}", len(readings)) as bar:
        for n, reading in enumerate(readings):
            images, times, poses = {}, {}, {}
            for spec in rig:
                sd = reading[spec.name]
                images[spec.name] = read_rgb(dataroot / sd["filename"], spec.intrinsics.width, spec.intrinsics.height)
                times[spec.name] = (sd["timestamp"] - base) / 1e6
                poses[spec.name] = _pose_of(nusc.get("ego_pose", sd["ego_pose_token"]))
            sd = reading[LIDAR]
            T_world_ego, scan = _pose_of(nusc.get("ego_pose", sd["ego_pose_token"])), _lidar(dataroot / sd["filename"])
            extent.add(T_world_ego @ T_ego_lidar, T_world_ego[:3, 3], scan)
            writer.add_frame((sd["timestamp"] - base) / 1e6, T_world_ego, images, scan, image_times=times, image_ego_poses=poses)
            bar.update(n + 1)
        graph = SceneGraph(actors=tuple(actors), aabb=extent.aabb())
        path = writer.close(graph)
    return ImportSummary(path, len(readings), channels, len(actors), skipped)


SWEEP_SYNC_US = 60_000
"""How far (microseconds) another camera's image or the LiDAR sweep may be from the first camera's
image to join its frame: nuScenes fires its six cameras as the 20 Hz LiDAR sweeps past each (a
round takes 50 ms); the 12 Hz images are 83 ms apart."""


def _stream(nusc, first: dict, until: int, tables: Path) -> list[dict]:
    """One sensor's readings (sample_data, sweeps included) from ``first`` along ``next`` up to the
    timestamp ``until``, checked to advance in time."""
    out, rec = [first], first
    while rec["next"]:
        rec = nusc.get("sample_data", rec["next"])
        if rec["timestamp"] > until:
            break
        if rec["timestamp"] <= out[-1]["timestamp"]:
            raise InputError(tables / "sample_data.json", f"{rec['token']}.timestamp",
                             f"{rec['filename']} is not after the reading before it on its stream (out of time order)")
        out.append(rec)
    return out


def _sweep_frames(nusc, samples: list[dict], channels: list[str], tables: Path) -> list[dict]:
    """Frames of key frames and sweeps: one per image of ``channels[0]`` from the first to the last key
    frame, each with every other camera's image and the LiDAR sweep nearest in time (within
    `SWEEP_SYNC_US`; a frame some sensor dropped is skipped). Images keep their own timestamps."""
    until = samples[-1]["timestamp"] + SWEEP_SYNC_US
    streams = {ch: _stream(nusc, nusc.get("sample_data", samples[0]["data"][ch]), until, tables) for ch in channels + [LIDAR]}
    stamps = {ch: np.array([r["timestamp"] for r in rows], dtype=np.int64) for ch, rows in streams.items()}
    frames = []
    for lead in streams[channels[0]]:
        reading = {}
        for ch, rows in streams.items():
            k = int(np.argmin(np.abs(stamps[ch] - lead["timestamp"])))
            if abs(int(stamps[ch][k]) - lead["timestamp"]) <= SWEEP_SYNC_US:
                reading[ch] = rows[k]
        if len(reading) == len(streams):
            frames.append(reading)
    return frames


def _samples(nusc, scene: dict, tables: Path) -> list[dict]:
    """The scene's key frames in order (following ``next``), checked to advance in time."""
    out, token = [], scene["first_sample_token"]
    while token:
        s = nusc.get("sample", token)
        if out and s["timestamp"] <= out[-1]["timestamp"]:
            raise InputError(tables / "sample.json", f"sample {token}.timestamp", "key frames out of time order")
        out.append(s)
        token = s["next"]
    return out


def _camera(nusc, sd_token: str, channel: str, dataroot: Path) -> CaptureCamera:
    sd = nusc.get("sample_data", sd_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    K = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
    if K.shape != (3, 3):
        raise InputError(dataroot / "calibrated_sensor.json", f"{cs['token']}.camera_intrinsic", "expected a 3x3 matrix")
    width, height = int(sd["width"]), int(sd["height"])
    intr = Intrinsics(width, height, float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5)
    return CaptureCamera(channel, intr, _pose_of(cs))


def _lidar(path: Path) -> np.ndarray:
    """A LIDAR_TOP sweep's returns, plus its upward beams' misses (`tasks.logs.common.sky_misses`)."""
    return read_point_file(path, ("x", "y", "z", "intensity", "ring"), with_sky=True)


def _tracks(nusc, samples: list[dict], base: int) -> tuple[list[Actor], dict]:
    """One actor per instance of an actor class, keyframed at its annotations among ``samples``."""
    per_instance: dict[str, list] = {}
    skipped: dict[str, int] = {}
    for s in samples:
        for tok in s["anns"]:
            ann = nusc.get("sample_annotation", tok)
            cls = nerfsim_class(ann["category_name"])
            if cls is None:
                skipped[ann["category_name"]] = skipped.get(ann["category_name"], 0) + 1
                continue
            per_instance.setdefault(ann["instance_token"], []).append(((s["timestamp"] - base) / 1e6, _pose_of(ann), ann, cls))
    actors = []
    for n, (token, rows) in enumerate(sorted(per_instance.items(), key=lambda kv: kv[1][0][0]), start=1):
        cls = rows[0][3]
        boxes = [(t, T, (ann["size"][1], ann["size"][0], ann["size"][2])) for t, T, ann, _ in rows]  # size: w, l, h
        actors.append(actor_from_boxes(f"{cls}_{n:03d}", cls, n, boxes, Path(nusc.dataroot) / nusc.version / "sample_annotation.json",
                                       f"instance {token}"))
    return actors, skipped
