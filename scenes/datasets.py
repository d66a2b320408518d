"""Captured static datasets (background-only scenes) loaded through nerfstudio's dataparsers.

These on-disk formats are read, detected from the files (or forced with ``kind=``):

- ``"blender"``: NeRF-synthetic folders with ``transforms_{train,val,test}.json`` and
  ``camera_angle_x`` (e.g. lego). Parsed with scale factor 1.0, so poses stay in the file's units.
- ``"nerfstudio"``: a ``transforms.json`` with ``fl_x, fl_y, cx, cy, w, h`` (top level or per frame).
  nerfstudio's parser re-orients, re-centres and rescales the poses into a [-1, 1] box.
- ``"instant-ngp"``: a ``transforms.json`` with ``camera_angle_x`` / ``x_fov`` / ``aabb_scale``;
  nerfstudio's parser multiplies camera positions by its ``scene_scale`` (0.3333).
- ``"llff"`` and ``"colmap"``: real captures (``poses_bounds.npy``; a COLMAP sparse model), read by
  `scenes.captures`, unbounded, with their lens distortion.

Conventions (ARCHITECTURE.md): the world is the dataparser's output frame. Cameras are OpenCV
(x right, y down, z forward); the files and nerfstudio use OpenGL camera axes (z backward), which are
converted once, here, with `opengl_to_opencv`. ``T_world_cam`` maps camera to world coordinates.
Images are float32 RGB in [0, 1], *straight* (not premultiplied) colour as stored on disk; use
`StaticDataset.composited` for colour over the background.

How to go back to the file's own coordinates: a camera centre ``t_file`` of the transforms file
lands at ``t_world = file_scale * (R_f @ t_file + t_f)`` with ``[R_f | t_f] = meta["file_transform"]``
and its rotation at ``R_world = R_f @ R_file``; `world_to_file_pose` inverts that.
``meta["dataparser_transform"]`` / ``meta["dataparser_scale"]`` are nerfstudio's own numbers (they
also include an ``applied_transform`` / ``applied_scale`` written into the file by ns-process-data,
i.e. they map the *original capture* frame, as nerfstudio's ``dataparser_transforms.json`` does).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.captures import IMAGE_SUFFIXES, PosedImages, find_colmap_model, is_llff, load_real_capture
from scenes.errors import InputError
from scenes.lens import CameraModel
from scenes.transforms import opengl_to_opencv

KINDS = ("blender", "nerfstudio", "instant-ngp", "llff", "colmap")
_INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
_PERSPECTIVE_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE")
#: ns-process-data's implicit applied_transform for COLMAP folders without one (nerfstudio 1.x).
_COLMAP_APPLIED = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]


@dataclass
class StaticDataset:
    """Posed images of a static scene. ``N`` views of ``H x W`` pixels (all views share one size)."""

    cameras: list[Camera]
    """One OpenCV camera per image, time 0, named by the image file stem."""
    images: np.ndarray
    """float32 ``[N, H, W, 3]`` RGB in [0, 1], straight (un-premultiplied) colour."""
    alphas: np.ndarray | None
    """float32 ``[N, H, W]`` opacity in [0, 1] when the images carry an alpha channel, else None."""
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]]
    """``((xmin, ymin, zmin), (xmax, ymax, zmax))`` bounding the scene, world frame."""
    background: tuple[float, float, float] | None
    """Colour to composite transparent pixels on (white for Blender data), or None."""
    meta: dict[str, Any] = field(default_factory=dict)
    """kind, split, source, transforms_file, downscale, dataparser_transform [4, 4],
    dataparser_scale, file_transform [4, 4], file_scale, image_paths, distortion_params [N, 6]."""
    unbounded: bool = False
    """The photos see beyond ``aabb`` (a real capture): train with a contracted background
    (`sim.contraction`), ``aabb`` being its inner box."""
    near: float = 0.0
    """Distance from the cameras before which there is no scene content (scene units; 0 = unknown)."""

    def __len__(self) -> int:
        return len(self.cameras)

    def composited(self, background: tuple[float, float, float] | None = None) -> np.ndarray:
        """RGB ``[N, H, W, 3]`` over ``background`` (default: the dataset's); unchanged without alpha."""
        bg = self.background if background is None else background
        if self.alphas is None or bg is None:
            return self.images
        a = self.alphas[..., None]
        return (self.images * a + np.asarray(bg, dtype=np.float32) * (1.0 - a)).astype(np.float32)


def load_static_dataset(
    path: str | Path,
    split: str = "train",
    downscale: int = 1,
    kind: str | None = None,
    parser_options: dict[str, Any] | None = None,
) -> StaticDataset:
    """Load ``split`` of the dataset at ``path`` (a folder, or a ``transforms*.json`` file).

    ``split``: ``train``/``val``/``test`` (Blender: any ``transforms_{split}.json``); for
    transforms.json kinds also ``all`` (every frame). ``downscale``: integer box-filter factor for the
    images (intrinsics follow). ``kind``: force one of `KINDS` instead of detecting it.
    ``parser_options``: extra fields for the nerfstudio dataparser config (e.g.
    ``{"auto_scale_poses": False}``). Raises `InputError` naming the file and field on bad input.
    """
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) or downscale < 1:
        raise InputError("load_static_dataset", "downscale", f"expected an integer >= 1, got {downscale!r}")
    root = Path(path)
    if not root.exists():
        raise InputError(root, None, "dataset path does not exist")
    if kind in ("llff", "colmap") or (kind is None and root.is_dir() and (is_llff(root) or find_colmap_model(root))):
        return _from_posed_images(load_real_capture(root, split, downscale, kind), split, downscale)
    kind, data, tf_file = _detect(root, split, kind)
    meta_json = _read_json(tf_file)
    frames = _check_frames(meta_json, tf_file, kind)
    _check_intrinsics_fields(meta_json, frames, tf_file, kind)

    outputs = _run_parser(kind, data, tf_file, split, parser_options or {})
    cams_ns = outputs.cameras
    paths = [Path(p) for p in outputs.image_filenames]
    if not paths:
        raise InputError(tf_file, "frames", f"split '{split}' has no images")
    for p in paths:
        if not p.is_file():
            raise InputError(tf_file, "file_path", f"image file {p} does not exist")

    images, alphas = _load_images(paths)
    n, h, w = images.shape[:3]
    c2w = cams_ns.camera_to_worlds.detach().cpu().numpy().astype(np.float64)
    fx = cams_ns.fx.reshape(-1).cpu().numpy().astype(np.float64)
    fy = cams_ns.fy.reshape(-1).cpu().numpy().astype(np.float64)
    cx = cams_ns.cx.reshape(-1).cpu().numpy().astype(np.float64)
    cy = cams_ns.cy.reshape(-1).cpu().numpy().astype(np.float64)
    widths = cams_ns.width.reshape(-1).cpu().numpy()
    heights = cams_ns.height.reshape(-1).cpu().numpy()
    fx, fy, cx, cy, widths, heights = (np.broadcast_to(a, (n,)) for a in (fx, fy, cx, cy, widths, heights))
    if kind == "instant-ngp" and "fl_y" in meta_json:  # nerfstudio 1.1.5 ignores fl_y here (uses fl_x)
        fy = np.full(n, float(meta_json["fl_y"]))

    for i, p in enumerate(paths):
        if (int(widths[i]), int(heights[i])) != (w, h):
            raise InputError(tf_file, "w/h", f"{p.name} is {w}x{h} px but its camera says {widths[i]}x{heights[i]}")
    if downscale > 1:
        images, alphas, _ = _box_downscale(images, alphas, downscale)
    dist = cams_ns.distortion_params
    dist = None if dist is None else np.broadcast_to(dist.cpu().numpy(), (n, dist.shape[-1])).copy()
    fisheye = meta_json.get("camera_model") == "OPENCV_FISHEYE"
    cameras = []
    for i, p in enumerate(paths):
        K = Intrinsics(int(widths[i]), int(heights[i]), fx[i], fy[i], cx[i], cy[i])
        if downscale > 1:
            K = _crop_and_scale(K, downscale)
        T = np.eye(4)
        T[:3, :4] = c2w[i]
        lens = _lens_of(K, None if dist is None else dist[i], fisheye, tf_file)
        cameras.append(Camera(K, opengl_to_opencv(T), 0.0, p.stem, lens))

    dp_T = np.eye(4)
    dp_T[:3, :4] = outputs.dataparser_transform.detach().cpu().numpy()[:3, :4]
    dp_scale = float(outputs.dataparser_scale)
    file_T, file_scale = _file_transform(kind, meta_json, data, dp_T, dp_scale)
    alpha_color = getattr(outputs, "alpha_color", None)
    background = tuple(float(v) for v in alpha_color.tolist()) if alpha_color is not None else None
    aabb_t = outputs.scene_box.aabb.detach().cpu().numpy().astype(float)
    meta = {
        "kind": kind,
        "split": split,
        "source": str(root),
        "transforms_file": str(tf_file),
        "downscale": int(downscale),
        "dataparser_transform": dp_T,
        "dataparser_scale": dp_scale,
        "file_transform": file_T,
        "file_scale": file_scale,
        "image_paths": [str(p) for p in paths],
        "distortion_params": dist,
    }
    return StaticDataset(
        cameras=cameras,
        images=images,
        alphas=alphas,
        aabb=(tuple(aabb_t[0].tolist()), tuple(aabb_t[1].tolist())),
        background=background,
        meta=meta,
        unbounded=kind != "blender" and alphas is None,  # photographs: the world goes on past the box
    )


def _lens_of(K: Intrinsics, dist: np.ndarray | None, fisheye: bool, src: Path) -> CameraModel | None:
    """The lens of nerfstudio's ``distortion_params`` ``(k1, k2, k3, k4, p1, p2)``: OpenCV
    ``(k1, k2, p1, p2, k3)`` or fisheye ``(k1, k2, k3, k4)``; None when there is no distortion."""
    if dist is None or not np.any(np.abs(dist) > 0):
        return None
    k1, k2, k3, k4, p1, p2 = (float(v) for v in dist)
    if fisheye:
        return CameraModel("fisheye", K.width, K.height, K.fx, K.fy, K.cx, K.cy, (k1, k2, k3, k4))
    if k4 != 0:
        raise InputError(src, "k4", "a perspective (OPENCV) camera with k4 is not supported (OpenCV's k4 is rational; use 0)")
    return CameraModel("opencv", K.width, K.height, K.fx, K.fy, K.cx, K.cy, (k1, k2, p1, p2, k3))


def _from_posed_images(posed: PosedImages, split: str, downscale: int) -> StaticDataset:
    images, alphas = _load_images(posed.image_paths)
    for cam, p, im in zip(posed.cameras, posed.image_paths, images):
        if (cam.intrinsics.width, cam.intrinsics.height) != (im.shape[1], im.shape[0]):
            raise InputError(p, "size", f"image is {im.shape[1]}x{im.shape[0]} px, its camera {cam.intrinsics.width}x{cam.intrinsics.height}")
    meta = {"kind": posed.kind, "split": split, "source": str(posed.image_paths[0].parent), "downscale": int(downscale),
            "file_transform": posed.file_transform, "file_scale": posed.file_scale, "image_paths": [str(p) for p in posed.image_paths]}
    return StaticDataset(cameras=posed.cameras, images=images, alphas=alphas, aabb=posed.aabb, background=None, meta=meta,
                         unbounded=True, near=posed.near)


def world_to_file_pose(T_world_cam: np.ndarray, meta: dict) -> np.ndarray:
    """Map a dataset-world pose (OpenCV axes) back to the transforms file's frame (OpenCV axes)."""
    M, s = np.asarray(meta["file_transform"], dtype=np.float64), float(meta["file_scale"])
    T = np.asarray(T_world_cam, dtype=np.float64).copy()
    T[:3, 3] /= s
    return np.linalg.inv(M) @ T


def file_to_world_pose(T_file_cam: np.ndarray, meta: dict) -> np.ndarray:
    """Map a pose in the transforms file's frame (OpenCV axes) into the dataset world."""
    M, s = np.asarray(meta["file_transform"], dtype=np.float64), float(meta["file_scale"])
    T = M @ np.asarray(T_file_cam, dtype=np.float64)
    T[:3, 3] *= s
    return T


# ---------------------------------------------------------------------------------------------
# detection and validation (before nerfstudio sees the files, so errors name file and field)


def _detect(root: Path, split: str, kind: str | None) -> tuple[str, Path, Path]:
    """Return (kind, data path for the parser, transforms file of this split)."""
    if kind is not None and kind not in KINDS:
        raise InputError("load_static_dataset", "kind", f"expected one of {KINDS}, got {kind!r}")
    if root.is_file():
        folder = root.parent
        if root.name.startswith("transforms_") and root.suffix == ".json":
            kind = kind or "blender"
        tf_single = root
    else:
        folder, tf_single = root, root / "transforms.json"
    if kind is None:
        if any(folder.glob("transforms_*.json")) and not tf_single.is_file():
            kind = "blender"
        elif tf_single.is_file():
            m = _read_json(tf_single)
            ngp_keys = ("camera_angle_x", "x_fov", "aabb_scale")
            ns_keys = ("camera_model", "applied_transform", "applied_scale")
            is_ngp = isinstance(m, dict) and any(k in m for k in ngp_keys) and not any(k in m for k in ns_keys)
            kind = "instant-ngp" if is_ngp else "nerfstudio"
        elif photos_without_poses(folder):
            raise InputError(root, None, f"{photos_without_poses(folder)} photos but no camera poses: make them with COLMAP, "
                             "e.g. `colmap automatic_reconstructor --workspace_path DIR --image_path DIR/images` "
                             "(then train on DIR: sparse/0 is read) or `ns-process-data images --data DIR --output-dir OUT`")
        else:
            raise InputError(root, None, "no transforms.json, transforms_{train,val,test}.json, poses_bounds.npy (LLFF) "
                             "or COLMAP model (sparse/0) found")
    if kind == "blender":
        tf = folder / f"transforms_{split}.json"
        if not tf.is_file():
            have = sorted(p.name for p in folder.glob("transforms_*.json"))
            raise InputError(tf, "split", f"split '{split}' missing (found {have or 'no transforms_*.json'})")
        return kind, folder, tf
    if split not in ("train", "val", "test", "all"):
        raise InputError(tf_single, "split", f"expected train, val, test or all, got {split!r}")
    if not tf_single.is_file():
        raise InputError(tf_single, None, f"no transforms file for kind '{kind}'")
    return kind, (root if root.is_file() else folder), tf_single


def photos_without_poses(folder: Path) -> int:
    """How many photos ``folder`` (or its ``images/``) holds, for the no-poses message."""
    return sum(1 for d in (folder, folder / "images") if d.is_dir() for p in d.iterdir() if p.suffix in IMAGE_SUFFIXES)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(path, None, "file does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, None, f"not valid JSON ({e})") from None


def _check_frames(meta: Any, src: Path, kind: str) -> list[dict]:
    if not isinstance(meta, dict):
        raise InputError(src, None, "expected a JSON object at the top level")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InputError(src, "frames", "missing or empty (expected a list of frames)")
    data_dir = src.parent
    for i, fr in enumerate(frames):
        where = f"frames[{i}]"
        if not isinstance(fr, dict) or not isinstance(fr.get("file_path"), str):
            raise InputError(src, f"{where}.file_path", "missing (expected a string)")
        try:
            T = np.asarray(fr["transform_matrix"], dtype=np.float64)
        except KeyError:
            raise InputError(src, f"{where}.transform_matrix", "missing") from None
        except (TypeError, ValueError):
            raise InputError(src, f"{where}.transform_matrix", "expected a 4x4 matrix of numbers") from None
        if T.shape not in ((4, 4), (3, 4)) or not np.all(np.isfinite(T)):
            raise InputError(src, f"{where}.transform_matrix", f"expected a finite 4x4 matrix, got shape {T.shape}")
        R = T[:3, :3]
        if not np.allclose(R.T @ R, np.eye(3), atol=1e-3) or abs(np.linalg.det(R) - 1) > 1e-3:
            raise InputError(src, f"{where}.transform_matrix", "rotation part is not orthonormal with det +1")
        if T.shape == (4, 4) and not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
            raise InputError(src, f"{where}.transform_matrix", "last row must be 0 0 0 1")
        fp = fr["file_path"]
        if kind == "blender":
            cands = [data_dir / (fp.replace("./", "") + ".png")]
        elif kind == "instant-ngp":
            cands = [data_dir / fp, data_dir / (fp + ".png")]
        else:
            cands = [data_dir / fp]
        if not any(c.is_file() for c in cands):
            raise InputError(src, f"{where}.file_path", f"image file {cands[0]} does not exist")
    return frames


def _check_intrinsics_fields(meta: dict, frames: list[dict], src: Path, kind: str) -> None:
    def finite_number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if kind == "blender":
        if "camera_angle_x" not in meta:
            raise InputError(src, "camera_angle_x", "missing (horizontal field of view, radians)")
        a = meta["camera_angle_x"]
        if not finite_number(a) or not 0 < a < math.pi:
            raise InputError(src, "camera_angle_x", f"expected radians in (0, pi), got {a!r}")
    elif kind == "nerfstudio":
        if meta.get("camera_model", "OPENCV") not in _PERSPECTIVE_MODELS:
            raise InputError(src, "camera_model",
                             f"expected one of {_PERSPECTIVE_MODELS}, got {meta['camera_model']!r}")
        for key in _INTRINSIC_KEYS:
            if key in meta:
                if not finite_number(meta[key]):
                    raise InputError(src, key, f"expected a finite number, got {meta[key]!r}")
                continue
            for i, fr in enumerate(frames):
                if key not in fr:
                    raise InputError(src, f"frames[{i}].{key}", f"missing (and no top-level '{key}')")
                if not finite_number(fr[key]):
                    raise InputError(src, f"frames[{i}].{key}", f"expected a finite number, got {fr[key]!r}")
    else:  # instant-ngp
        if meta.get("is_fisheye", False):
            raise InputError(src, "is_fisheye", "fisheye cameras are not supported (pinhole only)")
        if not any(k in meta for k in ("fl_x", "x_fov", "camera_angle_x")):
            raise InputError(src, "camera_angle_x", "missing (need one of fl_x, x_fov, camera_angle_x)")
        for key in ("fl_x", "fl_y", "x_fov", "camera_angle_x", "cx", "cy", "w", "h"):
            if key in meta and not finite_number(meta[key]):
                raise InputError(src, key, f"expected a finite number, got {meta[key]!r}")


# ---------------------------------------------------------------------------------------------
# nerfstudio, images, frames


def _run_parser(kind: str, data: Path, tf_file: Path, split: str, options: dict):
    """Run nerfstudio's dataparser; any exception it raises becomes an `InputError`."""
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
    from nerfstudio.data.dataparsers.instant_ngp_dataparser import InstantNGPDataParserConfig
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    ns_split = split
    if kind == "blender":
        cfg = BlenderDataParserConfig(data=data, scale_factor=1.0, alpha_color="white")
    elif kind == "nerfstudio":
        cfg = NerfstudioDataParserConfig(data=data, downscale_factor=1)
    else:
        cfg = InstantNGPDataParserConfig(data=data)
    if split == "all" and kind != "blender":
        cfg.eval_mode, ns_split = "all", "train"
    for k, v in options.items():
        if not hasattr(cfg, k):
            raise InputError("load_static_dataset", f"parser_options.{k}", f"not a field of {type(cfg).__name__}")
        setattr(cfg, k, v)
    try:
        return cfg.setup().get_dataparser_outputs(split=ns_split)
    except InputError:
        raise
    except Exception as e:  # nerfstudio asserts / raises RuntimeError, KeyError, ...: never a bare traceback
        raise InputError(tf_file, None, f"nerfstudio {kind} dataparser failed: {type(e).__name__}: {e}") from None


def _load_images(paths: list[Path]) -> tuple[np.ndarray, np.ndarray | None]:
    import imageio.v2 as imageio

    rgbs, alphas = [], []
    for p in paths:
        try:
            im = np.asarray(imageio.imread(p))
        except Exception as e:
            raise InputError(p, None, f"cannot read image ({type(e).__name__}: {e})") from None
        if im.dtype == np.uint8:
            im = im.astype(np.float32) / 255.0
        elif im.dtype == np.uint16:
            im = im.astype(np.float32) / 65535.0
        else:
            im = im.astype(np.float32)
        if im.ndim == 2:
            im = im[..., None]
        c = im.shape[-1]
        if im.ndim != 3 or c not in (1, 2, 3, 4):
            raise InputError(p, None, f"expected a grey, RGB or RGBA image, got shape {im.shape}")
        rgb = np.repeat(im[..., :1], 3, -1) if c in (1, 2) else im[..., :3]
        rgbs.append(rgb)
        alphas.append(im[..., -1] if c in (2, 4) else None)
        if rgb.shape != rgbs[0].shape:
            raise InputError(p, "size", f"image is {rgb.shape[1]}x{rgb.shape[0]} px, the first one is "
                             f"{rgbs[0].shape[1]}x{rgbs[0].shape[0]} px (one size per dataset)")
    images = np.clip(np.stack(rgbs), 0.0, 1.0).astype(np.float32)
    if all(a is None for a in alphas):
        return images, None
    full = [np.ones(images.shape[1:3], np.float32) if a is None else a for a in alphas]
    return images, np.clip(np.stack(full), 0.0, 1.0).astype(np.float32)


def _box_downscale(images: np.ndarray, alphas: np.ndarray | None, d: int):
    """Average ``d x d`` blocks (cropping the right/bottom remainder). Colour is filtered premultiplied,
    so compositing the result equals box-filtering the composited full-resolution image."""
    n, h, w, _ = images.shape
    h2, w2 = h // d, w // d
    if h2 == 0 or w2 == 0:
        raise InputError("load_static_dataset", "downscale", f"factor {d} leaves no pixels of a {w}x{h} image")

    def box(x):
        x = x[:, : h2 * d, : w2 * d]
        return x.reshape(n, h2, d, w2, d, *x.shape[3:]).mean(axis=(2, 4))

    if alphas is None:
        return box(images).astype(np.float32), None, (h2, w2)
    a = box(alphas)
    pre = box(images * alphas[..., None])
    rgb = np.where(a[..., None] > 0, pre / np.maximum(a[..., None], 1e-12), 0.0)
    return np.clip(rgb, 0, 1).astype(np.float32), a.astype(np.float32), (h2, w2)


def _crop_and_scale(K: Intrinsics, d: int) -> Intrinsics:
    """Intrinsics after cropping to a multiple of ``d`` (right/bottom) and shrinking by ``d``."""
    cropped = Intrinsics((K.width // d) * d, (K.height // d) * d, K.fx, K.fy, K.cx, K.cy)
    return cropped.scaled(1.0 / d)


def _file_transform(kind: str, meta: dict, data: Path, dp_T: np.ndarray, dp_scale: float):
    """(M [4, 4], s): world = s * (M @ file) for points, from nerfstudio's recorded transform/scale."""
    if kind != "nerfstudio":
        return dp_T, dp_scale
    A = meta.get("applied_transform")
    folder = data.parent if data.is_file() else data
    if A is None and (folder / "colmap/sparse/0").exists():
        A = _COLMAP_APPLIED
    M = dp_T
    if A is not None:
        A4 = np.eye(4)
        A4[:3, :4] = np.asarray(A, dtype=np.float64)[:3, :4]
        M = dp_T @ np.linalg.inv(A4)
    s = dp_scale / float(meta["applied_scale"]) if "applied_scale" in meta else dp_scale
    return M, s
