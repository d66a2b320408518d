"""RayBank: the actor-pixel index covers every pixel whose ray hits an actor box; actor-aware sampling."""

import numpy as np
import torch

from scenes.camera import Camera, Intrinsics
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.transforms import look_at, make_pose, rot_z
from sim.data import RayBank
from sim.rays import camera_rays, ray_aabb


def _bank():
    car = Actor("car", "car", 1, (4.0, 2.0, 1.5), ActorTrack.static(make_pose(rot_z(0.4), [10.0, 1.0, 0.75])))
    graph = SceneGraph((car,), aabb=((-5, -10, -1), (25, 10, 6)))
    cams = [Camera(Intrinsics.from_fov(40, 30, 70), look_at([0, y, 1.5], [10, 0, 1]), 0.0, f"c{i}") for i, y in enumerate((0.0, -3.0))]
    cams.append(Camera(Intrinsics.from_fov(40, 30, 70), look_at([0, 0, 1.5], [-10, 0, 1]), 0.0, "back"))  # car behind
    images = [np.zeros((30, 40, 3), np.float32) for _ in cams]
    return RayBank(cams, images, graph), cams, car


def test_actor_pixels_cover_every_ray_that_hits_the_box():
    bank, cams, car = _bank()
    index = set(bank.actor_pixels.tolist())
    T_actor_world = torch.tensor(np.linalg.inv(car.track.pose_at(0.0)), dtype=torch.float32)
    half = torch.tensor(car.size) / 2
    for v, cam in enumerate(cams):
        o, d, _ = camera_rays(cam)
        o_a = o @ T_actor_world[:3, :3].T + T_actor_world[:3, 3]
        d_a = d @ T_actor_world[:3, :3].T
        near, far = ray_aabb(o_a, d_a, -half, half)
        hits = (far > near).nonzero().flatten() + int(bank.offsets[v])
        assert set(hits.tolist()) <= index
        in_view = [i for i in index if bank.offsets[v] <= i < bank.offsets[v + 1]]
        assert len(in_view) >= len(hits) and (len(hits) > 0) == (v < 2)
        if hits.numel():
            assert len(in_view) < 3 * len(hits)  # a tight superset: the projected box's 2D extent


def test_actor_fraction_of_sampled_pixels():
    bank, _, _ = _bank()
    gen = torch.Generator().manual_seed(0)
    in_index = torch.zeros(bank.n_rays, dtype=torch.bool)
    in_index[bank.actor_pixels] = True
    share = float(in_index.float().mean())
    assert 0.0 < share < 0.3
    for fraction in (0.0, 0.5, 1.0):
        batch = bank.sample_pixels(20000, gen, fraction)
        drawn = float(in_index[batch["pixel"]].float().mean())
        # the fraction comes from the index, the rest uniformly (which hits the index at its share)
        expected = fraction + (1 - fraction) * share
        assert abs(drawn - expected) < 0.02, (fraction, drawn, expected)
        assert batch["rgb"].shape == (20000, 3) and batch["dirs"].shape == (20000, 3)
