"""Training rays: every pixel of every view (and optional LiDAR rays), sampled uniformly.

Views may have different sizes and times. Each ray carries a *time index* into a table of actor
poses (``T_actor_world`` per distinct capture time), so a batch can mix rays from many times and
the compositor still places every actor where it was when that pixel was taken.

Conventions: OpenCV cameras, world z up, metres, time in seconds; images float in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scenes.camera import Camera
from scenes.graph import SceneGraph
from scenes.transforms import invert_pose
from sim.compose import ActorRays


@dataclass
class LidarRays:
    """World-space LiDAR rays: ``ranges`` is ``inf`` where nothing returned."""

    origins: np.ndarray
    dirs: np.ndarray
    ranges: np.ndarray
    times: np.ndarray


def _uint8_pixels(image: np.ndarray) -> np.ndarray:
    """``[H*W, 3]`` uint8 pixels of a uint8 or float-in-[0, 1] image."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    return a.reshape(-1, 3)


class RayBank:
    """All training rays of a scene, sampled uniformly at random."""

    def __init__(self, cameras: list[Camera], images: list[np.ndarray], graph: SceneGraph,
                 alphas: list[np.ndarray] | None = None, lidar: LidarRays | None = None,
                 semantics: list[np.ndarray] | None = None, masks: list[np.ndarray | None] | None = None):
        """``masks``: per view, None or a bool ``[H, W]`` (False: a pixel that does not see the scene,
        e.g. the ego car's own body); views of one rig camera share one array. Masked pixels are
        never sampled."""
        if len(cameras) != len(images) or not cameras:
            raise ValueError(f"RayBank: need one image per camera, got {len(cameras)} cameras, {len(images)} images")
        self.graph = graph
        sizes = [im.shape[0] * im.shape[1] for im in images]
        self.offsets = torch.tensor(np.concatenate([[0], np.cumsum(sizes)]), dtype=torch.long)
        self.widths = torch.tensor([c.intrinsics.width for c in cameras])
        self.K = torch.tensor([[c.intrinsics.fx, c.intrinsics.fy, c.intrinsics.cx, c.intrinsics.cy] for c in cameras], dtype=torch.float32)
        self.T_world_cam = torch.tensor(np.stack([c.T_world_cam for c in cameras]), dtype=torch.float32)
        self.lens_dirs, self.view_lens_offset = self._lens_tables(cameras)
        self.rgb = torch.from_numpy(np.concatenate([_uint8_pixels(im) for im in images]))  # 4x less memory than float
        self.semantic = None  # uint8 class ids per pixel (`scenes.classes`), when the data has labels
        if semantics is not None:
            self.semantic = torch.from_numpy(np.concatenate([np.asarray(a, np.uint8).reshape(-1) for a in semantics]))
        self.alpha = None
        if alphas is not None:
            self.alpha = torch.from_numpy(np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in alphas]))
        times = sorted({float(c.time) for c in cameras} | (set(np.unique(lidar.times).tolist()) if lidar is not None else set()))
        self.times = np.asarray(times)
        self.view_time_idx = torch.tensor(np.searchsorted(self.times, [c.time for c in cameras]))
        self.poses = self._actor_pose_table()
        self.heights = torch.tensor([c.intrinsics.height for c in cameras])
        self.valid_cum, self.valid_table, self.view_valid_offset = self._valid_tables(masks, sizes)
        self.actor_pixels = self._actor_pixel_index()
        self.lidar = None
        if lidar is not None and len(lidar.ranges):
            self.lidar = {
                "origins": torch.as_tensor(lidar.origins, dtype=torch.float32),
                "dirs": torch.as_tensor(lidar.dirs, dtype=torch.float32),
                "ranges": torch.as_tensor(lidar.ranges, dtype=torch.float32),
                "time_idx": torch.as_tensor(np.searchsorted(self.times, lidar.times)),
            }

    @staticmethod
    def _lens_tables(cameras: list[Camera]) -> tuple[Tensor, Tensor]:
        """Camera-frame unit directions of every pixel of each distinct non-pinhole lens, flat
        ``[sum H*W, 3]``, and per view the offset of its lens's table (-1: pinhole, computed on the
        fly). Undistortion is iterative, so it is done once per lens, not per batch."""
        tables, offsets, where, size = [], [], {}, 0
        for cam in cameras:
            if cam.lens is None:
                offsets.append(-1)
                continue
            if cam.lens not in where:
                where[cam.lens] = size
                d = cam.lens.pixel_directions()[0].reshape(-1, 3)
                tables.append(torch.as_tensor(d, dtype=torch.float32))
                size += len(d)
            offsets.append(where[cam.lens])
        flat = torch.cat(tables) if tables else torch.zeros(0, 3)
        return flat, torch.tensor(offsets, dtype=torch.long)

    @staticmethod
    def _valid_tables(masks: list[np.ndarray | None] | None, sizes: list[int]) -> tuple[Tensor, Tensor, Tensor]:
        """Where the sampled pixels come from: cumulative counts of each view's valid pixels
        ``[V + 1]``, the flat pixel indices of each distinct mask's valid pixels, and per view the
        offset of its mask's indices in that table (-1: no mask, every pixel valid)."""
        counts, offsets, table, where, size = [], [], [], {}, 0
        for view, n_pixels in enumerate(sizes):
            mask = masks[view] if masks is not None else None
            if mask is None:
                counts.append(n_pixels)
                offsets.append(-1)
                continue
            if id(mask) not in where:
                if np.asarray(mask).size != n_pixels:
                    raise ValueError(f"RayBank: view {view}'s mask has {np.asarray(mask).size} pixels, its image {n_pixels}")
                valid = np.flatnonzero(np.asarray(mask, dtype=bool).reshape(-1))
                where[id(mask)] = (size, len(valid))
                table.append(torch.from_numpy(valid.astype(np.int64)))
                size += len(valid)
            offsets.append(where[id(mask)][0])
            counts.append(where[id(mask)][1])
        cum = torch.tensor(np.concatenate([[0], np.cumsum(counts)]), dtype=torch.long)
        if int(cum[-1]) == 0:
            raise ValueError("RayBank: the masks leave no pixel to train on")
        return cum, torch.cat(table) if table else torch.zeros(0, dtype=torch.long), torch.tensor(offsets, dtype=torch.long)

    @property
    def n_rays(self) -> int:
        return int(self.offsets[-1])

    @property
    def masked(self) -> bool:
        """Whether some pixels are masked out (`valid`)."""
        return bool((self.view_valid_offset >= 0).any())

    def valid(self, flat: Tensor) -> Tensor:
        """Whether each of the flat pixel indices ``flat`` is one training may use."""
        if not self.masked:
            return torch.ones(len(flat), dtype=torch.bool)
        ok = torch.zeros(self.n_rays, dtype=torch.bool)
        ok[self._uniform_valid(torch.arange(int(self.valid_cum[-1])))[0]] = True
        return ok[flat]

    def _uniform_valid(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """``(flat pixel index, view)`` of the ``r``-th valid pixels (in view order)."""
        view = torch.searchsorted(self.valid_cum, r, right=True) - 1
        k = r - self.valid_cum[view]
        off = self.view_valid_offset[view]
        pix = torch.where(off >= 0, self.valid_table[torch.where(off >= 0, off + k, 0)] if len(self.valid_table) else k, k)
        return self.offsets[view] + pix, view

    def _actor_pose_table(self) -> Tensor:
        """``T_actor_world [n_times, n_actors, 4, 4]``."""
        A = len(self.graph.actors)
        table = np.zeros((len(self.times), A, 4, 4))
        for ti, t in enumerate(self.times):
            for a, actor in enumerate(self.graph.actors):
                table[ti, a] = invert_pose(actor.track.pose_at(float(t)))
        return torch.tensor(table, dtype=torch.float32)

    def _actor_pixel_index(self) -> Tensor:
        """Flat indices of the pixels whose ray may hit an actor box at the view's time: inside the
        2D bounding box of the projected box corners (boxes reaching behind a camera are skipped)."""
        mask = torch.zeros(self.n_rays, dtype=torch.bool)
        corners = torch.tensor([[sx, sy, sz] for sx in (-0.5, 0.5) for sy in (-0.5, 0.5) for sz in (-0.5, 0.5)])
        T_cam_world = torch.linalg.inv(self.T_world_cam)
        for a, actor in enumerate(self.graph.actors):
            T_world_actor = torch.linalg.inv(self.poses[self.view_time_idx, a])  # [V, 4, 4]
            c_world = corners * torch.tensor(actor.size, dtype=torch.float32) @ T_world_actor[:, :3, :3].transpose(1, 2) + T_world_actor[:, None, :3, 3]
            c_cam = c_world @ T_cam_world[:, :3, :3].transpose(1, 2) + T_cam_world[:, None, :3, 3]  # [V, 8, 3]
            z = c_cam[..., 2]
            u = self.K[:, None, 0] * c_cam[..., 0] / z + self.K[:, None, 2]
            v = self.K[:, None, 1] * c_cam[..., 1] / z + self.K[:, None, 3]
            in_front = (z > 0.1).all(1)
            for view in in_front.nonzero().flatten().tolist():
                W, H = int(self.widths[view]), int(self.heights[view])
                u0, u1 = max(int(u[view].min()), 0), min(int(u[view].max()) + 1, W)
                v0, v1 = max(int(v[view].min()), 0), min(int(v[view].max()) + 1, H)
                if u0 < u1 and v0 < v1:
                    mask[self.offsets[view] : self.offsets[view + 1]].view(H, W)[v0:v1, u0:u1] = True
        index = mask.nonzero().flatten()
        return index[self.valid(index)] if self.masked else index

    def actor_rays(self, time_idx: Tensor) -> list[ActorRays]:
        """Per-ray actor poses for rays taken at ``time_idx``."""
        distinct = torch.unique(time_idx)
        return [
            ActorRays(a.asset_id, a.instance_id, torch.tensor(a.size, dtype=torch.float32), self.poses[time_idx, i], self.poses[distinct, i])
            for i, a in enumerate(self.graph.actors)
        ]

    def sample_pixels(self, n: int, gen: torch.Generator, actor_fraction: float = 0.0) -> dict[str, Tensor]:
        """``n`` random pixels: ``actor_fraction`` of them among the pixels that may see an actor
        (`_actor_pixel_index`), the rest uniformly over all pixels."""
        n_actor = int(round(n * actor_fraction)) if len(self.actor_pixels) else 0
        if self.masked:
            flat, _ = self._uniform_valid(torch.randint(int(self.valid_cum[-1]), (n - n_actor,), generator=gen))
        else:
            flat = torch.randint(self.n_rays, (n - n_actor,), generator=gen)
        if n_actor:
            flat = torch.cat([flat, self.actor_pixels[torch.randint(len(self.actor_pixels), (n_actor,), generator=gen)]])
        view = torch.searchsorted(self.offsets, flat, right=True) - 1
        pix = flat - self.offsets[view]
        W = self.widths[view]
        u = (pix % W).float() + 0.5
        v = torch.div(pix, W, rounding_mode="floor").float() + 0.5
        K = self.K[view]
        d_cam = torch.stack([(u - K[:, 2]) / K[:, 0], (v - K[:, 3]) / K[:, 1], torch.ones_like(u)], -1)
        d_cam = d_cam / d_cam.norm(dim=-1, keepdim=True)
        lens = self.view_lens_offset[view]
        distorted = lens >= 0
        if distorted.any():
            d_cam[distorted] = self.lens_dirs[lens[distorted] + pix[distorted]]
        T = self.T_world_cam[view]
        out = {
            "origins": T[:, :3, 3],
            "dirs": (T[:, :3, :3] @ d_cam[..., None])[..., 0],
            "rgb": self.rgb[flat].float() / 255.0,
            "time_idx": self.view_time_idx[view],
            "pixel": flat,
            "view": view,
        }
        if self.alpha is not None:
            out["alpha"] = self.alpha[flat]
        if self.semantic is not None:
            out["semantic"] = self.semantic[flat]
        return out

    def sample_lidar(self, n: int, gen: torch.Generator) -> dict[str, Tensor] | None:
        if self.lidar is None or n <= 0:
            return None
        idx = torch.randint(len(self.lidar["ranges"]), (n,), generator=gen)
        return {k: v[idx] for k, v in self.lidar.items()}


def holdout_frame(index: int, every: int) -> bool:
    """Frames held out of training for evaluation: every ``every``-th, offset to the middle."""
    return every > 0 and index % every == every // 2


def bank_from_capture_log(log, holdout_every: int = 0) -> RayBank:
    """Rays of a capture log (cameras + LiDAR, + semantic labels when the log has them, only the
    pixels its cameras' ego masks keep); frames with `holdout_frame` are left out."""
    cams, images, semantics, masks, lidar_parts = [], [], [], [], []
    for frame in log.frames:
        if holdout_frame(frame.index, holdout_every):
            continue
        for cam in log.cameras:
            cams.append(log.camera(frame, cam.name))
            masks.append(cam.mask)
            images.append(log.load_image(frame.image_paths[cam.name]))
            if log.has_semantics:
                semantics.append(log.load_semantic(frame.semantic_paths[cam.name]))
        if frame.lidar_path is not None:
            o, d, r = log.lidar_rays(frame)
            lidar_parts.append((o, d, r, np.full(len(r), frame.time)))
    lidar = None
    if lidar_parts:
        lidar = LidarRays(*(np.concatenate([p[i] for p in lidar_parts]) for i in range(4)))
    return RayBank(cams, images, log.scene, lidar=lidar, semantics=semantics if log.has_semantics else None, masks=masks)


def bank_from_static(ds) -> RayBank:
    """Rays of a captured static dataset (`scenes.datasets.StaticDataset`): background only."""
    return RayBank(ds.cameras, list(ds.images), SceneGraph(aabb=ds.aabb), alphas=None if ds.alphas is None else list(ds.alphas))
