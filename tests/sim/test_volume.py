"""Volume rendering against a slow reference and closed-form transmittance."""

import math

import torch

from sim.volume import accumulate, render_weights, render_weights_reference


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
