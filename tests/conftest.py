"""A box world with two exact renderers: a `NeuralScene` whose fields are analytic solid boxes, and
a mesh twin of the same boxes. Every sensor product of the neural path must match the twin's up to
quadrature (density 2e3 per metre: surfaces are sharp to ~1 mm; marching steps ~1-2 cm).

Background: a ground slab (top at z = 0, road) and a wall (building) facing the camera at x = 12.
Actors: a yawed car box in front of the wall, partly hidden behind a post for occlusion, and a
pedestrian box.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import trimesh
from torch import nn

from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.materials import Material
from scenes.transforms import make_pose, quat_to_matrix
from scenes.twin import Twin
from scenes.world import MeshPart
from sim.compose import NeuralScene, SceneModelConfig
from sim.encoding import HashGridConfig
from sim.field import FieldConfig

AABB = ((-4.0, -8.0, -1.0), (14.0, 8.0, 5.0))
SIGMA = 2000.0
EMPTY_DENSITY = 1e-6
# (lo, hi, class) in world metres
BG_BOXES = [((-4.0, -8.0, -1.0), (14.0, 8.0, 0.0), "road"), ((12.0, -8.0, 0.0), (13.0, 8.0, 5.0), "building"),
            ((4.0, -1.6, 0.0), (4.3, -1.3, 3.0), "pole")]
CAR_SIZE, PED_SIZE = (4.0, 1.8, 1.5), (0.6, 0.6, 1.8)


class BoxesField(nn.Module):
    """RadianceField interface: density ``sigma`` inside any of the boxes (unit-cube coordinates)."""

    def __init__(self, boxes01, sigma: float, colors):
        super().__init__()
        self.register_buffer("lo", torch.tensor(np.array([b[0] for b in boxes01]), dtype=torch.float32))
        self.register_buffer("hi", torch.tensor(np.array([b[1] for b in boxes01]), dtype=torch.float32))
        self.register_buffer("colors", torch.tensor(colors, dtype=torch.float32))
        self.sigma = sigma

    def _inside(self, x01):
        return ((x01[:, None] >= self.lo) & (x01[:, None] <= self.hi)).all(-1)  # [N, B]

    def density(self, x01):
        return torch.where(self._inside(x01).any(-1), self.sigma, 0.0)

    def log_density(self, x01):
        """log density, outside the boxes that of ``EMPTY_DENSITY`` (a log has no zero)."""
        return torch.log(self.density(x01).clamp_min(EMPTY_DENSITY))

    def forward(self, x01, dirs):
        inside = self._inside(x01)
        rgb = self.colors[inside.float().argmax(-1)]
        return self.density(x01), rgb


def yaw_pose(yaw_deg, t) -> np.ndarray:
    a = np.radians(yaw_deg)
    return make_pose(quat_to_matrix(np.array([np.cos(a / 2), 0, 0, np.sin(a / 2)])), np.asarray(t, float))


@dataclass
class _Config:
    sun_dir: tuple = (0.3, 0.2, 1.0)
    ambient: float = 0.5
    diffuse: float = 0.5


@dataclass
class BoxWorld:
    config: _Config
    background: list
    actor_assets: dict
    graph: SceneGraph = None
    model: NeuralScene = None
    twin: Twin = None
    extra: dict = field(default_factory=dict)


def _part(name, lo, hi, cls, color):
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    mesh = trimesh.creation.box(extents=hi - lo, transform=make_pose(np.eye(3), (lo + hi) / 2))
    return MeshPart(name, mesh, cls, Material("plain", {"color": color}))


def build_box_world(with_twin: bool = True) -> BoxWorld:
    """The box world; ``with_twin=False`` leaves out the mesh twin (no open3d needed: the neural
    path alone, e.g. for device-agreement tests on a GPU machine)."""
    bg = [_part(f"bg{i}", lo, hi, cls, (0.3 + 0.2 * i, 0.4, 0.5)) for i, (lo, hi, cls) in enumerate(BG_BOXES)]
    assets = {"car": [_part("car", -np.array(CAR_SIZE) / 2, np.array(CAR_SIZE) / 2, "car", (0.8, 0.1, 0.1))],
              "ped": [_part("ped", -np.array(PED_SIZE) / 2, np.array(PED_SIZE) / 2, "pedestrian", (0.1, 0.1, 0.8))]}
    car_track = ActorTrack(np.array([0.0, 2.0]), np.array([[6.0, -1.0, 0.75], [8.0, -1.0, 0.75]]),
                           np.array([[np.cos(np.radians(10)), 0, 0, np.sin(np.radians(10))]] * 2))
    ped_track = ActorTrack(np.array([0.0]), np.array([[7.0, 2.5, 0.9]]), np.array([[1.0, 0, 0, 0]]))
    graph = SceneGraph((Actor("car_0", "car", 1, CAR_SIZE, car_track, "car"), Actor("ped_0", "pedestrian", 2, PED_SIZE, ped_track, "ped")),
                       AABB)
    world = BoxWorld(_Config(), bg, assets, graph)
    world.twin = Twin(world) if with_twin else None
    tiny = FieldConfig(grid=HashGridConfig(n_levels=2, log2_table_size=6, base_resolution=4, max_resolution=8),
                       hidden_dim=8, color_hidden_dim=8, sh_degree=1)
    cfg = SceneModelConfig(background=tiny, actor=tiny, far_field="black", step_min=0.01, step_cone=0.0, step_max=0.01,
                           actor_steps=512, occupancy_cell=0.5, occupancy_cell_z=0.5)
    model = NeuralScene(cfg, AABB, ["car", "ped"])
    lo, hi = np.array(AABB[0]), np.array(AABB[1])
    model.background = BoxesField([((np.array(b[0]) - lo) / (hi - lo), (np.array(b[1]) - lo) / (hi - lo)) for b in BG_BOXES], SIGMA,
                                  [(0.5, 0.5, 0.5)] * len(BG_BOXES))
    model.actor_fields["car"] = BoxesField([((0, 0, 0), (1, 1, 1))], SIGMA, [(0.8, 0.1, 0.1)])
    model.actor_fields["ped"] = BoxesField([((0, 0, 0), (1, 1, 1))], SIGMA, [(0.1, 0.1, 0.8)])
    world.model = model
    return world


@pytest.fixture(scope="session")
def box_world() -> BoxWorld:
    return build_box_world()



@pytest.fixture(scope="session")
def native(tmp_path_factory):
    """A capture log of the tiny built-in world (3 cameras, LiDAR, 2 s): what the drive-log exporters
    write and the importers must give back (read-only: tests copy it before breaking anything)."""
    from scenes.world import WorldConfig, build_world
    from sensors.recording import CaptureConfig, generate_capture_log

    return generate_capture_log(build_world(WorldConfig.tiny()), CaptureConfig.tiny(), tmp_path_factory.mktemp("native") / "log",
                                progress=False)


def random_model(aabb, asset_ids, far_field: str = "black", density_bias: float = -4.0, ground_cells: int | None = None,
                 log2_table_size: int = 12, actor_steps: int = 16, density_weight_scale: float = 1.0) -> NeuralScene:
    """A `NeuralScene` with small fields of random weights (seeded): cheap to render, and any
    difference between two renders of it shows. ``density_bias`` / ``density_weight_scale`` set how
    dense the background is; ``ground_cells``: keep its occupancy to its lowest z cells only (a
    ground slab), so rays through the rest of the box are skipped."""
    small = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=log2_table_size, base_resolution=4, max_resolution=32),
                        hidden_dim=16, color_hidden_dim=16, sh_degree=0)
    torch.manual_seed(0)
    model = NeuralScene(SceneModelConfig(background=small, actor=small, far_field=far_field, step_min=0.2, actor_steps=actor_steps),
                        aabb, asset_ids)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-1, 1)
        model.background.density_mlp[-1].weight.mul_(density_weight_scale)
        model.background.density_mlp[-1].bias[0] = density_bias
        if ground_cells is not None:
            grid = model.background_grid
            grid.occupied.zero_()
            grid.occupied[:, :, :ground_cells] = True
            grid.density.copy_(grid.occupied.float() * 100.0)
    return model


def save_random_scene(log, path, **model_settings):
    """`random_model` for a capture log, saved as `nerfsim train` saves a scene (source: the log)."""
    from sim.checkpoint import save_checkpoint

    model = random_model(log.scene.aabb, log.scene.asset_ids, **model_settings)
    save_checkpoint(path, model, log.scene, extra={"source": {"kind": "capture-log", "path": str(log.root)}, "world": log.world})
    return path


def random_street_scene(root, duration: float = 0.5, **model_settings):
    """A scene of the tiny world (capture log in ``root/log``, checkpoint in ``root/scene``) with a
    `random_model` (``model_settings``: its settings)."""
    from dataclasses import replace

    from scenes.capture import read_capture_log
    from scenes.world import WorldConfig, build_world
    from sensors.recording import CaptureConfig, generate_capture_log

    log = read_capture_log(generate_capture_log(build_world(WorldConfig.tiny()), replace(CaptureConfig.tiny(), duration=duration),
                                                root / "log", progress=False))
    return save_random_scene(log, root / "scene", **model_settings)
