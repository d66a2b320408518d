"""`sim.field.ColorSigmoid`: the plain sigmoid forward, a gradient floor backward, so a colour
saturated early in training (an actor pushed to black while still half transparent) comes back."""

from __future__ import annotations

import torch

from sim.field import ColorSigmoid


def test_forward_is_the_sigmoid_and_the_gradient_exact_above_the_floor():
    x = torch.linspace(-80.0, 80.0, 2001, dtype=torch.float64, requires_grad=True)
    y = ColorSigmoid(0.01)(x)
    assert torch.equal(y, torch.sigmoid(x))
    y.sum().backward()
    exact = torch.sigmoid(x) * (1 - torch.sigmoid(x))
    live = exact >= 0.01
    assert torch.allclose(x.grad[live], exact[live])
    assert torch.all(x.grad[~live] == 0.01) and (~live).sum() > 1000
    with torch.no_grad():  # inference: no autograd function in the way
        assert torch.equal(ColorSigmoid(0.01)(x), torch.sigmoid(x))


def test_a_saturated_colour_recovers_where_the_plain_sigmoid_stays_black():
    def fit(activation) -> float:
        logit = torch.full((3,), -60.0, requires_grad=True)  # black, deep in the saturated tail
        opt = torch.optim.Adam([logit], lr=0.5)
        target = torch.tensor([0.2, 0.5, 0.8])
        for _ in range(600):
            opt.zero_grad()
            ((activation(logit) - target) ** 2).sum().backward()
            opt.step()
        return float((activation(logit) - target).abs().max())

    assert fit(ColorSigmoid(0.01)) < 0.01
    assert fit(ColorSigmoid(0.0)) > 0.19  # the default: the exact e^-60 gradients, Adam cannot move it either

