"""The hash-grid encoding's GPU backend: the CPU kernels' twin (`sim.encoding_cpu`), written with
numba.cuda, and its autograd wrapper `hash_grid_encode_cuda`.

The same semantics (`sim.encoding_reference`) and the same corner arithmetic (`sim.encoding_corners`,
compiled here as CUDA device functions), so the three backends agree: the torch reference, the numba
CPU kernels and these. Why not the torch reference on the GPU: it launches ~15 kernels per level per
call, forward and backward; a street-scene training step (a background and a dozen actor fields)
was bound by launch overhead (bench/RESULTS.md, "2026-11-26 GPU: python -m bench.run ..."). Here a
call is one kernel forward and two backward; what that gained is in bench/RESULTS.md, "2026-11-26 GPU,
numba.cuda hash-grid kernels working".

Threads: forward and table-gradient run one thread per (point, level), levels adjacent so a point's
coordinates are loaded once per warp; the table gradient scatters with float atomics (instant-ngp
does the same). The x-gradient runs one thread per point over all levels (no atomics).

Nothing compiles at import time: the kernels compile on first use and numba caches them on disk.
Tested on a CPU through numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``), which runs these same
Python kernels thread by thread (tests/sim/test_encoding.py), and on a GPU against the CPU kernel and
the torch reference (tests/sim/test_cuda.py). If numba's CUDA target cannot compile (a driver or
toolkit it does not support), the self-test below catches it and the GPU runs the torch reference.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import torch

from sim import encoding_corners as corners
from sim.encoding_reference import HashGridConfig, hash_grid_encode_reference, level_arrays

# numba-cuda (0.30.4 at least) references `np.row_stack`, an alias numpy 2.5 removed; without it
# every kernel compile fails ("module 'numpy' has no attribute 'row_stack'"). Restoring the alias
# (identical to `np.vstack`, which is what it always was) is harmless for everything else.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack  # type: ignore[attr-defined]

try:
    from numba import cuda

    _level_consts_d, _cell_d, _trilinear_d, _frac_grads_d = (
        cuda.jit(device=True)(f) for f in (corners.level_consts, corners.cell, corners.trilinear, corners.frac_grads))
    _HAVE_NUMBA_CUDA = True
    # Small grids are normal here (an actor's few hundred samples per step); numba warns on every
    # such launch, which buried training logs under hundreds of lines on the H200.
    warnings.filterwarnings("ignore", message="Grid size .* under-utilization", module=r"numba")
except Exception:  # pragma: no cover - numba without its CUDA target
    _HAVE_NUMBA_CUDA = False

_THREADS = 256


@functools.lru_cache(maxsize=None)
def cuda_backend_available() -> bool:
    """True when numba's CUDA target sees a GPU (or runs its simulator) and the kernels pass a
    self-test: compiled (or loaded from numba's cache) and run forward + backward on a few points
    against the torch reference. Otherwise the GPU falls back to the torch reference, with a warning
    saying why (a driver or toolkit numba cannot use must not stop training)."""
    if not _HAVE_NUMBA_CUDA:
        return False
    try:
        if not cuda.is_available():
            return False
        _self_test()
    except Exception as e:  # pragma: no cover - depends on the GPU machine
        warnings.warn(f"numba.cuda hash-grid kernels unusable ({type(e).__name__}: {e}); using the torch reference on the GPU")
        return False
    return True


def _self_test() -> None:
    # numba's CUDA simulator runs kernels on numpy arrays: CPU tensors, even on a machine with a GPU
    simulated = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"
    device = torch.device("cuda") if torch.cuda.is_available() and not simulated else torch.device("cpu")
    cfg = HashGridConfig(n_levels=2, log2_table_size=6, base_resolution=4, max_resolution=16)  # dense + hashed
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, generator=gen).to(device)
    table = torch.randn(cfg.n_levels, cfg.table_size, cfg.n_features, generator=gen).to(device)
    got, want = [], []
    for fn, acc in ((hash_grid_encode_cuda, got), (hash_grid_encode_reference, want)):
        xr, tr = x.clone().requires_grad_(), table.clone().requires_grad_()
        out = fn(xr, tr, cfg)
        out.square().sum().backward()
        acc += [out.detach(), tr.grad, xr.grad]
    for name, a, b in zip(("values", "table gradient", "x gradient"), got, want):
        if not torch.allclose(a, b, atol=1e-3, rtol=1e-3):
            raise RuntimeError(f"self-test {name} differ from the reference by {float((a - b).abs().max()):.3g}")


if _HAVE_NUMBA_CUDA:

    @cuda.jit(device=True)
    def _point_level(i, x, res, dense, L, T):
        """Point and level of thread ``i`` (levels adjacent), that point's corner entries and weights."""
        p = i // L
        l = i - p * L
        s, nm2, dy, dz, hy, hz, mask = _level_consts_d(res[l], dense[l], T)
        k0, k1, k2, k3, k4, k5, k6, k7, f0, f1, f2 = _cell_d(x[p, 0], x[p, 1], x[p, 2], s, nm2, dy, dz, hy, hz, mask)
        w = _trilinear_d(f0, f1, f2)
        return p, l, (k0, k1, k2, k3, k4, k5, k6, k7), w

    @cuda.jit(cache=True)
    def _forward(x, table, res, dense, out):
        i = cuda.grid(1)
        L, T, F = table.shape[0], table.shape[1], table.shape[2]
        if i >= x.shape[0] * L:
            return
        p, l, k, w = _point_level(i, x, res, dense, L, T)
        for f in range(F):
            acc = np.float32(0.0)
            for c in range(8):
                acc += w[c] * table[l, k[c], f]
            out[p, l * F + f] = acc

    @cuda.jit(cache=True)
    def _backward_table(x, gout, res, dense, grad):
        i = cuda.grid(1)
        L, T, F = grad.shape[0], grad.shape[1], grad.shape[2]
        if i >= x.shape[0] * L:
            return
        p, l, k, w = _point_level(i, x, res, dense, L, T)
        for f in range(F):
            g = gout[p, l * F + f]
            for c in range(8):
                cuda.atomic.add(grad, (l, k[c], f), w[c] * g)

    @cuda.jit(cache=True)
    def _backward_x(x, gout, table, res, dense, gx):
        p = cuda.grid(1)
        if p >= x.shape[0]:
            return
        L, T, F = table.shape[0], table.shape[1], table.shape[2]
        e0 = np.float32(0.0)
        e1 = np.float32(0.0)
        e2 = np.float32(0.0)
        for l in range(L):
            s, nm2, dy, dz, hy, hz, mask = _level_consts_d(res[l], dense[l], T)
            k0, k1, k2, k3, k4, k5, k6, k7, f0, f1, f2 = _cell_d(x[p, 0], x[p, 1], x[p, 2], s, nm2, dy, dz, hy, hz, mask)
            v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = np.float32(0.0)
            for f in range(F):
                g = gout[p, l * F + f]
                v0 += g * table[l, k0, f]
                v1 += g * table[l, k1, f]
                v2 += g * table[l, k2, f]
                v3 += g * table[l, k3, f]
                v4 += g * table[l, k4, f]
                v5 += g * table[l, k5, f]
                v6 += g * table[l, k6, f]
                v7 += g * table[l, k7, f]
            d0, d1, d2 = _frac_grads_d(f0, f1, f2, v0, v1, v2, v3, v4, v5, v6, v7)
            e0 += s * d0
            e1 += s * d1
            e2 += s * d2
        gx[p, 0] = e0 if x[p, 0] >= 0 and x[p, 0] <= 1 else np.float32(0.0)
        gx[p, 1] = e1 if x[p, 1] >= 0 and x[p, 1] <= 1 else np.float32(0.0)
        gx[p, 2] = e2 if x[p, 2] >= 0 and x[p, 2] <= 1 else np.float32(0.0)


def _arr(t: torch.Tensor):
    """A numba view of a contiguous tensor: the GPU array itself, or (simulator) its numpy array."""
    return cuda.as_cuda_array(t) if t.is_cuda else t.numpy()


_LEVELS: dict = {}


def _levels(cfg: HashGridConfig, device: torch.device):
    """Per-level resolutions and dense flags on ``device`` (kept: they are read by every call)."""
    key = (tuple(cfg.resolutions()), tuple(cfg.dense_levels()), str(device))
    if key not in _LEVELS:
        res, dense = level_arrays(cfg)
        _LEVELS[key] = (torch.from_numpy(res).to(device), torch.from_numpy(dense.astype(np.uint8)).to(device))
    return tuple(_arr(t) for t in _LEVELS[key])


def _launch(kernel, n_threads: int, *args) -> None:
    if n_threads:
        kernel[(n_threads + _THREADS - 1) // _THREADS, _THREADS](*args)


class HashGridEncodingCudaFunction(torch.autograd.Function):
    """Autograd wrapper of the numba.cuda kernels (float32). Once differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:  # type: ignore[override]
        x32 = x.detach().to(torch.float32).contiguous()
        tab = table.detach().contiguous()
        out = torch.empty((len(x32), cfg.out_dim), dtype=torch.float32, device=x.device)
        res, dense = _levels(cfg, x.device)
        _launch(_forward, len(x32) * cfg.n_levels, _arr(x32), _arr(tab), res, dense, _arr(out))
        ctx.save_for_backward(x32, tab)
        ctx.cfg, ctx.x_dtype = cfg, x.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x32, tab = ctx.saved_tensors
        cfg: HashGridConfig = ctx.cfg
        res, dense = _levels(cfg, x32.device)
        g = grad_out.detach().to(torch.float32).contiguous()
        gx = gt = None
        if ctx.needs_input_grad[1]:
            gt = torch.zeros_like(tab)
            _launch(_backward_table, len(x32) * cfg.n_levels, _arr(x32), _arr(g), res, dense, _arr(gt))
        if ctx.needs_input_grad[0]:
            gx = torch.empty_like(x32)
            _launch(_backward_x, len(x32), _arr(x32), _arr(g), _arr(tab), res, dense, _arr(gx))
            gx = gx.to(ctx.x_dtype)
        return gx, gt, None


def hash_grid_encode_cuda(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """numba.cuda encoding (float32); differentiable wrt ``table`` and ``x`` (first order)."""
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be [N, 3], got {tuple(x.shape)}")
    if tuple(table.shape) != (cfg.n_levels, cfg.table_size, cfg.n_features):
        raise ValueError(f"table must be {(cfg.n_levels, cfg.table_size, cfg.n_features)}, got {tuple(table.shape)}")
    if table.dtype != torch.float32:
        raise ValueError("cuda backend needs a float32 table")
    if x.device != table.device:
        raise ValueError(f"x is on {x.device}, the table on {table.device}")
    return HashGridEncodingCudaFunction.apply(x, table, cfg)
