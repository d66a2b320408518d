"""LiDAR sweeps and meshes of the neural renderer against the box world's mesh twin; files read back
by open3d and trimesh."""

import numpy as np
import open3d as o3d
import pytest
import trimesh

from sensors.lidar import LidarConfig
from sensors.lidar import capture_lidar
from sensors.mesh import MeshConfig, actor_mesh, background_mesh, export_mesh
from sensors.renderers import NeuralRenderer, TwinRenderer
from sensors.rig import LidarSensor
from tasks.eval.metrics import chamfer

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


def _reference_depth_from_outside(sigma: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Walk back from every point along every allowed direction to the volume's edge, summing the
    trapezoids: the definition of `optical_depth_from_outside`, one point at a time."""
    best = np.full(sigma.shape, np.inf)
    steps = [np.array(s) for s in np.ndindex(3, 3, 3)]
    for p in np.ndindex(*sigma.shape):
        for s in steps:
            v = s - 1
            if not v.any() or v[2] > 0:
                continue
            length, tau, q = np.linalg.norm(v * spacing), 0.0, np.array(p)
            while all(0 <= c < n for c, n in zip(q - v, sigma.shape)):
                tau += 0.5 * (sigma[tuple(q - v)] + sigma[tuple(q)]) * length
                q = q - v
            best[p] = min(best[p], tau)
    return best


def test_optical_depth_from_outside_matches_its_definition():
    from sensors.mesh import optical_depth_from_outside

    rng = np.random.default_rng(3)
    sigma = rng.exponential(2.0, (5, 4, 6))
    spacing = np.array([0.1, 0.15, 0.05])
    assert np.allclose(optical_depth_from_outside(sigma, spacing), _reference_depth_from_outside(sigma, spacing))


def test_seen_surface_leaves_out_what_no_outside_viewer_sees():
    """A hollow car-like shell, open at the bottom (nobody sees a car's underside), with a dense blob
    inside: the raw iso-surface meshes the blob, the surface seen from outside (above or level) is
    the shell's outside alone."""
    import torch

    from sensors.mesh import field_mesh
    from conftest import BoxesField

    wall = 0.1  # unit-cube coordinates
    shell = [((0, 0, 0), (wall, 1, 1)), ((1 - wall, 0, 0), (1, 1, 1)), ((0, 0, 0), (1, wall, 1)),
             ((0, 1 - wall, 0), (1, 1, 1)), ((0, 0, 1 - wall), (1, 1, 1))]
    blob = [((0.4, 0.4, 0.3), (0.6, 0.6, 0.5))]
    fld = BoxesField(shell + blob, 200.0, [(0.5, 0.5, 0.5)] * 6)
    size = np.array([2.0, 2.0, 2.0])
    args = (fld, None, -size / 2, size / 2, (41, 41, 41), 100.0)
    step = 2.0 / 40
    q = lambda m: np.abs(m.vertices) - size / 2  # noqa: E731
    outside_dist = lambda m: np.linalg.norm(np.maximum(q(m), 0), axis=1) + np.minimum(q(m).max(1), 0)  # noqa: E731
    with torch.no_grad():
        raw, seen = field_mesh(*args), field_mesh(*args, seen_from_outside=True)
    assert (np.abs(raw.vertices).max(1) < 0.3).sum() > 50  # the blob (|x| <= 0.2) is in the raw mesh
    assert np.abs(outside_dist(seen)).max() < 1.5 * step  # every seen vertex is on the box's outside


def _ray_crosses_box(origin, targets, lo, hi) -> np.ndarray:
    """Whether the segments ``origin -> targets [N, 3]`` cross the box ``[lo, hi]`` (slab test)."""
    d = targets - origin
    with np.errstate(divide="ignore", invalid="ignore"):
        t0, t1 = (np.asarray(lo) - origin) / d, (np.asarray(hi) - origin) / d
    near, far = np.nanmax(np.minimum(t0, t1), axis=1), np.nanmin(np.maximum(t0, t1), axis=1)
    return (near < far) & (far > 0) & (near < 1)


def test_observed_surface_is_what_a_view_saw(box_world):
    """The car (a 4 x 1.8 x 1.5 m box) seen from behind by one camera at its mid-height, then 4 m
    higher: observed = facing the camera (a convex box hides exactly its back faces) at most 75
    degrees obliquely, and not behind the post; the roof is seen only from the raised camera."""
    from scenes.camera import Camera, Intrinsics
    from scenes.transforms import make_pose
    from tasks.eval.sensors import OBSERVED_MAX_INCIDENCE_DEG, observed_by

    car = box_world.graph.actor("car_0")
    mesh = trimesh.Trimesh(*[getattr(p.mesh, k) for p in box_world.actor_assets["car"] for k in ("vertices", "faces")])
    points, face = mesh.sample(20000, return_index=True, seed=1)
    normals = mesh.face_normals[face]
    T = car.track.pose_at(0.0)
    world, world_normals = points @ T[:3, :3].T + T[:3, 3], normals @ T[:3, :3].T
    R_cam = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])  # looking along +x (OpenCV axes)
    lens = Intrinsics(400, 400, 60.0, 60.0, 200.0, 200.0)  # 146-degree field of view: the whole car is in it
    top = normals[:, 2] > 0.99
    for height, roof_seen in ((0.75, False), (4.75, True)):
        cam = Camera(lens, make_pose(R_cam, (0.0, -1.0, height)), time=0.0)
        to_cam = cam.T_world_cam[:3, 3] - world
        cos = np.sum(to_cam * world_normals, axis=1) / np.linalg.norm(to_cam, axis=1)
        expected = (cos >= np.cos(np.radians(OBSERVED_MAX_INCIDENCE_DEG)))
        behind_post = _ray_crosses_box(cam.T_world_cam[:3, 3], world, (4.0, -1.6, 0.0), (4.3, -1.3, 3.0))
        assert (expected & behind_post).sum() > 100 and (expected & ~behind_post).sum() > 1000
        expected &= ~behind_post
        seen = observed_by(points, normals, mesh, car, [cam], box_world.twin, box_world.graph)
        # Left out: points within observed_by's 2-cm tolerance of an edge (the far face's rim counts as
        # seen) and where the car's rear corner pokes into the post.
        near_edge = (np.abs(np.abs(points) - np.array([2.0, 0.9, 0.75])) < 0.025).sum(1) >= 2
        inside_post = np.all((world > np.array([3.97, -1.63, -0.03])) & (world < np.array([4.33, -1.27, 3.03])), axis=1)
        judged = ~near_edge & ~inside_post
        assert judged.mean() > 0.9 and np.array_equal(seen[judged], expected[judged])
        assert seen[top].mean() > 0.5 if roof_seen else not seen[top].any()
