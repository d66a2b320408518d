"""Ego masks: the pixels of a rig camera that see the ego vehicle itself (hood, body, a mount).

A recorded drive's cameras are bolted to the car; nuScenes' CAM_BACK sees its bumper, Argoverse 2's
rear ring cameras its flanks, PandaSet's front camera its hood. Those pixels move with the camera,
so no field of the world explains them: trained on, they become floaters in front of every camera.
The capture log marks them per camera (``masks/<cam>.png``, `scenes.capture.set_camera_masks`);
training never samples them and evaluation does not score them.

A mask is a PNG per camera (``nerfsim import ... --ego-mask CAM=PNG`` or ``nerfsim ego-mask LOG
--mask CAM=PNG``): 0 (black) = ego vehicle, anything else = scene; painted once per rig (the body
does not move in the image), or what a dataset that ships masks provides. ``--preview`` writes the
masks over an image to check them.

Why no estimate from the images: the cue people reach for, pixels that do not change while the
car drives, also holds for a uniform road surface ahead and the sky; on the built-in street 69% of
the front camera's lower half changes by less than 3% between images 3.2 m apart, so it would take
road for car body without a person looking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scenes.capture import CaptureLog, read_capture_log, read_mask_image, set_camera_masks
from scenes.errors import InputError


def apply_ego_masks(log_dir: Path, given: dict[str, Path]) -> dict[str, float]:
    """Set the masks of a capture log's cameras from the PNGs ``given`` per camera (one that masks
    nothing removes that camera's mask). Returns camera -> fraction of its pixels masked out."""
    log = read_capture_log(log_dir)
    cams = {c.name: c for c in log.cameras}
    masks = {}
    for name, png in given.items():
        if name not in cams:
            raise InputError("--ego-mask", None, f"no camera '{name}' in {log_dir} (it has {', '.join(cams)})")
        K = cams[name].intrinsics
        masks[name] = read_mask_image(png, K.width, K.height)
    masks = {k: (None if m.all() else m) for k, m in masks.items()}
    log = set_camera_masks(log_dir, masks)
    return {c.name: 0.0 if c.mask is None else float(1.0 - c.mask.mean()) for c in log.cameras}


def write_mask_preview(log: CaptureLog, path: Path) -> Path:
    """A PNG of every camera's first image side by side, the ego part of its mask tinted red."""
    import imageio.v3 as iio

    tiles = []
    for c in log.cameras:
        img = log.load_image(log.frames[0].image_paths[c.name])
        if c.mask is not None:
            img = np.where(c.mask[..., None], img, 0.5 * img + 0.5 * np.array([1.0, 0.0, 0.0]))
        tiles.append(img)
    height = max(t.shape[0] for t in tiles)
    row = np.concatenate([np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0))) for t in tiles], 1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, (np.clip(row, 0, 1) * 255).round().astype(np.uint8))
    return path
