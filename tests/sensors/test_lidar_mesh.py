"""LiDAR sweeps and meshes of the neural renderer against the box world's mesh twin; files read back
by open3d and trimesh."""

import numpy as np
import open3d as o3d
import pytest
import trimesh

from scenes.twin import LidarConfig
from sensors.lidar import capture_lidar
from sensors.mesh import MeshConfig, actor_mesh, background_mesh, export_mesh
from sensors.renderers import NeuralRenderer, TwinRenderer
from sensors.rig import LidarSensor
from tasks.sensor_report import chamfer

SENSOR = LidarSensor("top", LidarConfig(n_beams=16, min_elevation_deg=-25.0, max_elevation_deg=15.0, n_azimuth=180, max_range=30.0),
                     T_ego_lidar=np.array([[1, 0, 0, 0.0], [0, 1, 0, 0.0], [0, 0, 1, 1.8], [0, 0, 0, 1.0]]))
T_EGO = np.eye(4)


@pytest.fixture(scope="module")
def sweeps(box_world):
    state = box_world.graph.at(0.5)
    return (capture_lidar(NeuralRenderer(box_world.model), SENSOR, T_EGO, state),
            capture_lidar(TwinRenderer(box_world.twin), SENSOR, T_EGO, state))


def test_lidar_ranges_drop_and_ids_match_the_twin(sweeps):
    n, g = sweeps
    assert g.hit.sum() > 500 and (~g.hit).sum() > 200  # upward beams escape over the wall's sides
    assert (n.hit == g.hit).mean() > 0.99
    both = n.hit & g.hit
    err = np.abs(n.range[both] - g.range[both])
    assert np.median(err) < 0.02 and np.percentile(err, 95) < 0.1
    assert not n.hit[~g.hit & (g.semantic == 0)].any()  # nothing from the empty sky
    assert (n.instance[both] == g.instance[both]).mean() > 0.99
    assert (n.instance == 1).sum() > 10  # the car is seen
    assert np.all(n.range[n.hit] <= SENSOR.pattern.max_range)


def test_expected_and_median_ranges_agree_on_solid_surfaces(box_world):
    state = box_world.graph.at(0.5)
    a = capture_lidar(NeuralRenderer(box_world.model), SENSOR, T_EGO, state, range_mode="expected")
    b = capture_lidar(NeuralRenderer(box_world.model), SENSOR, T_EGO, state, range_mode="median")
    both = a.hit & b.hit
    assert np.median(np.abs(a.range[both] - b.range[both])) < 0.02


def test_lidar_files_read_back(sweeps, tmp_path):
    n, _ = sweeps
    paths = n.save(tmp_path / "sweep")
    arr = np.load(paths[0])
    assert arr.shape == (len(n.range), 6) and np.array_equal(np.isfinite(arr[:, 3]), n.hit)
    for p in paths[1:]:
        pc = o3d.io.read_point_cloud(str(p))
        assert np.allclose(np.asarray(pc.points), n.points(), atol=1e-4), p.suffix
    ply = trimesh.load(paths[1])
    assert len(ply.vertices) == n.hit.sum()
    assert np.array_equal(np.asarray(ply.metadata["_ply_raw"]["vertex"]["data"]["instance"]), n.instance[n.hit])
    assert not list(tmp_path.glob(".*tmp*"))  # atomic writes leave nothing behind


def test_actor_mesh_matches_its_box(box_world):
    size = np.array([4.0, 1.8, 1.5])
    # a step-function density: at level sigma / 2 the iso-surface is half a grid step (2.1 cm) out
    mesh = actor_mesh(box_world.model, "car", size, MeshConfig(actor_resolution=96, level=1000.0))
    q = np.abs(mesh.vertices) - size / 2  # signed distance of each vertex to the box surface
    sdf = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    step = size.max() / 95
    assert np.median(np.abs(sdf)) < 0.55 * step and np.abs(sdf).max() < 1.5 * step
    box = trimesh.creation.box(extents=size)
    assert chamfer(np.asarray(mesh.sample(20000)), np.asarray(box.sample(20000))) < 0.04  # + point-sampling noise
    assert mesh.visual.vertex_colors[:, :3].mean(0)[0] > 150  # the car field's red radiance


def test_meshes_export_and_load(box_world, tmp_path):
    mesh = background_mesh(box_world.model, MeshConfig(background_cell=0.1, level=1000.0))
    up = np.abs(mesh.face_normals[:, 2] - 1) < 1e-3
    top = mesh.triangles_center[up]
    # the ground's top face (z = 0) and the pole's top (z = 3), within a grid step
    assert len(top) > 100 and np.abs(np.median(top[:, 2])) < 0.1
    assert (np.abs(top[:, 2] - 3.0) < 0.1).sum() >= 2
    for suffix in (".ply", ".obj", ".glb"):
        path = export_mesh(mesh, tmp_path / f"bg{suffix}")
        loaded = trimesh.load(path, force="mesh")
        assert len(loaded.faces) == len(mesh.faces), suffix
        o3d_mesh = o3d.io.read_triangle_mesh(str(path))
        assert len(o3d_mesh.triangles) == len(mesh.faces), suffix


def test_lidar_pattern_with_datasheet_elevations():
    cfg = LidarConfig(n_beams=3, n_azimuth=4, elevations_deg=(-15.0, -1.0, 10.0))
    d = cfg.directions()
    assert d.shape == (12, 3) and np.allclose(np.linalg.norm(d, axis=1), 1)
    assert np.allclose(np.degrees(np.arcsin(d[::4, 2])), [-15.0, -1.0, 10.0])  # beam-major
    assert np.allclose(d[4:8, :2] / np.cos(np.radians(-1.0)), [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-12)
    from scenes.errors import InputError

    with pytest.raises(InputError, match="elevations_deg"):
        LidarConfig(n_beams=2, elevations_deg=(1.0, 2.0, 3.0))
