"""Scene contraction: analytic points, the inverse, and the marching kernel through contracted space
against the torch reference."""

import math

import pytest
import torch

from sim.contraction import contracted_step, unit_to_world, world_to_unit
from sim.raymarch import march_numba, march_reference

LO, SIZE = torch.tensor([-1.0, -2.0, 0.0]), torch.tensor([2.0, 4.0, 1.0])  # inner box, half extents 1, 2, 0.5


def test_inner_box_is_linear_in_the_middle_half():
    x = torch.tensor([[-1.0, -2.0, 0.0], [1.0, 2.0, 1.0], [0.0, 0.0, 0.5], [0.5, -1.0, 0.25]])
    x01 = world_to_unit(x, LO, SIZE, contract=True)
    assert torch.allclose(x01, 0.25 + 0.5 * world_to_unit(x, LO, SIZE, contract=False), atol=1e-6)
    assert torch.allclose(x01[0], torch.tensor([0.25, 0.25, 0.25])) and torch.allclose(x01[1], torch.tensor([0.75, 0.75, 0.75]))


def test_outside_points_land_where_the_formula_says():
    # Centre (0, 0, 0.5); a point 3 half extents along +x: u = (3, 0, 0), m = 3 -> c = (2 - 1/3, 0, 0).
    x = torch.tensor([[3.0, 0.0, 0.5], [0.0, -8.0, 0.5], [1.0, 4.0, 0.5], [1e9, 0.0, 0.5]])
    x01 = world_to_unit(x, LO, SIZE, contract=True)
    c = 4 * x01 - 2
    assert torch.allclose(c[0], torch.tensor([5 / 3, 0.0, 0.0]), atol=1e-5)
    assert torch.allclose(c[1], torch.tensor([0.0, -(2 - 1 / 4), 0.0]), atol=1e-5)  # m = 4 along -y
    # u = (1, 2, 0): m = 2 -> c = (2 - 1/2) * u / 2 = (0.75, 1.5, 0).
    assert torch.allclose(c[2], torch.tensor([0.75, 1.5, 0.0]), atol=1e-5)
    assert 0.999 < float(x01[3, 0]) < 1.0  # infinity stays inside the cube
    # Monotonic along a ray leaving the box: farther never maps nearer the centre.
    t = torch.logspace(-1, 6, 200)[:, None]
    xs = torch.tensor([0.0, 0.0, 0.5]) + t * torch.nn.functional.normalize(torch.tensor([1.0, 0.3, 0.2]), dim=0)
    m = (4 * world_to_unit(xs, LO, SIZE, contract=True) - 2).abs().amax(-1)
    assert torch.all(m[1:] >= m[:-1] - 1e-6) and float(m[-1]) > 1.99


def test_inverse_round_trips_near_and_far():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 3, generator=g, dtype=torch.float64) * torch.logspace(-1, 3, 2000, dtype=torch.float64)[:, None]
    lo, size = LO.double(), SIZE.double()
    back = unit_to_world(world_to_unit(x, lo, size, True), lo, size, True)
    assert torch.allclose(back, x, rtol=1e-6, atol=1e-8)
    assert torch.allclose(unit_to_world(world_to_unit(x, lo, size, False), lo, size, False), x)


def test_contracted_step_grows_with_the_square_of_distance():
    assert contracted_step(0.5, 2.0, 128) == contracted_step(2.0, 2.0, 128)  # inside: the floor
    assert math.isclose(contracted_step(40.0, 2.0, 128) / contracted_step(20.0, 2.0, 128), 4.0)
    # Crossing the shell from 1 to 1000 half extents takes about 2 steps per cell of its depth.
    t, n = 2.0, 0
    while t < 2000.0:
        t += contracted_step(t, 2.0, 128)
        n += 1
    assert 50 < n < 90  # the shell is 32 cells deep across 128: ~2 steps a cell


def _contracted_setup(seed: int, n_rays: int = 400):
    g = torch.Generator().manual_seed(seed)
    origins = (torch.rand(n_rays, 3, generator=g) * 2 - 1) * torch.tensor([1.5, 3.0, 1.0]) + torch.tensor([0.0, 0.0, 0.5])
    dirs = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=g), dim=-1)
    occupied = torch.rand(32, 32, 16, generator=g) < 0.15
    ts, dts, t = [], [], 0.0
    while t < 500.0:
        dt = max(0.02, contracted_step(t, 2.0, 32))
        ts.append(t)
        dts.append(dt)
        t += dt
    ts, dts = torch.tensor(ts), torch.tensor(dts)
    t_near = torch.rand(n_rays, generator=g) * 0.3
    t_far = torch.full((n_rays,), 500.0)
    u = torch.rand(n_rays, generator=g)
    return origins, dirs, t_near, t_far, ts, dts, u, occupied, LO, SIZE


@pytest.mark.parametrize("max_per_ray", [0, 5])
def test_numba_march_through_contracted_space_equals_reference(max_per_ray):
    args = _contracted_setup(seed=max_per_ray)
    k0 = torch.zeros(len(args[0]), dtype=torch.long)
    ref = march_reference(*args, k_start=k0, max_per_ray=max_per_ray, contract=True)
    fast = march_numba(*args, k_start=k0, max_per_ray=max_per_ray, contract=True)
    assert len(ref["ray"]) > 500
    assert torch.equal(ref["ray"], fast["ray"]) and torch.equal(ref["k_next"], fast["k_next"])
    assert torch.allclose(ref["t"], fast["t"]) and torch.allclose(ref["x01"], fast["x01"], atol=1e-5)
    # Samples land in the contracted cube's occupied cells, far ones included.
    occupied = args[7]
    ijk = (fast["x01"] * torch.tensor(occupied.shape)).long()
    assert occupied[ijk[:, 0], ijk[:, 1], ijk[:, 2]].all()
    assert float(((4 * fast["x01"] - 2).abs().amax(-1) > 1.5).float().mean()) > 0.1  # deep in the shell too
