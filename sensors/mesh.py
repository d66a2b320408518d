"""Meshes of the fields: marching cubes of the surface seen from outside, vertex colours from the
radiance field.

The background mesh is in world coordinates (metres); each actor asset's mesh is in its own box
frame (x forward, y left, z up, origin at the box centre), so it can be placed with any
``T_world_actor``. Densities are sampled on a regular grid over the field's unit cube, only in
cells its occupancy grid marks occupied (elsewhere the field is known empty). By default the mesh is
the surface a viewer outside the field sees (`optical_depth_from_outside`: where the optical depth
from outside reaches ln 2, the renderer's median depth); the raw density iso-surface at ``level``
is the alternative (``MeshConfig.seen_from_outside=False``), which also meshes the unconstrained
interior. Surfaces are placed to within one grid step (linear interpolation). Vertex colours are
the field's radiance seen from outside (view direction = minus the surface normal). Export formats:
whatever trimesh writes (``.ply``, ``.obj``, ``.glb``); open3d and trimesh read them back (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import trimesh

from scenes.files import atomic_write
from sim.compose import NeuralScene
from sim.field import RadianceField
from sim.occupancy import OccupancyGrid


@dataclass(frozen=True)
class MeshConfig:
    """Marching-cubes settings."""

    background_cell: float = 0.1
    """Grid step of the background mesh, metres (the AABB decides the number of cells)."""
    actor_resolution: int = 128
    """Grid points along the longest side of an actor box."""
    level: float = 10.0
    """Density iso-level (per metre) of the raw iso-surface (``seen_from_outside=False``): opacity
    1 - exp(-level * 0.05) = 0.4 over 5 cm."""
    seen_from_outside: bool = True
    """Mesh the surface a viewer outside the field sees: where the optical depth from the field's
    boundary, along the least opaque of 17 directions from above or level, reaches ln 2 (opacity
    0.5, where the renderer's median depth lies). The raw iso-surface also meshes the interior, which no ray ever constrains:
    trained fields are noisy in there (cavities, sheets), and those inner surfaces were most of the
    demo cars' Chamfer error."""
    chunk: int = 1 << 17
    """Points per density evaluation."""


SEEN_LEVEL = float(np.log(2.0))
"""Optical depth at which the surface seen from outside lies (transmittance 0.5)."""


def _sweep(sigma: np.ndarray, step: np.ndarray, length: float) -> np.ndarray:
    """Optical depth accumulated up to each grid point along the index step ``step`` (ints in -1..1),
    from the volume's boundary (trapezoid rule between neighbours; nothing outside the volume)."""
    k = int(np.flatnonzero(step)[0])  # sweep along the first axis the direction moves on
    sig = np.moveaxis(sigma, k, 0)
    (s1, s2) = [int(step[i]) for i in range(3) if i != k]
    order = range(sig.shape[0]) if step[k] > 0 else range(sig.shape[0] - 1, -1, -1)
    tau = np.zeros_like(sig)
    n1, n2 = sig.shape[1:]

    def previous(a: np.ndarray) -> np.ndarray:  # a[j - s1, l - s2], zero outside
        out = np.zeros_like(a)
        out[max(s1, 0) : n1 + min(s1, 0), max(s2, 0) : n2 + min(s2, 0)] = a[max(-s1, 0) : n1 + min(-s1, 0), max(-s2, 0) : n2 + min(-s2, 0)]
        return out

    has_previous = previous(np.ones((n1, n2), bool))  # points on the volume's edge start at zero
    prev_i = None
    for i in order:
        if prev_i is not None:
            tau[i] = previous(tau[prev_i]) + 0.5 * (previous(sig[prev_i]) + sig[i]) * length * has_previous
        prev_i = i
    return np.moveaxis(tau, 0, k)


def optical_depth_from_outside(sigma: np.ndarray, spacing) -> np.ndarray:
    """Per grid point, the smallest optical depth from the volume's boundary along any of the 17 grid
    directions (axes, face and space diagonals) that come from above or level (grid axis 2 is up):
    ``exp(-result)`` is the best transmittance a viewer outside and above the ground has to that
    point. Nobody looks from under the road: an actor's box and the world's AABB start at the ground,
    and a car's underside is never seen, so its field is empty there and rays from below would see
    into its unconstrained interior. ``sigma``: densities (per metre) on a grid of step ``spacing``."""
    spacing = np.asarray(spacing, np.float64)
    best = np.full(sigma.shape, np.inf)
    for step in np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1], indexing="ij")).reshape(3, -1).T:
        if step.any() and step[2] <= 0:
            np.minimum(best, _sweep(sigma, step, float(np.linalg.norm(step * spacing))), out=best)
    return best


@torch.no_grad()
def field_mesh(fld: RadianceField, grid: OccupancyGrid | None, lo: np.ndarray, hi: np.ndarray, shape: tuple[int, int, int],
               level: float, chunk: int = 1 << 17, seen_from_outside: bool = False) -> trimesh.Trimesh:
    """Surface of ``fld`` over the box ``[lo, hi]`` (its unit cube, in metres of its frame): the
    density iso-surface at ``level``, or with ``seen_from_outside`` the surface seen from outside
    (see ``MeshConfig.seen_from_outside``; ``level`` unused)."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    axes = [torch.linspace(0.0, 1.0, n) for n in shape]
    x01 = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    sigma = torch.zeros(len(x01))
    todo = grid.query(x01).nonzero().flatten() if grid is not None else torch.arange(len(x01))
    for s in range(0, len(todo), chunk):
        idx = todo[s : s + chunk]
        sigma[idx] = fld.density(x01[idx]).float()
    # The field is empty outside its cube (compositing gives it no samples there): a layer of zeros
    # around the grid closes surfaces that reach the cube's faces.
    vol = np.pad(sigma.reshape(shape).numpy().astype(np.float64), 1)
    spacing = (hi - lo) / (np.asarray(shape) - 1)
    if seen_from_outside:
        vol, level = optical_depth_from_outside(vol, spacing), SEEN_LEVEL
    if not vol.max() > level:
        return trimesh.Trimesh()
    from skimage.measure import marching_cubes

    verts, faces, normals, _ = marching_cubes(vol, level=level, spacing=tuple(spacing))
    # Undo the padding; surfaces closed by it lie on the cube's faces (the field ends there).
    verts = np.clip(verts - spacing, 0.0, hi - lo)
    # skimage orients faces towards increasing values (inside); flip so normals point outwards.
    mesh = trimesh.Trimesh(verts + lo, faces[:, ::-1], process=False)
    out_n = -normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    v01 = torch.as_tensor((verts / (hi - lo)).astype(np.float32))
    rgb = torch.cat([fld(v01[s : s + chunk], torch.as_tensor(-out_n[s : s + chunk], dtype=torch.float32))[1]
                     for s in range(0, len(v01), chunk)]) if len(v01) else torch.zeros(0, 3)
    colours = np.concatenate([(rgb.numpy() * 255).round().clip(0, 255), np.full((len(v01), 1), 255)], 1).astype(np.uint8)
    mesh.visual.vertex_colors = colours
    return mesh


def background_mesh(model: NeuralScene, cfg: MeshConfig = MeshConfig()) -> trimesh.Trimesh:
    """The background field's mesh in world coordinates."""
    lo, hi = model.aabb[0].numpy(), model.aabb[1].numpy()
    shape = tuple(int(max(2, np.ceil((h - l) / cfg.background_cell) + 1)) for l, h in zip(lo, hi))
    return field_mesh(model.background, model.background_grid, lo, hi, shape, cfg.level, cfg.chunk, cfg.seen_from_outside)


def actor_mesh(model: NeuralScene, asset_id: str, size, cfg: MeshConfig = MeshConfig()) -> trimesh.Trimesh:
    """An actor asset's mesh in its box frame (box of ``size`` = length, width, height)."""
    size = np.asarray(size, np.float64)
    shape = tuple(int(max(2, round(cfg.actor_resolution * s / size.max()))) for s in size)
    return field_mesh(model.actor_field(asset_id), model.actor_grid(asset_id), -size / 2, size / 2, shape, cfg.level, cfg.chunk,
                      cfg.seen_from_outside)


def export_mesh(mesh: trimesh.Trimesh, path: Path) -> Path:
    """Write ``mesh`` atomically; the format follows the suffix (.ply, .obj, .glb)."""
    return atomic_write(path, mesh.export)
