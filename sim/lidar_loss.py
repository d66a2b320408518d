"""What a LiDAR sweep says about the fields, as training losses.

For a ray with a return at range ``r``:
- range: the rendered depth's L1 error against ``r``, plus ``(1 - accumulation)^2``;
- line of sight: no rendering weight in front of ``r - margin`` (free space);
- surface: the background's density just behind the return (``[r, r + depth]``) at least
  ``min_density``, a hinge on the log density.

For a ray with no return (sky): no accumulation at all.

Why the surface hinge: the range and line-of-sight terms reach the density only through the
rendering weights, whose gradient vanishes with the density (``d exp(h) / dh = exp(h)``). A thin
structure, a lamp pole 16 cm across, is outnumbered by the free-space evidence around it (camera and
LiDAR rays passing by, in the same coarse hash cells): its density collapses in the first ~100 steps
and nothing brings it back (built-in street without labels, `bench.surface_probe`: the density
behind the returns on its poles is ~0.02 at step 100 and 2.5e-8 at step 400; its lamp poles and tree
trunks were missing from every novel view). Per-pixel class labels happen to keep such structures alive; a log without labels
(nuScenes, Argoverse 2, most real drives) had only this. On log density the hinge's gradient is the
same however empty the field has become. Returns inside an actor's box, or within
`sim.tracks.TRACK_MARGIN` of it in the ground plane, are the actor's, not the background's, and are
left out: a box logged 30 cm off would otherwise have the background grow the car's side.

Open: in tests/sim/test_track_refinement.py's tiny log (150 clean steps, then 300 refining a
parked car logged 30 cm / 4 deg off) the car's yaw refines to 3.3-3.5 deg with the hinge against
2.0 deg without it, also when the hinge is off during the refining steps: the field the hinge
pre-trains observes that car's yaw less well there. That test runs without the hinge.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from sim.tracks import TRACK_MARGIN

if TYPE_CHECKING:
    from sim.compose import ActorRays, NeuralScene


def line_of_sight(out: dict, ranges: Tensor, n_cam: int, margin: float) -> Tensor:
    """Mean over LiDAR rays (``out``'s rays from ``n_cam`` on) of the rendering weight in front of
    their return less ``margin`` (free space; a ray with no return: all of it)."""
    ray, t, w = out["ray_indices"], out["t"], out["weights"]
    lidar = ray >= n_cam
    r = ranges[(ray[lidar] - n_cam)]
    in_front = torch.zeros_like(w, dtype=torch.bool)
    in_front[lidar] = t[lidar] < r - margin  # inf ranges: everything is in front
    return w[in_front].sum() / max(len(ranges), 1)


def surface_density(model: "NeuralScene", origins: Tensor, dirs: Tensor, ranges: Tensor, ray_idx: Tensor,
                    actors: list["ActorRays"], u: Tensor, depth: float, min_density: float, actor_margin: float = 0.0) -> Tensor:
    """Mean over returns of ``max(0, log(min_density) - log sigma)``, ``sigma`` the background's
    density at ``ranges + u * depth`` along each ray (``u`` in [0, 1] per return), over the returns
    whose point is in the background's box and in no actor's box grown by ``actor_margin`` (m, x and
    y: a box logged off by that much still owns its returns; ``ray_idx``: each return's row in
    ``actors``' per-ray poses); 0 when there are none."""
    x = origins + dirs * (ranges + u * depth)[:, None]
    grown = [replace(a, size=a.size + torch.tensor([2 * actor_margin, 2 * actor_margin, 0.0], device=a.size.device)) for a in actors]
    keep = ~model._inside_actor_boxes(x, ray_idx, grown)
    x01 = model.world_to_unit(x[keep])
    x01 = x01[((x01 >= 0) & (x01 <= 1)).all(-1)]
    if len(x01) == 0:
        return ranges.sum() * 0.0
    log_sigma = model.background.log_density(x01)
    return torch.relu(math.log(min_density) - log_sigma).mean()


def lidar_loss(model: "NeuralScene", out: dict, lidar: dict, n_cam: int, actors: list["ActorRays"], cfg,
               gen: torch.Generator, stats: dict) -> Tensor:
    """The weighted sum of the module's terms over a batch's LiDAR rays: ``out`` rendered camera
    rays first, then ``lidar``'s (origins, dirs, ranges: inf where nothing returned); ``actors``
    hold per-ray poses of all of ``out``'s rays; ``cfg``: a `sim.train.TrainConfig` (its weights and
    margins; not imported, train imports this). Adds ``depth_l1`` / ``lidar_surface`` to ``stats``."""
    rng = lidar["ranges"]
    hit = torch.isfinite(rng)
    depth = out["depth"][n_cam:]
    acc = out["accumulation"][n_cam:]
    loss = rng.new_zeros(())
    if hit.any():
        l1 = torch.mean(torch.abs(depth[hit] - rng[hit]))
        loss = loss + cfg.depth_loss_weight * (l1 + torch.mean((1 - acc[hit]) ** 2))
        loss = loss + cfg.line_of_sight_weight * line_of_sight(out, rng, n_cam, cfg.line_of_sight_margin)
        stats["depth_l1"] = l1.item()
        if cfg.lidar_surface_weight > 0:
            u = torch.rand(int(hit.sum()), generator=gen).to(rng.device)
            ray_idx = n_cam + hit.nonzero().flatten()
            surface = surface_density(model, lidar["origins"][hit], lidar["dirs"][hit], rng[hit], ray_idx, actors, u,
                                      cfg.lidar_surface_depth, cfg.lidar_surface_density, TRACK_MARGIN)
            loss = loss + cfg.lidar_surface_weight * surface
            stats["lidar_surface"] = surface.item()
    if (~hit).any():
        loss = loss + cfg.empty_loss_weight * torch.mean(acc[~hit] ** 2)
    return loss
