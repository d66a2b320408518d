"""Occupancy grid for empty-space skipping (instant-ngp style), one per field.

The grid covers the field's unit cube ``[0, 1]^3`` (normalised field coordinates) with
``resolution = (rx, ry, rz)`` cells. Each cell keeps an exponential moving maximum of the density
seen at random points inside it; a cell is occupied when that value exceeds a threshold. Samples
in unoccupied cells are never sent to the field. The grid is a buffer of the module, so it is saved
in the checkpoint with the field.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


class OccupancyGrid(nn.Module):
    def __init__(self, resolution: tuple[int, int, int] = (64, 64, 64), threshold: float = 0.01, decay: float = 0.95,
                 seeded_threshold: float = 0.5):
        super().__init__()
        self.resolution = tuple(int(r) for r in resolution)
        self.threshold = threshold
        # With known surfaces, haze and hash-collision garbage need not keep cells alive: a real
        # surface has density >> 1 per unit length.
        self.seeded_threshold = seeded_threshold
        self.decay = decay
        # Grids seeded from known surfaces (LiDAR) use the fixed threshold; others adapt to the mean.
        self.register_buffer("seeded", torch.zeros((), dtype=torch.bool))
        # Cells the field may never occupy (e.g. the volume of parked cars, owned by their fields).
        self.register_buffer("blocked", torch.zeros(self.resolution, dtype=torch.bool))
        # Start "everything occupied" (the field has not told us anything yet) but with no density
        # memory: the first refresh replaces it by what the field says. (A large initial value would
        # take hundreds of decays to forget and keep every cell occupied for thousands of steps.)
        self.register_buffer("density", torch.zeros(self.resolution))
        self.register_buffer("occupied", torch.ones(self.resolution, dtype=torch.bool))
        # Per-cell thresholds (None: ``threshold`` everywhere); derived from the field's sampling,
        # so not saved with the grid.
        self.register_buffer("cell_threshold", None, persistent=False)

    def set_cell_thresholds(self, thresholds: Tensor) -> None:
        """Use a density threshold per cell ``[rx, ry, rz]`` instead of the single ``threshold``
        (a contracted field's far cells are crossed in longer steps: see `sim.compose`)."""
        if tuple(thresholds.shape) != self.resolution:
            raise ValueError(f"cell thresholds of shape {tuple(thresholds.shape)} for a grid of {self.resolution}")
        self.cell_threshold = thresholds.to(self.density.device, torch.float32)

    @property
    def n_cells(self) -> int:
        rx, ry, rz = self.resolution
        return rx * ry * rz

    def cell_index(self, x01: Tensor) -> Tensor:
        """Flat cell index of points ``[N, 3]`` in the unit cube."""
        res = torch.tensor(self.resolution, device=x01.device)
        ijk = (x01 * res).long().clamp_(min=torch.zeros_like(res), max=res - 1)
        return (ijk[:, 0] * res[1] + ijk[:, 1]) * res[2] + ijk[:, 2]

    def query(self, x01: Tensor) -> Tensor:
        """True where points ``[N, 3]`` fall in occupied cells (points outside [0,1]^3 are False)."""
        inside = ((x01 >= 0) & (x01 <= 1)).all(-1)
        return inside & self.occupied.flatten()[self.cell_index(x01)]

    def _cell_corner(self, flat_idx: Tensor) -> Tensor:
        """Integer cell coordinates ``[N, 3]`` (float) of flat cell indices."""
        rx, ry, rz = self.resolution
        return torch.stack([flat_idx // (ry * rz), (flat_idx // rz) % ry, flat_idx % rz], -1).float()

    def _to_unit(self, ijk: Tensor) -> Tensor:
        return ijk / torch.tensor(self.resolution, dtype=torch.float32, device=ijk.device)

    def cell_centers_jittered(self, flat_idx: Tensor) -> Tensor:
        return self._to_unit(self._cell_corner(flat_idx) + torch.rand(len(flat_idx), 3, device=flat_idx.device))

    @torch.no_grad()
    def update(self, density_fn: Callable[[Tensor], Tensor], n_samples: int | None = None, chunk: int = 1 << 17,
               every_occupied: bool = False, decay: float | None = None) -> None:
        """Refresh cells: all of them (``n_samples=None``), or ``n_samples`` random cells plus the
        occupied ones (``n_samples`` of them at random, or all with ``every_occupied``: what a young
        field's warm-up needs to prune fast, at a cost that falls as the grid empties)."""
        if bool(self.seeded):
            # Seeded from known surfaces: only reassess occupied cells and their neighbours, so
            # surfaces can extend but never-observed space (hash-collision garbage inside
            # buildings, underground) does not light up far from any surface.
            near = torch.nn.functional.max_pool3d(self.occupied[None, None].float(), 3, stride=1, padding=1)[0, 0] > 0
            idx = near.flatten().nonzero().flatten()
            if n_samples is not None and len(idx) > 2 * n_samples:
                idx = idx[torch.randint(len(idx), (2 * n_samples,), device=idx.device)].unique()
        elif n_samples is None or n_samples >= self.n_cells:
            idx = torch.arange(self.n_cells, device=self.density.device)
        else:
            occupied = self.occupied.flatten().nonzero().flatten()
            if len(occupied) > n_samples and not every_occupied:
                occupied = occupied[torch.randint(len(occupied), (n_samples,), device=occupied.device)]
            rand = torch.randint(self.n_cells, (n_samples,), device=self.density.device)
            idx = torch.unique(torch.cat([occupied, rand]))
        flat = self.density.view(-1)
        for s in range(0, len(idx), chunk):
            part = idx[s : s + chunk]
            sigma = density_fn(self.cell_centers_jittered(part)).float()
            flat[part] = torch.maximum(flat[part] * (self.decay if decay is None else decay), sigma)
        self._refresh_mask()

    def _refresh_mask(self) -> None:
        # instant-ngp: threshold at min(threshold, mean density) so a sparse scene keeps its surfaces.
        if bool(self.seeded):
            thresh = self.seeded_threshold
        else:
            mean = float(self.density.clamp(max=1e2).mean())
            thresh = min(self.threshold, mean) if self.cell_threshold is None else self.cell_threshold.clamp(max=mean)
        self.occupied.copy_((self.density > thresh) & ~self.blocked)

    @torch.no_grad()
    def block(self, inside_fn: Callable[[Tensor], Tensor]) -> None:
        """Forbid cells whose centres satisfy ``inside_fn(x01 [N, 3]) -> bool [N]``."""
        idx = torch.arange(self.n_cells, device=self.density.device)
        self.blocked.view(-1).copy_(inside_fn(self._to_unit(self._cell_corner(idx) + 0.5)))
        self.occupied &= ~self.blocked

    @torch.no_grad()
    def reset_from_points(self, x01: Tensor, dilate: int | tuple[int, int, int] = 1, prior_density: float = 10.0) -> None:
        """Initialise from points known to lie on surfaces (e.g. LiDAR returns): their cells (dilated
        by ``dilate`` cells, or that many along each axis) are occupied, the rest empty until the
        field says otherwise."""
        mask = torch.zeros(self.n_cells, dtype=torch.bool, device=self.density.device)
        inside = ((x01 >= 0) & (x01 <= 1)).all(-1)
        mask[self.cell_index(x01[inside])] = True
        mask = mask.view(self.resolution)
        pad = (dilate,) * 3 if isinstance(dilate, int) else tuple(int(d) for d in dilate)
        if max(pad) > 0:
            k = tuple(2 * d + 1 for d in pad)
            mask = torch.nn.functional.max_pool3d(mask[None, None].float(), k, stride=1, padding=pad)[0, 0] > 0
        self.density.copy_(torch.where(mask, prior_density, 0.0))
        self.occupied.copy_(mask)
        self.seeded.fill_(True)

    @torch.no_grad()
    def refine(self, density_fn: Callable[[Tensor], Tensor], lattice: tuple[int, int, int] = (3, 3, 2),
               chunk: int = 1 << 18) -> None:
        """Re-measure every occupied cell against the field, then re-threshold as `update` does: the
        cell's density memory becomes the field's maximum over a regular lattice of points inside
        it. This is where the grid's decaying memory would converge if refreshed long enough, so it
        drops the cells the trained field no longer supports (a LiDAR prior it never confirmed,
        haze it has cleared), which rendering would otherwise march through. A lattice rather than
        random points, so a structure narrower than a cell but wider than the lattice spacing (a
        16 cm pole in a 25 cm cell: spacing 8 cm) is always found. Never adds cells. Meant for the
        end of a training that has been refreshing the grid (past its warm-up)."""
        before = self.occupied.clone()
        idx = before.flatten().nonzero().flatten()
        axes = [(torch.arange(n, device=idx.device, dtype=torch.float32) + 0.5) / n for n in lattice]
        offsets = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)  # [K, 3] in cell units
        per_chunk = max(1, chunk // len(offsets))
        density = self.density.view(-1)
        for s in range(0, len(idx), per_chunk):
            part = idx[s : s + per_chunk]
            pts = self._to_unit(self._cell_corner(part)[:, None, :] + offsets[None]).reshape(-1, 3)
            density[part] = density_fn(pts).float().view(len(part), len(offsets)).amax(1)
        self._refresh_mask()
        self.occupied &= before

    def occupancy_fraction(self) -> float:
        return float(self.occupied.float().mean())
