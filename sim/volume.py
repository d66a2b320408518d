"""Stateless volume rendering of packed samples (nerfacc-style functional core).

Samples of many rays are stored *packed*: flat tensors sorted by ``(ray_indices, t)``, each sample
with its own interval length ``deltas``. Nothing here knows about fields or cameras.

Quadrature (Max 1995): ``alpha_i = 1 - exp(-sigma_i * delta_i)``,
``T_i = exp(-sum_{j<i} sigma_j * delta_j)`` within the ray, ``w_i = T_i * alpha_i``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def exclusive_segment_cumsum(values: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """Per-ray exclusive prefix sum of packed ``values`` (sorted by ray). Float64 inside: a global
    cumsum over ~1e6 samples minus the ray's offset would lose float32 precision."""
    v = values.double()
    incl = torch.cumsum(v, 0)
    # Sum of everything before each ray's first sample = inclusive cumsum at the previous ray's end.
    totals = torch.zeros(n_rays, dtype=v.dtype, device=v.device).index_add_(0, ray_indices, v)
    ray_start_offset = torch.cumsum(totals, 0) - totals
    return (incl - v - ray_start_offset[ray_indices]).to(values.dtype)


def render_weights(sigmas: Tensor, deltas: Tensor, ray_indices: Tensor, n_rays: int) -> tuple[Tensor, Tensor]:
    """Volume-rendering weights of packed samples and each ray's final transmittance.

    Args:
        sigmas: densities ``[S]`` (>= 0).
        deltas: interval lengths ``[S]``.
        ray_indices: ray of each sample ``[S]``, non-decreasing.
        n_rays: number of rays.
    Returns:
        weights ``[S]`` and transmittance left after the last sample ``[n_rays]``.
    """
    tau = sigmas * deltas
    T = torch.exp(-exclusive_segment_cumsum(tau, ray_indices, n_rays))
    weights = T * -torch.expm1(-tau)  # expm1: 1 - exp(-x) loses float32 precision for thin samples
    # Final transmittance = exp(-total optical depth); rays without samples keep 1.
    total = torch.zeros(n_rays, dtype=tau.dtype, device=tau.device).index_add_(0, ray_indices, tau)
    return weights, torch.exp(-total)


def accumulate(values: Tensor, weights: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """Per-ray weighted sum of per-sample ``values`` (``[S]`` or ``[S, C]``)."""
    w = weights if values.dim() == 1 else weights[:, None]
    out = torch.zeros((n_rays,) + values.shape[1:], dtype=values.dtype, device=values.device)
    return out.index_add_(0, ray_indices, w * values)


def render_weights_reference(sigmas: Tensor, deltas: Tensor, ray_indices: Tensor, n_rays: int) -> tuple[Tensor, Tensor]:
    """Slow per-ray loop; the oracle the tests compare `render_weights` against."""
    weights = torch.zeros_like(sigmas)
    T_final = torch.ones(n_rays, dtype=sigmas.dtype)
    for r in range(n_rays):
        idx = (ray_indices == r).nonzero().flatten()
        T = 1.0
        for i in idx.tolist():
            a = 1.0 - torch.exp(-sigmas[i] * deltas[i])
            weights[i] = T * a
            T = T * (1.0 - a)
        T_final[r] = T
    return weights, T_final
