"""Stateless volume rendering of packed samples (nerfacc-style functional core).

Samples of many rays are stored *packed*: flat tensors sorted by ``(ray_indices, t)``, each sample
with its own interval length ``deltas``. Nothing here knows about fields or cameras.

Quadrature (Max 1995): ``alpha_i = 1 - exp(-sigma_i * delta_i)``,
``T_i = exp(-sum_{j<i} sigma_j * delta_j)`` within the ray, ``w_i = T_i * alpha_i``.
"""

from __future__ import annotations

import torch
from torch import Tensor


TAU_MAX = 30.0
"""Largest optical depth one sample counts with: its alpha is already 1 in float32 (1 - e^-30 =
1 - 9e-14). Without the cap one sample of a runaway density (a hash-grid field can return 1e11 or
more where nothing constrains it, e.g. underground) put values near 1e12 into the batch-wide
cumulative sum of `exclusive_segment_cumsum`, whose float64 cancellation then gave every later ray
of the batch a negative optical depth, weights above 1 and depths of ~1,000 m: a whole band of
image rows, depending on how the image was split into batches."""


def optical_depth(sigmas: Tensor, deltas: Tensor) -> Tensor:
    """Per-sample optical depth ``sigma * delta``, capped at `TAU_MAX` (also turns inf into it)."""
    return (sigmas * deltas).clamp(max=TAU_MAX)


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
    tau = optical_depth(sigmas, deltas)
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


def ray_t_key(ray_indices: Tensor, t: Tensor) -> Tensor:
    """One float64 key per sample ordering packed samples by ``(ray, t)`` (distances below 1e6)."""
    return ray_indices.double() * 1e6 + t.double()


def _inverse_permutation(dest: Tensor) -> Tensor:
    order = torch.empty_like(dest)
    order[dest] = torch.arange(len(dest), device=dest.device)
    return order


def merge_order(ray_indices: Tensor, t: Tensor, n_sorted: int) -> Tensor:
    """Permutation ``order`` such that ``(ray_indices, t)[order]`` is sorted, for packed samples whose
    first ``n_sorted`` are sorted already (the background's, most of them) and whose rest (the
    actors') are in any order: the rest is sorted alone and merged in by binary search, O(N + M log N)
    instead of sorting all N + M. Ties put the rest first. Equals a stable argsort of `ray_t_key`
    wherever the keys are distinct."""
    key = ray_t_key(ray_indices, t)
    head, tail = key[:n_sorted], key[n_sorted:]
    if len(tail) == 0:
        return torch.arange(len(key), device=key.device)
    tail_order = torch.argsort(tail)
    pos = torch.searchsorted(head, tail[tail_order])  # head samples before each tail sample
    # Each head sample moves back by the number of tail samples merged in at or before it.
    shift = torch.bincount(pos, minlength=n_sorted + 1).cumsum(0)[:n_sorted]
    dest = torch.empty(len(key), dtype=torch.long, device=key.device)
    dest[:n_sorted] = torch.arange(n_sorted, device=key.device) + shift
    dest[n_sorted + tail_order] = pos + torch.arange(len(tail), device=key.device)
    return _inverse_permutation(dest)


def concat_passes_order(ray_parts: list[Tensor], n_rays: int) -> Tensor:
    """Permutation sorting the concatenation of marching passes by ``(ray, t)``, when each pass is
    sorted by (ray, t) and every ray's samples in a later pass lie beyond its samples in earlier
    ones (chunked marching): a counting sort on the ray, O(N), no comparison sort."""
    counts = [torch.bincount(r, minlength=n_rays) for r in ray_parts]
    total = torch.stack(counts).sum(0) if counts else torch.zeros(n_rays, dtype=torch.long)
    start = torch.cumsum(total, 0) - total
    before = torch.zeros_like(total)
    dest = []
    for r, c in zip(ray_parts, counts):
        first_in_pass = torch.cumsum(c, 0) - c
        dest.append(start[r] + before[r] + torch.arange(len(r), device=r.device) - first_in_pass[r])
        before += c
    return _inverse_permutation(torch.cat(dest)) if dest else torch.zeros(0, dtype=torch.long)


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


def distortion_loss(weights: Tensor, s: Tensor, ds: Tensor, ray_indices: Tensor, n_rays: int) -> Tensor:
    """mip-NeRF 360's distortion loss of packed samples, per ray ``[n_rays]``: with each sample an
    interval of width ``ds`` centred on ``s`` (a normalised distance along the ray),
    ``sum_ij w_i w_j |s_i - s_j| + 1/3 sum_i w_i^2 ds_i``. It is smallest when a ray's weight sits in
    one short interval: a field fitting photos with haze spread along every ray (the failure seen
    on real captures) pays for it. The double sum in O(n) (mip-NeRF 360, eq. 15):
    ``2 sum_i w_i (s_i W_<i - (w s)_<i)`` with the per-ray exclusive prefix sums."""
    w_before = exclusive_segment_cumsum(weights, ray_indices, n_rays)
    ws_before = exclusive_segment_cumsum(weights * s, ray_indices, n_rays)
    per_sample = 2 * weights * (s * w_before - ws_before) + weights * weights * ds / 3
    return torch.zeros(n_rays, dtype=weights.dtype, device=weights.device).index_add(0, ray_indices, per_sample)


@torch.no_grad()
def median_distance(weights: Tensor, t: Tensor, dt: Tensor, sigma: Tensor, ray: Tensor, n_rays: int) -> Tensor:
    """Per ray, the distance where the accumulated weight reaches 0.5 (``inf`` where the ray's total
    stays below it): in the sample where it crosses, solved exactly for its constant density over
    its interval ``[t - dt/2, t + dt/2]``, so the first surface is not quantised to the marching step."""
    cum = exclusive_segment_cumsum(weights, ray, n_rays) + weights
    reached = (cum >= 0.5).nonzero().flatten()
    first = torch.full((n_rays,), len(t), dtype=torch.long, device=t.device)
    first = first.scatter_reduce(0, ray[reached], reached, reduce="amin")
    hit = first < len(t)
    i = first[hit]
    before = (cum[i] - weights[i]).clamp(max=0.5)  # weight accumulated before the interval
    # (1 - before) * (1 - exp(-sigma s)) = 0.5 - before  ->  s = ln(2 (1 - before)) / sigma
    s = torch.log(2 * (1 - before)) / sigma[i].clamp_min(1e-12)
    out = torch.full((n_rays,), float("inf"), dtype=t.dtype, device=t.device)
    out[hit] = (t[i] - dt[i] / 2 + torch.minimum(s, dt[i])).to(t.dtype)
    return out
