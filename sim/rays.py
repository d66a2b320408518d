"""Rays: generation from cameras, ray-box intersection, transforms into actor frames.

Conventions: OpenCV cameras, world z up, metres; directions are unit vectors so ``t`` is a distance.
Poses are batched ``[..., 4, 4]`` tensors named by what they map (``T_actor_world``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from scenes.camera import Camera, pixel_rays


def camera_rays(camera: Camera, device: str | torch.device = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Flat world rays of every pixel (row-major), through the camera's lens: origins ``[H*W, 3]``, unit dirs ``[H*W, 3]`` and
    ``z_per_dist [H*W]`` (z-depth = distance * z_per_dist)."""
    o, d, z = pixel_rays(camera.intrinsics, camera.T_world_cam, camera.lens)
    f = lambda a: torch.as_tensor(a.reshape(-1, a.shape[-1]) if a.ndim == 3 else a.reshape(-1), dtype=torch.float32, device=device)
    return f(o), f(d), f(z)


def ray_aabb(origins: Tensor, dirs: Tensor, box_min: Tensor, box_max: Tensor) -> tuple[Tensor, Tensor]:
    """Slab intersection of rays with axis-aligned boxes (broadcasting). Returns ``t_near, t_far``;
    a ray misses where ``t_far <= t_near``. ``t_near`` is clamped at 0 (origin inside the box)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (box_min - origins) * inv
    t1 = (box_max - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp_min(0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far
