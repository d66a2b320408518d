"""The commands that bring recorded drives in and out: ``nerfsim import`` and ``nerfsim export-log``
(`tasks.logs`: one module per dataset)."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from tyro.conf import Positional

from scenes.errors import InputError
from scenes.settings import POSITIVE, Range
from tasks.logs.ego_mask import apply_ego_masks, write_mask_preview


@dataclass
class Import:
    """Import a recorded drive into a capture log (then `nerfsim train LOG`). Formats: kitti-mot, the
    KITTI tracking benchmark (image_02/03, calib, oxts, velodyne, label_02; the layout MARS reads);
    nuscenes, through the nuscenes-devkit (one scene's key frames: 6 cameras, LIDAR_TOP, boxes);
    waymo, Waymo Open Dataset v2 parquet components (one segment: 5 cameras, TOP LiDAR, boxes); av2,
    an Argoverse 2 sensor log (a frame per LiDAR sweep: ring cameras, both LiDARs, boxes)."""

    format: Positional[Literal["kitti-mot", "nuscenes", "waymo", "av2"]]
    """Dataset format."""
    src: Positional[Path]
    """The dataset folder (kitti-mot: the one holding training/, or training/ itself; nuscenes: the
    dataroot holding the version folder and samples/; waymo: a split folder such as training/ holding
    camera_image/, vehicle_pose/..., or the folder holding it; av2: a log folder, a split folder or
    the dataset root)."""
    out: Path = Path("drive_log")
    """Capture log folder (written atomically)."""
    sequence: str = "0000"
    """kitti-mot: the sequence to import."""
    scene: Optional[str] = None
    """nuscenes: the scene name (e.g. scene-0061; default the first)."""
    version: Optional[str] = None
    """nuscenes: the tables' version folder (v1.0-mini, v1.0-trainval...; default: the only one)."""
    segment: Optional[str] = None
    """waymo: the segment (its parquet files' name; default the only / first one)."""
    log_id: Optional[str] = None
    """av2: the log's folder name (a UUID; default: the only log under SRC)."""
    cameras: Optional[tuple[str, ...]] = None
    """Cameras to import (kitti-mot: image_02 and/or image_03, default image_02; nuscenes: channels
    such as CAM_FRONT, default all six; waymo: FRONT, FRONT_LEFT, ..., default all; av2: names such
    as ring_front_center, default every ring camera)."""
    start: Annotated[float, Range(lo=0.0)] = 0.0
    """Seconds into the drive where the log starts."""
    duration: Annotated[Optional[float], POSITIVE] = None
    """Seconds of drive to import (default: to the end)."""
    sweeps: bool = False
    """nuscenes: also the images and LiDAR sweeps between the 2 Hz key frames (a frame per 12 Hz image
    of the first camera; boxes interpolated to them)."""
    panoptic: Optional[Path] = None
    """kitti-mot: KITTI-STEP's folder (holding panoptic_maps/), whose panoptic maps of the sequence
    become image_02's semantic labels."""
    between_sweeps: bool = False
    """av2: also the ring cameras' images between the 10 Hz LiDAR sweeps (they fire at 20 Hz): frames
    of their own, without a sweep (a frame per such image of the first camera)."""
    ego_mask: tuple[str, ...] = ()
    """Pixels that see the ego vehicle itself (hood, body), left out of training and scoring:
    ``CAM=PNG`` per camera (0 = ego, else scene; CAM a camera name of the imported log: kitti-mot
    image_02, nuscenes CAM_BACK, av2 ring_rear_left...; `tasks.logs.ego_mask`)."""
    parked_in_background: bool = False
    """Static-scene import: vehicles that stay put over the whole drive (`ActorTrack.is_parked`: their
    boxes' fitted motion under 0.3 m/s and spread under 0.75 m) are not actors; the background field
    learns them like buildings (they can no longer be moved or removed). Default: every vehicle is
    an actor."""
    overwrite: bool = False
    """Replace an existing log."""

    def run(self) -> None:
        given = parse_ego_masks(self.ego_mask)
        if not (given or self.parked_in_background):
            self._import(self.out)
            return
        if self.out.exists() and not self.overwrite:
            raise InputError(self.out, None, "output folder exists; pass --overwrite or choose another folder")
        for cam, png in given.items():  # before a long import: the sizes are checked once the cameras are known
            if not png.is_file():
                raise InputError(png, None, f"ego mask of camera '{cam}' not found")
        staging = self.out.parent / f".{self.out.name}.import-{os.getpid()}"
        report = {}
        try:  # the finishing steps work on a staged log, moved into place only when complete
            self._import(staging, overwrite=True)
            if given:
                report["ego_masked_fraction"] = apply_ego_masks(staging, given)
            if self.parked_in_background:
                report["parked_in_background"] = parked_into_background(staging)
            if self.out.exists():
                shutil.rmtree(self.out)
            staging.rename(self.out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        print(json.dumps(report))

    def _import(self, out: Path, overwrite: bool | None = None) -> None:
        overwrite = self.overwrite if overwrite is None else overwrite
        if self.sweeps and self.format != "nuscenes":
            raise InputError("--sweeps", None, f"only nuscenes has sweeps between key frames; {self.format} imports every frame")
        if self.panoptic is not None and self.format != "kitti-mot":
            raise InputError("--panoptic", None, f"KITTI-STEP's panoptic maps label KITTI tracking sequences, not {self.format}")
        if self.between_sweeps and self.format != "av2":
            raise InputError("--between-sweeps", None, f"only av2's cameras fire between its LiDAR sweeps; {self.format} imports every image")
        if self.format == "kitti-mot":
            from tasks.logs.kitti_mot import import_kitti_mot

            s = import_kitti_mot(self.src, out, self.sequence, self.cameras or ("image_02",), self.start, self.duration, overwrite,
                                 panoptic=self.panoptic)
        elif self.format == "av2":
            from tasks.logs.av2 import import_av2

            s = import_av2(self.src, out, self.log_id, self.cameras, self.start, self.duration, overwrite, between_sweeps=self.between_sweeps)
        elif self.format == "nuscenes":
            from tasks.logs.nuscenes import import_nuscenes

            s = import_nuscenes(self.src, out, self.version, self.scene, self.cameras, self.start, self.duration, overwrite,
                                self.sweeps)
        else:
            from tasks.logs.waymo import import_waymo

            s = import_waymo(self.src, out, self.segment, self.cameras, self.start, self.duration, overwrite)
        print(json.dumps({"log": str(self.out), "frames": s.frames, "cameras": s.cameras, "actors": s.actors, "not_actors": s.not_actors}))


def parked_into_background(log_dir: Path) -> list[str]:
    """Drop the parked vehicles (`scenes.graph.ActorTrack.is_parked`) from a capture log's actors, in
    place; returns their ids."""
    from scenes.capture import read_capture_log, set_scene

    graph = read_capture_log(log_dir).scene
    parked = [a.actor_id for a in graph.actors if a.class_name == "car" and a.track.is_parked()]
    set_scene(log_dir, graph.with_actors(a for a in graph.actors if a.actor_id not in parked))
    return parked


def parse_ego_masks(values: tuple[str, ...], flag: str = "--ego-mask") -> dict[str, Path]:
    """``CAM=PNG`` values: camera -> PNG."""
    given = {}
    for v in values:
        cam, sep, png = v.partition("=")
        if not sep or not cam or not png:
            raise InputError(flag, None, f"expected CAMERA=PNG, got {v!r}")
        if cam in given:
            raise InputError(flag, None, f"camera '{cam}' given twice")
        given[cam] = Path(png)
    return given


@dataclass
class EgoMask:
    """Set a capture log's ego masks (the pixels that see the ego vehicle itself: left out of training
    and scoring), in place, from a PNG per camera (`tasks.logs.ego_mask`)."""

    log: Positional[Path]
    """Capture log folder."""
    mask: tuple[str, ...] = ()
    """``CAM=PNG`` per camera (0 = ego vehicle, anything else = scene)."""
    clear: bool = False
    """Remove every camera's mask instead."""
    preview: Optional[Path] = None
    """Write a PNG with each camera's first image, its mask's ego part tinted red."""

    def run(self) -> None:
        from scenes.capture import read_capture_log, set_camera_masks

        if self.clear:
            log = set_camera_masks(self.log, {c.name: None for c in read_capture_log(self.log).cameras})
            fractions = {c.name: 0.0 for c in log.cameras}
        else:
            given = parse_ego_masks(self.mask, "--mask")
            if not given:
                raise InputError("--mask", None, "give CAM=PNG for each camera to mask (or --clear)")
            fractions = apply_ego_masks(self.log, given)
        if self.preview is not None:
            write_mask_preview(read_capture_log(self.log), self.preview)
        print(json.dumps({"ego_masked_fraction": fractions}))


@dataclass
class ExportLog:
    """Write a capture log in a driving dataset's layout (kitti-mot: KITTI tracking; nuscenes: a
    one-scene nuScenes dataset; waymo: one segment of Waymo Open Dataset v2 parquet components; av2:
    an Argoverse 2 sensor log, OUT/SPLIT/LOG_ID), so that dataset's own tools read it."""

    log: Positional[Path]
    """Capture log folder."""
    format: Literal["kitti-mot", "nuscenes", "waymo", "av2"] = "kitti-mot"
    """Dataset format."""
    out: Path = Path("exported")
    """Output folder (written atomically)."""
    camera: str = "front"
    """kitti-mot: the rig camera that becomes image_02 (a pinhole camera)."""
    sequence: str = "0000"
    """kitti-mot: the sequence name."""
    version: str = "v1.0-nerfsim"
    """nuscenes: the version folder of the tables."""
    keyframe_every: Annotated[int, Range(lo=1)] = 1
    """nuscenes: every n-th frame is a key frame (annotated sample); the frames between are sweeps."""
    split: Optional[str] = None
    """waymo, av2: the split folder the log goes in (default: training for waymo, val for av2)."""
    segment: Optional[str] = None
    """waymo: the segment name (default: the log's name)."""
    log_id: Optional[str] = None
    """av2: the log's folder name (default: a UUID made from the capture log's name). Rig cameras
    front, front_left, front_right, side_left, side_right, rear_left, rear_right become AV2's ring
    cameras; other names must be AV2's already."""

    def run(self) -> None:
        from scenes.capture import read_capture_log

        log = read_capture_log(self.log)
        if self.format == "kitti-mot":
            from tasks.logs.kitti_mot import export_kitti_mot

            print(export_kitti_mot(log, self.out, self.camera, self.sequence))
        elif self.format == "av2":
            from tasks.logs.av2 import export_av2

            print(export_av2(log, self.out, self.split or "val", self.log_id))
        elif self.format == "nuscenes":
            from tasks.logs.nuscenes import export_nuscenes

            print(export_nuscenes(log, self.out, self.version, self.keyframe_every))
        else:
            from tasks.logs.waymo import export_waymo

            print(export_waymo(log, self.out, self.split or "training", self.segment))
