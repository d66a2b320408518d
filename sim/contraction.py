"""Scene contraction for unbounded backgrounds (mip-NeRF 360's warp with nerfacto's L-infinity norm).

A background field of an unbounded scene lives in the unit cube like every field, but its cube is
not the scene AABB stretched: the AABB (the *inner box*) fills the middle half of the cube and all
space beyond it is squeezed into the outer shell. With ``u`` the point in inner-box coordinates
(``[-1, 1]^3`` inside the box) and ``m = max_i |u_i|``::

    c = u                      if m <= 1
    c = (2 - 1 / m) * u / m    otherwise          (so c spans [-2, 2]^3, infinity at the faces)
    x01 = (c + 2) / 4

Beyond the box a point at ``m`` times the box's half extent lands ``1 - 1/m`` of the shell deep:
the contracted resolution falls as ``1 / distance``, which is what a camera's pixel footprint asks
for (a disparity-like parametrisation, the same as LLFF's NDC for a forward-facing capture, but
valid in every direction). Inside the box the map is the plain linear one of a bounded field, at
half the cube's resolution.

Rays are straight in the world, curved in the contracted cube: the marching kernel steps along the
ray in world distance and maps each sample here (`sim.raymarch`); the steps grow with distance
(`contracted_step`) so that a ray to infinity crosses the shell in a bounded number of samples.
Two implementations of the map, torch (differentiable, the reference) and the numba kernel's
inline copy in `sim.raymarch`, are compared by the tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

SHELL_EPS = 1e-6
"""Contracted points are kept this far inside the cube's faces (a point at infinity would land on
a face exactly, which `unit_to_world` cannot invert)."""


def world_to_unit(x: Tensor, lo: Tensor, size: Tensor, contract: bool) -> Tensor:
    """Field coordinates ``[N, 3]`` in ``[0, 1]^3`` of world points ``x [N, 3]`` for the inner box
    with corner ``lo`` and extent ``size``: linear (bounded field, points outside the box fall
    outside the cube) or contracted (every point of space lands inside the cube). Differentiable."""
    linear = (x - lo) / size
    if not contract:
        return linear
    u = 2.0 * linear - 1.0
    m = u.abs().amax(-1, keepdim=True).clamp_min(1.0)
    c = torch.where(m > 1.0, (2.0 - 1.0 / m) * u / m, u)
    return ((c + 2.0) / 4.0).clamp(SHELL_EPS, 1.0 - SHELL_EPS)


def unit_to_world(x01: Tensor, lo: Tensor, size: Tensor, contract: bool) -> Tensor:
    """Inverse of `world_to_unit`: world points ``[N, 3]`` of field coordinates ``x01 [N, 3]``."""
    if not contract:
        return lo + x01 * size
    c = 4.0 * x01.clamp(SHELL_EPS, 1.0 - SHELL_EPS) - 2.0
    mc = c.abs().amax(-1, keepdim=True)
    m = 1.0 / (2.0 - mc.clamp_min(1.0))  # mc in (1, 2) <-> m in (1, inf)
    u = torch.where(mc > 1.0, c * m / mc.clamp_min(1e-12), c)
    return lo + (u + 1.0) / 2.0 * size


def contracted_step(t: float, half_extent: float, resolution: int) -> float:
    """World step at distance ``t`` from a point of the inner box that moves a sample about half an
    occupancy cell (``resolution`` cells across the cube) through the contracted shell:
    ``dc/dm = 1/m^2`` with ``m ~ t / half_extent``, so the step grows as ``t^2``. Inside the box
    it is small and the cone step of the schedule wins."""
    m = max(t / half_extent, 1.0)
    cell_c = 4.0 / resolution  # a cell of the cube in contracted units (c spans 4)
    return 0.5 * cell_c * m * m * half_extent


def cell_steps(res: tuple[int, int, int], half_extent: float, step_min: float) -> Tensor:
    """The marching step ``[rx, ry, rz]`` at each cell of a contracted grid: the larger of
    ``step_min`` and `contracted_step` at the cell's distance from the box centre (cameras sit
    inside the box), in half extents ``m`` (1 inside the box)."""
    idx = [(torch.arange(n, dtype=torch.float32) + 0.5) / n for n in res]
    x01 = torch.stack(torch.meshgrid(*idx, indexing="ij"), -1).reshape(-1, 3)
    c = (4.0 * x01 - 2.0).abs().amax(-1)
    m = torch.where(c > 1.0, 1.0 / (2.0 - c), torch.ones_like(c))
    cell_c = 4.0 / max(res)
    return (0.5 * cell_c * m * m * half_extent).clamp_min(step_min).reshape(res)
