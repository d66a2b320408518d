"""The viewer's functional core, free of any GUI: the camera a browser view stands for, the picture
of each output, edits from a dragged gizmo, and nerfstudio's ``camera_path.json`` of saved views.

Conventions: viser's camera is OpenCV's (x right, y down, z forward; ``wxyz`` is ``R_world_cam``,
``fov`` the vertical field of view in radians), as nerfsim's, so ``T_world_cam`` needs no axis flip.
Pictures are float RGB in [0, 1], ``[H, W, 3]``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from scenes.edits import Edit, InsertActor, MoveActor, RemoveActor
from scenes.errors import InputError
from scenes.graph import SceneState
from scenes.lens import CameraModel
from scenes.transforms import invert_pose, make_pose, matrix_to_quat, opencv_to_opengl, quat_to_matrix
from sensors.boxes import box_corners
from tasks.media import colorize_depth, colorize_ids, to_uint8

OUTPUTS = ("rgb", "depth", "normals", "semantics", "instances", "boxes", "lidar")
"""What the viewer shows: an image product, ``boxes`` (3D boxes drawn over the RGB image) or
``lidar`` (the RGB image, and a LiDAR sweep from the camera as points in the 3D view)."""
LENSES = ("pinhole", "fisheye", "equirectangular")
_BOX_EDGES = ((0, 1), (1, 3), (3, 2), (2, 0), (4, 5), (5, 7), (7, 6), (6, 4), (0, 4), (1, 5), (2, 6), (3, 7))


@dataclass(frozen=True)
class ViewCamera:
    """What a browser's camera stands for: pose (OpenCV axes) and vertical field of view."""

    position: tuple[float, float, float]
    wxyz: tuple[float, float, float, float]
    fov_y: float
    """Vertical field of view, radians."""
    aspect: float
    """Canvas width / height."""

    @property
    def T_world_cam(self) -> np.ndarray:
        return make_pose(quat_to_matrix(np.asarray(self.wxyz, dtype=np.float64)), np.asarray(self.position, dtype=np.float64))

    def lens(self, width: int, kind: str = "pinhole") -> CameraModel:
        """The lens of this view ``width`` pixels wide (height from the canvas' aspect): a pinhole or
        an equidistant fisheye with the canvas' vertical field of view (nerfstudio's camera_path
        convention), or a full equirectangular panorama."""
        if kind == "equirectangular":
            return CameraModel.equirectangular(width)
        if kind not in LENSES:
            raise InputError("viewer", "lens", f"expected one of {', '.join(LENSES)}, got {kind!r}")
        height = max(1, int(round(width / self.aspect)))
        half = 0.5 * self.fov_y
        f = 0.5 * height / (np.tan(half) if kind == "pinhole" else half)
        return CameraModel(kind, width, height, f, f, width / 2, height / 2)

    @staticmethod
    def of(camera) -> "ViewCamera":
        """What a browser's camera (viser's ``client.camera``: position, wxyz, fov, aspect) shows now."""
        return ViewCamera(tuple(camera.position), tuple(camera.wxyz), float(camera.fov), float(camera.aspect))

    @staticmethod
    def from_pose(T_world_cam: np.ndarray, fov_y: float, aspect: float) -> "ViewCamera":
        q = matrix_to_quat(np.asarray(T_world_cam)[:3, :3])
        return ViewCamera(tuple(float(v) for v in T_world_cam[:3, 3]), tuple(float(v) for v in q), float(fov_y), float(aspect))


def preview_width(width: int, preview: int) -> int:
    """Width of the quick frame shown while the camera moves: ``preview`` pixels, never more than
    the full frame."""
    return max(8, min(width, preview))


def row_bands(lens: CameraModel, rays: int) -> list[CameraModel]:
    """``lens`` cut into bands of whole rows of about ``rays`` pixels, top to bottom: each band a
    lens of its own (the same projection, its principal point moved up by the rows above it), so
    the bands' images stacked are the whole image. A panorama (whose rows are latitudes of the
    whole height) stays one band."""
    if lens.kind == "equirectangular":
        return [lens]
    rows = max(1, rays // lens.width)
    return [replace(lens, height=min(rows, lens.height - y0), cy=lens.cy - y0) for y0 in range(0, lens.height, rows)]


def picture(frame, output: str, state: SceneState | None = None) -> np.ndarray:
    """The picture of ``output`` for a `sensors.frame.Frame` (its products must include normals for
    ``normals``): what `nerfsim render` writes as ``*_rgb.png`` / ``*_vis.png``."""
    if output in ("rgb", "lidar"):
        return np.clip(frame.rgb, 0, 1).astype(np.float32)
    if output == "depth":
        return colorize_depth(frame.depth)
    if output == "normals":
        n = frame.normals
        return ((n * np.array([0.5, -0.5, -0.5]) + 0.5) * (np.abs(n).sum(-1, keepdims=True) > 0)).astype(np.float32)
    if output == "semantics":
        return colorize_ids(np.where(frame.semantic == 255, 0, frame.semantic))
    if output == "instances":
        return colorize_ids(frame.instance)
    if output == "boxes":
        return draw_boxes(np.clip(frame.rgb, 0, 1), frame.model, frame.T_world_cam, state)
    raise InputError("viewer", "output", f"expected one of {', '.join(OUTPUTS)}, got {output!r}")


def instance_colour(instance_id: int) -> tuple[int, int, int]:
    """The 8-bit colour of an actor in the instances output (`tasks.media.colorize_ids`): its box
    lines, in the image and in 3D, share it."""
    return tuple(int(255 * c) for c in colorize_ids(np.array([instance_id]))[0])


def draw_boxes(rgb: np.ndarray, model: CameraModel, T_world_cam: np.ndarray, state: SceneState | None) -> np.ndarray:
    """``rgb`` with the edges of every actor's 3D box drawn over it (each in its instance colour;
    edges behind the camera or outside the lens are left out)."""
    pil = Image.fromarray(to_uint8(rgb))
    draw = ImageDraw.Draw(pil)
    T_cam_world = invert_pose(T_world_cam)
    for actor in state.actors if state is not None else ():
        colour = instance_colour(actor.instance_id)
        corners = box_corners(actor.size, T_cam_world @ actor.T_world_actor)
        for a, b in _BOX_EDGES:
            pts = np.linspace(corners[a], corners[b], 16)  # sampled: lenses bend straight edges
            uv, ok = model.project(pts)
            for i in range(len(pts) - 1):
                if ok[i] and ok[i + 1] and abs(uv[i, 0] - uv[i + 1, 0]) < model.width / 2:  # no wrap across a panorama
                    draw.line([tuple(uv[i]), tuple(uv[i + 1])], fill=colour, width=2)
    return np.asarray(pil).astype(np.float32) / 255.0


def split_view(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Left half of ``left`` beside the right half of ``right`` (the same camera twice: the scene and
    its twin), with a white divider."""
    W = left.shape[1]
    out = np.concatenate([left[:, : W // 2], right[:, W // 2:]], axis=1).copy()
    out[:, W // 2 - 1: W // 2 + 1] = 1.0
    return out


# ---- edits from the gizmo ------------------------------------------------------------------------
def move_from_gizmo(actor_id: str, T_world_actor: np.ndarray, position, wxyz) -> MoveActor:
    """The edit that takes an actor from ``T_world_actor`` (its pose now) to where the gizmo was
    dragged (``position``, ``wxyz``): a world translation of its whole track and a turn about the
    box's own vertical axis (the gizmo's tilt is ignored: actors stand on the road)."""
    R_old = np.asarray(T_world_actor, dtype=np.float64)[:3, :3]
    R_rel = R_old.T @ quat_to_matrix(np.asarray(wxyz, dtype=np.float64))
    yaw = float(np.degrees(np.arctan2(R_rel[1, 0], R_rel[0, 0])))
    shift = np.asarray(position, dtype=np.float64) - np.asarray(T_world_actor)[:3, 3]
    return MoveActor(actor_id, tuple(float(v) for v in shift), yaw)


def duplicate_beside(actor_id: str, T_world_actor: np.ndarray, size, new_id: str) -> InsertActor:
    """A copy of an actor on its own track, shifted sideways (to its left) by its width + 1 m."""
    left = np.asarray(T_world_actor, dtype=np.float64)[:3, 1] * (float(size[1]) + 1.0)
    return InsertActor(actor_id, new_id, tuple(float(v) for v in left))


def add_edit(edits: list[Edit], edit: Edit) -> list[Edit]:
    """``edits`` + ``edit``, with moves of one actor in a row folded into one (moves compose by
    adding: the turn is about the box's own axis, the shift in world), so a long drag saves as one
    line of edits.yaml. A removed actor's earlier moves are dropped with it."""
    if isinstance(edit, MoveActor) and edits and isinstance(edits[-1], MoveActor) and edits[-1].actor_id == edit.actor_id:
        last = edits[-1]
        merged = MoveActor(edit.actor_id, tuple(a + b for a, b in zip(last.translate, edit.translate)), last.yaw_deg + edit.yaw_deg)
        return edits[:-1] + [merged]
    if isinstance(edit, RemoveActor):
        edits = [e for e in edits if not (isinstance(e, MoveActor) and e.actor_id == edit.actor_id)]
    return edits + [edit]


# ---- camera paths ---------------------------------------------------------------------------------
def camera_path_dict(keyframes: list[tuple[ViewCamera, float]], width: int, lens: str = "pinhole", fps: float = 10.0) -> dict:
    """nerfstudio's ``camera_path.json`` for views ``(camera, time)`` rendered ``width`` pixels wide
    (`tasks.cli.camera_files` reads it back: OpenGL camera axes, vertical fov in degrees, one entry
    per frame, each with its scene ``time``)."""
    if not keyframes:
        raise InputError("viewer", "camera path", "no keyframes yet: add one first")
    first = keyframes[0][0].lens(width, lens)
    path = []
    for cam, t in keyframes:
        c2w = opencv_to_opengl(cam.T_world_cam)
        path.append({"camera_to_world": c2w.reshape(-1).tolist(), "fov": float(np.degrees(cam.fov_y)), "aspect": cam.aspect,
                     "time": float(t)})
    return {"camera_type": {"pinhole": "perspective"}.get(lens, lens), "render_width": first.width, "render_height": first.height,
            "fps": fps, "seconds": len(path) / fps, "camera_path": path}
