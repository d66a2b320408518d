"""What an agent navigates: a composed neural scene, its obstacles and (for the built-in world) the
ground truth to judge it by.

Obstacles are of two kinds:
- the background, through its density: a point is blocked where the background field's density
  exceeds ``density_threshold`` (per metre; 10 /m is 63% opacity over 10 cm, a solid surface, well
  above the haze of free space in a trained scene);
- the actors, through their 3D boxes at the current time (sphere-vs-oriented-box distance).

`DensityMap` samples the background density once on a grid over the walkable/flyable region and keeps
the blocked cells and their clearance (distance transform): the planner's cost map and the source of
the clearance metric. The environment itself checks collisions against the field at the body points.

Conventions: world z up, metres; actor boxes centred on the actor frame (x forward, y left, z up).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from scenes.errors import InputError
from scenes.graph import ActorTrack, SceneGraph, SceneState
from scenes.roadmap import RoadMap
from sim.compose import NeuralScene

DENSITY_THRESHOLD = 10.0
"""Background density (per metre) above which a point counts as solid."""


@dataclass
class NavScene:
    """A composed neural scene to navigate, with its ground-truth twin where one exists."""

    model: NeuralScene
    graph: SceneGraph
    twin: object | None = None
    """`scenes.twin.Twin` of the built-in world (ground-truth collisions and clearance), or None."""
    roadmap: RoadMap | None = None
    """Street layout (start/goal sampling on the street, scenarios): the built-in world's or the one
    fitted to a recorded drive (`tasks.pipeline.road_for_scene`), or None."""
    ground_z: float = 0.0
    """Height of the ground plane that ground agents drive on, metres."""
    name: str = "scene"
    maps: dict = field(default_factory=dict, repr=False)
    """Density maps built so far, keyed by their parameters (shared by the environments of a process)."""
    scenario_ego: ActorTrack | None = None
    """The scripted ego of a scenario (`with_scenario`): its start and end are the default start and goal."""
    no_road: str = "scenarios need a street: the built-in world or a recorded drive"
    """Why ``roadmap`` is None (what `with_scenario` says)."""

    @staticmethod
    def load(path: Path | str, with_twin: bool = True) -> "NavScene":
        """A scene trained by ``nerfsim train`` (the built-in world's twin when it has one; its street
        when it has one, whose ground is the ground plane)."""
        from tasks.pipeline import load_scene, road_for_scene, twin_for

        scene = load_scene(Path(path))
        wcfg = scene.world_config
        twin = twin_for(scene) if (wcfg is not None and with_twin) else None
        try:
            roadmap, no_road = road_for_scene(scene), ""
        except InputError as e:  # navigation needs no street (static datasets, drives with a tight turn)
            roadmap, no_road = None, str(e)
        ground_z = roadmap.ground_z if roadmap is not None else 0.0
        return NavScene(scene.model.eval(), scene.graph, twin, roadmap, ground_z, name=str(path), no_road=no_road)

    def with_scenario(self, scenario: str, variant: int = 0, seed: int | None = None) -> "NavScene":
        """This scene with the actors of variant ``variant`` of a scenario (template name or YAML
        file, `tasks.scenarios.schema`). The actors replay the scenario's simulation: their behaviours
        reacted to the scripted ego, not to the agent that replaces it."""
        from tasks.scenarios.variants import draw_variant
        from tasks.scenarios.schema import load_scenario_text
        from tasks.scenarios.traffic import actor_library

        if self.roadmap is None:
            raise InputError(self.name, "scenario", self.no_road)
        world, *_ = draw_variant(load_scenario_text(scenario), self.graph, self.roadmap, variant, seed, 20, actor_library(self.graph))
        return replace(self, graph=world.graph, scenario_ego=world.ego, name=f"{self.name} + {scenario} #{variant}")

    @property
    def aabb(self) -> np.ndarray:
        return np.asarray(self.graph.aabb, dtype=np.float64)

    def density(self, points: np.ndarray) -> np.ndarray:
        """Background density ``[N]`` (per metre) at world points ``[N, 3]`` (0 outside the AABB)."""
        p = torch.as_tensor(np.asarray(points, dtype=np.float32).reshape(-1, 3))
        x01 = self.model.world_to_unit(p)
        inside = ((x01 >= 0) & (x01 <= 1)).all(-1)
        out = torch.zeros(len(p))
        if inside.any():
            with torch.no_grad():
                out[inside] = self.model.background.density(x01[inside]).float()
        return out.numpy().astype(np.float64)

    def density_map(self, z_band: tuple[float, float], cell: float = 0.1,
                    threshold: float = DENSITY_THRESHOLD) -> "DensityMap":
        key = (round(z_band[0], 3), round(z_band[1], 3), cell, threshold)
        if key not in self.maps:
            self.maps[key] = DensityMap.build(self, z_band, cell, threshold)
        return self.maps[key]


def sphere_box_gap(centres: np.ndarray, radii: np.ndarray, T_world_box: np.ndarray, size) -> np.ndarray:
    """Signed gap ``[..., S]`` between spheres (centres ``[..., S, 3]``, radii ``[S]``) and one oriented
    box (< 0: they intersect)."""
    local = (centres - T_world_box[:3, 3]) @ T_world_box[:3, :3]
    excess = np.abs(local) - np.asarray(size) / 2
    outside = np.linalg.norm(np.maximum(excess, 0.0), axis=-1)
    inside = np.minimum(excess.max(axis=-1), 0.0)  # negative depth when the centre is inside the box
    return outside + inside - radii


def sphere_box_distance(centres: np.ndarray, radii: np.ndarray, state: SceneState) -> tuple[np.ndarray, list[str]]:
    """Signed gaps ``[S, A]`` between body spheres and the actors' boxes of ``state`` (< 0: they
    intersect), and the actor ids of the columns."""
    if not state.actors:
        return np.full((len(centres), 0), np.inf), []
    gaps = [sphere_box_gap(centres, radii, a.T_world_actor, a.size) for a in state.actors]
    return np.stack(gaps, axis=1), [a.actor_id for a in state.actors]


def sphere_probe_points(centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Points filling each sphere (centre, 6 axis and 8 diagonal points at 0.85 r): ``[S * 15, 3]``.
    Dense enough that no solid thicker than ~0.35 r slips between them."""
    axes = np.concatenate([np.eye(3), -np.eye(3)])
    diag = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) / np.sqrt(3)
    unit = np.concatenate([np.zeros((1, 3)), axes, diag]) * 0.85
    return (centres[:, None, :] + unit[None] * radii[:, None, None]).reshape(-1, 3)


@dataclass
class DensityMap:
    """Background density sampled on a regular grid; ``blocked`` where it exceeds the threshold.

    ``origin`` is the world (x, y) of cell (0, 0)'s centre; ``zs`` the sampled heights. For ground
    agents the band covers the body's height above the ground; ``blocked_2d`` is any blocked height.
    """

    origin: np.ndarray
    cell: float
    zs: np.ndarray
    sigma: np.ndarray
    """``[nx, ny, nz]`` density per metre."""
    threshold: float

    @staticmethod
    def build(scene: NavScene, z_band: tuple[float, float], cell: float, threshold: float,
              chunk: int = 1 << 18) -> "DensityMap":
        lo, hi = scene.aabb
        xs = np.arange(lo[0] + cell / 2, hi[0], cell)
        ys = np.arange(lo[1] + cell / 2, hi[1], cell)
        zs = np.arange(z_band[0], z_band[1] + 1e-9, cell)
        grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), axis=-1).reshape(-1, 3)
        sigma = np.concatenate([scene.density(grid[s : s + chunk]) for s in range(0, len(grid), chunk)])
        return DensityMap(np.array([xs[0], ys[0]]), cell, zs, sigma.reshape(len(xs), len(ys), len(zs)).astype(np.float32), threshold)

    @property
    def shape(self) -> tuple[int, int]:
        return self.sigma.shape[:2]

    @cached_property
    def blocked_2d(self) -> np.ndarray:
        return (self.sigma > self.threshold).any(-1)

    @cached_property
    def clearance_2d(self) -> np.ndarray:
        """Distance (metres) from each cell centre to the nearest blocked cell centre."""
        if not self.blocked_2d.any():
            return np.full(self.shape, np.inf)
        return ndimage.distance_transform_edt(~self.blocked_2d) * self.cell

    def index(self, xy: np.ndarray) -> np.ndarray:
        """Integer cell indices ``[..., 2]`` of world points (clipped to the map)."""
        ij = np.round((np.asarray(xy)[..., :2] - self.origin) / self.cell).astype(int)
        return np.clip(ij, 0, np.array(self.shape) - 1)

    def world(self, ij: np.ndarray) -> np.ndarray:
        return self.origin + np.asarray(ij, dtype=np.float64) * self.cell

    def cell_centres(self) -> np.ndarray:
        """World (x, y) of every cell ``[nx, ny, 2]``."""
        return self.world(np.stack(np.meshgrid(np.arange(self.shape[0]), np.arange(self.shape[1]), indexing="ij"), -1))

    def clearance_at(self, xy: np.ndarray) -> np.ndarray:
        ij = self.index(xy)
        return self.clearance_2d[ij[..., 0], ij[..., 1]]

    def ray_distance(self, xy: np.ndarray, direction: np.ndarray, max_dist: float = 50.0) -> float:
        """Distance along a ground-plane ray to the first blocked cell (inf if none within ``max_dist``)."""
        n = direction / max(np.linalg.norm(direction), 1e-9)
        steps = np.arange(0.0, max_dist, self.cell / 2)
        ij = self.index(np.asarray(xy)[:2] + steps[:, None] * n[:2])
        hit = np.flatnonzero(self.blocked_2d[ij[:, 0], ij[:, 1]])
        return float(steps[hit[0]]) if len(hit) else float("inf")
