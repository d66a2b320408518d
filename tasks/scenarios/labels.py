"""Label files in the dataset formats perception teams train on, written from `sensors.boxes.BoxLabel`
lists (pure functions: no rendering).

Formats:

- KITTI object (``label_2/<frame>.txt``): one line per actor, 15 space-separated fields
  ``type truncated occluded alpha left top right bottom h w l x y z rotation_y`` (a 16th, ``score``,
  only in detection results; `parse_kitti_object_line` reads both).
- KITTI tracking (``label_02/<sequence>.txt``): ``frame track_id`` followed by the object fields, 17
  in all, with ``truncated`` as a level 0/1/2 instead of a ratio (`kitti_truncation_level`).
- KITTI calibration (``calib/<frame>.txt``): ``P0..P3`` (3x4), ``R0_rect`` (3x3),
  ``Tr_velo_to_cam`` and ``Tr_imu_to_velo`` (3x4), row-major, ``%.12e`` like KITTI's files.
- COCO instances JSON (`CocoBuilder`): bboxes ``[x, y, w, h]`` of the visible pixels, compressed RLE
  masks (pycocotools), plus ``track_id`` and ``attributes`` (truncation, occlusion, amodal bbox).

Conventions (those of the repo):

- Camera frame: OpenCV axes (x right, y down, z forward), metres; this is KITTI's rectified camera
  frame, so ``R0_rect`` is the identity and ``P2 = [K | 0]``.
- Pixels: continuous coordinates with pixel centres at integer + 0.5 (pixel ``i`` spans
  ``[i, i + 1)``), for KITTI bboxes, COCO bboxes and the principal point in ``P*`` alike, so
  projecting a 3D box with ``P2`` lands on its 2D box. (KITTI's own files put centres at integers:
  subtract 0.5 from bbox coordinates and from ``cx, cy`` to convert.)
- KITTI 3D fields: ``dimensions = (h, w, l)``, ``location`` = bottom-face centre, ``rotation_y`` and
  ``alpha`` in radians (see `sensors.boxes`).
- KITTI bbox: the amodal box (the whole 3D box projected) clipped to the image, as in KITTI.
- KITTI ``occluded`` (`kitti_occluded_level`): 0 fully visible (< 10 % hidden), 1 partly occluded
  (< 50 %), 2 largely occluded, 3 unknown (NaN occlusion).
- Only actor classes (`KITTI_TYPES`) get KITTI lines; no ``DontCare`` regions are written.
- Output is deterministic: the same input gives byte-identical text / JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scenes.classes import ACTOR_CLASSES, CLASS_NAMES
from scenes.errors import InputError
from scenes.files import atomic_write_text
from sensors.boxes import BoxLabel, modal_box
from scenes.lens import CameraModel

KITTI_TYPES: dict[str, str] = {"car": "Car", "pedestrian": "Pedestrian"}
"""KITTI ``type`` of each actor class; boxes of other classes get no line."""

KITTI_OBJECT_FIELDS = 15
KITTI_TRACKING_FIELDS = 17

OCCLUSION_LEVELS: tuple[float, float] = (0.1, 0.5)
"""Occlusion ratio thresholds: below the first -> 0, below the second -> 1, otherwise 2."""
TRUNCATION_LEVELS: tuple[float, float] = (0.1, 0.9)
"""Truncation ratio thresholds of KITTI tracking: below 0.1 -> 0 (not truncated), below 0.9 -> 1
(partly), otherwise 2 (all but fully outside the image; an actor wholly outside gets no line)."""

T_CAM_LIDAR_DEFAULT = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
"""LiDAR frame (x forward, y left, z up) in the OpenCV camera frame at the same origin:
x_lidar = z_cam, y_lidar = -x_cam, z_lidar = -y_cam."""

_CALIB_SHAPES = {"R0_rect": (3, 3)}  # every other KITTI calib entry is 3x4


# ---- KITTI levels ---------------------------------------------------------------------------------
def _level(ratio: float, thresholds: tuple[float, float], name: str) -> int:
    """0, 1 or 2: how many of ``thresholds`` the ratio in [0, 1] reaches."""
    if not 0.0 <= ratio <= 1.0:
        raise InputError(None, name, f"expected a ratio in [0, 1], got {ratio}")
    return int(sum(ratio >= t for t in thresholds))


def kitti_occluded_level(occlusion: float) -> int:
    """KITTI ``occluded`` of an occlusion ratio: 0 (< 0.1), 1 (< 0.5), 2 (otherwise), 3 for NaN
    (unknown). `InputError` outside [0, 1]."""
    if math.isnan(occlusion):
        return 3
    return _level(occlusion, OCCLUSION_LEVELS, "occlusion")


def kitti_truncation_level(truncation: float) -> int:
    """KITTI tracking ``truncated`` of a truncation ratio: 0 (< 0.1), 1 (< 0.9), 2 (otherwise)."""
    return _level(truncation, TRUNCATION_LEVELS, "truncation")


# ---- KITTI object / tracking lines ----------------------------------------------------------------
def _num(x: float, decimals: int) -> str:
    """Fixed-point text without a sign on zero (``-0.00`` -> ``0.00``)."""
    s = f"{x:.{decimals}f}"
    return s.lstrip("-") if float(s) == 0 else s


def _labelled(boxes: Sequence[BoxLabel], min_visible_pixels: int) -> list[BoxLabel]:
    """Boxes that get a KITTI line: actor class, an amodal 2D box and enough visible pixels."""
    return [b for b in boxes
            if b.class_name in KITTI_TYPES and b.box2d_amodal is not None and b.visible_pixels >= min_visible_pixels]


def _kitti_tail(b: BoxLabel, decimals: int) -> list[str]:
    """The fields after ``occluded``: alpha, bbox (2 decimals), dimensions, location, rotation_y."""
    values = [b.kitti_alpha, *b.box2d_amodal, *b.kitti_dimensions, *b.kitti_location, b.kitti_rotation_y]
    if not np.isfinite(values).all():
        raise InputError(f"box label {b.actor_id}", "kitti pose / box2d_amodal", f"values must be finite, got {values}")
    bbox = [_num(v, 2) for v in b.box2d_amodal]
    pose = [_num(v, decimals) for v in (*b.kitti_dimensions, *b.kitti_location, b.kitti_rotation_y)]
    return [_num(b.kitti_alpha, decimals), *bbox, *pose]


def kitti_object_lines(boxes: Sequence[BoxLabel], min_visible_pixels: int = 1, decimals: int = 2) -> list[str]:
    """KITTI object ``label_2`` lines (15 fields, see module docstring) of the actors with a 2D box
    and at least ``min_visible_pixels`` visible pixels, in input order. ``decimals`` applies to
    alpha, dimensions, location and rotation_y (KITTI's files use 2); truncation and bbox get 2."""
    return [" ".join([KITTI_TYPES[b.class_name], _num(b.truncation, 2), str(kitti_occluded_level(b.occlusion)),
                      *_kitti_tail(b, decimals)])
            for b in _labelled(boxes, min_visible_pixels)]


def kitti_tracking_lines(frame_index: int, boxes: Sequence[BoxLabel], track_ids: dict[str, int] | None = None,
                         min_visible_pixels: int = 1, decimals: int = 2) -> list[str]:
    """KITTI tracking ``label_02`` lines (17 fields): ``frame track_id`` then the object fields, with
    ``truncated`` as a level (`kitti_truncation_level`). Track ids are the instance ids unless
    ``track_ids`` maps actor ids to them (every labelled actor must be in it)."""
    lines = []
    for b in _labelled(boxes, min_visible_pixels):
        if track_ids is not None and b.actor_id not in track_ids:
            raise InputError("track_ids", b.actor_id, "no track id for this actor")
        tid = int(track_ids[b.actor_id]) if track_ids is not None else b.instance_id
        lines.append(" ".join([str(int(frame_index)), str(tid), KITTI_TYPES[b.class_name],
                               str(kitti_truncation_level(b.truncation)), str(kitti_occluded_level(b.occlusion)),
                               *_kitti_tail(b, decimals)]))
    return lines


def _parse_fields(tokens: list[str], source: str) -> dict:
    """The 15 object fields (plus an optional score) of a KITTI line as a dict."""
    try:
        truncated, occluded, v = float(tokens[1]), int(tokens[2]), [float(t) for t in tokens[3:]]
    except ValueError as e:
        raise InputError(source, None, f"expected numbers after the type ({e})") from None
    out = {"type": tokens[0], "truncated": truncated, "occluded": occluded, "alpha": v[0], "bbox": tuple(v[1:5]),
           "dimensions": tuple(v[5:8]), "location": tuple(v[8:11]), "rotation_y": v[11]}
    if len(v) == 13:
        out["score"] = v[12]
    return out


def _split(line: str, counts: tuple[int, ...], source: str) -> list[str]:
    tokens = line.split()
    if len(tokens) not in counts:
        raise InputError(source, "field count", f"expected {counts[0]} fields ({counts[1]} with a score), got {len(tokens)}")
    return tokens


def parse_kitti_object_line(line: str, source: str = "KITTI object line") -> dict:
    """Read one KITTI object line (15 fields, or 16 with a detection score) into ``type, truncated,
    occluded, alpha, bbox, dimensions, location, rotation_y`` (``score``). `InputError` otherwise."""
    return _parse_fields(_split(line, (KITTI_OBJECT_FIELDS, KITTI_OBJECT_FIELDS + 1), source), source)


def parse_kitti_tracking_line(line: str, source: str = "KITTI tracking line") -> dict:
    """Read one KITTI tracking line (17 fields, or 18 with a score): the object fields plus
    ``frame`` and ``track_id`` (``truncated`` is the integer level)."""
    tokens = _split(line, (KITTI_TRACKING_FIELDS, KITTI_TRACKING_FIELDS + 1), source)
    fields = _parse_fields(tokens[2:], source)
    try:
        head = {"frame": int(tokens[0]), "track_id": int(tokens[1])}
        fields["truncated"] = int(tokens[3])
    except ValueError as e:
        raise InputError(source, "frame / track_id / truncated", f"expected integers ({e})") from None
    return {**head, **fields}


# ---- KITTI calibration ----------------------------------------------------------------------------
def _intrinsic_matrix(model: CameraModel) -> np.ndarray:
    """``K`` of a lens a KITTI projection matrix can describe (pinhole, or opencv without distortion)."""
    if not (model.kind == "pinhole" or (model.kind == "opencv" and not any(model.distortion))):
        raise InputError(f"camera model ({model.kind})", "kind",
                         "KITTI calib needs an undistorted pinhole camera (P = K [I | 0])")
    return np.array([[model.fx, 0.0, model.cx], [0.0, model.fy, model.cy], [0.0, 0.0, 1.0]])


def _rigid_3x4(T: np.ndarray | None, default: np.ndarray, name: str) -> np.ndarray:
    T = default if T is None else np.asarray(T, dtype=np.float64)
    if T.shape not in ((4, 4), (3, 4)) or not np.isfinite(T).all():
        raise InputError(None, name, f"expected a finite 4x4 or 3x4 transform, got shape {T.shape}")
    return T[:3, :4]


def kitti_calib_text(model: CameraModel, T_cam_lidar: np.ndarray | None = None) -> str:
    """KITTI object calib file of one camera: ``P0..P3 = [K | 0]`` (all the same camera),
    ``R0_rect`` identity, ``Tr_velo_to_cam`` from ``T_cam_lidar`` (LiDAR -> camera; default
    `T_CAM_LIDAR_DEFAULT`), ``Tr_imu_to_velo`` identity."""
    P = np.hstack([_intrinsic_matrix(model), np.zeros((3, 1))])
    entries = {**{f"P{i}": P for i in range(4)}, "R0_rect": np.eye(3),
               "Tr_velo_to_cam": _rigid_3x4(T_cam_lidar, T_CAM_LIDAR_DEFAULT, "T_cam_lidar"),
               "Tr_imu_to_velo": np.eye(4)[:3]}
    return "".join(f"{k}: {' '.join(f'{v:.12e}' for v in m.ravel())}\n" for k, m in entries.items())


def parse_kitti_calib(text: str, source: str = "KITTI calib") -> dict[str, np.ndarray]:
    """Read a KITTI calib file: ``R0_rect`` as 3x3, every other 12-number entry as 3x4, others flat."""
    out = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise InputError(source, f"line {n}", "expected 'key: numbers'")
        try:
            values = np.array([float(t) for t in rest.split()], dtype=np.float64)
        except ValueError as e:
            raise InputError(source, key.strip(), f"expected numbers ({e})") from None
        shape = _CALIB_SHAPES.get(key.strip(), (3, 4))
        out[key.strip()] = values.reshape(shape) if values.size == shape[0] * shape[1] else values
    return out


# ---- COCO -----------------------------------------------------------------------------------------
def _rle(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of a boolean mask, ``counts`` as str so JSON can store it."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _xywh(box: Sequence[float] | None) -> list[float] | None:
    """``(u0, v0, u1, v1)`` -> COCO ``[x, y, w, h]`` (None stays None)."""
    if box is None:
        return None
    u0, v0, u1, v1 = (float(v) for v in box)
    return [u0, v0, u1 - u0, v1 - v0]


class CocoBuilder:
    """Collects images and instance annotations into a COCO instances dataset.

    Ids are consecutive from 1 in insertion order (images, annotations) and in the given order
    (categories), so the same calls give the same JSON byte for byte.
    """

    def __init__(self, categories: Sequence[str] = ACTOR_CLASSES, info: dict | None = None):
        """``info``: more keys of the dataset's ``info`` (e.g. where its boxes come from)."""
        unknown = [c for c in categories if c not in CLASS_NAMES]
        if not categories or unknown or len(set(categories)) != len(categories):
            raise InputError("COCO categories", None,
                             f"expected distinct class names from {CLASS_NAMES}, got {list(categories)}")
        self.category_ids = {name: i for i, name in enumerate(categories, 1)}
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.info = dict(info or {})

    def add_image(self, file_name: str, width: int, height: int, frame_index: int, extra: dict | None = None) -> int:
        """Add an image entry (``extra`` keys are stored in it too) and return its id."""
        image = {"id": len(self.images) + 1, "file_name": str(file_name), "width": int(width), "height": int(height),
                 "frame_index": int(frame_index), **(extra or {})}
        self.images.append(image)
        return image["id"]

    def add_instances(self, image_id: int, instance_mask: np.ndarray, boxes: Sequence[BoxLabel],
                      min_visible_pixels: int = 1) -> list[int]:
        """One annotation per actor of a category with at least ``min_visible_pixels`` (and at least
        one) pixels in ``instance_mask`` ([H, W] instance ids of the image). Returns their ids."""
        if not 1 <= image_id <= len(self.images):
            raise InputError("COCO annotations", "image_id", f"no image {image_id} (add_image first)")
        image = self.images[image_id - 1]
        mask = np.asarray(instance_mask)
        if mask.shape != (image["height"], image["width"]):
            raise InputError("COCO annotations", "instance_mask",
                             f"expected shape {(image['height'], image['width'])}, got {mask.shape}")
        ids = []
        for b in boxes:
            if b.class_name not in self.category_ids:
                continue
            bbox, pixels = modal_box(mask, b.instance_id)
            if bbox is None or pixels < min_visible_pixels:
                continue
            ids.append(self._annotate(image_id, b, mask == b.instance_id, bbox, pixels))
        return ids

    def _annotate(self, image_id: int, b: BoxLabel, pixels_mask: np.ndarray, bbox: tuple, area: int) -> int:
        ann = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": self.category_ids[b.class_name],
               "bbox": _xywh(bbox), "area": area, "segmentation": _rle(pixels_mask), "iscrowd": 0,
               "track_id": int(b.instance_id),
               "attributes": {"actor_id": b.actor_id, "truncation": float(b.truncation), "occlusion": float(b.occlusion),
                              "amodal_bbox": _xywh(b.box2d_amodal)}}
        self.annotations.append(ann)
        return ann["id"]

    def to_dict(self) -> dict:
        """The dataset: ``info``, ``images``, ``annotations``, ``categories``."""
        return {"info": {"description": "nerfsim instance labels", "version": "1.0", **self.info},
                "images": self.images, "annotations": self.annotations,
                "categories": [{"id": i, "name": n, "supercategory": "actor"} for n, i in self.category_ids.items()]}

    def write(self, path: str | Path) -> Path:
        """Write the dataset as JSON atomically (temporary file, then rename). Returns the path."""
        return atomic_write_text(path, json.dumps(self.to_dict(), separators=(",", ":")))
