"""Compositing of background + actor fields against analytic (constant-density box) fields.

The learned fields are replaced by `BoxField`s: constant density inside a sub-box of the field's unit
cube, zero outside, constant colour. Occupancy grids stay fully occupied (their initial state), so
every sample the marcher produces reaches the field and the result is pure quadrature: opacity
``1 - exp(-sigma * chord)`` of the chord through the box, within about one marching step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from scenes.transforms import invert_pose, make_pose, quat_to_matrix
from sim.compose import ActorRays, NeuralScene, SceneModelConfig
from sim.encoding import HashGridConfig
from sim.field import FieldConfig
from sim.contraction import contracted_step
from sim.rays import ray_aabb

TINY_FIELD = FieldConfig(grid=HashGridConfig(n_levels=2, log2_table_size=6, base_resolution=4, max_resolution=8),
                         hidden_dim=8, color_hidden_dim=8, sh_degree=1)


class BoxField(nn.Module):
    """RadianceField interface: density ``sigma`` inside ``[lo, hi]`` (unit-cube coordinates), else 0."""

    def __init__(self, lo=(0.0, 0.0, 0.0), hi=(1.0, 1.0, 1.0), sigma: float = 1.0, color=(1.0, 0.0, 0.0)):
        super().__init__()
        self.register_buffer("lo", torch.tensor(lo, dtype=torch.float32))
        self.register_buffer("hi", torch.tensor(hi, dtype=torch.float32))
        self.register_buffer("color", torch.tensor(color, dtype=torch.float32))
        self.sigma = float(sigma)

    def density(self, x01):
        inside = ((x01 >= self.lo) & (x01 <= self.hi)).all(-1)
        return torch.where(inside, self.sigma, 0.0)

    def forward(self, x01, dirs):
        return self.density(x01), self.color.expand(len(x01), 3)


def make_scene(aabb=((-1, -1, -1), (1, 1, 1)), assets=(), **cfg_kw) -> NeuralScene:
    cfg = SceneModelConfig(background=TINY_FIELD, actor=TINY_FIELD, far_field="black",
                           **(dict(step_min=0.005, step_max=0.05, actor_steps=256, actor_occupancy_resolution=8) | cfg_kw))
    scene = NeuralScene(cfg, aabb, list(assets))
    assert bool(scene.background_grid.occupied.all())
    for a in assets:
        assert bool(scene.actor_grid(a).occupied.all())
    return scene


def pose(quat_wxyz, t) -> np.ndarray:
    """``T_world_actor``."""
    return make_pose(quat_to_matrix(np.asarray(quat_wxyz, float)), np.asarray(t, float))


def actor_rays(asset, size, T_world_actor, instance_id=1, n_rays=None) -> ActorRays:
    T = torch.tensor(invert_pose(T_world_actor), dtype=torch.float32)[None]
    if n_rays is not None:
        T = T.expand(n_rays, 4, 4).contiguous()
    return ActorRays(asset, instance_id, torch.tensor(size, dtype=torch.float32), T)


def chord_brute(origins, dirs, T_world_box, size, t_max, n=40000):
    """Length of each ray inside an oriented box, by dense sampling in float64 (independent oracle).
    Returns chord length, first and last inside distance (nan when missed), and the step used."""
    o = np.asarray(origins, np.float64)
    d = np.asarray(dirs, np.float64)
    T_box_world = invert_pose(T_world_box)
    ds = t_max / n
    t = (np.arange(n) + 0.5) * ds
    x = o[:, None, :] + d[:, None, :] * t[None, :, None]  # [R, n, 3]
    xb = x @ T_box_world[:3, :3].T + T_box_world[:3, 3]
    inside = (np.abs(xb) <= np.asarray(size) / 2).all(-1)
    chord = inside.sum(1) * ds
    first = np.where(inside.any(1), t[np.argmax(inside, 1)], np.nan)
    last = np.where(inside.any(1), t[n - 1 - np.argmax(inside[:, ::-1], 1)], np.nan)
    return chord, first, last, ds


def unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def as_t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float32)


def expected_depth(t0, L, lam):
    """Expected hit distance inside a constant-density slab ``[t0, t0 + L]``, given it is hit."""
    return t0 + 1 / lam - L * math.exp(-lam * L) / (1 - math.exp(-lam * L))


# ---------------------------------------------------------------------------------------- (a)
def test_background_only_matches_analytic_chord():
    scene = make_scene()
    sigma, color = 2.0, (0.2, 0.4, 0.9)
    scene.background = BoxField((0.25, 0.25, 0.25), (0.75, 0.75, 0.75), sigma, color)  # world [-0.5, 0.5]^3
    rng = np.random.default_rng(0)
    origins = np.tile([-2.0, 0.0, 0.0], (64, 1)) + rng.uniform(-0.2, 0.2, (64, 3))
    targets = rng.uniform(-0.8, 0.8, (64, 3))  # some rays hit the dense cube, some miss it
    dirs = unit(targets - origins)
    out = scene.render_rays(as_t(origins), as_t(dirs))

    chord, first, _, _ = chord_brute(origins, dirs, np.eye(4), (1.0, 1.0, 1.0), t_max=6.0)
    hit = chord > 0.05
    assert hit.sum() >= 10 and (chord == 0).sum() >= 10
    acc = out["accumulation"].numpy()
    # Marching steps are <= 0.02 at these distances: the quadrature chord is off by at most ~a step.
    assert np.allclose(acc, 1 - np.exp(-sigma * chord), atol=0.05)
    assert np.allclose(out["rgb"].numpy(), acc[:, None] * np.asarray(color), atol=1e-5)  # black far field
    assert np.all(acc[chord == 0] == 0)
    # Only the background owns weight; owner weights sum to the accumulation.
    assert torch.allclose(out["owner_weights"][:, 0], out["accumulation"], atol=1e-6)
    # Expected depth: mean of a truncated exponential starting at the entry point.
    exp_d = np.array([expected_depth(f, c, sigma) for f, c in zip(first[hit], chord[hit])])
    step = 0.02
    assert np.all(np.abs(out["depth"].numpy()[hit] - exp_d) < step)


def test_background_transmittance_thick_slab_is_exponential():
    """Axis-aligned rays through slabs of known thickness: transmittance exp(-sigma * L)."""
    scene = make_scene()
    sigma = 1.3
    scene.background = BoxField((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), sigma, (1, 1, 1))  # the whole AABB
    origins = np.array([[-1.5, 0.1, 0.2], [0.0, -1.2, 0.3], [0.3, 0.2, 1.4], [-0.5, 0.0, 0.0]])
    dirs = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, -1.0], [1.0, 0, 0]])
    lengths = np.array([2.0, 2.0, 2.0, 1.5])  # the last ray starts inside the AABB
    out = scene.render_rays(as_t(origins), as_t(dirs))
    T = 1 - out["accumulation"].numpy()
    assert np.allclose(T, np.exp(-sigma * lengths), rtol=0.03)


def test_background_reaches_far_side_of_aabb_from_outside_camera():
    scene = make_scene()  # AABB [-1, 1]^3: diagonal 3.46
    sigma = 1.3
    scene.background = BoxField((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), sigma, (1, 1, 1))
    # Camera 4 m from the centre (as in Blender-style captures around a scene box): t in [3, 5].
    out = scene.render_rays(as_t([[-4.0, 0.1, 0.2]]), as_t([[1.0, 0.0, 0.0]]))
    assert float(1 - out["accumulation"][0]) == pytest.approx(math.exp(-sigma * 2.0), rel=0.03)


# ---------------------------------------------------------------------------------------- (b)
@pytest.mark.parametrize("per_ray_pose", [False, True])
def test_posed_actor_opacity_is_analytic(per_ray_pose):
    scene = make_scene(assets=["car"])
    scene.background = BoxField(sigma=0.0)  # empty background
    sigma, size = 1.5, (2.0, 1.0, 0.8)
    scene.actor_fields["car"] = BoxField(sigma=sigma, color=(1.0, 0.5, 0.0))
    q = unit([math.cos(0.3), 0.1, -0.15, math.sin(0.3)])  # yaw ~35 deg plus roll and pitch
    T_world_actor = pose(q, (0.4, -0.3, 0.2))
    rng = np.random.default_rng(1)
    origins = np.array([-4.0, 1.0, 1.5]) + rng.uniform(-0.3, 0.3, (96, 3))
    targets = np.array([0.4, -0.3, 0.2]) + rng.uniform(-1.6, 1.6, (96, 3))
    dirs = unit(targets - origins)
    a = actor_rays("car", size, T_world_actor, n_rays=len(origins) if per_ray_pose else None)
    out = scene.render_rays(as_t(origins), as_t(dirs), [a])

    chord, first, _, _ = chord_brute(origins, dirs, T_world_actor, size, t_max=9.0)
    miss = chord == 0
    assert miss.sum() >= 10 and (chord > 0.3).sum() >= 10
    w = out["owner_weights"]
    assert w.shape == (len(origins), 2)
    # dt = |size| / actor_steps ~ 0.009: the chord is quantised to about one step.
    assert np.allclose(w[:, 1].numpy(), 1 - np.exp(-sigma * chord), atol=0.02)
    assert np.all(w[:, 1].numpy()[miss] == 0)
    assert torch.all(w[:, 0] == 0)
    assert np.allclose(out["rgb"].numpy(), w[:, 1:2].numpy() * np.array([1.0, 0.5, 0.0]), atol=1e-5)
    hit = chord > 0.3
    exp_d = np.array([expected_depth(f, c, sigma) for f, c in zip(first[hit], chord[hit])])
    assert np.all(np.abs(out["depth"].numpy()[hit] - exp_d) < 0.02)


def test_shared_and_per_ray_poses_agree():
    scene = make_scene(assets=["car"])
    scene.background = BoxField((0.0, 0.0, 0.0), (1.0, 1.0, 0.3), 3.0, (0.3, 0.3, 0.3))  # a "ground" slab
    scene.actor_fields["car"] = BoxField(sigma=4.0, color=(0.9, 0.1, 0.1))
    T = pose(unit([math.cos(0.4), 0, 0, math.sin(0.4)]), (0.0, 0.0, 0.0))
    rng = np.random.default_rng(2)
    origins = np.array([-3.0, 0.0, 1.0]) + rng.uniform(-0.2, 0.2, (40, 3))
    dirs = unit(rng.uniform(-1, 1, (40, 3)) - origins)
    size = (1.2, 0.8, 0.8)
    o1 = scene.render_rays(as_t(origins), as_t(dirs), [actor_rays("car", size, T)])
    o2 = scene.render_rays(as_t(origins), as_t(dirs), [actor_rays("car", size, T, n_rays=40)])
    for k in ("rgb", "depth", "accumulation", "owner_weights"):
        assert torch.allclose(o1[k], o2[k], atol=1e-6), k


def _actor_samples_reference(scene, actor, origins, dirs):
    """Every sample ``t_near + (k + 1/2) dt`` (k < actor_steps, t <= t_far) of each ray through the
    actor's box that lies in an occupied cell: the plain definition, as ``(ray, t)`` sorted."""
    T = actor.T_actor_world
    o = (T[:, :3, :3] @ origins[..., None])[..., 0] + T[:, :3, 3]
    d = (T[:, :3, :3] @ dirs[..., None])[..., 0]
    t_near, t_far = ray_aabb(o, d, -actor.size / 2, actor.size / 2)
    n = scene.cfg.actor_steps
    dt = float(actor.size.norm()) / n
    t = t_near[:, None] + (torch.arange(n)[None, :] + 0.5) * dt
    ray, k = ((t <= t_far[:, None]) & (t_far > t_near)[:, None]).nonzero(as_tuple=True)
    t = t[ray, k]
    keep = scene.actor_grid(actor.asset_id).query((o[ray] + d[ray] * t[:, None]) / actor.size + 0.5)
    return ray[keep], t[keep]


@pytest.mark.parametrize("per_ray_pose", [False, True])
def test_actor_samples_are_the_box_steps_in_occupied_cells(per_ray_pose):
    """The actor's samples (marched by the occupancy-skipping kernel, with a per-ray offset on a
    shared schedule) are exactly the plain box steps that fall in occupied cells, for a grid with
    holes; terminated marching keeps a front part of each ray's samples."""
    scene = make_scene(assets=["car"])
    scene.actor_fields["car"] = BoxField((0.2, 0.2, 0.0), (0.8, 0.8, 0.6), sigma=6.0)
    grid = scene.actor_grid("car")
    grid.occupied.copy_(torch.rand(grid.resolution, generator=torch.Generator().manual_seed(0)) < 0.4)
    rng = np.random.default_rng(3)
    origins = np.array([-3.0, 1.0, 1.2]) + rng.uniform(-0.3, 0.3, (200, 3))
    dirs = unit(rng.uniform(-1.2, 1.2, (200, 3)) - origins)
    a = actor_rays("car", (2.0, 1.0, 0.8), pose(unit([math.cos(0.3), 0, 0, math.sin(0.3)]), (0.2, 0.1, 0.0)),
                   n_rays=len(origins) if per_ray_pose else None)
    o, d = as_t(origins), as_t(dirs)
    s = scene._actor_samples(a, o, d, jitter=False)
    ray, t = _actor_samples_reference(scene, a, o, d)
    assert len(ray) > 2000 and len(ray.unique()) > 50
    assert torch.equal(s["ray"], ray)
    assert torch.allclose(s["t"], t, atol=1e-5)
    T = a.T_actor_world if not per_ray_pose else a.T_actor_world[s["ray"]]
    x_actor = (T[:, :3, :3] @ o[s["ray"], :, None])[..., 0] + T[:, :3, 3] + s["dirs"] * s["t"][:, None]
    assert torch.allclose(s["x01"], x_actor / a.size + 0.5, atol=1e-5)
    with torch.no_grad():
        cut = scene._actor_samples(a, o, d, jitter=False, terminate=True)
    assert 0 < len(cut["ray"]) < 0.5 * len(ray)  # the body is opaque: rays stop in it
    for r in cut["ray"].unique()[:20]:
        t_all, t_cut = t[ray == r], cut["t"][cut["ray"] == r]
        assert torch.allclose(t_cut, t_all[torch.searchsorted(t_all, t_cut - 1e-5)], atol=1e-5)  # a subset of them


# ---------------------------------------------------------------------------------------- (c)
def test_background_is_cut_out_inside_actor_box_above_ground_clearance():
    clearance = 0.05
    scene = make_scene(assets=["car"], ground_clearance=clearance)
    # Background: a dense blue cube of half-width 0.6 (unit cube [0.2, 0.8]^3 of the [-1, 1]^3 AABB).
    scene.background = BoxField((0.2, 0.2, 0.2), (0.8, 0.8, 0.8), 20.0, (0.0, 0.0, 1.0))
    # Actor box 2 x 2 x 1.2 yawed 45 deg, bottom at z = -0.6: it contains the whole blue cube (whose
    # corners lie 0.85 from the axis, inside the inscribed radius 1 of the rotated footprint).
    size = (2.0, 2.0, 1.2)
    T_world_actor = pose([math.cos(math.pi / 8), 0, 0, math.sin(math.pi / 8)], (0.0, 0.0, 0.0))
    a = actor_rays("car", size, T_world_actor)
    heights = np.array([-0.58, -0.565, -0.3, 0.0, 0.3, 0.55])  # first two inside the ground-contact slab
    origins = np.stack([np.full(6, -3.0), np.full(6, 0.1), heights], -1)
    dirs = np.tile([1.0, 0.0, 0.0], (6, 1))

    # Transparent actor: the blue cube has vanished except in the ground-contact slab.
    scene.actor_fields["car"] = BoxField(sigma=0.0)
    out = scene.render_rays(as_t(origins), as_t(dirs), [a])
    acc = out["accumulation"].numpy()
    in_slab = heights < -0.6 + clearance
    assert np.all(acc[in_slab] > 0.99)  # 1.2 m of density 20
    assert np.all(acc[~in_slab] == 0)
    # Without the actor the blue cube is there for every ray.
    out_no_actor = scene.render_rays(as_t(origins), as_t(dirs), [])
    assert np.all(out_no_actor["accumulation"].numpy() > 0.99)

    # Opaque red actor: rays above the slab see pure red, no blue leaks in.
    scene.actor_fields["car"] = BoxField(sigma=30.0, color=(1.0, 0.0, 0.0))
    out = scene.render_rays(as_t(origins), as_t(dirs), [a])
    rgb = out["rgb"].numpy()
    assert np.allclose(rgb[~in_slab], [1.0, 0.0, 0.0], atol=1e-3)
    assert np.all(out["owner_weights"][:, 0].numpy()[~in_slab] == 0)
    # The actor box starts before the blue cube along these rays, so the actor hides the slab too.
    assert np.all(rgb[in_slab, 0] > 0.99)


# ---------------------------------------------------------------------------------------- (d)
def test_two_actors_composite_in_ray_order():
    scene = make_scene(assets=["a", "b"])
    scene.background = BoxField(sigma=0.0)
    red, green = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0)
    size = (1.0, 1.0, 1.0)
    T_a = pose([1, 0, 0, 0], (-1.0, 0.0, 0.0))
    T_b = pose([math.cos(0.2), 0, 0, math.sin(0.2)], (1.5, 0.0, 0.0))
    origins = np.array([[-4.0, 0.0, 0.0], [4.0, 0.0, 0.0], [-4.0, 0.0, 0.0]])
    dirs = np.array([[1.0, 0, 0], [-1.0, 0, 0], [1.0, 0, 0]])
    actors = [actor_rays("a", size, T_a, 1), actor_rays("b", size, T_b, 2)]

    scene.actor_fields["a"] = BoxField(sigma=40.0, color=red)
    scene.actor_fields["b"] = BoxField(sigma=40.0, color=green)
    out = scene.render_rays(as_t(origins[:2]), as_t(dirs[:2]), actors)
    w = out["owner_weights"].numpy()
    assert np.allclose(out["rgb"][0].numpy(), red, atol=1e-3) and w[0, 1] > 0.999 and w[0, 2] < 1e-3
    assert np.allclose(out["rgb"][1].numpy(), green, atol=1e-3) and w[1, 2] > 0.999 and w[1, 1] < 1e-3
    # Opaque (sigma 40): depth = entry distance + 1/40. Box b is yawed 0.4 rad: half chord 0.5 / cos(0.4).
    assert abs(float(out["depth"][0]) - (2.5 + 1 / 40)) < 0.02
    assert abs(float(out["depth"][1]) - (4.0 - 1.5 - 0.5 / math.cos(0.4) + 1 / 40)) < 0.02

    # Semi-transparent near actor (chord 1, sigma 1) in front of an opaque far one.
    scene.actor_fields["a"] = BoxField(sigma=1.0, color=red)
    out = scene.render_rays(as_t(origins[2:]), as_t(dirs[2:]), actors)
    alpha = 1 - math.exp(-1.0)
    assert np.allclose(out["rgb"][0].numpy(), [alpha, 1 - alpha, 0.0], atol=0.01)
    assert np.allclose(out["owner_weights"][0].numpy(), [0.0, alpha, 1 - alpha], atol=0.01)


# ---------------------------------------------------------------------------------------- (e)
def _street_like_scene():
    """Ground slab + a wall (background), two posed actors, one semi-transparent."""
    scene = make_scene(aabb=((-4, -4, -1), (4, 4, 3)), assets=["car", "ped"])
    bg_ground = BoxField((0.0, 0.0, 0.0), (1.0, 1.0, 0.25), 15.0, (0.3, 0.3, 0.3))  # z <= 0
    bg_wall = BoxField((0.9, 0.0, 0.0), (1.0, 1.0, 1.0), 15.0, (0.8, 0.7, 0.5))  # x >= 3.2

    class Union(nn.Module):
        def density(self, x):
            return torch.maximum(bg_ground.density(x), bg_wall.density(x))

        def forward(self, x, d):
            s1, s2 = bg_ground.density(x), bg_wall.density(x)
            rgb = torch.where((s2 > s1)[:, None], bg_wall.color, bg_ground.color)
            return torch.maximum(s1, s2), rgb

    scene.background = Union()
    scene.actor_fields["car"] = BoxField((0.1, 0.1, 0.0), (0.9, 0.9, 0.7), 25.0, (0.9, 0.1, 0.1))
    scene.actor_fields["ped"] = BoxField(sigma=0.8, color=(0.1, 0.1, 0.9))
    actors = [
        actor_rays("car", (4.0, 1.8, 1.5), pose([math.cos(0.15), 0, 0, math.sin(0.15)], (1.0, 0.5, 0.75)), 1),
        actor_rays("ped", (0.5, 0.6, 1.8), pose([math.cos(-0.5), 0, 0, math.sin(-0.5)], (-1.0, -1.0, 0.9)), 2),
    ]
    return scene, actors


def test_prune_does_not_change_the_image():
    scene, actors = _street_like_scene()
    rng = np.random.default_rng(3)
    origins = np.array([-3.5, -3.0, 1.6]) + rng.uniform(-0.3, 0.3, (300, 3))
    dirs = unit(rng.uniform([-1, -3, -1], [4, 3, 2.5], (300, 3)) - origins)
    o, d = as_t(origins), as_t(dirs)
    full = scene.render_rays(o, d, actors, prune=False)
    pruned = scene.render_rays(o, d, actors, prune=True)
    assert int(pruned["n_samples"]) < 0.7 * int(full["n_samples"])  # pruning does prune
    acc = full["accumulation"]
    assert float((acc > 0.99).float().mean()) > 0.3 and float((acc < 0.5).float().mean()) > 0.05
    # Early termination drops at most the weight left behind the cut: T < min_transmittance = 1e-3
    # (measured max difference: 0.000999 for accumulation/owner weights, 0.0008 for rgb).
    bound = scene.cfg.min_transmittance + 1e-5
    for k in ("rgb", "accumulation", "owner_weights"):
        assert torch.allclose(full[k], pruned[k], atol=bound), (k, float((full[k] - pruned[k]).abs().max()))
    # Depth moves by that weight times its distance behind the surface (measured 0.0027 m).
    assert torch.allclose(full["depth"], pruned["depth"], atol=1e-2), float((full["depth"] - pruned["depth"]).abs().max())


def test_actor_samples_behind_an_opaque_actor_surface_are_never_evaluated():
    """Actor densities are evaluated front to back per ray and stop once the actor alone is opaque:
    most samples of an opaque car are never sent to its field, and the image is the same as without
    pruning (`test_prune_does_not_change_the_image` bounds)."""
    scene, actors = _street_like_scene()
    rng = np.random.default_rng(5)
    origins = np.array([-3.5, 3.0, 1.6]) + rng.uniform(-0.2, 0.2, (200, 3))  # the pedestrian is not in the way
    dirs = unit(np.array([1.0, 0.5, 0.75]) + rng.uniform(-0.3, 0.3, (200, 3)) - origins)  # at the car
    o, d = as_t(origins), as_t(dirs)
    car = scene.actor_fields["car"]
    evaluated = []
    density = car.density
    car.density = lambda x: (evaluated.append(len(x)), density(x))[1]
    generated = len(scene._actor_samples(actors[0], o, d, jitter=False)["ray"])
    with torch.no_grad():
        pruned = scene.render_rays(o, d, actors, prune=True)
    n_terminated, evaluated[:] = sum(evaluated), []
    with torch.no_grad():
        full = scene.render_rays(o, d, actors, prune=False)
    assert float((full["owner_weights"][:, 1] > 0.99).float().mean()) > 0.8  # the rays do hit the car
    # ~140 samples per ray cross the box; those in the air above and around the body come first
    # (the test grid is all occupied), then the body (tau 0.45 per sample) is opaque after 16.
    # Measured: 65 evaluated per ray.
    assert generated > 5000 and n_terminated < 0.5 * generated, (n_terminated, generated)
    bound = scene.cfg.min_transmittance + 1e-5
    for k in ("rgb", "accumulation", "owner_weights"):
        assert torch.allclose(full[k], pruned[k], atol=bound), k


# ---------------------------------------------------------------------------------------- (f)
def test_ray_aabb_matches_brute_force():
    g = np.random.default_rng(4)
    n = 400
    lo = g.uniform(-1, 0, (n, 3))
    hi = lo + g.uniform(0.1, 1.5, (n, 3))
    origins = g.uniform(-2.5, 2.5, (n, 3))
    # Half the rays aim at a point of their box, half in random directions.
    aim = lo + g.uniform(0, 1, (n, 3)) * (hi - lo)
    dirs = np.where(np.arange(n)[:, None] % 2 == 0, aim - origins, g.normal(size=(n, 3)))
    dirs[:40, 0] = 0.0  # rays parallel to a slab (half of them inside its x range)
    origins[:40:4, 0] = aim[:40:4, 0]
    dirs[40:60, 1:] = 0.0  # rays along an axis
    origins[60:80] = lo[60:80] + g.uniform(0.1, 0.9, (20, 3)) * (hi[60:80] - lo[60:80])  # starting inside
    dirs = unit(dirs)
    t_near, t_far = ray_aabb(as_t(origins), as_t(dirs), as_t(lo), as_t(hi))
    t_near, t_far = t_near.numpy(), t_far.numpy()

    t_max, m = 8.0, 16000
    ds = t_max / m
    t = np.arange(m + 1) * ds
    x = origins[:, None] + dirs[:, None] * t[None, :, None]
    inside = ((x >= lo[:, None]) & (x <= hi[:, None])).all(-1)
    any_in = inside.any(1)
    hit = t_far > t_near
    assert any_in.sum() > 50 and (~any_in).sum() > 50
    # Every ray the brute force sees inside is a hit; a hit with a chord longer than a step is seen.
    assert np.all(hit[any_in])
    assert not np.any(any_in[~hit])
    long_hit = hit & (t_far - t_near > 2 * ds)
    assert np.all(any_in[long_hit])
    first = t[np.argmax(inside, 1)]
    last = t[m - np.argmax(inside[:, ::-1], 1)]
    assert np.allclose(t_near[any_in], first[any_in], atol=ds + 1e-4)
    assert np.allclose(t_far[any_in], last[any_in], atol=ds + 1e-4)
    # Origins inside the box: t_near clamps to 0.
    inside0 = ((origins >= lo) & (origins <= hi)).all(-1)
    assert inside0.sum() >= 20 and np.all(t_near[inside0] == 0)


def test_ray_aabb_broadcasts_one_box_over_many_rays():
    o = torch.tensor([[-2.0, 0.0, 0.0], [-2.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t_near, t_far = ray_aabb(o, d, torch.tensor([-1.0, -1.0, -1.0]), torch.tensor([1.0, 1.0, 1.0]))
    assert float(t_far[0]) == pytest.approx(3.0) and float(t_near[0]) == pytest.approx(1.0)
    assert float(t_far[1]) <= float(t_near[1])  # y = 2 misses
    assert float(t_near[2]) == 0.0 and float(t_far[2]) == pytest.approx(1.0)


def test_median_distance_is_exact_inside_a_constant_density_slab():
    from sim.volume import median_distance
    from sim.volume import render_weights

    # two rays: a slab starting at 3.0 (sigma 2.5 per unit), and one that stays nearly transparent
    dt = 0.05
    t = torch.cat([3.0 + (torch.arange(60) + 0.5) * dt, 1.0 + (torch.arange(10) + 0.5) * dt])
    sigma = torch.cat([torch.full((60,), 2.5), torch.full((10,), 0.01)])
    ray = torch.cat([torch.zeros(60, dtype=torch.long), torch.ones(10, dtype=torch.long)])
    w, _ = render_weights(sigma, torch.full_like(t, dt), ray, 2)
    med = median_distance(w, t, torch.full_like(t, dt), sigma, ray, 2)
    assert med[0].item() == pytest.approx(3.0 + math.log(2) / 2.5, abs=1e-5)  # not on the 5 cm sample grid
    assert math.isinf(med[1].item())


def _random_field_scene(**cfg_kw) -> NeuralScene:
    torch.manual_seed(0)
    scene = make_scene(step_cone=1 / 256, **cfg_kw)
    with torch.no_grad():
        scene.background.density_mlp[-1].bias[0] = 1.0  # a hazy cube: every ray keeps samples
    return scene


def test_inference_reuses_marching_features_without_changing_the_image():
    """Without autograd the colour pass reuses the geometry features computed while marching: the
    image is the same as with autograd, with fewer points encoded."""
    scene = _random_field_scene()
    rng = np.random.default_rng(0)
    o, d = as_t(np.tile([[0.0, 0.0, -3.0]], (200, 1))), as_t(unit(rng.normal([0, 0, 1], 0.3, (200, 3))))
    encoded = []
    geometry = scene.background._geometry
    scene.background._geometry = lambda x: (encoded.append(len(x)), geometry(x))[1]
    with torch.no_grad():
        fast = scene.render_rays(o, d)
    n_fast, encoded[:] = sum(encoded), []
    with torch.enable_grad():
        slow = scene.render_rays(o, d)
    n_slow = sum(encoded)
    assert int(fast["n_samples"]) > 1000 and n_fast < n_slow
    for k in ("rgb", "depth", "accumulation"):
        assert torch.allclose(fast[k], slow[k].detach(), atol=1e-6), k


def test_render_thresholds_apply_in_eval_mode_only():
    """``render_min_alpha`` / ``render_min_transmittance`` drop more samples when rendering (eval
    mode) and leave training (train mode) as it was. Ending rays at transmittance 0.3 moves a
    pixel by at most that light (colours lie in [0, 1])."""
    rng = np.random.default_rng(0)
    o, d = as_t(np.tile([[0.0, 0.0, -3.0]], (200, 1))), as_t(unit(rng.normal([0, 0, 1], 0.3, (200, 3))))
    scenes = {"plain": _random_field_scene(), "T": _random_field_scene(render_min_transmittance=0.3),
              "alpha": _random_field_scene(render_min_alpha=0.01)}
    out = {}
    for name, scene in scenes.items():
        for mode in ("train", "eval"):
            getattr(scene, mode)()
            with torch.no_grad():
                out[name, mode] = scene.render_rays(o, d)
    n = {k: int(v["n_samples"]) for k, v in out.items()}
    assert n["T", "train"] == n["alpha", "train"] == n["plain", "train"] == n["plain", "eval"]
    assert n["T", "eval"] < 0.9 * n["plain", "eval"] and n["alpha", "eval"] < 0.9 * n["plain", "eval"]
    diff = (out["T", "eval"]["rgb"] - out["plain", "eval"]["rgb"]).abs().max()
    assert 0 < diff <= 0.3 + 1e-4


def test_step_cone_override_thins_far_samples():
    scene = _random_field_scene(step_max=1.0)
    rng = np.random.default_rng(1)
    o, d = as_t(np.tile([[0.0, 0.0, -30.0]], (100, 1))), as_t(unit(rng.normal([0, 0, 1], 0.02, (100, 3))))
    with torch.no_grad():
        default = scene.render_rays(o, d)
        same = scene.render_rays(o, d, step_cone=scene.cfg.step_cone)
        coarse = scene.render_rays(o, d, step_cone=1 / 128)
    assert torch.equal(default["rgb"], same["rgb"])
    assert int(coarse["n_samples"]) < 0.6 * int(default["n_samples"])
    diff = (coarse["accumulation"] - default["accumulation"]).abs()
    assert float(diff.median()) < 0.01 and float(diff.mean()) < 0.03  # rays grazing the cube's edges differ most


class WorldHalfSpace(nn.Module):
    """Density ``sigma`` where world x >= ``x0`` (a wall far outside the AABB), through the scene's
    own field-coordinate map (contracted or not)."""

    def __init__(self, scene: NeuralScene, x0: float, sigma: float, ramp: float = 0.0):
        super().__init__()
        self.scene, self.x0, self.sigma, self.ramp = [scene], x0, sigma, ramp  # a list: not a submodule (no cycle)

    def density(self, x01):
        x = self.scene[0].unit_to_world(x01)[:, 0]
        if self.ramp > 0:  # rising linearly over ``ramp`` past x0: a gradient for the normals
            return self.sigma * ((x - self.x0) / self.ramp).clamp(0, 1)
        return torch.where(x >= self.x0, self.sigma, 0.0)

    def forward(self, x01, dirs):
        return self.density(x01), torch.full((len(x01), 3), 0.5)


def test_unbounded_background_reconstructs_a_wall_far_outside_the_box_with_metric_depth():
    """A wall 5 box half-extents away: a bounded field never sees it, a contracted one renders it
    opaque at its metric distance, with the wall's normal."""
    rng = np.random.default_rng(0)
    dirs = unit(np.c_[np.ones(32), rng.uniform(-0.2, 0.2, (32, 2))])
    origins = np.zeros((32, 3))
    x0, sigma = 5.0, 4.0
    for unbounded in (False, True):
        scene = make_scene(unbounded=unbounded, occupancy_cell=4 / 128)
        scene.background = WorldHalfSpace(scene, x0, sigma)
        out = scene.render_rays(as_t(origins), as_t(dirs), median=True)
        acc = out["accumulation"].numpy()
        if not unbounded:
            assert np.all(acc == 0)
            continue
        assert np.all(acc > 0.99)
        entry = x0 / dirs[:, 0]  # ray distance to the wall
        step = contracted_step(float(entry.max()), 1.0, 128)
        assert np.all(np.abs(out["depth_median"].numpy() - (entry + math.log(2) / sigma)) < step)
        scene.background = WorldHalfSpace(scene, x0, sigma, ramp=2.0)  # normals: world offsets through the contraction
        assert np.all(scene.render_rays(as_t(origins), as_t(dirs), normals=True)["normals"].numpy()[:, 0] < -0.95)
