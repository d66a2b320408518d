"""The actor-mask loss on the box world, whose analytic fields own exactly the twin's pixels: zero
where the labels are the twin's, one per pixel whose label says otherwise, nothing from unlabelled
pixels."""

from __future__ import annotations

import numpy as np
import torch

from scenes.camera import Camera, Intrinsics, pixel_rays
from scenes.classes import CLASS_IDS, UNLABELLED
from scenes.transforms import look_at
from sim.render import actor_rays_for_state
from sim.train import _actor_mask_loss


def test_actor_mask_loss_counts_the_pixels_whose_owner_disagrees_with_the_label(box_world):
    cam = Camera(Intrinsics(64, 48, 40.0, 40.0, 32.0, 24.0), look_at([0.0, 0.0, 2.0], [7.0, 0.5, 0.8]), time=0.5)
    state = box_world.graph.at(cam.time)
    labels = box_world.twin.render(cam, state)["semantic"].reshape(-1)
    o, d, _ = pixel_rays(cam.intrinsics, cam.T_world_cam)
    actors, _ = actor_rays_for_state(box_world.model, state)
    with torch.no_grad():
        out = box_world.model.render_rays(torch.as_tensor(o.reshape(-1, 3), dtype=torch.float32),
                                          torch.as_tensor(d.reshape(-1, 3), dtype=torch.float32), actors)
    labels = torch.as_tensor(labels.astype(np.uint8))
    car, ped = labels == CLASS_IDS["car"], labels == CLASS_IDS["pedestrian"]
    assert car.sum() > 100 and ped.sum() > 20 and (~car & ~ped).sum() > 1000
    assert float(_actor_mask_loss(out, labels)) < 0.01  # silhouette pixels only
    relabelled = labels.clone()
    relabelled[car] = CLASS_IDS["road"]  # the car's pixels now say "background": each costs ~1
    assert abs(float(_actor_mask_loss(out, relabelled)) - float(car.float().mean())) < 0.01
    relabelled = labels.clone()
    relabelled[labels == CLASS_IDS["building"]] = CLASS_IDS["pedestrian"]  # ... and the wall's say "actor"
    wall = float((labels == CLASS_IDS["building"]).float().mean())
    assert wall > 0.05 and abs(float(_actor_mask_loss(out, relabelled)) - wall) < 0.01
    relabelled[car] = UNLABELLED  # wrong labels, and the car's pixels unlabelled: only the wall costs
    assert abs(float(_actor_mask_loss(out, relabelled)) - wall) < 0.01
    relabelled = labels.clone()
    relabelled[car] = CLASS_IDS["road"]
    relabelled[car & (torch.arange(len(labels)) % 2 == 0)] = UNLABELLED  # half of them unlabelled: half the cost
    assert abs(float(_actor_mask_loss(out, relabelled)) - float(car.float().mean()) / 2) < 0.01
