"""Radiance fields: hash-grid encoding + small MLPs, and a sky (far-field) model.

A field lives in its own unit cube: callers map world or actor-box coordinates to ``x01 in [0,1]^3``
(see `sim.compose`, `sim.contraction`). The encoding backend (torch reference, numba CPU kernel,
numba.cuda kernel) is chosen in `sim.encoding`; every backend reads and writes the same parameter
tensors, so checkpoints agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sim.encoding import HashGridConfig, HashGridEncoding


class _TruncExp(torch.autograd.Function):
    """exp with a clamped gradient (instant-ngp): keeps early training from exploding."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


def trunc_exp(x: Tensor) -> Tensor:
    return _TruncExp.apply(x)


INFERENCE_BLOCK = 16384
"""Points per block when a field runs without autograd on a CPU (rendering, marching, meshing).
The density MLP on 2*10^5 points at once ran at 15-17 GFLOP/s on the 2-core bench machine, in
16k-point blocks at 81-85 (the hidden activations stay in cache, and no fresh multi-MB buffer is
page-faulted in per layer); in a 640x360 render of the demo scene the MLPs' time went from 1.35 s to
0.67 s (cProfile)."""


def in_blocks(fn, *rows: Tensor, block: int | None = None):
    """``fn(*rows)`` (a tensor or a tuple of tensors, one row per input row) evaluated on row blocks
    of ``rows`` into preallocated outputs, when autograd is off and the rows are on the CPU;
    otherwise one call (autograd needs the graph; GPUs prefer big batches)."""
    n, block = len(rows[0]), block or INFERENCE_BLOCK
    if n <= block or torch.is_grad_enabled() or rows[0].device.type != "cpu":
        return fn(*rows)
    first = fn(*(r[:block] for r in rows))
    single = isinstance(first, Tensor)
    first = (first,) if single else first
    outs = [torch.empty((n, *f.shape[1:]), dtype=f.dtype) for f in first]
    for o, f in zip(outs, first):
        o[:block] = f
    for s in range(block, n, block):
        part = fn(*(r[s : s + block] for r in rows))
        for o, f in zip(outs, (part,) if single else part):
            o[s : s + block] = f
    return outs[0] if single else tuple(outs)


def sh_encode(dirs: Tensor, degree: int = 4) -> Tensor:
    """Real spherical harmonics of unit directions ``[N, 3]`` up to ``degree`` (1..4): ``[N, degree^2]``."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, 0.28209479177387814)]
    if degree > 1:
        out += [-0.48860251190291987 * y, 0.48860251190291987 * z, -0.48860251190291987 * x]
    if degree > 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out += [1.0925484305920792 * xy, -1.0925484305920792 * yz, 0.94617469575755997 * zz - 0.31539156525251999,
                -1.0925484305920792 * xz, 0.54627421529603959 * (xx - yy)]
    if degree > 3:
        out += [0.59004358992664352 * y * (-3.0 * xx + yy), 2.8906114426405538 * xy * z,
                0.45704579946446572 * y * (1.0 - 5.0 * zz), 0.3731763325901154 * z * (5.0 * zz - 3.0),
                0.45704579946446572 * x * (1.0 - 5.0 * zz), 1.4453057213202769 * z * (xx - yy),
                0.59004358992664352 * x * (-xx + 3.0 * yy)]
    return torch.stack(out, -1)


class _SigmoidWithGradientFloor(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, floor: float) -> Tensor:
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        ctx.floor = floor
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):
        (y,) = ctx.saved_tensors
        return grad * (y * (1 - y)).clamp_min(ctx.floor), None


class ColorSigmoid(nn.Module):
    """Sigmoid whose backward pass does not fall below ``floor`` while ``floor > 0`` (forward: the
    plain sigmoid; ``floor`` 0, the default: the exact gradient). Training sets the floor of the
    background's and actors' colour heads for its first steps (`sim.train.TrainConfig.color_floor`).

    Why: an actor that is still half transparent early in training shows the brighter background
    through it, so its colour is pushed towards black until the sigmoid saturates (logits of -30 to
    -100 within 50 steps on the demo street); its gradient is then ~e^-60 and the car stays black
    for good once it is opaque (3 of 8 cars on a 1,390-step demo scene). With the floor, the
    photometric loss pulls a saturated logit back as soon as the colour is wrong. Where
    ``sigmoid'(x) >= floor`` (|x| < 4.6 for 0.01) the gradient is exact. Not for good: kept on for
    the whole of a 10-minute lego-200 run, it made the field diverge after 5 minutes (31.7 -> 17.5 dB)."""

    def __init__(self, floor: float = 0.0):
        super().__init__()
        self.floor = floor

    def forward(self, x: Tensor) -> Tensor:
        if self.floor <= 0 or not torch.is_grad_enabled() or not x.requires_grad:
            return torch.sigmoid(x)
        return _SigmoidWithGradientFloor.apply(x, self.floor)


def mlp(dims: list[int], out_activation: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(nn.ReLU(inplace=True))
    if out_activation is not None:
        layers.append(out_activation)
    return nn.Sequential(*layers)


@dataclass
class FieldConfig:
    """A hash-grid radiance field."""

    grid: HashGridConfig = field(default_factory=HashGridConfig)
    """Multiresolution hash encoding of positions in the field's unit cube."""
    hidden_dim: int = 64
    """Width of the density MLP."""
    geo_feat_dim: int = 15
    """Features passed from the density MLP to the colour MLP."""
    color_hidden_dim: int = 64
    """Width of the colour MLP (two hidden layers)."""
    sh_degree: int = 4
    """Spherical-harmonics degree of the view-direction encoding; 0 = view-independent colour."""
    density_bias: float = -1.0
    """Added to the raw density before exp: starts the field nearly transparent."""
    semantic_classes: tuple[str, ...] = ()
    """Class names of a semantic head on the geometry features (empty = no head)."""
    image_code_dim: int = 0
    """Length of a per-image appearance code given to the colour MLP (a photo's exposure and white
    balance, learned with the field; `sim.compose.SceneModelConfig.image_codes`); 0 = none."""
    mirror_y: bool = False
    """Left-right symmetric object (a car in its box frame: x forward, y left): both halves of the
    cube (y < 0.5 and y > 0.5) share one set of features, so a side seen in the log gives the shape
    and texture of the side never seen. The colour MLP is told which half a point is in (lighting
    differs between the sides)."""

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["grid"] = dict(self.grid.__dict__)
        d["semantic_classes"] = list(self.semantic_classes)
        return d

    @staticmethod
    def from_dict(d: dict) -> "FieldConfig":
        d = dict(d)
        d["grid"] = HashGridConfig(**d["grid"])
        d["semantic_classes"] = tuple(d.get("semantic_classes", ()))
        return FieldConfig(**d)


class RadianceField(nn.Module):
    """sigma(x), rgb(x, d) in the unit cube."""

    def __init__(self, cfg: FieldConfig):
        super().__init__()
        self.cfg = cfg
        self.encoding = HashGridEncoding(cfg.grid)
        n_enc = cfg.grid.n_levels * cfg.grid.n_features
        self.density_mlp = mlp([n_enc, cfg.hidden_dim, 1 + cfg.geo_feat_dim])
        n_dir = cfg.sh_degree**2 if cfg.sh_degree > 0 else 0
        n_side = 1 if cfg.mirror_y else 0
        self.color_mlp = mlp([cfg.geo_feat_dim + n_dir + n_side + cfg.image_code_dim, cfg.color_hidden_dim, cfg.color_hidden_dim, 3],
                             ColorSigmoid())
        # Semantic-NeRF style: class logits from the geometry features, view independent.
        self.semantic_head = nn.Linear(cfg.geo_feat_dim, len(cfg.semantic_classes)) if cfg.semantic_classes else None
        self.level_weights: Tensor | None = None
        """Per-level weights ``[n_levels]`` of the encoding (None = all 1): coarse-to-fine pose
        optimisation fades the fine levels in (BARF), see `set_level_weights`."""

    def set_color_gradient_floor(self, floor: float) -> None:
        """See `ColorSigmoid` (0 = the exact gradient)."""
        self.color_mlp[-1].floor = floor

    def set_level_weights(self, weights: Tensor | None) -> None:
        self.level_weights = None if weights is None else weights.repeat_interleave(self.cfg.grid.n_features)

    def _fold(self, x01: Tensor) -> Tensor:
        """Points of the y < 0.5 half reflected onto the y > 0.5 half (``mirror_y`` fields)."""
        if not self.cfg.mirror_y:
            return x01
        return torch.cat([x01[:, :1], 0.5 + (x01[:, 1:2] - 0.5).abs(), x01[:, 2:]], 1)

    def _geometry(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        return in_blocks(self._geometry_block, x01)

    def _geometry_block(self, x01: Tensor) -> tuple[Tensor, Tensor]:
        h = self._density_mlp_out(x01)
        return trunc_exp(h[:, 0] + self.cfg.density_bias), h[:, 1:]

    def _density_mlp_out(self, x01: Tensor) -> Tensor:
        enc = self.encoding(self._fold(x01))
        if self.level_weights is not None:
            enc = enc * self.level_weights
        return self.density_mlp(enc)

    def log_density(self, x01: Tensor) -> Tensor:
        """Natural log of the density ``[N]`` at points ``[N, 3]`` of the unit cube, exact however
        small the density (its gradient does not vanish with it, as the density's does)."""
        return self._density_mlp_out(x01)[:, 0] + self.cfg.density_bias

    def density(self, x01: Tensor) -> Tensor:
        """Density ``[N]`` at points ``[N, 3]`` of the unit cube."""
        return self._geometry(x01)[0]

    def forward(self, x01: Tensor, dirs: Tensor, semantics: bool = False, codes: Tensor | None = None):
        """Density ``[N]`` and colour ``[N, 3]``; ``dirs`` are unit view directions in the field's
        frame. With ``semantics`` (and a semantic head) also class logits ``[N, C]``. ``codes``:
        per-point image codes ``[N, image_code_dim]`` (fields with codes; None = zeros)."""
        sigma, geo = self._geometry(x01)
        return (sigma,) + self.appearance(geo, x01, dirs, semantics, codes)

    def appearance(self, geo: Tensor, x01: Tensor, dirs: Tensor, semantics: bool = False, codes: Tensor | None = None) -> tuple[Tensor, ...]:
        """Colour ``[N, 3]`` (and class logits with ``semantics``) from geometry features ``geo``
        (the density MLP's other outputs at ``x01``) and image ``codes`` (see `forward`)."""
        if self.cfg.image_code_dim > 0 and codes is None:
            codes = geo.new_zeros(len(geo), self.cfg.image_code_dim)
        if self.cfg.image_code_dim > 0:
            out = in_blocks(lambda g, x, d, c: self._appearance_block(g, x, d, semantics, c), geo, x01, dirs, codes)
        else:
            out = in_blocks(lambda g, x, d: self._appearance_block(g, x, d, semantics), geo, x01, dirs)
        return (out,) if isinstance(out, Tensor) else out

    def _appearance_block(self, geo: Tensor, x01: Tensor, dirs: Tensor, semantics: bool, codes: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        feats = [geo]
        if self.cfg.mirror_y:
            # The reflected half sees reflected directions; its side is an input of the colour MLP.
            side = torch.where(x01[:, 1:2] < 0.5, -1.0, 1.0).to(geo.dtype)
            dirs = torch.cat([dirs[:, :1], dirs[:, 1:2] * side, dirs[:, 2:]], 1)
            feats.append(side)
        if self.cfg.sh_degree > 0:
            feats.append(sh_encode(dirs, self.cfg.sh_degree))
        if codes is not None:
            feats.append(codes)
        rgb = self.color_mlp(torch.cat(feats, -1))
        if semantics and self.semantic_head is not None:
            return rgb, self.semantic_head(geo)
        return rgb


class SkyField(nn.Module):
    """Colour at infinity as a function of the world direction (sky / far field)."""

    def __init__(self, sh_degree: int = 4, hidden_dim: int = 32):
        super().__init__()
        self.sh_degree = sh_degree
        self.net = mlp([sh_degree**2, hidden_dim, 3], ColorSigmoid())

    def forward(self, dirs: Tensor) -> Tensor:
        return self.net(sh_encode(dirs, self.sh_degree))
