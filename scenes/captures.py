"""Real static captures: LLFF (``poses_bounds.npy``) and COLMAP sparse models, as `StaticDataset`.

Both are photographs of scenes that reach far beyond any box around the cameras (a wall behind a
plant, a skyline behind a car park), so the datasets say so (``unbounded``): the background field is
then contracted beyond an *inner box* (`sim.contraction`). The inner box here holds the cameras and
the near part of what they see: every camera's view frustum out to the capture's near depth. The
near depth also keeps samples off the first metres in front of each lens, where a field would
otherwise explain view-dependent colour with haze.

World frame (conventions in ARCHITECTURE.md): the file's frame turned so that the cameras' mean up
direction is +z and moved so that the mean camera centre is the origin
(LLFF and COLMAP are up to scale), scaled so that the inner box is `INNER_BOX_SIZE` across;
``meta["file_transform"]`` and ``meta["file_scale"]`` map file coordinates into this world, so
`scenes.datasets.world_to_file_pose` goes back.

LLFF layout (Mildenhall et al. 2019): ``poses_bounds.npy`` float ``[N, 17]``, per image a row-major
3x5 matrix whose columns 0-2 are the camera's [down, right, backwards] axes in the world, column 3
its centre, column 4 ``[height, width, focal]`` of the FULL-resolution image, then the near / far
depth bounds of the view; images in ``images/`` (full size) or ``images_N/`` (N times smaller),
sorted by name. The usual protocol holds out every 8th image (0, 8, 16, ...) for testing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scenes.camera import Camera, Intrinsics
from scenes.errors import InputError

LLFF_HOLDOUT_EVERY = 8
"""LLFF's protocol (NeRF, mip-NeRF, instant-ngp papers): images 0, 8, 16, ... are the test views."""

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG")


def is_llff(folder: Path) -> bool:
    return (Path(folder) / "poses_bounds.npy").is_file()


def split_indices(n: int, split: str, every: int, source: Path) -> list[int]:
    """Indices of ``split`` among ``n`` images holding out every ``every``-th (test and val alike)."""
    test = [i for i in range(n) if i % every == 0]
    if split in ("test", "val"):
        return test
    if split == "train":
        return [i for i in range(n) if i % every != 0]
    if split == "all":
        return list(range(n))
    raise InputError(source, "split", f"expected train, val, test or all, got {split!r}")


def read_llff_poses(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``T_file_cam [N, 4, 4]`` (OpenCV camera axes), full-resolution ``hwf [N, 3]`` and depth
    ``bounds [N, 2]`` of an LLFF ``poses_bounds.npy``; `InputError` on anything malformed."""
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated, not an npy, pickled objects...
        raise InputError(path, None, f"cannot read as a numpy array ({type(e).__name__}: {e})") from None
    if a.ndim != 2 or a.shape[1] != 17 or len(a) == 0:
        raise InputError(path, None, f"expected an [N, 17] array (3x5 pose + near/far per image), got shape {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise InputError(path, None, "contains NaN or infinite values")
    P = a[:, :15].reshape(-1, 3, 5)
    down, right, back = P[:, :, 0], P[:, :, 1], P[:, :, 2]
    R = np.stack([right, down, -back], -1)  # OpenCV camera axes: x right, y down, z forward
    bad = [i for i in range(len(R)) if not (np.allclose(R[i].T @ R[i], np.eye(3), atol=1e-3) and np.linalg.det(R[i]) > 0)]
    if bad:
        raise InputError(path, f"row {bad[0]} columns 0-2", "rotation is not orthonormal with det +1 ([down, right, back] axes)")
    hwf, bounds = P[:, :, 4], a[:, 15:17]
    if (hwf <= 0).any():
        raise InputError(path, "column 4 (height, width, focal)", "expected positive numbers")
    if (bounds[:, 0] <= 0).any() or (bounds[:, 1] <= bounds[:, 0]).any():
        raise InputError(path, "near/far bounds (columns 15, 16)", "expected 0 < near < far for every image")
    T = np.tile(np.eye(4), (len(R), 1, 1))
    T[:, :3, :3], T[:, :3, 3] = R, P[:, :, 3]
    return T, hwf, bounds


def llff_image_folder(root: Path, downscale: int) -> Path:
    """``images_N`` for ``downscale`` N > 1, else ``images`` (or, when only reduced copies exist, the
    largest of them); the error lists what there is."""
    name = "images" if downscale == 1 else f"images_{downscale}"
    folder = root / name
    smaller = sorted((int(p.name[7:]), p) for p in root.glob("images_*") if p.is_dir() and p.name[7:].isdigit())
    if downscale == 1 and not folder.is_dir() and smaller:  # only reduced copies shipped: the largest of them
        return smaller[0][1]
    if not folder.is_dir():
        have = sorted(p.name for p in root.glob("images*") if p.is_dir())
        raise InputError(folder, None, f"no such image folder for downscale {downscale} (found {have or 'none'}; "
                         "pass the downscale of one of them, e.g. 8 for images_8)")
    return folder


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_SUFFIXES)


def align_world(T_file_cam: np.ndarray) -> np.ndarray:
    """``M [4, 4]`` mapping file coordinates to a world with the mean camera up (-y of OpenCV
    cameras) along +z and the mean camera centre at the origin (a proper rotation + translation)."""
    up = -T_file_cam[:, :3, 1].mean(0)
    up /= np.linalg.norm(up)
    z = np.array([0.0, 0.0, 1.0])
    v, c = np.cross(up, z), float(up @ z)
    if np.linalg.norm(v) < 1e-12:  # already up, or upside down: turn about x
        R = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:  # Rodrigues: the rotation taking up onto z
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        R = np.eye(3) + vx + vx @ vx / (1 + c)
    M = np.eye(4)
    M[:3, :3] = R
    M[:3, 3] = -R @ T_file_cam[:, :3, 3].mean(0)
    return M


def inner_box(cameras: list[Camera], depth: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The axis-aligned box around every camera's view frustum from its centre out to ``depth``
    (z-depth in its own frame): the part of the scene a contracted field samples linearly."""
    pts = []
    for cam in cameras:
        K, T = cam.intrinsics, cam.T_world_cam
        corners = np.array([[(u - K.cx) / K.fx, (v - K.cy) / K.fy, 1.0] for u in (0, K.width) for v in (0, K.height)]) * depth
        pts += [T[:3, 3], *(corners @ T[:3, :3].T + T[:3, 3])]
    pts = np.asarray(pts)
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.02 * (hi - lo).max()  # no degenerate axis (cameras on a line, a flat frustum)
    return tuple((lo - pad).tolist()), tuple((hi + pad).tolist())


def near_depth(bounds: np.ndarray) -> float:
    """The capture's near depth: the 5th percentile of its views' near bounds (one odd view's
    bound does not shrink every ray's range)."""
    return float(np.percentile(bounds[:, 0], 5))


INNER_BOX_SIZE = 2.0
"""The largest extent of a real capture's inner box in the world frame (the file's units are
arbitrary: LLFF's fern spans ~30 of them, a COLMAP model anything). At a fixed size the field's
settings that are lengths (its initial density per unit, the normal step) mean the same on every
capture; 2 is nerfstudio's [-1, 1] box, the size the hash-grid defaults were made for."""


@dataclass
class PosedImages:
    """What a real-capture reader finds: cameras (world frame above) with their image files, the
    inner box, the near depth and the file-to-world map (``file_scale * (file_transform @ x)``)."""

    cameras: list[Camera]
    image_paths: list[Path]
    aabb: tuple[tuple[float, ...], tuple[float, ...]]
    near: float
    file_transform: np.ndarray
    kind: str
    file_scale: float = 1.0


def posed_images(cameras: list[Camera], files: list[Path], near: float, M: np.ndarray, kind: str, keep: list[int]) -> PosedImages:
    """The ``keep`` views, in a world scaled so that the inner box (every camera's frustum out to
    ``near``) is `INNER_BOX_SIZE` across: the same world for every split of a capture."""
    lo, hi = (np.asarray(b) for b in inner_box(cameras, near))
    s = INNER_BOX_SIZE / float((hi - lo).max())
    scaled = []
    for i in keep:
        T = cameras[i].T_world_cam.copy()
        T[:3, 3] *= s
        scaled.append(Camera(cameras[i].intrinsics, T, cameras[i].time, cameras[i].name, cameras[i].lens))
    aabb = (tuple((lo * s).tolist()), tuple((hi * s).tolist()))
    return PosedImages(scaled, [files[i] for i in keep], aabb, near * s, M, kind, s)


def load_llff(root: Path, split: str = "train", downscale: int = 1) -> PosedImages:
    """The ``split`` of the LLFF capture in ``root`` at ``images_{downscale}`` (see the module
    docstring for the layout; focal lengths follow each image's actual size)."""
    root = Path(root)
    poses_file = root / "poses_bounds.npy"
    T_file, hwf, bounds = read_llff_poses(poses_file)
    folder = llff_image_folder(root, downscale)
    files = image_files(folder)
    if len(files) != len(T_file):
        raise InputError(folder, None, f"{len(files)} images but {poses_file.name} has {len(T_file)} poses")
    import imageio.v2 as imageio

    h, w = np.asarray(imageio.imread(files[0])).shape[:2]
    M = align_world(T_file)
    cameras = []
    for i, f in enumerate(files):
        H, W, focal = hwf[i]
        s = w / W  # this folder's size over the full resolution
        if abs(h / H - s) > 0.01:
            raise InputError(f, None, f"{w}x{h} px is not the full {W:.0f}x{H:.0f} px scaled evenly")
        K = Intrinsics(int(w), int(h), focal * s, focal * s, w / 2.0, h / 2.0)
        cameras.append(Camera(K, M @ T_file[i], 0.0, f.stem))
    keep = split_indices(len(files), split, LLFF_HOLDOUT_EVERY, poses_file)
    return posed_images(cameras, files, near_depth(bounds), M, "llff", keep)


# ---- COLMAP ---------------------------------------------------------------------------------------
COLMAP_MODEL_DIRS = ("sparse/0", "sparse", "colmap/sparse/0", "")
"""Where a COLMAP sparse model (cameras / images / points3D, .bin or .txt) is looked for in a capture
folder, in this order (COLMAP's own layout, nerfstudio's ns-process-data layout, the folder itself)."""

COLMAP_IMAGE_DIRS = ("images", "")
"""Where the photos named in images.bin are looked for, relative to the capture folder."""


def find_colmap_model(root: Path) -> Path | None:
    """The folder of the COLMAP model in ``root`` (see `COLMAP_MODEL_DIRS`), or None."""
    for sub in COLMAP_MODEL_DIRS:
        d = Path(root) / sub
        if any((d / f"cameras{ext}").is_file() and (d / f"images{ext}").is_file() for ext in (".bin", ".txt")):
            return d
    return None


def colmap_lens(model: str, width: int, height: int, params, source: Path, camera_id: int):
    """``(Intrinsics, CameraModel | None)`` of one COLMAP camera (its model name and params): every
    model COLMAP writes that is a pinhole, OpenCV or fisheye lens; the others get a clear error."""
    from scenes.lens import CameraModel

    p = [float(v) for v in params]
    where = f"camera {camera_id} ({model})"
    f_c = {"SIMPLE_PINHOLE": 1, "SIMPLE_RADIAL": 1, "RADIAL": 1, "SIMPLE_RADIAL_FISHEYE": 1, "RADIAL_FISHEYE": 1}
    if model in f_c:
        fx = fy = p[0]
        cx, cy, extra = p[1], p[2], p[3:]
    elif model in ("PINHOLE", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV"):
        fx, fy, cx, cy, extra = p[0], p[1], p[2], p[3], p[4:]
    else:
        raise InputError(source, where, "unsupported camera model (supported: SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, "
                         "RADIAL, OPENCV, FULL_OPENCV, OPENCV_FISHEYE, SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE); "
                         "undistort the images with `colmap image_undistorter` first")
    K = Intrinsics(int(width), int(height), fx, fy, cx, cy)
    if model in ("SIMPLE_PINHOLE", "PINHOLE"):
        return K, None
    if model in ("SIMPLE_RADIAL", "RADIAL"):  # radial only: k1 (, k2), no tangential
        k = list(extra) + [0.0] * (2 - len(extra))
        dist, kind = (k[0], k[1], 0.0, 0.0), "opencv"
    elif model == "OPENCV":  # k1, k2, p1, p2
        dist, kind = tuple(extra), "opencv"
    elif model == "FULL_OPENCV":  # k1, k2, p1, p2, k3, k4, k5, k6
        dist, kind = tuple(extra), "opencv"
    else:  # fisheye: equidistant with k1..k4 (fewer given: zeros)
        dist, kind = tuple(list(extra) + [0.0] * (4 - len(extra))), "fisheye"
    if not any(dist):
        return K, None
    return K, CameraModel(kind, K.width, K.height, fx, fy, cx, cy, dist)


def _read_colmap(model_dir: Path):
    """cameras, images, points3D (or None) of a COLMAP model, .bin preferred, via nerfstudio's copy
    of COLMAP's own reader; any failure (truncated file, wrong format) is an `InputError`."""
    from nerfstudio.data.utils import colmap_parsing_utils as cp

    ext = ".bin" if (model_dir / "cameras.bin").is_file() and (model_dir / "images.bin").is_file() else ".txt"
    readers = {"cameras": cp.read_cameras_binary if ext == ".bin" else cp.read_cameras_text,
               "images": cp.read_images_binary if ext == ".bin" else cp.read_images_text,
               "points3D": cp.read_points3D_binary if ext == ".bin" else cp.read_points3D_text}
    out = {}
    for name, read in readers.items():
        f = model_dir / f"{name}{ext}"
        if name == "points3D" and not f.is_file():
            out[name] = None
            continue
        try:
            out[name] = read(str(f))
        except Exception as e:  # struct.error on a truncated file, ValueError/KeyError on bad text...
            raise InputError(f, None, f"not a readable COLMAP {name} file ({type(e).__name__}: {e})") from None
        if name != "points3D" and not out[name]:
            raise InputError(f, None, f"no {name} in the model")
    return out["cameras"], out["images"], out["points3D"]


def load_colmap(root: Path, split: str = "train", downscale: int = 1) -> PosedImages:
    """The ``split`` of a COLMAP capture in ``root`` (model found by `find_colmap_model`, photos in
    ``images/`` or ``images_{downscale}/``), every 8th image by name held out for test."""
    root = Path(root)
    model_dir = find_colmap_model(root)
    if model_dir is None:
        raise InputError(root, None, "no COLMAP model (cameras + images .bin/.txt in sparse/0, sparse or the folder)")
    cams, imgs, points = _read_colmap(model_dir)
    folder = root / ("images" if downscale == 1 else f"images_{downscale}")
    if not folder.is_dir():
        folder = llff_image_folder(root, downscale) if downscale != 1 else root
    images = sorted(imgs.values(), key=lambda im: im.name)
    T_file, cameras, files = [], [], []
    for im in images:
        if im.camera_id not in cams:
            raise InputError(model_dir / "images", f"image {im.name}", f"refers to camera {im.camera_id}, which is not in cameras")
        c = cams[im.camera_id]
        K, lens = colmap_lens(c.model, c.width, c.height, c.params, model_dir / "cameras", c.id)
        if downscale > 1:
            K = K.scaled(1.0 / downscale)
            lens = None if lens is None else type(lens)(lens.kind, K.width, K.height, K.fx, K.fy, K.cx, K.cy, lens.distortion)
        f = folder / im.name
        if not f.is_file():
            raise InputError(model_dir / "images", f"image {im.name}", f"photo {f} does not exist")
        R = _qvec_to_matrix(np.asarray(im.qvec, dtype=np.float64))
        T_cam_file = np.eye(4)
        T_cam_file[:3, :3], T_cam_file[:3, 3] = R, np.asarray(im.tvec, dtype=np.float64)
        T_file.append(np.linalg.inv(T_cam_file))
        cameras.append((K, lens, f.stem))
        files.append(f)
    T_file = np.asarray(T_file)
    M = align_world(T_file)
    cameras = [Camera(K, M @ T, 0.0, name, lens) for (K, lens, name), T in zip(cameras, T_file)]
    near = _colmap_near(images, points, T_file) if points else 0.0
    if near <= 0:  # no points: a box 4x the cameras' spread
        spread = float(np.ptp(T_file[:, :3, 3], axis=0).max()) or 1.0
        near = 2.0 * spread
    keep = split_indices(len(files), split, LLFF_HOLDOUT_EVERY, model_dir / "images")
    return posed_images(cameras, files, near, M, "colmap", keep)


def _qvec_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation of COLMAP's unit quaternion ``(w, x, y, z)`` (world to camera)."""
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _colmap_near(images, points, T_file: np.ndarray) -> float:
    """Near depth from the model's points seen by each image (their z in its frame), as LLFF's
    imgs2poses computes its bounds: a low percentile per image, then `near_depth` over images."""
    xyz = {pid: p.xyz for pid, p in points.items()}
    nears = []
    for im, T in zip(images, T_file):
        ids = [int(i) for i in np.asarray(im.point3D_ids) if int(i) in xyz]
        if len(ids) < 8:
            continue
        p = np.asarray([xyz[i] for i in ids])
        z = (p - T[:3, 3]) @ T[:3, 2]
        z = z[z > 0]
        if len(z):
            nears.append(np.percentile(z, 0.5))
    return near_depth(np.asarray(nears)[:, None]) if nears else 0.0


def load_real_capture(root: Path, split: str, downscale: int, kind: str | None = None) -> PosedImages:
    """LLFF or COLMAP, by ``kind`` or by what the folder holds; a folder of photos without poses
    gets the message that says how to make them."""
    root = Path(root)
    if kind == "llff" or (kind is None and is_llff(root)):
        return load_llff(root, split, downscale)
    if kind == "colmap" or (kind is None and find_colmap_model(root)):
        return load_colmap(root, split, downscale)
    raise InputError(root, None, "no poses: expected poses_bounds.npy (LLFF) or a COLMAP model")
