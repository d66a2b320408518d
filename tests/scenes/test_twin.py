"""The ground-truth twin: metric depth/normals, masks, edits (move/remove/insert), LiDAR."""

from dataclasses import replace

import numpy as np
import pytest

from scenes.camera import Camera, Intrinsics, pixel_rays
from scenes.classes import CLASS_IDS
from scenes.graph import SceneState
from scenes.transforms import look_at, make_pose
from scenes.twin import Twin
from scenes.world import WorldConfig, build_world

K = Intrinsics.from_fov(160, 90, 70)


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig.tiny())


@pytest.fixture(scope="module")
def twin(world):
    return Twin(world)


def _car(world, moving=False):
    return next(a for a in world.graph.at(0.0).actors if a.class_name == "car" and
                (len(world.graph.actor(a.actor_id).track.times) > 1) == moving)


def _cam_looking_at(actor, offset=(-4.0, -6.0, 2.0), name="probe", in_actor_frame=False):
    T = actor.T_world_actor
    eye = T[:3, :3] @ np.array(offset) + T[:3, 3] if in_actor_frame else T[:3, 3] + np.array(offset)
    return Camera(K, look_at(eye, T[:3, 3]), 0.0, name)


def test_render_outputs_shapes_and_types(world, twin):
    out = twin.render(Camera(K, world.T_world_ego(0.0) @ make_pose(np.eye(3), (0, 0, 1.6)) @ make_pose(
        np.array([[0, 0, 1.0], [-1, 0, 0], [0, -1, 0]]), (0, 0, 0))), world.graph.at(0.0))
    assert out["rgb"].shape == (90, 160, 3) and out["rgb"].dtype == np.float32
    assert 0 <= out["rgb"].min() and out["rgb"].max() <= 1
    for k in ("depth", "ray_dist"):
        assert out[k].shape == (90, 160) and out[k].dtype == np.float32
    assert out["instance"].dtype == np.int32 and out["semantic"].dtype == np.uint8
    sky = out["semantic"] == 0
    assert sky.any() and (~sky).any()
    assert np.all(np.isinf(out["depth"][sky])) and np.all(out["normals"][sky] == 0)
    assert np.all(np.isfinite(out["depth"][~sky]))


def test_road_depth_and_normals_are_analytic(twin):
    h = 2.0
    T_world_cam = look_at((6.0, -1.0, h), (9.0, -1.2, 0.0))
    out = twin.render(Camera(K, T_world_cam), SceneState(0.0))  # no actors
    _, dirs, z_per_dist = pixel_rays(K, T_world_cam)
    road = out["semantic"] == CLASS_IDS["road"]
    assert road.sum() > 0.3 * road.size
    expected_dist = h / -dirs[..., 2]
    assert np.abs(out["ray_dist"][road] - expected_dist[road]).max() < 1e-3
    assert np.abs(out["depth"][road] - (expected_dist * z_per_dist)[road]).max() < 1e-3
    up_cam = T_world_cam[:3, :3].T @ np.array([0.0, 0, 1])
    assert np.abs(out["normals"][road] - up_cam).max() < 1e-4
    # lane markings are labelled, 5 mm above the road
    mark = out["semantic"] == CLASS_IDS["lane_marking"]
    assert mark.any()
    assert np.abs(out["ray_dist"][mark] - (h - 0.005) / -dirs[mark][:, 2]).max() < 1e-3


def test_normals_face_the_camera(world, twin):
    car = _car(world)
    cam = _cam_looking_at(car)
    out = twin.render(cam, world.graph.at(0.0))
    _, dirs, _ = pixel_rays(K, cam.T_world_cam)
    d_cam = dirs @ cam.T_world_cam[:3, :3]
    hit = np.isfinite(out["depth"])
    assert np.all(np.einsum("ij,ij->i", out["normals"][hit], d_cam[hit]) < 0)
    assert np.allclose(np.linalg.norm(out["normals"][hit], axis=-1), 1, atol=1e-5)


def _without(state, actor_id):
    return replace(state, actors=tuple(a for a in state.actors if a.actor_id != actor_id))


def test_instance_mask_equals_pixels_whose_depth_comes_from_the_car(world, twin):
    state = world.graph.at(0.0)
    car = _car(world)
    cam = _cam_looking_at(car)
    full = twin.render(cam, state)
    removed = twin.render(cam, _without(state, car.actor_id))
    mask = full["instance"] == car.instance_id
    assert mask.sum() > 200
    closer = full["ray_dist"] < removed["ray_dist"] - 1e-4
    assert np.array_equal(mask, closer)
    assert np.all(full["semantic"][mask] == CLASS_IDS["car"])
    assert not np.any(removed["instance"] == car.instance_id)


def test_moving_an_actor_changes_only_its_footprints(world, twin):
    state = world.graph.at(0.0)
    car = _car(world)
    cam = _cam_looking_at(car)
    moved = replace(car, T_world_actor=make_pose(np.eye(3), (1.5, 0, 0)) @ car.T_world_actor)
    state_new = replace(state, actors=tuple(moved if a.actor_id == car.actor_id else a for a in state.actors))
    old, new = twin.render(cam, state), twin.render(cam, state_new)
    removed = twin.render(cam, _without(state, car.actor_id))
    fp_old, fp_new = old["instance"] == car.instance_id, new["instance"] == car.instance_id
    changed = np.any(old["rgb"] != new["rgb"], axis=-1) | (old["depth"] != new["depth"])
    assert changed.any()
    assert not np.any(changed & ~(fp_old | fp_new))
    revealed = fp_old & ~fp_new
    assert revealed.sum() > 20
    for k in ("rgb", "depth", "instance", "semantic"):
        assert np.array_equal(new[k][revealed], removed[k][revealed])


def test_inserted_copy_looks_like_the_original(world, twin):
    car = _car(world)
    shift = make_pose(np.eye(3), (-7.0, -2.5, 0.3))  # a pure translation keeps the sun-relative shading identical
    copy = replace(car, actor_id="copy", instance_id=99, T_world_actor=shift @ car.T_world_actor)
    cam = _cam_looking_at(car, (5.0, 3.0, 1.0), in_actor_frame=True)  # front-left: lamps, grille, windows
    cam_copy = Camera(K, shift @ cam.T_world_cam, 0.0, "probe2")
    a = twin.render(cam, SceneState(0.0, (car,)))
    b = twin.render(cam_copy, SceneState(0.0, (car, copy)))
    ma, mb = a["instance"] == car.instance_id, b["instance"] == 99
    assert ma.sum() > 200 and (ma != mb).sum() <= 0.01 * ma.sum()
    both = ma & mb
    assert np.abs(a["rgb"][both] - b["rgb"][both]).max() < 1e-3
    assert np.abs(a["depth"][both] - b["depth"][both]).max() < 1e-3


def test_unknown_asset_is_reported(world, twin):
    from scenes.errors import InputError

    bad = replace(_car(world), asset_id="nope")
    with pytest.raises(InputError, match="nope"):
        twin.cast_rays(np.zeros((1, 3)), np.array([[1.0, 0, 0]]), SceneState(0.0, (bad,)))


def _spin_directions(n_beams: int, min_el: float, max_el: float, n_azimuth: int) -> np.ndarray:
    """Unit directions of a spinning scan, beam-major (the twin takes plain directions: the scan
    pattern is a sensor spec, `sensors.lidar.LidarConfig`, tested in tests/sensors)."""
    el, az = np.meshgrid(np.radians(np.linspace(min_el, max_el, n_beams)), np.arange(n_azimuth) * 2 * np.pi / n_azimuth,
                         indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1).reshape(-1, 3)


def test_lidar_matches_cast_rays_and_sky_is_inf(world, twin):
    state = world.graph.at(1.0)
    T = world.T_world_ego(1.0) @ make_pose(np.eye(3), (0, 0, 1.9))
    max_range = 25.0
    sweep = twin.lidar(T, _spin_directions(8, -20, 40, 64), state, max_range)
    n = 8 * 64
    assert sweep["dirs_lidar"].shape == (n, 3) and sweep["range"].shape == (n,)
    assert np.allclose(np.linalg.norm(sweep["dirs_lidar"], axis=1), 1)
    dirs_w = sweep["dirs_lidar"] @ T[:3, :3].T
    ref = twin.cast_rays(np.broadcast_to(T[:3, 3], dirs_w.shape), dirs_w, state)
    within = ref["dist"] <= max_range
    assert np.allclose(sweep["range"][within], ref["dist"][within])
    assert np.all(np.isinf(sweep["range"][~within]))
    sky = ref["semantic"] == 0
    assert sky.any() and np.all(np.isinf(sweep["range"][sky]))
    assert (np.isinf(ref["dist"]) != sky).sum() == 0
    assert np.isfinite(sweep["range"]).mean() > 0.3
    assert np.array_equal(sweep["instance"][within], ref["instance"][within])


def test_a_reused_twin_follows_the_state_it_is_given(world, twin):
    """The twin keeps the last actor scene it built: a render at another time must see the moving
    car where it is then, exactly as a fresh twin does (no timing here: timings belong in bench/)."""
    car = _car(world, moving=True)
    at = lambda t: next(a for a in world.graph.at(t).actors if a.actor_id == car.actor_id)
    cam = _cam_looking_at(at(0.5), offset=(-3.0, -7.0, 2.5))
    before = twin.render(cam, world.graph.at(0.5))
    after = twin.render(cam, world.graph.at(0.9))
    fresh = Twin(world).render(cam, world.graph.at(0.9))
    for k in ("rgb", "depth", "instance", "semantic"):
        assert np.array_equal(after[k], fresh[k]), k
    mask_before, mask_after = before["instance"] == car.instance_id, after["instance"] == car.instance_id
    assert mask_before.sum() > 200 and mask_after.sum() > 200
    assert (mask_before != mask_after).sum() > 0.05 * mask_before.sum()  # it moved in between
    assert np.array_equal(twin.render(cam, world.graph.at(0.5))["instance"], before["instance"])


def test_distance_to_surface_is_height_above_road_and_sees_actors(world, twin):
    """Points 1 m above the open road are 1 m from a surface; a point just above a car's roof is
    close to it only while the car is there."""
    p_road = np.array([[8.0, -1.0, 1.0], [12.0, -1.5, 0.5]])
    d = twin.distance_to_surface(p_road, SceneState(0.0))
    assert np.allclose(d, [1.0, 0.5], atol=2e-3)
    car = _car(world)
    top = car.T_world_actor[:3, :3] @ np.array([0, 0, car.size[2] / 2]) + car.T_world_actor[:3, 3]
    probe = (top + np.array([0, 0, 0.05]))[None]
    with_car = twin.distance_to_surface(probe, world.graph.at(0.0))
    without = twin.distance_to_surface(probe, SceneState(0.0))
    assert with_car[0] < 0.1 and without[0] > 1.0
