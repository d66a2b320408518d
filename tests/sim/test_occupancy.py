"""OccupancyGrid: indexing, seeding from points, refresh with decay, out-of-cube queries."""

from __future__ import annotations

import itertools

import numpy as np
import torch

from sim.occupancy import OccupancyGrid

RES = (8, 6, 5)


def flat(i, j, k, res=RES):
    return (i * res[1] + j) * res[2] + k


def test_cell_index_is_floor_of_scaled_coordinates_row_major():
    grid = OccupancyGrid(RES)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2000, 3, generator=g)
    ijk = np.floor(x.numpy() * np.array(RES)).astype(int)
    assert torch.equal(grid.cell_index(x), torch.as_tensor(flat(ijk[:, 0], ijk[:, 1], ijk[:, 2])))
    # The upper faces belong to the last cell, the lower faces to the first.
    corners = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.5]])
    assert grid.cell_index(corners).tolist() == [flat(7, 5, 4), 0, flat(7, 0, 2)]


def test_query_agrees_with_the_occupied_cells():
    grid = OccupancyGrid(RES)
    g = torch.Generator().manual_seed(1)
    mask = torch.rand(RES, generator=g) < 0.3
    grid.occupied.copy_(mask)
    x = torch.rand(5000, 3, generator=g)
    expected = mask.flatten()[grid.cell_index(x)]
    assert torch.equal(grid.query(x), expected)
    assert 0.2 < float(expected.float().mean()) < 0.4
    # A point at a cell's centre is answered by that cell only.
    for i, j, k in [(0, 0, 0), (3, 2, 1), (7, 5, 4)]:
        c = (torch.tensor([[i, j, k]], dtype=torch.float32) + 0.5) / torch.tensor(RES)
        assert bool(grid.query(c)[0]) == bool(mask[i, j, k])


def test_query_outside_unit_cube_is_false_even_when_all_occupied():
    grid = OccupancyGrid(RES)  # starts fully occupied
    assert bool(grid.occupied.all())
    outside = torch.tensor([[-0.01, 0.5, 0.5], [0.5, 1.01, 0.5], [0.5, 0.5, -1e-4], [2.0, 2.0, 2.0],
                            [-3.0, 0.2, 0.2], [0.5, 0.5, float("nan")]])
    inside = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    assert not grid.query(outside).any()
    assert grid.query(inside).all()


def test_reset_from_points_marks_exactly_the_dilated_cells():
    grid = OccupancyGrid(RES)
    cells = [(0, 0, 0), (4, 3, 2), (7, 5, 4), (4, 3, 3)]
    pts = [(np.array(c) + np.array([0.3, 0.6, 0.5])) / np.array(RES) for c in cells]
    pts += [(-0.2, 0.5, 0.5), (0.5, 1.3, 0.5)]  # outside: ignored, not clamped onto a border cell
    x = torch.tensor(np.array(pts), dtype=torch.float32)
    for dilate in (0, 1, 2):
        grid.reset_from_points(x, dilate=dilate, prior_density=7.0)
        expected = np.zeros(RES, bool)
        for c in cells:
            for d in itertools.product(range(-dilate, dilate + 1), repeat=3):
                n = np.array(c) + d
                if np.all(n >= 0) and np.all(n < RES):
                    expected[tuple(n)] = True
        assert np.array_equal(grid.occupied.numpy(), expected), dilate
        assert torch.equal(grid.density, torch.where(torch.as_tensor(expected), 7.0, 0.0))
        assert bool(grid.seeded)
    assert abs(grid.occupancy_fraction() - expected.mean()) < 1e-6


def region_a(x):
    """High density in the cells with i < 2 (x < 0.25 is exactly two of the 8 cells along x)."""
    return torch.where(x[:, 0] < 0.25, 10.0, 0.0)


def region_b(x):
    """High density in the cells with k >= 3 (z >= 0.6 is exactly cells 3 and 4 of 5 along z)."""
    return torch.where(x[:, 2] >= 0.6, 5.0, 0.0)


def chebyshev_ball(c, r, res=RES) -> torch.Tensor:
    ii, jj, kk = torch.meshgrid(*(torch.arange(n) for n in res), indexing="ij")
    return (ii - c[0]).abs().maximum((jj - c[1]).abs()).maximum((kk - c[2]).abs()) <= r


def test_seeded_grid_grows_only_along_dense_space_and_decays():
    """Seeded (LiDAR) grids reassess occupied cells and their 26 neighbours only: a surface extends one
    cell per update through dense space, never-observed space stays empty, and the fixed
    ``seeded_threshold`` applies."""
    grid = OccupancyGrid(RES, decay=0.95, seeded_threshold=0.5)
    seed = (1, 1, 1)
    grid.reset_from_points((torch.tensor([seed], dtype=torch.float32) + 0.5) / torch.tensor(RES), dilate=0,
                           prior_density=10.0)
    in_a = torch.zeros(RES, dtype=torch.bool)
    in_a[:2] = True
    for k in range(1, 5):
        grid.update(region_a)
        assert torch.equal(grid.occupied, chebyshev_ball(seed, k) & in_a), k
    assert torch.equal(grid.occupied, in_a)  # the whole dense region, nothing beyond it
    assert torch.equal(grid.density, torch.where(in_a, 10.0, 0.0))

    # Density below the seeded threshold (but far above `threshold`) does not make cells occupied.
    grid.update(lambda x: torch.full((len(x),), 0.3))
    assert torch.equal(grid.occupied, in_a)  # 9.5 inside a; 0.3 in the neighbours of a
    assert torch.allclose(grid.density[2], torch.tensor(0.3))
    assert torch.all(grid.density[3:] == 0)  # never reassessed: not next to an occupied cell

    # An empty field: a's memory decays below the threshold after exactly k updates.
    k = int(np.ceil(np.log(0.5 / 9.5) / np.log(0.95)))  # 9.5 * 0.95^k <= 0.5
    for _ in range(k - 1):
        grid.update(lambda x: torch.zeros(len(x)))
    assert torch.equal(grid.occupied, in_a)
    grid.update(lambda x: torch.zeros(len(x)))
    assert not grid.occupied.any()


def test_seeded_partial_update_reassesses_a_bounded_sample():
    grid = OccupancyGrid(RES, decay=0.5)
    grid.reset_from_points(torch.rand(300, 3, generator=torch.Generator().manual_seed(0)), dilate=0, prior_density=4.0)
    n_occ = int(grid.occupied.sum())
    assert n_occ > 40
    torch.manual_seed(0)
    grid.update(lambda x: torch.zeros(len(x)), n_samples=5)
    changed = int((grid.density == 2.0).sum())
    assert 1 <= changed <= 10 and int((grid.density == 4.0).sum()) == n_occ - changed


def test_update_from_the_initial_full_grid_converges_to_the_region():
    """Unseeded (no LiDAR): everything starts occupied, and the first full refresh keeps exactly
    the cells where the field has density (no memory of the optimistic start)."""
    grid = OccupancyGrid(RES, threshold=0.01, decay=0.8)
    in_a = torch.zeros(RES, dtype=torch.bool)
    in_a[:2] = True
    assert bool(grid.occupied.all())
    grid.update(region_a)
    assert torch.equal(grid.occupied, in_a)
    assert torch.allclose(grid.density[in_a], torch.tensor(10.0))
    grid.update(lambda x: torch.zeros(len(x)))  # the field empties: cells decay, still above 0.01
    assert torch.allclose(grid.density[in_a], torch.tensor(8.0)) and torch.equal(grid.occupied, in_a)


def test_update_decay_override_forgets_a_young_fields_haze_faster():
    """The per-call decay (training's warm-up) replaces the grid's own for that refresh only: haze
    of 0.3 that the field has since cleared leaves the grid after 2 refreshes at 0.5, while the
    grid's own 0.95 keeps it for 21 (0.3 * 0.95^21 = 0.102). A surface (density 10 in the x < 1/8
    slab) stays throughout."""
    surface = lambda x: torch.where(x[:, 0] < 1 / RES[0], 10.0, 0.0)
    haze = lambda x: surface(x) + 0.3
    slab = torch.zeros(RES, dtype=torch.bool)
    slab[0] = True
    fast, slow = (OccupancyGrid(RES, threshold=0.1, decay=0.95) for _ in range(2))
    for grid in (fast, slow):
        grid.update(haze)
        assert bool(grid.occupied.all())
    fast.update(surface, decay=0.5)
    assert bool(fast.occupied.all()) and torch.allclose(fast.density[~slab], torch.tensor(0.15))
    fast.update(surface, decay=0.5)
    assert torch.equal(fast.occupied, slab)
    for _ in range(21):
        slow.update(surface)
    assert bool(slow.occupied.all())
    slow.update(surface)
    assert torch.equal(slow.occupied, slab)


def test_partial_update_refreshes_every_occupied_cell_and_leaves_others():
    """Unseeded grids: a partial refresh covers every occupied cell plus random ones."""
    grid = OccupancyGrid(RES, threshold=0.01, decay=0.5)
    in_a = torch.zeros(RES, dtype=torch.bool)
    in_a[:2] = True
    grid.density.copy_(torch.where(in_a, 10.0, 0.0))
    grid.occupied.copy_(in_a)  # 96 occupied cells at density 10
    torch.manual_seed(0)
    grid.update(lambda x: torch.zeros(len(x)), n_samples=100)  # >= the occupied count: all refreshed
    assert torch.allclose(grid.density[in_a], torch.tensor(5.0))
    assert torch.all(grid.density[~in_a] == 0)
    # Sampled cells only: a cell never sampled keeps its value.
    grid.density.fill_(3.0)
    grid.occupied.zero_()
    grid.update(lambda x: torch.zeros(len(x)), n_samples=10)
    n_decayed = int((grid.density == 1.5).sum())
    assert 1 <= n_decayed <= 10 and int((grid.density == 3.0).sum()) == grid.n_cells - n_decayed


def test_refine_drops_unconfirmed_cells_and_keeps_thin_structures():
    # A seeded grid (LiDAR-style prior) over a 2.5 m cube of 10 x 10 x 10 cells (25 cm each): the
    # prior marks two full x-layers of cells (x in [1.0, 1.5] m), but the field only has a 16 cm
    # pole, x in [1.05, 1.21] m (inside cell 4) and y in [1.17, 1.33] m (8 cm into cells 4 and 5):
    # narrower than a cell, wider than the 3-point lattice spacing (8.3 cm).
    g = OccupancyGrid((10, 10, 10), threshold=0.01)
    size = 2.5
    x_lo, x_hi, y_lo, y_hi = 1.05 / size, 1.21 / size, 1.17 / size, 1.33 / size

    def density(x01):
        inside = (x01[:, 0] >= x_lo) & (x01[:, 0] <= x_hi) & (x01[:, 1] >= y_lo) & (x01[:, 1] <= y_hi)
        return torch.where(inside, 50.0, 0.005)  # haze below the threshold elsewhere

    slab = torch.rand(4000, 3) * torch.tensor([0.5 / size, 1.0, 1.0]) + torch.tensor([1.0 / size, 0.0, 0.0])
    g.reset_from_points(slab, dilate=0)
    assert g.occupied[4:6].all() and not g.occupied[:4].any() and not g.occupied[6:].any()
    g.refine(density)
    expected = torch.zeros(10, 10, 10, dtype=torch.bool)
    expected[4, 4:6, :] = True  # the pole's cells at every height; the rest of the prior is gone
    assert torch.equal(g.occupied, expected)
    # The memory now holds what the field says, so a later refresh does not resurrect the prior.
    g._refresh_mask()
    assert torch.equal(g.occupied, expected)
    # An unseeded grid thresholds at min(threshold, mean density), as its updates do: a faint but
    # uniform field keeps every cell it had, and refining never adds one.
    faint = OccupancyGrid((10, 10, 10), threshold=0.01)
    faint.occupied.view(-1)[:500] = False
    faint.refine(lambda x01: torch.full((len(x01),), 0.05))
    assert faint.occupied.sum() == 500 and not faint.occupied.view(-1)[:500].any()


def test_every_occupied_update_refreshes_all_occupied_cells_and_only_a_sample_of_the_rest():
    """The warm-up refresh: every occupied cell (more than ``n_samples`` of them) plus ``n_samples``
    random cells; unoccupied cells outside the sample keep their stored density."""
    grid = OccupancyGrid(RES, threshold=0.01, decay=0.5)
    in_a = torch.zeros(RES, dtype=torch.bool)
    in_a[:4] = True  # 120 occupied cells of 240
    grid.density.copy_(torch.where(in_a, 10.0, 0.004))
    grid.occupied.copy_(in_a)
    torch.manual_seed(0)
    grid.update(lambda x: torch.zeros(len(x)), n_samples=10, every_occupied=True)
    assert torch.allclose(grid.density[in_a], torch.tensor(5.0))  # all 120 refreshed (decayed)
    n_refreshed_empty = int((grid.density[~in_a] == 0.002).sum())
    assert 1 <= n_refreshed_empty <= 10
    # Without every_occupied only a sample of the occupied cells is refreshed (10 of them, plus
    # the random cells that happen to be occupied).
    grid.density.copy_(torch.where(in_a, 10.0, 0.004))
    grid.occupied.copy_(in_a)
    grid.update(lambda x: torch.zeros(len(x)), n_samples=10)
    assert 1 <= int((grid.density[in_a] == 5.0).sum()) <= 20


def test_cells_no_training_camera_sees_are_blocked_in_a_contracted_grid():
    """One camera at the origin looking along +x (90 deg field of view): cells ahead of it inside
    its frustum stay free to occupy, cells behind it or far off its axis are blocked, near and far."""
    import numpy as np

    from scenes.camera import Camera, Intrinsics
    from scenes.graph import SceneGraph
    from sim.compose import NeuralScene, SceneModelConfig
    from sim.data import RayBank
    from sim.train import block_unseen_cells

    aabb = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    model = NeuralScene(SceneModelConfig(unbounded=True, occupancy_cell=4 / 64), aabb, [])
    T = np.eye(4)
    T[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]  # camera z (forward) = world +x, camera y (down) = world -z
    bank = RayBank([Camera(Intrinsics(40, 40, 20.0, 20.0, 20.0, 20.0), T)], [np.zeros((40, 40, 3), np.uint8)], SceneGraph(aabb=aabb))
    share = block_unseen_cells(model, bank, dilate=0)
    grid = model.background_grid
    free = lambda *p: bool(~grid.blocked.flatten()[grid.cell_index(model.world_to_unit(torch.tensor([p], dtype=torch.float32)))][0])
    assert free(0.5, 0.0, 0.0) and free(10.0, 3.0, -3.0) and free(500.0, 0.0, 0.0)  # ahead, within 45 degrees
    assert not free(-0.5, 0.0, 0.0) and not free(-50.0, 0.0, 0.0)  # behind
    assert not free(1.0, 5.0, 0.0) and not free(10.0, 0.0, 30.0)  # off to the side, above
    assert 0.05 < share < 0.4 and bool((grid.occupied & grid.blocked).sum() == 0)
