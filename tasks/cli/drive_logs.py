"""The commands that bring recorded drives in and out: ``nerfsim import`` and ``nerfsim export-log``
(`tasks.logs`: one module per dataset)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

from tyro.conf import Positional

from scenes.settings import POSITIVE, Range


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
    overwrite: bool = False
    """Replace an existing log."""

    def run(self) -> None:
        if self.format == "kitti-mot":
            from tasks.logs.kitti_mot import import_kitti_mot

            s = import_kitti_mot(self.src, self.out, self.sequence, self.cameras or ("image_02",), self.start, self.duration,
                                 self.overwrite)
        elif self.format == "av2":
            from tasks.logs.av2 import import_av2

            s = import_av2(self.src, self.out, self.log_id, self.cameras, self.start, self.duration, self.overwrite)
        elif self.format == "nuscenes":
            from tasks.logs.nuscenes import import_nuscenes

            s = import_nuscenes(self.src, self.out, self.version, self.scene, self.cameras, self.start, self.duration, self.overwrite)
        else:
            from tasks.logs.waymo import import_waymo

            s = import_waymo(self.src, self.out, self.segment, self.cameras, self.start, self.duration, self.overwrite)
        print(json.dumps({"log": str(s.log), "frames": s.frames, "cameras": s.cameras, "actors": s.actors, "not_actors": s.not_actors}))


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

            print(export_nuscenes(log, self.out, self.version))
        else:
            from tasks.logs.waymo import export_waymo

            print(export_waymo(log, self.out, self.split or "training", self.segment))
