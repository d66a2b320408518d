"""Render whole images of a composed scene at a `SceneState` (after any edit).

Conventions: OpenCV cameras; ``depth`` is metric z-depth along the camera axis, ``ray_dist`` the
distance along the unit ray; both are ``inf`` where the ray sees only sky (accumulation < 0.5).
Instance ids are those of the `SceneState` actors (0 = background / sky).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from scenes.camera import Camera
from scenes.classes import CLASS_IDS
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
def render_ray_batch(model: NeuralScene, origins: Tensor, dirs: Tensor, state: SceneState, chunk: int = 1 << 16,
                     normals: bool = False, background: bool = True, semantics: bool = True,
                     step_cone: float | None = None, image_code: Tensor | None = None) -> dict[str, Tensor]:
    """Per-ray products of world rays ``[N, 3]`` at ``state`` (``image_code``: the background's
    appearance code, default the training photos' mean, see `fit_image_code`): ``rgb [N,3]``, ``ray_dist`` (expected)
    and ``ray_dist_median [N]`` (both inf where accumulation < 0.5), ``accumulation [N]``,
    ``instance [N]`` (the actor holding most of the ray's weight, 0 = background / sky), and with
    ``normals`` the outward world-frame ``normals [N, 3]`` (zero where nothing was hit).
    ``background=False`` renders the actors alone (e.g. amodal masks). A background field with a
    semantic head adds ``background_class [N]``: the class id (`scenes.classes`) it gives the ray
    (unless ``semantics`` is False). ``step_cone`` overrides the model's cone step (coarse images:
    see `NeuralScene.render_rays`)."""
    if model.training:  # eval() walks every submodule: ~1 ms a call, per render
        model.eval()
    actors, states = actor_rays_for_state(model, state, origins.device)
    ids = torch.tensor([0] + [a.instance_id for a in states], device=origins.device)
    head = semantics and background and getattr(model.background, "semantic_head", None) is not None
    keys = ("rgb", "depth", "depth_median", "accumulation", "instance") + (("normals",) if normals else ()) + (("background_class",) if head else ())
    class_ids = torch.tensor([CLASS_IDS[c] for c in model.background.cfg.semantic_classes], device=origins.device) if head else None
    parts: dict[str, list[Tensor]] = {k: [] for k in keys}
    n_samples = 0
    for s in range(0, len(origins), chunk):
        out = model.render_rays(origins[s : s + chunk], dirs[s : s + chunk], actors, normals=normals, background=background, image_codes=image_code,
                                semantics=head, median=True, step_cone=step_cone)
        if head:
            out["background_class"] = class_ids[out["semantic_probs"].argmax(-1)]
        # An actor owns a ray when it holds most of the ray's weight.
        out["instance"] = torch.where(out["accumulation"] > 0.5, ids[out["owner_weights"].argmax(-1)], 0)
        for k in keys:
            parts[k].append(out[k])
        n_samples += int(out["n_samples"])
    res = {k: torch.cat(v) for k, v in parts.items()}
    hit = res["accumulation"] > 0.5
    inf = torch.full_like(res["depth"], float("inf"))
    res["ray_dist"] = torch.where(hit, res.pop("depth"), inf)
    res["ray_dist_median"] = torch.where(hit, res.pop("depth_median"), inf)
    res["rgb"] = res["rgb"].clamp(0, 1)
    if normals:
        res["normals"] = torch.where(hit[:, None], res["normals"], 0.0)
    res["samples_per_ray"] = torch.tensor(n_samples / max(len(origins), 1))
    return res


def render_camera(model: NeuralScene, camera: Camera, state: SceneState, chunk: int = 1 << 16,
                  image_code: Tensor | None = None) -> dict[str, np.ndarray]:
    """RGB ``[H,W,3]``, depth / ray_dist / accumulation ``[H,W]`` and instance ids ``[H,W]`` of one view."""
    origins, dirs, z_per_dist = camera_rays(camera, model.aabb.device)
    r = render_ray_batch(model, origins, dirs, state, chunk, semantics=False, image_code=image_code)
    H, W = camera.intrinsics.height, camera.intrinsics.width
    img = lambda x: x.reshape(H, W, *x.shape[1:]).cpu().numpy()
    return {
        "rgb": img(r["rgb"]),
        "ray_dist": img(r["ray_dist"]),
        "depth": img(r["ray_dist"] * z_per_dist),
        "accumulation": img(r["accumulation"]),
        "instance": img(r["instance"]).astype(np.int32),
        "samples_per_ray": float(r["samples_per_ray"]),
    }


@torch.no_grad()
def sample_ray_distances(model: NeuralScene, origins: Tensor, dirs: Tensor, state: SceneState, n_draws: int,
                         gen: torch.Generator, chunk: int = 1 << 16) -> Tensor:
    """Distances ``[N, n_draws]`` drawn along each ray in proportion to its rendering weights
    (inverse CDF over the packed samples; inf where the accumulation is below 0.5)."""
    if model.training:  # eval() walks every submodule: ~1 ms a call, per render
        model.eval()
    actors, _ = actor_rays_for_state(model, state, origins.device)
    out = []
    for s in range(0, len(origins), chunk):
        o, d = origins[s : s + chunk], dirs[s : s + chunk]
        r = model.render_rays(o, d, actors)
        w, t, ray, n = r["weights"].double(), r["t"], r["ray_indices"], len(o)
        total = torch.zeros(n, dtype=w.dtype, device=w.device).index_add_(0, ray, w)
        start = torch.cumsum(total, 0) - total
        cdf = torch.cumsum(w, 0)
        u = torch.rand(n, n_draws, generator=gen, dtype=w.dtype).to(w.device)  # the CPU stream: same draws on any device
        target = start[:, None] + u * total[:, None]
        idx = torch.searchsorted(cdf, target.reshape(-1)).reshape(n, n_draws).clamp_(max=max(len(t) - 1, 0))
        draws = t[idx] if len(t) else torch.full((n, n_draws), float("inf"), device=o.device)
        out.append(torch.where((total >= 0.5)[:, None], draws, torch.full_like(draws, float("inf"))))
    return torch.cat(out)


def fit_image_code(model: NeuralScene, origins: Tensor, dirs: Tensor, target: Tensor, steps: int = 100, lr: float = 0.05,
                   batch: int = 4096, seed: int = 0) -> Tensor:
    """The background appearance code ``[D]`` that best reproduces ``target`` colours ``[N, 3]`` of
    world rays ``[N, 3]`` (Adam on the code alone, the field frozen, from the training photos' mean).
    The evaluation protocol of per-image appearance (NeRF-W, mip-NeRF 360, nerfacto): fit on one
    half of a held-out photo, score the other half."""
    if model.image_codes is None:
        raise InputError("fit_image_code", "model", "this scene's background has no appearance codes")
    code = model.image_codes.weight.detach().mean(0).clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        for _ in range(steps):
            idx = torch.randint(len(origins), (min(batch, len(origins)),), generator=gen)
            out = model.render_rays(origins[idx], dirs[idx], image_codes=code)
            loss = torch.mean((out["rgb"] - target[idx]) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
        model.train(was_training)
    return code.detach()
