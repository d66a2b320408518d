"""SE(3) helpers in torch (differentiable): exponential map and its inverse, for pose optimisation.

A twist ``xi = (rho, phi)`` ``[..., 6]``: ``phi`` the rotation vector (axis * angle, radians), ``rho``
the translational part; ``se3_exp(xi)`` is the 4x4 rigid transform ``exp(xi^)``. Used as a right
update ``T = T0 @ se3_exp(xi)`` (a perturbation in the pose's own frame, as iNeRF does). pytorch3d
has the same maps (``se3_exp_map``, column-vector convention differs); this stays dependency-free.
"""

from __future__ import annotations

import torch
from torch import Tensor


def hat(v: Tensor) -> Tensor:
    """Skew-symmetric matrices ``[..., 3, 3]`` of vectors ``[..., 3]``: ``hat(a) @ b = a x b``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([torch.stack([o, -z, y], -1), torch.stack([z, o, -x], -1), torch.stack([-y, x, o], -1)], -2)


def so3_exp(phi: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of rotation vectors ``[..., 3]`` (Rodrigues; Taylor near 0)."""
    theta2 = (phi * phi).sum(-1, keepdim=True)[..., None]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    K = hat(phi)
    eye = torch.eye(3, dtype=phi.dtype, device=phi.device).expand(K.shape)
    return eye + a * K + b * (K @ K)


def se3_exp(xi: Tensor) -> Tensor:
    """4x4 transforms ``[..., 4, 4]`` of twists ``[..., 6]`` = (rho, phi)."""
    rho, phi = xi[..., :3], xi[..., 3:]
    theta2 = (phi * phi).sum(-1, keepdim=True)[..., None]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    c = torch.where(small, 1.0 / 6 - theta2 / 120, (theta - torch.sin(theta)) / (theta2 * theta).clamp_min(1e-12))
    K = hat(phi)
    eye = torch.eye(3, dtype=xi.dtype, device=xi.device).expand(K.shape)
    V = eye + b * K + c * (K @ K)
    T = torch.zeros(xi.shape[:-1] + (4, 4), dtype=xi.dtype, device=xi.device)
    T[..., :3, :3] = so3_exp(phi)
    T[..., :3, 3] = (V @ rho[..., None])[..., 0]
    T[..., 3, 3] = 1.0
    return T

