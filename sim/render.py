"""Render whole images of a composed scene at a `SceneState` (after any edit).

Conventions: OpenCV cameras; ``depth`` is metric z-depth along the camera axis, ``ray_dist`` the
distance along the unit ray; both are ``inf`` where the ray sees only sky (accumulation < 0.5).
Instance ids are those of the `SceneState` actors (0 = background / sky).
"""

from __future__ import annotations

import numpy as np
import torch

from scenes.camera import Camera
from scenes.errors import InputError
from scenes.graph import ActorState, SceneState
from scenes.transforms import invert_pose
from sim.compose import ActorRays, NeuralScene
from sim.rays import camera_rays


def actor_rays_for_state(model: NeuralScene, state: SceneState, device="cpu") -> tuple[list[ActorRays], list[ActorState]]:
    """Actors of ``state`` that the model can render (their asset has a field)."""
    actors, kept = [], []
    for a in state.actors:
        if not model.has_asset(a.asset_id):
            raise InputError("scene state", f"actors.{a.actor_id}.asset_id", f"actor '{a.actor_id}' uses asset '{a.asset_id}', which this scene has no field for; known: {model.asset_ids}")
        T = torch.tensor(invert_pose(a.T_world_actor), dtype=torch.float32, device=device)[None]
        actors.append(ActorRays(a.asset_id, a.instance_id, torch.tensor(a.size, dtype=torch.float32, device=device), T))
        kept.append(a)
    return actors, kept


@torch.no_grad()
def render_camera(model: NeuralScene, camera: Camera, state: SceneState, chunk: int = 1 << 14) -> dict[str, np.ndarray]:
    """RGB ``[H,W,3]``, depth / ray_dist / accumulation ``[H,W]`` and instance ids ``[H,W]`` of one view."""
    model.eval()
    device = model.aabb.device
    origins, dirs, z_per_dist = camera_rays(camera, device)
    actors, states = actor_rays_for_state(model, state, device)
    ids = torch.tensor([0] + [a.instance_id for a in states], device=device)
    rgb, dist, acc, inst, n_samples = [], [], [], [], 0
    for s in range(0, len(origins), chunk):
        out = model.render_rays(origins[s : s + chunk], dirs[s : s + chunk], actors)
        rgb.append(out["rgb"])
        dist.append(out["depth"])
        acc.append(out["accumulation"])
        # An actor owns a pixel when it holds most of the pixel's weight.
        owner_w = out["owner_weights"]
        owner = owner_w.argmax(-1)
        inst.append(torch.where(out["accumulation"] > 0.5, ids[owner], 0))
        n_samples += int(out["n_samples"])
    H, W = camera.intrinsics.height, camera.intrinsics.width
    acc_t = torch.cat(acc)
    dist_t = torch.where(acc_t > 0.5, torch.cat(dist), torch.full_like(acc_t, float("inf")))
    return {
        "rgb": torch.cat(rgb).clamp(0, 1).reshape(H, W, 3).cpu().numpy(),
        "ray_dist": dist_t.reshape(H, W).cpu().numpy(),
        "depth": (dist_t * z_per_dist).reshape(H, W).cpu().numpy(),
        "accumulation": acc_t.reshape(H, W).cpu().numpy(),
        "instance": torch.cat(inst).reshape(H, W).cpu().numpy().astype(np.int32),
        "samples_per_ray": n_samples / len(origins),
    }
