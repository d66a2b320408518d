"""The LiDAR surface hinge (`sim.lidar_loss`) on the box world, whose analytic background is a wall,
a ground slab and a post: nothing behind returns on surfaces, ``log(min_density / sigma)`` behind
returns in free space, returns on actors left to the actors; and on a learned field, a pull on the
density that does not fade however empty the field has become."""

from __future__ import annotations

import math

import numpy as np
import torch
from conftest import AABB, EMPTY_DENSITY, random_model

from sim.lidar_loss import lidar_loss, surface_density
from sim.render import actor_rays_for_state
from sim.train import TrainConfig

ORIGIN = np.array([0.0, 0.0, 1.5])


def _rays_to(targets, x_face=None):
    """Rays from ``ORIGIN`` to world points; ranges to the points, or to the plane x = ``x_face``."""
    d = np.asarray(targets, float) - ORIGIN
    r = np.linalg.norm(d, axis=-1)
    d = d / r[:, None]
    if x_face is not None:
        r = (x_face - ORIGIN[0]) / d[:, 0]
    t = lambda a: torch.as_tensor(a, dtype=torch.float32)
    return t(np.broadcast_to(ORIGIN, d.shape).copy()), t(d), t(r)


def _hinge(world, o, d, r, t=0.0, u=None, min_density=1.0, margin=0.0):
    actors, _ = actor_rays_for_state(world.model, world.graph.at(t))
    u = torch.full((len(r),), 0.5) if u is None else u
    return float(surface_density(world.model, o, d, r, torch.zeros(len(r), dtype=torch.long), actors, u, 0.05, min_density, margin))


def test_surface_hinge_is_zero_behind_returns_on_surfaces_and_full_in_free_space(box_world):
    wall = np.array([[12.0, y, z] for y in (-6.0, -3.0, 3.0, 6.0) for z in (0.5, 2.5, 4.0)])
    o, d, r = _rays_to(wall, x_face=12.0)
    assert _hinge(box_world, o, d, r, u=torch.rand(len(r))) == 0.0  # the wall's density, 2e3, is above 1
    full = math.log(1.0 / EMPTY_DENSITY)
    assert abs(_hinge(box_world, o, d, r - 1.0) - full) < 1e-4  # a metre short: free space
    half = r.clone()
    half[::2] -= 1.0
    assert abs(_hinge(box_world, o, d, half) - full / 2) < 1e-4
    # A density the wall has is enough: asking for more than it has costs log(asked / had).
    assert abs(_hinge(box_world, o, d, r, min_density=4000.0) - math.log(2.0)) < 1e-4


def test_surface_hinge_leaves_returns_on_actors_to_them(box_world):
    # The car's box at t = 0 is centred at (6, -1, 0.75): these returns are in it, where the
    # background has nothing; counted, they would cost the whole hinge.
    car = np.array([[6.0, -1.0 + dy, 0.75] for dy in (-0.3, 0.0, 0.3)])
    o, d, r = _rays_to(car)
    r = r - 1.0  # a metre short of its centre: inside the box
    actors, _ = actor_rays_for_state(box_world.model, box_world.graph.at(0.0))
    inside = box_world.model._inside_actor_boxes(o + d * r[:, None], torch.zeros(3, dtype=torch.long), actors)
    assert inside.all()
    assert _hinge(box_world, o, d, r) == 0.0
    # At t = 2 the car has moved 2 m on: the same points are the background's free space.
    assert abs(_hinge(box_world, o, d, r, t=2.0) - math.log(1.0 / EMPTY_DENSITY)) < 1e-4
    # Returns 30 cm short of the car's rear (a box logged that far off): the background's with no
    # margin, the car's within a 0.5 m one.
    rear = np.array([[6.0 - 2.0 * np.cos(np.radians(10)) - 0.3, -1.0, 0.75]])
    o, d, r = _rays_to(rear)
    assert not box_world.model._inside_actor_boxes(o + d * r[:, None], torch.zeros(1, dtype=torch.long), actors).any()
    assert abs(_hinge(box_world, o, d, r) - math.log(1.0 / EMPTY_DENSITY)) < 1e-4
    assert _hinge(box_world, o, d, r, margin=0.5) == 0.0


def test_surface_hinge_pulls_an_empty_learned_field_with_unit_slope():
    """On log density the hinge's gradient is the same however small the density: where a term on
    the rendering weights (through the density itself) has nothing left to pull."""
    model = random_model(AABB, [], density_bias=-60.0)
    o, d, r = _rays_to(np.array([[12.0, y, 2.0] for y in np.linspace(-6.0, 6.0, 32)]), x_face=11.0)
    bias = model.background.density_mlp[-1].bias
    x01 = model.world_to_unit(o + d * r[:, None])
    assert float(model.background.density(x01).detach().max()) < 1e-12
    hinge = surface_density(model, o, d, r, torch.zeros(len(r), dtype=torch.long), [], torch.rand(len(r)), 0.05, 1.0)
    (g_hinge,) = torch.autograd.grad(hinge, bias)
    (g_density,) = torch.autograd.grad(-model.background.density(x01).mean(), bias)
    assert abs(float(g_hinge[0]) + 1.0) < 1e-6
    assert abs(float(g_density[0])) < 1e-12
    assert torch.allclose(model.background.log_density(x01).exp(), model.background.density(x01))


def test_lidar_loss_adds_the_hinge_only_when_weighted(box_world):
    wall = np.array([[12.0, y, 2.0] for y in (-6.0, -3.0, 0.0)])  # over the car, past the post and the pedestrian
    o, d, r = _rays_to(wall, x_face=12.0)
    r = r - 1.0  # returns in free space: the hinge is log(1 / 1e-6) each (the default density asked for)
    actors, _ = actor_rays_for_state(box_world.model, box_world.graph.at(0.0))
    with torch.no_grad():
        out = box_world.model.render_rays(o, d, actors)
    lidar = {"origins": o, "dirs": d, "ranges": r}
    gen = torch.Generator().manual_seed(0)
    stats_on, stats_off = {}, {}
    on = lidar_loss(box_world.model, out, lidar, 0, actors, TrainConfig(lidar_surface_weight=0.1), gen, stats_on)
    off = lidar_loss(box_world.model, out, lidar, 0, actors, TrainConfig(lidar_surface_weight=0.0), gen, stats_off)
    assert abs(stats_on["lidar_surface"] - math.log(1.0 / EMPTY_DENSITY)) < 1e-4 and "lidar_surface" not in stats_off
    assert abs(float(on - off) - 0.1 * stats_on["lidar_surface"]) < 1e-4
    assert abs(stats_off["depth_l1"] - 1.0) < 0.05  # the rendered depth is the wall's, a metre on
