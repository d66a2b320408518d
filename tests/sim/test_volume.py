"""Volume rendering against a slow reference and closed-form transmittance."""

import math

import torch

from sim.volume import TAU_MAX, accumulate, concat_passes_order, merge_order, ray_t_key, render_weights, render_weights_reference


def test_packed_weights_match_reference():
    g = torch.Generator().manual_seed(0)
    n = 300
    ray = torch.sort(torch.randint(0, 20, (n,), generator=g))[0]
    sigma = torch.rand(n, generator=g) * 5
    dt = torch.rand(n, generator=g) * 0.2
    w, T = render_weights(sigma, dt, ray, 22)
    w_ref, T_ref = render_weights_reference(sigma, dt, ray, 22)
    assert torch.allclose(w, w_ref, atol=1e-6) and torch.allclose(T, T_ref, atol=1e-6)
    assert torch.all(T[20:] == 1.0)  # rays with no samples see through


def test_constant_density_slab_transmittance_is_exponential():
    # A ray through a slab of density 2 and thickness 0.7, finely sampled: T = exp(-1.4).
    n = 1000
    dt = torch.full((n,), 0.7 / n)
    sigma = torch.full((n,), 2.0)
    ray = torch.zeros(n, dtype=torch.long)
    w, T = render_weights(sigma, dt, ray, 1)
    assert math.isclose(float(T[0]), math.exp(-1.4), rel_tol=1e-5)
    assert math.isclose(float(w.sum()), 1 - math.exp(-1.4), rel_tol=1e-5)
    # Expected depth inside the slab: the mean of an exponential truncated at 0.7.
    t = (torch.arange(n) + 0.5) * (0.7 / n)
    d = float(accumulate(t, w, ray, 1)[0] / w.sum())
    lam, L = 2.0, 0.7
    expected = 1 / lam - L * math.exp(-lam * L) / (1 - math.exp(-lam * L))
    assert abs(d - expected) < 1e-3


def test_gradients_flow_to_density():
    sigma = torch.rand(10, requires_grad=True)
    w, _ = render_weights(sigma, torch.full((10,), 0.1), torch.zeros(10, dtype=torch.long), 1)
    w.sum().backward()
    assert torch.all(sigma.grad > 0)  # more density anywhere -> more opacity


def _random_packed(n: int, n_rays: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed samples sorted by (ray, t) with distinct keys."""
    ray = torch.randint(n_rays, (n,), generator=gen)
    t = torch.rand(n, generator=gen) * 50
    order = torch.argsort(ray_t_key(ray, t))
    return ray[order], t[order]


def test_merge_order_equals_a_full_sort_of_sorted_head_and_unsorted_tail():
    gen = torch.Generator().manual_seed(0)
    for n_head, n_tail, n_rays in [(5000, 300, 400), (1000, 0, 50), (0, 200, 30), (3000, 3000, 10)]:
        ray_h, t_h = _random_packed(n_head, n_rays, gen)
        ray_t = torch.randint(n_rays, (n_tail,), generator=gen)
        t_t = torch.rand(n_tail, generator=gen) * 50
        ray, t = torch.cat([ray_h, ray_t]), torch.cat([t_h, t_t])
        order, key = merge_order(ray, t, n_head), ray_t_key(ray, t)
        assert sorted(order.tolist()) == list(range(len(ray)))  # a permutation
        assert torch.equal(key[order], torch.sort(key).values)  # (the last case has tied keys)


def test_merge_order_puts_the_tail_first_on_ties():
    ray = torch.tensor([0, 1, 1, 2, 1])
    t = torch.tensor([1.0, 2.0, 3.0, 0.5, 2.0])
    assert merge_order(ray, t, 4).tolist() == [0, 4, 1, 2, 3]


def test_concat_passes_order_sorts_chunked_marching_output():
    """Passes of a chunked march: each sorted by (ray, t); a ray's later passes lie further out; rays
    drop out between passes."""
    gen = torch.Generator().manual_seed(1)
    n_rays, passes, offset = 300, [], 0.0
    alive = torch.arange(n_rays)
    for _ in range(4):
        per_ray = torch.randint(0, 5, (len(alive),), generator=gen)
        ray = torch.repeat_interleave(alive, per_ray)
        t = offset + torch.rand(len(ray), generator=gen)
        t = torch.cat([torch.sort(t[ray == r]).values for r in alive.tolist()]) if len(ray) else t  # sorted per ray
        passes.append((ray, t))
        offset += 1.0
        alive = alive[torch.rand(len(alive), generator=gen) < 0.7]
    ray, t = torch.cat([p[0] for p in passes]), torch.cat([p[1] for p in passes])
    order = concat_passes_order([p[0] for p in passes], n_rays)
    assert torch.equal(order, torch.argsort(ray_t_key(ray, t), stable=True))
    assert len(concat_passes_order([], n_rays)) == 0


def test_a_runaway_density_in_one_ray_leaves_the_other_rays_of_the_batch_alone():
    """One sample of density 1e30 (or inf) early in a packed batch: every other ray's weights equal
    rendering it alone, and no weight exceeds 1. (Before optical depths were capped, the batch-wide
    float64 cumsum lost the other rays' depths to cancellation: weights of 180, depths of 1 km.)"""
    g = torch.Generator().manual_seed(0)
    n_rays, per_ray = 400, 6
    ray = torch.arange(n_rays).repeat_interleave(per_ray)
    sigma = torch.rand(len(ray), generator=g) * 5
    delta = torch.full((len(ray),), 0.05)
    for runaway in (1e30, float("inf")):
        s = sigma.clone()
        s[3] = runaway  # ray 0
        w, T = render_weights(s, delta, ray, n_rays)
        assert torch.isfinite(w).all() and float(w.max()) <= 1.0 and float(w.view(n_rays, per_ray).sum(1).max()) <= 1.0 + 1e-6
        for r in (1, 200, n_rays - 1):
            sl = slice(r * per_ray, (r + 1) * per_ray)
            w_alone, T_alone = render_weights(s[sl], delta[sl], torch.zeros(per_ray, dtype=torch.long), 1)
            assert torch.allclose(w[sl], w_alone, atol=1e-6) and torch.allclose(T[r], T_alone[0], atol=1e-6)
        assert float(T[0]) < 1e-12 and float(w[3]) > 0.0  # the runaway sample is opaque
    assert TAU_MAX >= 30.0  # alpha of a capped sample is 1 in float32


def test_distortion_loss_equals_the_double_sum_and_prefers_a_concentrated_ray():
    from sim.volume import distortion_loss

    g = torch.Generator().manual_seed(3)
    counts = [5, 1, 9, 4]
    ray = torch.repeat_interleave(torch.arange(4), torch.tensor(counts))
    s = torch.cat([torch.sort(torch.rand(n, generator=g, dtype=torch.float64))[0] for n in counts])
    ds = torch.rand(len(s), generator=g, dtype=torch.float64) * 0.05
    w = torch.rand(len(s), generator=g, dtype=torch.float64) * 0.3
    fast = distortion_loss(w, s, ds, ray, 4)
    for r in range(4):
        m = ray == r
        wi, si = w[m], s[m]
        ref = (wi[:, None] * wi[None, :] * (si[:, None] - si[None, :]).abs()).sum() + (wi * wi * ds[m]).sum() / 3
        assert torch.isclose(fast[r], ref)
    # The same total weight in one interval scores lower than spread over the ray (haze).
    s5, ray5 = torch.linspace(0.1, 0.9, 5, dtype=torch.float64), torch.zeros(5, dtype=torch.long)
    spread = distortion_loss(torch.full((5,), 0.2, dtype=torch.float64), s5, torch.full((5,), 0.01, dtype=torch.float64), ray5, 1)
    peak = distortion_loss(torch.tensor([0, 0, 1.0, 0, 0], dtype=torch.float64), s5, torch.full((5,), 0.01, dtype=torch.float64), ray5, 1)
    assert float(peak) < 0.1 * float(spread)
