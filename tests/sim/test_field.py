"""Radiance fields: the left-right mirrored field of symmetric actors."""

from __future__ import annotations

import torch

from sim.encoding import HashGridConfig
from sim.field import FieldConfig, RadianceField, in_blocks


def _field(mirror: bool, seed: int = 0) -> RadianceField:
    torch.manual_seed(seed)
    cfg = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=10, base_resolution=4, max_resolution=32),
                      hidden_dim=16, color_hidden_dim=16, sh_degree=2, mirror_y=mirror)
    fld = RadianceField(cfg)
    with torch.no_grad():  # a table far from its near-zero initialisation: the density varies in space
        for p in fld.encoding.parameters():
            p.uniform_(-1.0, 1.0)
    return fld


def _reflect(x01: torch.Tensor) -> torch.Tensor:
    return torch.stack([x01[:, 0], 1.0 - x01[:, 1], x01[:, 2]], 1)


def test_mirrored_density_is_symmetric_and_plain_density_is_not():
    x = torch.rand(500, 3)
    mirrored, plain = _field(True), _field(False)
    torch.testing.assert_close(mirrored.density(x), mirrored.density(_reflect(x)))
    assert not torch.allclose(plain.density(x), plain.density(_reflect(x)), rtol=1e-3, atol=1e-4)


def test_mirrored_colour_seen_from_the_reflected_view_differs_only_by_the_side_input():
    """A point and its reflection, seen along reflected directions, share every input of the colour
    MLP but the side; the field can still learn different colours for the two sides (lighting)."""
    fld = _field(True, seed=1)
    x = torch.rand(256, 3) * 0.8 + 0.1
    x = torch.cat([x[:, :1], 0.55 + 0.4 * x[:, 1:2], x[:, 2:]], 1)  # the y > 0.5 half
    d = torch.nn.functional.normalize(torch.randn(256, 3), dim=1)
    d_ref = d * torch.tensor([1.0, -1.0, 1.0])
    both_x, both_d = torch.cat([x, _reflect(x)]), torch.cat([d, d_ref])
    target = torch.cat([torch.tensor([0.9, 0.1, 0.1]).expand(256, 3), torch.tensor([0.1, 0.1, 0.9]).expand(256, 3)])
    opt = torch.optim.Adam(fld.parameters(), lr=1e-2)
    for _ in range(150):
        loss = ((fld(both_x, both_d)[1] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rgb = fld(both_x, both_d)[1].detach()
    assert (rgb[:256, 0] > 0.7).all() and (rgb[256:, 2] > 0.7).all(), "the side input must separate the halves"
    torch.testing.assert_close(fld.density(x), fld.density(_reflect(x)))


def test_blocked_inference_equals_one_call_and_autograd_stays_whole():
    """`in_blocks` (no-grad CPU evaluation in row blocks) gives the outputs of one whole call."""
    f = _field(mirror=False)
    g = torch.Generator().manual_seed(5)
    x = torch.rand(1000, 3, generator=g)
    d = torch.nn.functional.normalize(torch.randn(1000, 3, generator=g), dim=-1)
    with torch.no_grad():
        sigma, geo = f._geometry_block(x)
        rgb = f._appearance_block(geo, x, d, False)
        blocked_sigma, blocked_geo = in_blocks(f._geometry_block, x, block=96)
        blocked_rgb = in_blocks(lambda a, b, c: f._appearance_block(a, b, c, False), geo, x, d, block=96)
    for a, b in ((sigma, blocked_sigma), (geo, blocked_geo), (rgb, blocked_rgb)):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)
    calls = []
    out = in_blocks(lambda r: calls.append(len(r)) or r * 2, x.requires_grad_(), block=96)  # grad on: one call
    assert calls == [1000] and out.requires_grad
