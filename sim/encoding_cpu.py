"""The hash-grid encoding's CPU backend: parallel numba kernels, forward and analytic backward, with
their autograd wrapper `hash_grid_encode_numba`.

Same semantics as the torch reference (`sim.encoding_reference`), from the same corner arithmetic
(`sim.encoding_corners`, inlined into every kernel here). Float32 CPU tensors only. Importing this
module compiles nothing: the kernels compile (or load from numba's on-disk cache) on first call.
How they compare with the reference: bench/RESULTS.md (the hash-grid encoding entries).
"""

from __future__ import annotations

import numpy as np
import torch

from sim import encoding_corners as corners
from sim.encoding_reference import HashGridConfig, level_arrays

__all__ = ["HAVE_NUMBA", "HashGridEncodingFunction", "hash_grid_encode_numba"]

try:  # importing numba compiles nothing: the decorators below are lazy (no signatures given)
    import numba
    from numba import njit, prange

    # The system TBB is too old for numba's TBB layer (it warns on every process); OpenMP or the
    # built-in workqueue are what we measured with.
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - numba is a hard dependency, but stay importable without it
    HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        return (lambda f: f) if not (len(args) == 1 and callable(args[0])) else args[0]


_jit = njit(cache=True, fastmath=True, nogil=True, parallel=True)
# Inlined at numba-IR level into every kernel: LLVM did not inline them reliably across numba's
# parfor boundary, and a called helper made the forward kernel ~2x slower (flat tuples only: nested
# tuples trip numba's parfor array analysis when inlined).
_jit_inline = njit(cache=True, fastmath=True, nogil=True, inline="always")

_level_consts = _jit_inline(corners.level_consts)
_cell = _jit_inline(corners.cell)
_trilinear = _jit_inline(corners.trilinear)
_frac_grads = _jit_inline(corners.frac_grads)

# The kernels take the feature count F as the length of a tuple (``features``, ``(0,) * F``): a
# tuple's length is part of its numba type, so each F gets its own compiled kernel with the feature
# loop unrolled (a runtime F cost ~40% in the forward kernel).


@_jit
def forward_kernel(x, table, res, dense, out_t, chunk, features):
    """out_t[l*F+f, n] = sum_c w_c * table[l, idx_c, f] (feature-major output: each level writes
    contiguous rows, ~1.7x faster than strided writes into [N, L*F]).

    Parallel over chunks of points; inside a chunk level-major so one level's table (<= 4 MB at
    T=2^19, F=2) stays cache-resident while the chunk's points hit it."""
    N = x.shape[0]
    L = table.shape[0]
    T = table.shape[1]
    F = len(features)
    uF = np.uint64(F)
    nchunks = (N + chunk - 1) // chunk
    for ci in prange(nchunks):
        lo = ci * chunk
        hi = min(lo + chunk, N)
        for l in range(L):
            s, nm2, dy, dz, hy, hz, mask = _level_consts(res[l], dense[l], T)
            tl = table[l].reshape(-1)
            for p in range(lo, hi):
                k0, k1, k2, k3, k4, k5, k6, k7, f0, f1, f2 = _cell(x[p, 0], x[p, 1], x[p, 2], s, nm2, dy, dz, hy, hz, mask)
                w0, w1, w2, w3, w4, w5, w6, w7 = _trilinear(f0, f1, f2)
                for f in range(F):
                    uf = np.uint64(f)
                    out_t[l * F + f, p] = (
                        w0 * tl[k0 * uF + uf] + w1 * tl[k1 * uF + uf] + w2 * tl[k2 * uF + uf] + w3 * tl[k3 * uF + uf]
                        + w4 * tl[k4 * uF + uf] + w5 * tl[k5 * uF + uf] + w6 * tl[k6 * uF + uf] + w7 * tl[k7 * uF + uf]
                    )
    return out_t


@_jit
def backward_table_kernel(x, gout_t, res, dense, grad, zero, features):
    """grad[l, idx_c, f] += w_c * gout_t[l*F+f, n] (after zeroing grad when ``zero``).

    Parallel over levels: each level owns its table slice, so the scatter-add has no races and the
    zeroing of that slice happens on the thread that then scatters into it (cache-warm, first touch)."""
    N = x.shape[0]
    L = grad.shape[0]
    T = grad.shape[1]
    F = len(features)
    uF = np.uint64(F)
    for l in prange(L):
        if zero:
            grad[l] = np.float32(0.0)
        s, nm2, dy, dz, hy, hz, mask = _level_consts(res[l], dense[l], T)
        gl = grad[l].reshape(-1)
        for p in range(N):
            k0, k1, k2, k3, k4, k5, k6, k7, f0, f1, f2 = _cell(x[p, 0], x[p, 1], x[p, 2], s, nm2, dy, dz, hy, hz, mask)
            w0, w1, w2, w3, w4, w5, w6, w7 = _trilinear(f0, f1, f2)
            for f in range(F):
                uf = np.uint64(f)
                g = gout_t[l * F + f, p]
                gl[k0 * uF + uf] += w0 * g
                gl[k1 * uF + uf] += w1 * g
                gl[k2 * uF + uf] += w2 * g
                gl[k3 * uF + uf] += w3 * g
                gl[k4 * uF + uf] += w4 * g
                gl[k5 * uF + uf] += w5 * g
                gl[k6 * uF + uf] += w6 * g
                gl[k7 * uF + uf] += w7 * g
    return grad


@_jit
def backward_x_kernel(x, gout_t, table, res, dense, gx, chunk, features):
    """gx[n, d] = sum_{l,c,f} gout_t[lF+f, n] * table[l,idx_c,f] * dw_c/dfrac_d * (N_l - 1), and 0
    where x[n, d] is outside [0, 1]. Parallel over point chunks (each point owns its output row)."""
    N = x.shape[0]
    L = table.shape[0]
    T = table.shape[1]
    F = len(features)
    uF = np.uint64(F)
    one = np.float32(1.0)
    zero = np.float32(0.0)
    nchunks = (N + chunk - 1) // chunk
    for ci in prange(nchunks):
        lo = ci * chunk
        hi = min(lo + chunk, N)
        for p in range(lo, hi):
            gx[p, 0] = zero
            gx[p, 1] = zero
            gx[p, 2] = zero
        for l in range(L):
            s, nm2, dy, dz, hy, hz, mask = _level_consts(res[l], dense[l], T)
            tl = table[l].reshape(-1)
            for p in range(lo, hi):
                k0, k1, k2, k3, k4, k5, k6, k7, f0, f1, f2 = _cell(x[p, 0], x[p, 1], x[p, 2], s, nm2, dy, dz, hy, hz, mask)
                v0 = v1 = v2 = v3 = v4 = v5 = v6 = v7 = zero
                for f in range(F):
                    uf = np.uint64(f)
                    g = gout_t[l * F + f, p]
                    v0 += g * tl[k0 * uF + uf]
                    v1 += g * tl[k1 * uF + uf]
                    v2 += g * tl[k2 * uF + uf]
                    v3 += g * tl[k3 * uF + uf]
                    v4 += g * tl[k4 * uF + uf]
                    v5 += g * tl[k5 * uF + uf]
                    v6 += g * tl[k6 * uF + uf]
                    v7 += g * tl[k7 * uF + uf]
                e0, e1, e2 = _frac_grads(f0, f1, f2, v0, v1, v2, v3, v4, v5, v6, v7)
                gx[p, 0] += e0 * s
                gx[p, 1] += e1 * s
                gx[p, 2] += e2 * s
        for p in range(lo, hi):
            for d in range(3):
                if x[p, d] < zero or x[p, d] > one:
                    gx[p, d] = zero
    return gx


def _get_kernels():
    if not HAVE_NUMBA:
        raise RuntimeError("numba backend requested but numba is not importable")
    return {"forward": forward_kernel, "backward_table": backward_table_kernel, "backward_x": backward_x_kernel}


_MIN_CHUNK = 4096


def _chunk(n: int) -> int:
    """Points per parallel task: one big level-major chunk per thread; bigger chunks keep one level's
    table hot in L3 for longer (the sweep: bench/RESULTS.md, "Figures moved out of docstrings")."""
    from numba import get_num_threads

    return max(_MIN_CHUNK, -(-n // get_num_threads()))


def _features(cfg: HashGridConfig) -> tuple:
    return (0,) * cfg.n_features


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class HashGridEncodingFunction(torch.autograd.Function):
    """Autograd wrapper around the numba kernels (CPU, float32). Once differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:  # type: ignore[override]
        k = _get_kernels()
        res, dense = level_arrays(cfg)
        xn = _np(x.to(torch.float32))
        tn = _np(table)
        out_t = torch.empty((cfg.out_dim, xn.shape[0]), dtype=torch.float32)
        k["forward"](xn, tn, res, dense, out_t.numpy(), _chunk(xn.shape[0]), _features(cfg))
        ctx.save_for_backward(x, table)
        ctx.cfg = cfg
        return out_t.t()  # [N, L*F], column-major: matmuls take it as it is

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        x, table = ctx.saved_tensors
        cfg: HashGridConfig = ctx.cfg
        k = _get_kernels()
        res, dense = level_arrays(cfg)
        xn = _np(x.to(torch.float32))
        gn_t = _np(grad_out.to(torch.float32).t())  # feature-major, as the kernels read it
        gx = gt = None
        if ctx.needs_input_grad[1]:
            gt = torch.empty(tuple(table.shape), dtype=torch.float32)
            k["backward_table"](xn, gn_t, res, dense, gt.numpy(), True, _features(cfg))
        if ctx.needs_input_grad[0]:
            gxn = np.empty((xn.shape[0], 3), dtype=np.float32)
            k["backward_x"](xn, gn_t, _np(table), res, dense, gxn, _chunk(xn.shape[0]), _features(cfg))
            gx = torch.from_numpy(gxn).to(x.dtype)
        return gx, gt, None


def hash_grid_encode_numba(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """Numba CPU encoding (float32); differentiable wrt ``table`` and ``x`` (first order)."""
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be [N, 3], got {tuple(x.shape)}")
    if tuple(table.shape) != (cfg.n_levels, cfg.table_size, cfg.n_features):
        raise ValueError(f"table must be {(cfg.n_levels, cfg.table_size, cfg.n_features)}, got {tuple(table.shape)}")
    if x.device.type != "cpu" or table.device.type != "cpu":
        raise ValueError("numba backend runs on CPU tensors only")
    if table.dtype != torch.float32:
        raise ValueError("numba backend needs a float32 table")
    return HashGridEncodingFunction.apply(x, table, cfg)
