"""Multiresolution hash-grid encoding (instant-ngp) with a torch reference and a numba CPU backend.

Semantics (shared exactly by every backend in this file):

* ``x``: float32 ``[N, 3]``, clamped to ``[0, 1]`` (d/dx of the clamp: 1 on the closed interval, 0 outside).
* Level ``l`` has resolution ``N_l = floor(base * b**l)``, ``b = exp((ln max - ln base) / (L - 1))``.
* ``pos = x * (N_l - 1)``; ``cell = clamp(floor(pos), 0, N_l - 2)``; ``frac = pos - cell``;
  the 8 corners ``cell + {0,1}^3`` are blended trilinearly.
* Corner index: dense ``i + j*N_l + k*N_l*N_l`` when ``N_l**3 <= T``, otherwise the spatial hash
  ``(i*1 ^ j*2654435761 ^ k*805459861) mod T`` in uint32 arithmetic (``T = 2**log2_table_size``).
* Table: float32 ``[L, T, F]``; output float32 ``[N, L*F]``, level-major.

Backends: ``"torch"`` (pure torch, autograd wrt table and x, the oracle), ``"numba"`` (parallel CPU
kernels, forward + analytic backward), ``"cuda"`` (the same kernels for the GPU in numba.cuda,
`sim.encoding_cuda`), and a seam for tiny-cuda-nn on CUDA (:func:`make_cuda_encoding`).
Nothing is compiled at import time; numba kernels compile (or load from the on-disk cache) on first use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

__all__ = [
    "HashGridConfig",
    "hash_grid_encode_reference",
    "hash_grid_encode_numba",
    "HashGridEncodingFunction",
    "HashGridEncoding",
    "available_backends",
    "make_cuda_encoding",
    "PRIME_Y",
    "PRIME_Z",
]

PRIME_Y = 2654435761
PRIME_Z = 805459861
_U32 = 0xFFFFFFFF


@dataclass(frozen=True)
class HashGridConfig:
    """Hyper-parameters of a multiresolution hash grid."""

    n_levels: int = 16
    """Number of resolution levels L."""
    n_features: int = 2
    """Features stored per table entry (per level) F."""
    log2_table_size: int = 19
    """log2 of the entries per level T (1..32; hashed levels wrap modulo T)."""
    base_resolution: int = 16
    """Grid vertices per axis at the coarsest level (>= 2)."""
    max_resolution: int = 2048
    """Grid vertices per axis at the finest level (>= base_resolution)."""

    def __post_init__(self) -> None:
        if self.n_levels < 1 or self.n_features < 1:
            raise ValueError("n_levels and n_features must be >= 1")
        if not 1 <= self.log2_table_size <= 32:
            raise ValueError("log2_table_size must be in [1, 32]")
        if self.base_resolution < 2 or self.max_resolution < self.base_resolution:
            raise ValueError("need 2 <= base_resolution <= max_resolution")

    @property
    def table_size(self) -> int:
        """Entries per level, ``T = 2**log2_table_size``."""
        return 1 << self.log2_table_size

    @property
    def out_dim(self) -> int:
        """Output width ``L * F``."""
        return self.n_levels * self.n_features

    def per_level_scale(self) -> float:
        """Growth factor ``b`` between consecutive levels."""
        if self.n_levels == 1:
            return 1.0
        return math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.n_levels - 1))

    def resolutions(self) -> list[int]:
        """Vertices per axis ``N_l = floor(base * b**l)`` for each level."""
        b = self.per_level_scale()
        return [max(2, int(math.floor(self.base_resolution * b**l))) for l in range(self.n_levels)]

    def dense_levels(self) -> list[bool]:
        """Whether level l is stored densely (``N_l**3 <= T``) rather than hashed."""
        t = self.table_size
        return [n**3 <= t for n in self.resolutions()]


# --------------------------------------------------------------------------------------------
# Torch reference (the oracle)
# --------------------------------------------------------------------------------------------

_CORNERS = ((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1))


def hash_grid_encode_reference(x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:
    """Pure-torch hash-grid encoding; differentiable wrt ``table`` and ``x`` through autograd.

    Works for any float dtype (float64 for gradcheck) and any device.
    """
    if x.ndim != 2 or x.shape[1] != 3:
        raise ValueError(f"x must be [N, 3], got {tuple(x.shape)}")
    L, T, F = cfg.n_levels, cfg.table_size, cfg.n_features
    if tuple(table.shape) != (L, T, F):
        raise ValueError(f"table must be {(L, T, F)}, got {tuple(table.shape)}")
    # clamp to [0, 1] with d/dx = 1 on the closed interval [0, 1] and 0 outside (explicit, so the
    # derivative at x == 0 or 1 does not depend on torch's clamp-backward convention)
    inside = (x >= 0.0) & (x <= 1.0)
    xc = torch.where(inside, x, x.detach().clamp(0.0, 1.0))
    corners = torch.tensor(_CORNERS, dtype=torch.int64, device=x.device)  # [8, 3]
    outs = []
    for l, (n, dense) in enumerate(zip(cfg.resolutions(), cfg.dense_levels())):
        pos = xc * (n - 1)
        cell = torch.floor(pos.detach()).clamp(0, n - 2)
        frac = pos - cell  # [N, 3]; d frac / d x = n - 1
        c = cell.to(torch.int64)[:, None, :] + corners[None]  # [N, 8, 3]
        i, j, k = c[..., 0], c[..., 1], c[..., 2]
        if dense:
            idx = i + j * n + k * (n * n)
        else:
            h = (i * 1) & _U32
            h = h ^ ((j * PRIME_Y) & _U32)
            h = h ^ ((k * PRIME_Z) & _U32)
            idx = h % T
        cf = corners.to(frac.dtype)  # [8, 3]
        w = torch.where(cf[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :]).prod(dim=-1)  # [N, 8]
        feats = table[l][idx]  # [N, 8, F]
        outs.append((w[..., None] * feats).sum(dim=1))
    return torch.cat(outs, dim=1)


# --------------------------------------------------------------------------------------------
# Numba kernels (compiled lazily on first call; cached on disk)
# --------------------------------------------------------------------------------------------

try:  # importing numba compiles nothing: the decorators below are lazy (no signatures given)
    import numba
    from numba import njit, prange

    # The system TBB is too old for numba's TBB layer (it warns on every process); OpenMP or the
    # built-in workqueue are what we measured with.
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]

    _HAVE_NUMBA = True
except Exception:  # pragma: no cover - numba is a hard dependency, but stay importable without it
    _HAVE_NUMBA = False
    prange = range

    def njit(*args, **kwargs):  # type: ignore[no-redef]
        return (lambda f: f) if not (len(args) == 1 and callable(args[0])) else args[0]


_jit = njit(cache=True, fastmath=True, nogil=True, parallel=True)
# Inlined at numba-IR level into every kernel: LLVM did not inline them reliably across numba's
# parfor boundary, and a called helper made the forward kernel ~2x slower (flat tuples only: nested
# tuples trip numba's parfor array analysis when inlined).
_jit_inline = njit(cache=True, fastmath=True, nogil=True, inline="always")


# The corner arithmetic as three plain functions, compiled here for the CPU and by
# `sim.encoding_cuda` for the GPU, so every backend shares it. Integer work is uint32 / int32 (the
# spec's uint32 hash; float -> int32 is one instruction, float -> uint64 is not), table offsets uint64
# (so numba emits no negative-index wraparound).
def _level_consts_py(n, dense, T):
    """Constants of level resolution ``n``: scale ``n - 1``, last cell ``n - 2``, dense strides
    (``dy, dz``; 0 when hashed) or hash primes (``hy, hz``; 0 when dense), mask ``T - 1``."""
    if dense:
        return np.float32(n - 1), np.int32(n - 2), np.uint32(n), np.uint32(n * n), np.uint32(0), np.uint32(0), np.uint32(T - 1)
    return np.float32(n - 1), np.int32(n - 2), np.uint32(0), np.uint32(0), np.uint32(PRIME_Y), np.uint32(PRIME_Z), np.uint32(T - 1)


def _cell_py(x0, x1, x2, s, nm2, dy, dz, hy, hz, mask):
    """Table entries (uint64) of the 8 corners around a point, corner order c = bit0:x | bit1:y |
    bit2:z, and the point's fractions in its cell."""
    one = np.float32(1.0)
    zero = np.float32(0.0)
    p0 = min(max(x0, zero), one) * s
    p1 = min(max(x1, zero), one) * s
    p2 = min(max(x2, zero), one) * s
    c0 = min(np.int32(p0), nm2)  # p >= 0, so truncation == floor
    c1 = min(np.int32(p1), nm2)
    c2 = min(np.int32(p2), nm2)
    f0 = p0 - np.float32(c0)
    f1 = p1 - np.float32(c1)
    f2 = p2 - np.float32(c2)
    u0 = np.uint32(c0)
    u1 = np.uint32(c1)
    u2 = np.uint32(c2)
    if dy != 0:  # dense level
        k0 = u0 + u1 * dy + u2 * dz
        k1 = k0 + np.uint32(1)
        k2 = k0 + dy
        k3 = k1 + dy
        k4 = k0 + dz
        k5 = k1 + dz
        k6 = k2 + dz
        k7 = k3 + dz
    else:
        a1 = u0 + np.uint32(1)
        b0 = u1 * hy
        b1 = b0 + hy
        d0 = u2 * hz
        d1 = d0 + hz
        # the low log2(T) <= 32 bits of wider products equal those of the uint32 products
        k0 = (u0 ^ b0 ^ d0) & mask
        k1 = (a1 ^ b0 ^ d0) & mask
        k2 = (u0 ^ b1 ^ d0) & mask
        k3 = (a1 ^ b1 ^ d0) & mask
        k4 = (u0 ^ b0 ^ d1) & mask
        k5 = (a1 ^ b0 ^ d1) & mask
        k6 = (u0 ^ b1 ^ d1) & mask
        k7 = (a1 ^ b1 ^ d1) & mask
    u = np.uint64
    return u(k0), u(k1), u(k2), u(k3), u(k4), u(k5), u(k6), u(k7), f0, f1, f2


def _trilinear_py(f0, f1, f2):
    """Trilinear weights of the 8 corners (same order as `_cell`)."""
    one = np.float32(1.0)
    g0 = one - f0
    g1 = one - f1
    g2 = one - f2
    w00 = g1 * g2
    w10 = f1 * g2
    w01 = g1 * f2
    w11 = f1 * f2
    return g0 * w00, f0 * w00, g0 * w10, f0 * w10, g0 * w01, f0 * w01, g0 * w11, f0 * w11


def _frac_grads_py(f0, f1, f2, v0, v1, v2, v3, v4, v5, v6, v7):
    """d/d(frac) of sum_c w_c v_c: per axis, corner pairs differing in that axis' bit, weighted by
    the other two axes' trilinear factors."""
    one = np.float32(1.0)
    g0 = one - f0
    g1 = one - f1
    g2 = one - f2
    e0 = g1 * g2 * (v1 - v0) + f1 * g2 * (v3 - v2) + g1 * f2 * (v5 - v4) + f1 * f2 * (v7 - v6)
    e1 = g0 * g2 * (v2 - v0) + f0 * g2 * (v3 - v1) + g0 * f2 * (v6 - v4) + f0 * f2 * (v7 - v5)
    e2 = g0 * g1 * (v4 - v0) + f0 * g1 * (v5 - v1) + g0 * f1 * (v6 - v2) + f0 * f1 * (v7 - v3)
    return e0, e1, e2


_level_consts = _jit_inline(_level_consts_py)
_cell = _jit_inline(_cell_py)
_trilinear = _jit_inline(_trilinear_py)
_frac_grads = _jit_inline(_frac_grads_py)

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
    if not _HAVE_NUMBA:
        raise RuntimeError("numba backend requested but numba is not importable")
    return {"forward": forward_kernel, "backward_table": backward_table_kernel, "backward_x": backward_x_kernel}


_MIN_CHUNK = 4096


def _chunk(n: int) -> int:
    """Points per parallel task: one big level-major chunk per thread. Measured at N=2^18, T=2^19 on
    2 cores (ns/sample fwd, the kernel before the uint32 / feature-major rewrite): 1024 -> 4142,
    4096 -> 3335, 32768 -> 2476, 131072 -> 2091; bigger chunks keep one level's table hot in L3 for
    longer."""
    from numba import get_num_threads

    return max(_MIN_CHUNK, -(-n // get_num_threads()))


def _level_arrays(cfg: HashGridConfig):
    return (np.asarray(cfg.resolutions(), dtype=np.int64), np.asarray(cfg.dense_levels(), dtype=np.bool_))


def _features(cfg: HashGridConfig) -> tuple:
    return (0,) * cfg.n_features


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class HashGridEncodingFunction(torch.autograd.Function):
    """Autograd wrapper around the numba kernels (CPU, float32). Once differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, cfg: HashGridConfig) -> torch.Tensor:  # type: ignore[override]
        k = _get_kernels()
        res, dense = _level_arrays(cfg)
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
        res, dense = _level_arrays(cfg)
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


# --------------------------------------------------------------------------------------------
# Backends, tiny-cuda-nn seam and the nn.Module
# --------------------------------------------------------------------------------------------


def _tcnn():
    """The ``tinycudann`` module, or None when it cannot be imported (guarded: it is optional)."""
    try:
        import tinycudann  # type: ignore[import-not-found]
    except Exception:
        return None
    return tinycudann


def _cuda_kernels_available() -> bool:
    from sim.encoding_cuda import cuda_backend_available  # imported late: it imports this module

    return cuda_backend_available()


def available_backends() -> list[str]:
    """Backends usable in this process: always ``"torch"``; ``"numba"`` if numba imports; ``"cuda"``
    if a GPU is visible and the numba.cuda kernels pass their self-test; ``"tcnn"`` if tinycudann
    imports and CUDA is available."""
    out = ["torch"]
    if _HAVE_NUMBA:
        out.append("numba")
    if torch.cuda.is_available() and _cuda_kernels_available():
        out.append("cuda")
    if torch.cuda.is_available() and _tcnn() is not None:
        out.append("tcnn")
    return out


def make_cuda_encoding(cfg: HashGridConfig) -> torch.nn.Module:
    """Seam for CUDA: a tiny-cuda-nn ``HashGrid`` encoding when tinycudann imports, otherwise a
    :class:`HashGridEncoding` on the torch reference backend.

    Note: tcnn owns its parameters (a flat vector, its own layout) and uses its own grid convention
    (``pos = x * (base * b**l - 1) + 0.5``), so its outputs are *not* bit-identical to this file's
    semantics; checkpoints do not transfer between the two.
    """
    tcnn = _tcnn()
    if tcnn is not None and torch.cuda.is_available():
        return tcnn.Encoding(
            n_input_dims=3,
            encoding_config={
                "otype": "HashGrid",
                "n_levels": cfg.n_levels,
                "n_features_per_level": cfg.n_features,
                "log2_hashmap_size": cfg.log2_table_size,
                "base_resolution": cfg.base_resolution,
                "per_level_scale": cfg.per_level_scale(),
            },
        )
    return HashGridEncoding(cfg, backend="torch")


class HashGridEncoding(torch.nn.Module):
    """Multiresolution hash-grid encoding ``[N, 3] -> [N, L*F]`` with its table as a Parameter.

    ``backend``: ``"auto"`` (default: numba for CPU float32 inputs when numba imports, the numba.cuda
    kernels for CUDA inputs when numba's CUDA target works, the torch reference otherwise),
    ``"numba"``, ``"cuda"`` or ``"torch"`` (always the reference). For tiny-cuda-nn use
    :func:`make_cuda_encoding` (different parameter layout). ``self.backend`` holds the resolved
    CPU choice; :meth:`backend_for` tells what a given input would use.
    """

    def __init__(self, cfg: Optional[HashGridConfig] = None, backend: str = "auto", init_scale: float = 1e-4):
        super().__init__()
        self.cfg = cfg if cfg is not None else HashGridConfig()
        if backend == "auto":
            backend = "numba" if _HAVE_NUMBA else "torch"
            self._auto = True
        else:
            self._auto = False
        if backend not in ("numba", "cuda", "torch"):
            raise ValueError(f"unknown backend {backend!r}; use 'auto', 'numba', 'cuda' or 'torch'")
        if backend == "numba" and not _HAVE_NUMBA:
            raise RuntimeError("numba backend requested but numba is not importable")
        self.backend = backend
        c = self.cfg
        self.table = torch.nn.Parameter(
            torch.empty(c.n_levels, c.table_size, c.n_features, dtype=torch.float32).uniform_(-init_scale, init_scale)
        )

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def backend_for(self, x: torch.Tensor) -> str:
        """Backend a call with input ``x`` dispatches to."""
        if self.backend == "torch":
            return "torch"
        f32 = self.table.dtype == torch.float32
        if x.device.type == "cpu" and f32 and self.backend == "numba":
            return "numba"
        if x.device.type == "cuda" and f32 and (self._auto or self.backend == "cuda") and _cuda_kernels_available():
            return "cuda"
        if not self._auto:
            raise ValueError(f"{self.backend} backend cannot run on {x.device.type} with a {self.table.dtype} table")
        return "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.backend_for(x)
        if backend == "numba":
            return hash_grid_encode_numba(x, self.table, self.cfg)
        if backend == "cuda":
            from sim.encoding_cuda import hash_grid_encode_cuda

            return hash_grid_encode_cuda(x, self.table, self.cfg)
        return hash_grid_encode_reference(x.to(self.table.dtype), self.table, self.cfg)

    def extra_repr(self) -> str:
        return f"{self.cfg}, backend={self.backend!r}"
