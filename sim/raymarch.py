"""Ray marching through an occupancy grid: packed samples of the occupied cells along each ray.

Every ray uses the same global schedule of distances ``ts[k]`` with steps ``dts[k]`` (cone
stepping); sample k of ray r sits at ``ts[k] + u[r] * dts[k]`` (``u`` = jitter in [0, 1)) and is
kept when it lies in ``[t_near[r], t_far[r]]`` and in an occupied cell. Output is packed and sorted by
(ray, t): ``ray_indices``, ``t``, ``dt``, ``x01`` (unit-cube coordinates of the grid).

Two implementations of the same contract: `march_reference` (plain torch, the oracle) and
`march_numba` (a CPU kernel that fills at most ``max_per_ray`` samples per ray in one pass and jumps
over the steps inside empty cells; it never materialises the [rays x steps] candidate matrix; an
unbounded call is a loop of bounded passes). `march` picks numba on CPU.
"""

from __future__ import annotations

import weakref

import numpy as np
import torch
from torch import Tensor

from sim.contraction import SHELL_EPS as _SHELL_EPS, world_to_unit

try:
    from numba import njit, prange

    _HAVE_NUMBA = True
except Exception:  # pragma: no cover
    _HAVE_NUMBA = False


def _cell_flat(x01: Tensor, res: tuple[int, int, int]) -> Tensor:
    r = torch.tensor(res, device=x01.device)
    ijk = (x01 * r).long().clamp_(min=torch.zeros_like(r), max=r - 1)
    return (ijk[:, 0] * r[1] + ijk[:, 1]) * r[2] + ijk[:, 2]


def march_reference(origins, dirs, t_near, t_far, ts, dts, u, occupied: Tensor, box_min, box_size,
                    k_start: Tensor | None = None, max_per_ray: int = 0, contract: bool = False) -> dict[str, Tensor]:
    K = len(ts)
    t = ts[None, :] + u[:, None] * dts[None, :]  # [R, K]
    valid = (t >= t_near[:, None]) & (t <= t_far[:, None])
    if k_start is not None:
        valid &= torch.arange(K, device=t.device)[None, :] >= k_start[:, None]
    ray, k = valid.nonzero(as_tuple=True)
    t = t[ray, k]
    x01 = world_to_unit(origins[ray] + dirs[ray] * t[:, None], box_min, box_size, contract)
    inside = ((x01 >= 0) & (x01 <= 1)).all(-1)
    keep = inside & occupied.flatten()[_cell_flat(x01, tuple(occupied.shape))]
    ray, t, k, x01 = ray[keep], t[keep], k[keep], x01[keep]
    k_next = torch.full((len(origins),), K, dtype=torch.long, device=t.device)
    if max_per_ray > 0 and len(ray):
        counts = torch.bincount(ray, minlength=len(origins))
        first = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(ray), device=ray.device) - first[ray]
        full = rank == max_per_ray - 1
        k_next[ray[full]] = k[full] + 1  # resume right after the last sample emitted
        keep = rank < max_per_ray
        ray, t, k, x01 = ray[keep], t[keep], k[keep], x01[keep]
    return {"ray": ray, "t": t, "dt": dts[k], "x01": x01, "k_next": k_next}


if _HAVE_NUMBA:

    @njit(cache=True, fastmath=False, nogil=True, inline="always")
    def _occupied_at(o, d, t, bmin, bsize, occ, rx, ry, rz, contract):
        """Occupancy at ray distance ``t`` and the point's field coordinates (`sim.contraction`)."""
        x = (o[0] + d[0] * t - bmin[0]) / bsize[0]
        y = (o[1] + d[1] * t - bmin[1]) / bsize[1]
        z = (o[2] + d[2] * t - bmin[2]) / bsize[2]
        if contract:
            x, y, z = _contract01(x, y, z)
        if x < 0 or x > 1 or y < 0 or y > 1 or z < 0 or z > 1:
            return False, x, y, z
        i = min(int(x * rx), rx - 1)
        j = min(int(y * ry), ry - 1)
        k = min(int(z * rz), rz - 1)
        return occ[(i * ry + j) * rz + k], x, y, z

    @njit(cache=True, fastmath=False, nogil=True, inline="always")
    def _contract01(x, y, z):
        """`sim.contraction.world_to_unit` of inner-box coordinates in [0, 1]^3 (contracted)."""
        ux, uy, uz = 2.0 * x - 1.0, 2.0 * y - 1.0, 2.0 * z - 1.0
        m = max(abs(ux), abs(uy), abs(uz))
        if m > 1.0:
            s = (2.0 - 1.0 / m) / m
            ux, uy, uz = ux * s, uy * s, uz * s
        lo, hi = _SHELL_EPS, 1.0 - _SHELL_EPS
        return min(max((ux + 2.0) / 4.0, lo), hi), min(max((uy + 2.0) / 4.0, lo), hi), min(max((uz + 2.0) / 4.0, lo), hi)

    @njit(cache=True, nogil=True, parallel=True)
    def _march_bounded(o, d, tn, tf, ts, dts, u, bmin, bsize, occ, rx, ry, rz, empty_radius, B, kstart, counts, k_next, t_out, dt_out, x_out,
                       contract):
        """One pass when a ray emits at most ``t_out.shape[1]`` samples: they go to the ray's own row
        of the ``[R, max]`` buffers (no counting pass over the same steps first). ``empty_radius``
        says how far around each block of ``B``^3 cells is empty (see `coarse_occupancy`).
        ``contract``: the grid is the contracted cube of the box ``bmin, bsize`` (`sim.contraction`);
        empty cells are jumped only within the box, where the map is linear (the cube's linear
        extension, twice the box, gives the cell faces there); beyond it, step by step."""
        K = ts.shape[0]
        max_n = t_out.shape[1]
        res = (rx, ry, rz)
        if contract:
            gmin = (float(bmin[0]) - 0.5 * float(bsize[0]), float(bmin[1]) - 0.5 * float(bsize[1]), float(bmin[2]) - 0.5 * float(bsize[2]))
            gsize = (2.0 * float(bsize[0]), 2.0 * float(bsize[1]), 2.0 * float(bsize[2]))
            inner_lo = ((rx + 3) // 4, (ry + 3) // 4, (rz + 3) // 4)  # cells wholly inside the box
            inner_hi = (3 * rx // 4, 3 * ry // 4, 3 * rz // 4)
        else:
            gmin = (float(bmin[0]), float(bmin[1]), float(bmin[2]))
            gsize = (float(bsize[0]), float(bsize[1]), float(bsize[2]))
            inner_lo = (-1 << 30, -1 << 30, -1 << 30)
            inner_hi = (1 << 30, 1 << 30, 1 << 30)
        for r in prange(o.shape[0]):
            c = 0
            k_next[r] = K
            k = kstart[r]
            while k < K:
                t = ts[k] + u[r] * dts[k]
                if t > tf[r]:
                    break
                if t >= tn[r]:
                    hit, x, y, z = _occupied_at(o[r], d[r], t, bmin, bsize, occ, rx, ry, rz, contract)
                    if hit:
                        t_out[r, c] = t
                        dt_out[r, c] = dts[k]
                        x_out[r, c, 0] = x
                        x_out[r, c, 1] = y
                        x_out[r, c, 2] = z
                        c += 1
                        if c == max_n:
                            k_next[r] = k + 1
                            break
                    elif x >= 0 and x <= 1 and y >= 0 and y <= 1 and z >= 0 and z <= 1:
                        # An empty cell: the steps still inside it cannot hit; jump past them, or,
                        # in an empty block, past the whole cube of empty blocks around it (open
                        # air: a few visits per ray).
                        i = min(int(x * rx), rx - 1)
                        j = min(int(y * ry), ry - 1)
                        kk = min(int(z * rz), rz - 1)
                        if not (inner_lo[0] <= i < inner_hi[0] and inner_lo[1] <= j < inner_hi[1] and inner_lo[2] <= kk < inner_hi[2]):
                            k += 1  # contracted shell: no straight-line jump
                            continue
                        e = empty_radius[i // B, j // B, kk // B]
                        if e == 0:  # the cell alone
                            lo, hi = (i, j, kk), (i + 1, j + 1, kk + 1)
                        else:  # blocks within e - 1 of this one: cells [(b - e + 1) B, (b + e) B)
                            lo = ((i // B - e + 1) * B, (j // B - e + 1) * B, (kk // B - e + 1) * B)
                            hi = ((i // B + e) * B, (j // B + e) * B, (kk // B + e) * B)
                        lo = (max(lo[0], inner_lo[0]), max(lo[1], inner_lo[1]), max(lo[2], inner_lo[2]))
                        hi = (min(hi[0], inner_hi[0]), min(hi[1], inner_hi[1]), min(hi[2], inner_hi[2]))
                        t_exit = _box_exit(o[r], d[r], lo, hi, gmin, gsize, res)
                        while k + 1 < K and ts[k + 1] + u[r] * dts[k + 1] < t_exit:
                            k += 1
                k += 1
            counts[r] = c

    @njit(cache=True, fastmath=False, nogil=True, inline="always")
    def _box_exit(o, d, lo, hi, bmin, bsize, res):
        """Ray distance where the ray leaves the box of grid cells ``[lo, hi)`` (integer cell
        coordinates per axis, possibly beyond the grid) it is in, less a margin of 1e-4 cell so
        float rounding never skips a step that lands in the next cell."""
        t_exit = np.inf
        for a in range(3):
            if d[a] != 0:
                size = bsize[a] / res[a]
                face = bmin[a] + (hi[a] if d[a] > 0 else lo[a]) * size
                t_exit = min(t_exit, (face - o[a]) / d[a] - 1e-4 * size / abs(d[a]))
        return t_exit


COARSE_BLOCK = 4
"""Cells per axis of the marching kernel's coarse blocks. A 640x360 frame of the demo street: the
kernel visited every empty 25 x 25 x 10 cm cell between the camera and the first surface (sky rays
cross ~100 z-layers); skipping empty 4^3 blocks whole cut the kernel's time in the frame from
0.84-0.86 s to 0.31-0.34 s (min of 4 interleaved renders each, 2-core CPU; 8^3: 0.32 s)."""

MAX_EMPTY_RADIUS = 8
"""Largest empty radius, in blocks, that `coarse_occupancy` records (a jump crosses at most
2 * 8 - 1 blocks: 15 m of open air at the street's 25 cm cells)."""

_COARSE_CACHE: dict[int, tuple] = {}


def coarse_occupancy(occupied: Tensor) -> np.ndarray:
    """uint8 ``[ceil(rx/B), ceil(ry/B), ceil(rz/B)]`` over blocks of `COARSE_BLOCK`^3 cells: 0 where
    the block holds an occupied cell, else the empty radius e >= 1: every block within e - 1 blocks
    of it (a cube of 2e - 1 blocks a side) is empty, so a ray inside may jump to that cube's surface
    (blocks beyond the grid count as empty; e is capped at `MAX_EMPTY_RADIUS`). A 128x72 camera near
    the ground of the demo street looked at ~31 cells per ray, ~21 of them empty blocks stepped
    one at a time (bench/RESULTS.md, 2026-11-26 afternoon: 16.5 -> 10.1 ms for the pass). Cached per grid tensor, by a weak reference (a freed grid's
    entry goes with it, so a later grid at the same address never reads it), and recomputed after
    any in-place change of the grid (its version counter: every occupancy refresh)."""
    key = id(occupied)
    hit = _COARSE_CACHE.get(key)
    if hit is not None and hit[0]() is occupied and hit[1:3] == (occupied._version, COARSE_BLOCK):
        return hit[3]
    grid = occupied.detach().cpu()[None, None].float()
    reached = torch.nn.functional.max_pool3d(grid, COARSE_BLOCK, stride=COARSE_BLOCK, ceil_mode=True)  # blocks within 0
    radius = torch.zeros(reached.shape[2:], dtype=torch.uint8)
    for e in range(1, MAX_EMPTY_RADIUS + 1):
        radius[reached[0, 0] == 0] = e  # nothing occupied within e - 1 blocks
        reached = torch.nn.functional.max_pool3d(reached, 3, stride=1, padding=1)  # within e
    out = np.ascontiguousarray(radius.numpy())
    ref = weakref.ref(occupied, lambda _, k=key: _COARSE_CACHE.pop(k, None))
    _COARSE_CACHE[key] = (ref, occupied._version, COARSE_BLOCK, out)
    return out


_UNBOUNDED_PASS = 64  # samples per ray per pass when a call asks for all of them


def _bounded_pass(o, d, tn, tf, ts, dts, u, bmin, bsize, occ, coarse, res, ks, max_per_ray, contract):
    """One `_march_bounded` pass, packed: ``(ray, t, dt, x01, k_next)`` as numpy arrays."""
    counts, k_next = np.empty(len(o), np.int64), np.empty(len(o), np.int64)
    tb, dtb = np.empty((len(o), max_per_ray), np.float32), np.empty((len(o), max_per_ray), np.float32)
    xb = np.empty((len(o), max_per_ray, 3), np.float32)
    _march_bounded(o, d, tn, tf, ts, dts, u, bmin, bsize, occ, *res, coarse, COARSE_BLOCK, ks, counts, k_next, tb, dtb, xb, contract)
    filled = np.arange(max_per_ray)[None, :] < counts[:, None]
    return np.repeat(np.arange(len(o), dtype=np.int64), counts), tb[filled], dtb[filled], xb[filled], k_next


def march_numba(origins, dirs, t_near, t_far, ts, dts, u, occupied: Tensor, box_min, box_size,
                k_start: Tensor | None = None, max_per_ray: int = 0, contract: bool = False) -> dict[str, Tensor]:
    f32 = lambda a: np.ascontiguousarray(a.detach().cpu().numpy(), dtype=np.float32)
    o, d, tn, tf, tsn, dtn, un = map(f32, (origins, dirs, t_near, t_far, ts, dts, u))
    bmin, bsize = f32(box_min.reshape(3)), f32(box_size.reshape(3))
    occ = np.ascontiguousarray(occupied.cpu().numpy().reshape(-1))
    rx, ry, rz = occupied.shape
    coarse = coarse_occupancy(occupied)
    if k_start is None:  # skip schedule steps no ray reaches (all before the nearest entry)
        k0 = max(int(np.searchsorted(tsn + dtn, tn.min() if len(tn) else 0.0)) - 1, 0)
        ks = np.full(len(o), k0, np.int64)
    else:
        ks = np.ascontiguousarray(k_start.cpu().numpy(), dtype=np.int64)
    if max_per_ray > 0:
        ray, t, dt, x, k_next = _bounded_pass(o, d, tn, tf, tsn, dtn, un, bmin, bsize, occ, coarse, (rx, ry, rz), ks, max_per_ray, contract)
    else:  # unbounded: bounded passes until every ray is done (each ray's passes come in t order)
        k_next, live = ks.copy(), np.arange(len(o))
        parts = [(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros((0, 3), np.float32))]  # no rays: no samples
        while len(live):
            r, t, dt, x, k_live = _bounded_pass(o[live], d[live], tn[live], tf[live], tsn, dtn, un[live], bmin, bsize, occ,
                                                coarse, (rx, ry, rz), k_next[live], _UNBOUNDED_PASS, contract)
            parts.append((live[r], t, dt, x))
            k_next[live] = k_live
            live = live[k_live < len(tsn)]
        ray, t, dt, x = (np.concatenate([p[i] for p in parts]) for i in range(4))
        order = np.argsort(ray, kind="stable")
        ray, t, dt, x = ray[order], t[order], dt[order], x[order]
    dev = origins.device
    return {"ray": torch.from_numpy(ray).to(dev), "t": torch.from_numpy(t).to(dev), "dt": torch.from_numpy(dt).to(dev),
            "x01": torch.from_numpy(x).to(dev), "k_next": torch.from_numpy(k_next).to(dev)}


def march(origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size, k_start=None, max_per_ray: int = 0,
          contract: bool = False) -> dict[str, Tensor]:
    """Packed samples in occupied cells (numba on CPU, torch elsewhere). ``contract``: the grid and
    ``x01`` are the contracted cube of the box (`sim.contraction`; the box is the inner box).

    With ``max_per_ray > 0`` each ray emits at most that many samples, starting at schedule index
    ``k_start`` (default: its entry); ``k_next`` says where to resume (``len(ts)`` = ray finished).
    """
    impl = march_numba if (_HAVE_NUMBA and origins.device.type == "cpu") else march_reference
    return impl(origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size, k_start, max_per_ray, contract)
