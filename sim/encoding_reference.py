"""Multiresolution hash-grid encoding (instant-ngp): its configuration, its exact semantics and the
pure-torch reference every accelerated backend is tested against.

Semantics (shared exactly by every backend: this reference, `sim.encoding_cpu`, `sim.encoding_cuda`):

* ``x``: float32 ``[N, 3]``, clamped to ``[0, 1]`` (d/dx of the clamp: 1 on the closed interval, 0 outside).
* Level ``l`` has resolution ``N_l = floor(base * b**l)``, ``b = exp((ln max - ln base) / (L - 1))``.
* ``pos = x * (N_l - 1)``; ``cell = clamp(floor(pos), 0, N_l - 2)``; ``frac = pos - cell``;
  the 8 corners ``cell + {0,1}^3`` are blended trilinearly.
* Corner index: dense ``i + j*N_l + k*N_l*N_l`` when ``N_l**3 <= T``, otherwise the spatial hash
  ``(i*1 ^ j*2654435761 ^ k*805459861) mod T`` in uint32 arithmetic (``T = 2**log2_table_size``).
* Table: float32 ``[L, T, F]``; output float32 ``[N, L*F]``, level-major.

The backends and the module that picks one per call are listed in `sim.encoding`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["HashGridConfig", "hash_grid_encode_reference", "level_arrays", "PRIME_Y", "PRIME_Z"]

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


def level_arrays(cfg: HashGridConfig) -> tuple[np.ndarray, np.ndarray]:
    """Per-level resolutions (int64) and dense flags (bool), as the compiled kernels read them."""
    return (np.asarray(cfg.resolutions(), dtype=np.int64), np.asarray(cfg.dense_levels(), dtype=np.bool_))
