"""The numba ray marcher returns exactly the torch reference's packed samples."""

import pytest
import torch

from sim.raymarch import march_numba, march_reference


def _setup(seed=0, n_rays=300):
    g = torch.Generator().manual_seed(seed)
    origins = torch.rand(n_rays, 3, generator=g) * 4 - 2
    dirs = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=g), dim=-1)
    occupied = torch.rand(16, 12, 8, generator=g) < 0.3
    box_min, box_size = torch.tensor([-1.0, -1.5, -0.5]), torch.tensor([2.0, 3.0, 1.0])
    ts = torch.arange(0, 6, 0.05)
    dts = torch.full_like(ts, 0.05)
    t_near = torch.rand(n_rays, generator=g)
    t_far = t_near + torch.rand(n_rays, generator=g) * 5
    u = torch.rand(n_rays, generator=g)
    return origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size


def test_numba_march_equals_reference():
    args = _setup()
    ref, fast = march_reference(*args), march_numba(*args)
    assert len(ref["ray"]) > 100
    assert torch.equal(ref["ray"], fast["ray"])
    assert torch.allclose(ref["t"], fast["t"]) and torch.allclose(ref["dt"], fast["dt"])
    assert torch.allclose(ref["x01"], fast["x01"], atol=1e-6)



@pytest.mark.parametrize("max_per_ray", [0, 4])
def test_offsets_beyond_one_step_and_no_rays(max_per_ray):
    """A constant step takes any per-ray offset ``u`` (actor boxes: ``t_near / dt + u``), and an
    empty batch gives an empty result, in both implementations."""
    origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size = _setup(seed=1)
    u = t_near / 0.05 + u  # sample k at t_near + (k + u) dt
    k0 = torch.zeros(len(origins), dtype=torch.long)
    ref = march_reference(origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size, k0, max_per_ray)
    fast = march_numba(origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size, k0, max_per_ray)
    assert len(ref["ray"]) > 100 and torch.equal(ref["ray"], fast["ray"]) and torch.equal(ref["k_next"], fast["k_next"])
    assert torch.allclose(ref["t"], fast["t"], atol=1e-5)
    none = [a[:0] for a in (origins, dirs, t_near, t_far)]
    empty = march_numba(*none, ts, dts, u[:0], occupied, box_min, box_size, k0[:0], max_per_ray)
    assert all(len(v) == 0 for v in empty.values())


def test_samples_lie_in_occupied_cells_within_ray_bounds():
    args = _setup(1)
    origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size = args
    out = march_numba(*args)
    assert torch.all(out["t"] >= t_near[out["ray"]]) and torch.all(out["t"] <= t_far[out["ray"]])
    ijk = (out["x01"] * torch.tensor(occupied.shape)).long().clamp(max=torch.tensor(occupied.shape) - 1)
    assert occupied[ijk[:, 0], ijk[:, 1], ijk[:, 2]].all()
    # An empty grid gives no samples at all.
    empty = march_numba(origins, dirs, t_near, t_far, ts, dts, u, torch.zeros_like(occupied), box_min, box_size)
    assert len(empty["ray"]) == 0


def test_chunked_marching_resumes_exactly_where_it_stopped():
    args = _setup(2)
    whole = march_reference(*args)
    for impl in (march_reference, march_numba):
        n_rays = len(args[0])
        k = torch.zeros(n_rays, dtype=torch.long)
        pieces = []
        for _ in range(200):
            out = impl(*args, k_start=k, max_per_ray=5)
            assert torch.bincount(out["ray"], minlength=n_rays).max() <= 5
            pieces.append(out)
            k = out["k_next"]
            if (k >= len(args[4])).all():
                break
        ray = torch.cat([p["ray"] for p in pieces])
        t = torch.cat([p["t"] for p in pieces])
        order = torch.argsort(ray.double() * 1e6 + t.double())
        assert torch.equal(ray[order], whole["ray"]) and torch.allclose(t[order], whole["t"])


@pytest.mark.parametrize("sparse", [False, True])
def test_bounded_numba_march_equals_bounded_reference(sparse):
    # The one-pass bounded kernel (which jumps over the steps inside empty cells) packs the same
    # samples, in the same order, with the same resume points. Sparse: 5% of cells occupied and
    # 40-80 steps per cell, so most steps are skipped.
    args = list(_setup(3, n_rays=1000))
    if sparse:
        g = torch.Generator().manual_seed(5)
        args[7] = torch.rand(16, 12, 8, generator=g) < 0.05
        args[4] = torch.arange(0, 6, 0.003)
        args[5] = torch.full_like(args[4], 0.003)
    k = torch.randint(0, 40, (len(args[0]),), generator=torch.Generator().manual_seed(4))
    for max_per_ray in (1, 4, 16):
        ref = march_reference(*args, k_start=k, max_per_ray=max_per_ray)
        fast = march_numba(*args, k_start=k, max_per_ray=max_per_ray)
        assert len(ref["ray"]) > 40 and (ref["k_next"] < len(args[4])).any()  # some rays stop at the bound
        assert torch.equal(ref["ray"], fast["ray"]) and torch.equal(ref["k_next"], fast["k_next"])
        assert torch.allclose(ref["t"], fast["t"]) and torch.allclose(ref["dt"], fast["dt"])
        assert torch.allclose(ref["x01"], fast["x01"], atol=1e-6)


def test_block_skipping_over_empty_space_equals_reference_and_follows_grid_changes():
    """A big grid that is mostly empty air (whole 4^3 blocks empty, sides not multiples of 4) with a
    few thin occupied slabs and isolated cells: the kernel jumps empty blocks and must still land on
    every occupied cell the reference finds; after the grid changes in place (an occupancy refresh)
    its cached block summary must follow."""
    g = torch.Generator().manual_seed(7)
    n_rays = 2000
    origins = torch.rand(n_rays, 3, generator=g) * 4 - 2
    dirs = torch.nn.functional.normalize(torch.randn(n_rays, 3, generator=g), dim=-1)
    occupied = torch.zeros(50, 38, 21, dtype=torch.bool)
    occupied[:, :, 0] = True  # a ground slab
    occupied[13, 5:30, 3:9] = True  # a thin wall
    occupied[torch.randint(50, (40,), generator=g), torch.randint(38, (40,), generator=g), torch.randint(21, (40,), generator=g)] = True
    box_min, box_size = torch.tensor([-1.0, -1.5, -0.5]), torch.tensor([2.0, 3.0, 1.0])
    ts = torch.arange(0, 6, 0.01)
    dts = torch.full_like(ts, 0.01)
    t_near = torch.zeros(n_rays)
    t_far = torch.full((n_rays,), 6.0)
    u = torch.rand(n_rays, generator=g)
    for change in range(2):
        args = (origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size)
        ref, fast = march_reference(*args), march_numba(*args)
        assert len(ref["ray"]) > 1000
        assert torch.equal(ref["ray"], fast["ray"]) and torch.allclose(ref["t"], fast["t"])
        occupied[30:34, 20:25, 10:15] = True  # in place: space that was an empty block fills


def test_long_jumps_through_open_air_land_on_a_lone_cell():
    """One occupied cell in a big empty grid: blocks near the edges have empty cubes reaching past
    the grid (negative cell bounds); rays from every side must still find the cell's samples."""
    g = torch.Generator().manual_seed(11)
    occupied = torch.zeros(96, 80, 40, dtype=torch.bool)
    occupied[47, 41, 20] = True
    box_min, box_size = torch.zeros(3), torch.tensor([9.6, 8.0, 4.0])  # 10 cm cells
    target = box_min + (torch.tensor([47.5, 41.5, 20.5]) / torch.tensor([96, 80, 40])) * box_size
    origins = target + torch.nn.functional.normalize(torch.randn(600, 3, generator=g), dim=-1) * 6.0
    dirs = torch.nn.functional.normalize(target + (torch.rand(600, 3, generator=g) - 0.5) * 0.08 - origins, dim=-1)
    ts = torch.arange(0, 12, 0.004)
    args = (origins, dirs, torch.zeros(600), torch.full((600,), 12.0), ts, torch.full_like(ts, 0.004), torch.rand(600, generator=g),
            occupied, box_min, box_size)
    ref, fast = march_reference(*args), march_numba(*args)
    assert len(ref["ray"].unique()) > 300  # most rays pass through the cell
    assert torch.equal(ref["ray"], fast["ray"]) and torch.allclose(ref["t"], fast["t"])


def test_block_summary_cache_never_outlives_its_grid():
    """A grid freed and another allocated in its place (same address, same version count) must not
    read the first grid's cached block summary; the summary is each block's empty radius: its
    Chebyshev distance (in blocks) to the nearest block holding an occupied cell, capped."""
    from sim.raymarch import COARSE_BLOCK, MAX_EMPTY_RADIUS, coarse_occupancy

    for _ in range(20):
        full = torch.ones(16, 12, 8, dtype=torch.bool)
        assert not coarse_occupancy(full).any()
        del full
        empty = torch.zeros(16, 12, 8, dtype=torch.bool)
        assert (coarse_occupancy(empty) == MAX_EMPTY_RADIUS).all()
        del empty
    grid = torch.zeros(150, 40, 24, dtype=torch.bool)
    grid[5, 7, 2] = grid[77, 30, 20] = grid[149, 0, 0] = True
    blocks = torch.nn.functional.max_pool3d(grid[None, None].float(), COARSE_BLOCK, COARSE_BLOCK, ceil_mode=True)[0, 0] > 0
    occupied_blocks = blocks.nonzero()
    ijk = torch.stack(torch.meshgrid(*(torch.arange(n) for n in blocks.shape), indexing="ij"), -1).reshape(-1, 1, 3)
    chebyshev = (ijk - occupied_blocks[None]).abs().amax(-1).amin(-1).reshape(blocks.shape)
    radius = torch.from_numpy(coarse_occupancy(grid)).long()
    assert torch.equal(radius, chebyshev.clamp(max=MAX_EMPTY_RADIUS))
    assert int(radius.max()) == MAX_EMPTY_RADIUS and int((radius == 0).sum()) == 3
