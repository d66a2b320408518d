"""Closed-loop navigation: dynamics against their closed-form motions, collisions against the mesh
twin of the box world (tests/conftest.py: analytic box fields + the same boxes as meshes), the
gymnasium contract (check_env, make, vector envs), and the baselines reaching goals without
collisions where the straight line would hit a car."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tasks.nav  # noqa: F401  (registers nerfsim/Nav-v0)
from scenes.errors import InputError
from scenes.transforms import make_pose, rot_z
from tasks.nav.dynamics import AgentState, make_dynamics, still
from tasks.nav.env import NavConfig, NavEnv
from tasks.nav.evaluate import NavEvalConfig, evaluate, summarise
from tasks.nav.planner import DepthReactiveController, NerfNavPlanner
from tasks.nav.scene import NavScene, sphere_box_gap

STRAIGHT_INTO_CAR = {"start": (0.0, 0.0, 0.0), "goal": (10.0, 0.0)}  # the car (frozen at t=1) blocks y=0 around x=7


@pytest.fixture(scope="module")
def nav_scene(box_world) -> NavScene:
    return NavScene(box_world.model, box_world.graph, box_world.twin, None, name="box world")


def small_env(nav_scene, **kw) -> NavEnv:
    opts = dict(width=16, height=9, observations=("rgb", "depth"), min_distance=5.0, max_distance=12.0, max_steps=150)
    return NavEnv(nav_scene, **(opts | kw))


# ---- dynamics ------------------------------------------------------------------------------------
def test_unicycle_turns_on_the_circle_of_radius_speed_over_yaw_rate():
    dyn = make_dynamics("unicycle", tau=1e-6)
    s = AgentState(np.zeros(3), 0.0, np.array([dyn.max_speed, 0.0, 0.0]))
    for _ in range(30):
        s = dyn.step(s, np.array([1.0, 0.5]), 0.1)[-1]
    R = dyn.max_speed / (0.5 * dyn.max_yaw_rate)
    assert np.linalg.norm(s.position[:2] - [0.0, R]) == pytest.approx(R, rel=1e-3)
    assert s.yaw == pytest.approx(np.arctan2(np.sin(3.0 * 0.5 * dyn.max_yaw_rate), np.cos(3.0 * 0.5 * dyn.max_yaw_rate)), abs=1e-9)


def test_bicycle_turning_radius_is_wheelbase_over_tan_steer():
    dyn = make_dynamics("bicycle")
    s = AgentState(np.zeros(3), 0.0, np.array([5.0, 0.0, 0.0]))
    for _ in range(40):
        s = dyn.step(s, np.array([0.0, 0.6]), 0.1)[-1]
    R = dyn.wheelbase / np.tan(0.6 * dyn.max_steer)
    assert s.speed == pytest.approx(5.0)
    assert np.linalg.norm(s.position[:2] - [0.0, R]) == pytest.approx(R, rel=1e-3)


def test_quadrotor_reaches_terminal_speed_and_climbs():
    dyn = make_dynamics("quadrotor")
    s = still((0, 0, 2.0), 0.0)
    for _ in range(100):
        s = dyn.step(s, np.array([1.0, 0.0, 0.2, 0.0]), 0.1)[-1]
    assert s.velocity[0] == pytest.approx(dyn.max_accel / dyn.drag, rel=1e-2)
    assert s.velocity[2] == pytest.approx(0.2 * dyn.max_accel / dyn.drag, rel=1e-2)


def test_bad_action_is_reported():
    with pytest.raises(InputError, match="unicycle action"):
        make_dynamics("unicycle").step(still((0, 0, 0), 0.0), np.array([0.1, 0.2, 0.3]), 0.1)
    with pytest.raises(InputError, match="unknown dynamics"):
        make_dynamics("hovercraft")


def test_sphere_box_gap_matches_geometry():
    T = make_pose(rot_z(np.pi / 2), (1.0, 2.0, 0.5))  # a 4 x 2 x 1 box turned to lie along y
    centres = np.array([[1.0, 5.0, 0.5], [3.0, 2.0, 0.5], [1.0, 2.0, 0.5]])
    gaps = sphere_box_gap(centres, np.array([0.5, 0.5, 0.1]), T, (4.0, 2.0, 1.0))
    np.testing.assert_allclose(gaps, [3.0 - 2.0 - 0.5, 2.0 - 1.0 - 0.5, -0.5 - 0.1])


# ---- collisions against the twin ----------------------------------------------------------------
@pytest.mark.parametrize("goal, kind", [((4.15, -1.45), "background"), ((7.0, -1.0), "actor:car_0"), ((7.0, 2.5), "actor:ped_0")])
def test_driving_into_an_obstacle_collides_where_the_twin_says(nav_scene, goal, kind):
    """Pole (background density), car and pedestrian (boxes): the environment stops the agent at the
    obstacle, and the twin agrees the body touches it then (not a step earlier)."""
    env = small_env(nav_scene, observations=(), moving_actors=False, start_time=1.0)
    yaw = float(np.arctan2(goal[1], goal[0]))
    env.reset(options={"start": (0.0, 0.0, yaw), "goal": (2 * goal[0], 2 * goal[1])})  # the goal lies beyond the obstacle
    truth_before = []
    for _ in range(100):
        _, reward, terminated, _, info = env.step(np.array([1.0, 0.0]))
        if terminated:
            break
        truth_before.append(info["collision_truth"])
    assert info["collision"] == kind
    assert reward < -9
    assert info["collision_truth"] is True
    assert not any(truth_before[:-1])  # the probe points find a thin pole within one step (15 cm) of the truth
    assert info["clearance"] <= 0.1


def test_time_to_collision_is_gap_over_speed(nav_scene):
    env = small_env(nav_scene, observations=(), moving_actors=False, start_time=1.0)
    env.reset(options={"start": (0.0, 2.5, 0.0), "goal": (10.0, 2.5)})  # straight at the pedestrian (x = 6.7 .. 7.3)
    for _ in range(8):
        _, _, _, _, info = env.step(np.array([1.0, 0.0]))
    s = env.state
    expected = (6.7 - 0.3 - s.position[0]) / s.speed
    assert info["ttc"] == pytest.approx(expected, abs=0.11)



def test_first_contact_with_a_moving_box_follows_the_closing_speed():
    """Body (two 0.5 m spheres) at 2 m/s towards a 4 x 2 m box turned 90 deg (1 m half-extent along
    the path), 10.25 m ahead and coming at 3 m/s: the 8.75 m gap closes at 5 m/s, so contact is first
    seen at the 0.1 s step after 1.75 s; unturned (2 m half-extent) after 1.55 s; a box moving away
    faster than the body is never reached; one off the path is never touched."""
    from tasks.nav.env import first_contact

    centres, radii = np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 1.2]]), np.array([0.5, 0.5])
    box = {"center": np.array([10.25, 0.0, 1.0]), "size": np.array([4.0, 2.0, 2.0]), "yaw": np.pi / 2,
           "velocity": np.array([-3.0, 0.0, 0.0])}
    taus, v = np.arange(0.0, 5.0, 0.1), np.array([2.0, 0.0, 0.0])
    assert first_contact(centres, radii, v, [box], taus) == pytest.approx(1.8)
    assert first_contact(centres, radii, v, [box | {"yaw": 0.0}], taus) == pytest.approx(1.6)
    assert first_contact(centres, radii, v, [box | {"velocity": np.array([3.0, 0.0, 0.0])}], taus) is None
    aside = box | {"center": np.array([10.25, 3.0, 1.0])}
    assert first_contact(centres, radii, v, [aside], taus) is None
    assert first_contact(centres, radii, v, [aside, box], taus) == pytest.approx(1.8)


# ---- the gymnasium contract ---------------------------------------------------------------------
def test_check_env_passes(nav_scene):
    check_env(small_env(nav_scene, observations=("rgb", "depth", "lidar"), lidar_beams=4, lidar_azimuths=16), skip_render_check=True)


def test_make_and_vector_env(nav_scene):
    env = gymnasium.make("nerfsim/Nav-v0", scene=nav_scene, width=16, height=9, min_distance=5.0, max_steps=3, render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    assert obs["depth"].shape == (9, 16) and obs["rgb"].dtype == np.uint8
    assert {a["actor_id"] for a in info["nearby_actors"]} == {"car_0", "ped_0"}
    frame = env.render()
    assert frame.ndim == 3 and frame.shape[2] == 3
    venv = gymnasium.make_vec("nerfsim/Nav-v0", num_envs=2, vectorization_mode="sync", scene=nav_scene, width=16, height=9,
                              observations=("depth",), min_distance=5.0)
    obs, _ = venv.reset(seed=[1, 2])
    assert obs["depth"].shape == (2, 9, 16) and obs["state"].shape == (2, 11)
    assert not np.allclose(obs["state"][0], obs["state"][1])  # different seeds, different start-goal pairs
    obs, reward, terminated, truncated, info = venv.step(np.zeros((2, 2), np.float32))
    assert reward.shape == (2,) and np.all(np.isfinite(reward))
    venv.close()


def test_depth_observation_matches_the_twin(nav_scene):
    env = small_env(nav_scene, width=32, height=18, observations=("depth",), moving_actors=False)
    obs, _ = env.reset(options={"start": (0.0, 0.0, 0.0), "goal": (10.0, 0.0)})
    from scenes.camera import Camera

    cam = Camera(env.lens_intrinsics, env.state.T_world_ego @ env.dynamics.T_ego_cam)
    truth = nav_scene.twin.render(cam, env.scene_state())["depth"]
    truth = np.minimum(np.nan_to_num(truth, posinf=env.cfg.max_depth), env.cfg.max_depth)
    assert np.median(np.abs(obs["depth"] - truth)) < 0.02


# ---- baselines and the evaluation ---------------------------------------------------------------
def _drive(env, controller, options):
    obs, info = env.reset(options=options)
    controller.reset(env)
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(controller.act(obs, info))
        done = terminated or truncated
    return info, env.trajectory


def test_planner_goes_around_the_car(nav_scene):
    env = small_env(nav_scene, observations=(), moving_actors=False, start_time=1.0)
    info, traj = _drive(env, NerfNavPlanner(), STRAIGHT_INTO_CAR)
    assert info["reached"] and info["collision"] is None
    path = np.linalg.norm(np.diff(np.array(traj)[:, :2], axis=0), axis=1).sum()
    assert 10.0 - env.cfg.goal_radius <= path < 13.0


@pytest.mark.slow
def test_reactive_controller_goes_around_the_car(nav_scene):
    env = small_env(nav_scene, width=32, height=18, observations=("depth",), moving_actors=False, start_time=1.0)
    info, _ = _drive(env, DepthReactiveController(), STRAIGHT_INTO_CAR)
    assert info["reached"] and info["collision"] is None


def test_planner_avoids_the_moving_car(nav_scene):
    """The car drives +x at 1 m/s from x=6 at t=0 and holds still from t=2; the agent starts beside its path."""
    env = small_env(nav_scene, observations=(), moving_actors=True)
    info, _ = _drive(env, NerfNavPlanner(), {"start": (6.0, -4.0, np.pi / 2), "goal": (8.0, 2.0)})
    assert info["reached"] and info["collision"] is None


def test_evaluation_writes_consistent_results_and_resumes(nav_scene, tmp_path):
    cfg = NavEvalConfig(scene="box world", out=tmp_path, pairs=3, videos=1,
                        env=NavConfig(observations=(), width=16, height=9, min_distance=5.0, max_distance=12.0, max_steps=150))
    summary = evaluate(cfg, scene=nav_scene)
    lines = (tmp_path / "episodes.jsonl").read_text().splitlines()
    episodes = [json.loads(x) for x in lines]
    assert [e["seed"] for e in episodes] == [0, 1, 2]
    assert summary["collision_rate"] == pytest.approx(np.mean([e["collision"] for e in episodes]))
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    for e in episodes:
        assert e["shortest_path"] >= 0.95 * np.linalg.norm(np.subtract(e["goal"], e["start"])[:2]) - 1.0  # minus the goal radius
        if e["reached"]:
            assert e["path_length_ratio"] >= 0.9 and e["route_completion"] == 1.0
    assert (tmp_path / "overview.png").exists() and (tmp_path / "episode_000.mp4").exists()
    # A kill mid-write leaves a torn last line: that episode runs again, the others are kept.
    (tmp_path / "episodes.jsonl").write_text("\n".join(lines[:2]) + "\n" + lines[2][:20])
    again = evaluate(cfg, scene=nav_scene)
    assert {k: v for k, v in again.items() if k != "step_hz_mean"} == {k: v for k, v in summary.items() if k != "step_hz_mean"}
    assert summarise([])["episodes"] == 0


def test_scenario_actors_replace_the_scene_and_the_agent_takes_the_ego_start(tmp_path):
    """A corner-case scenario in the loop: its actors (simulated as in `nerfsim generate`) populate
    the environment and the car starts where, and as fast as, the scripted ego started."""
    import torch

    from scenes.roadmap import RoadMap
    from scenes.world import WorldConfig, build_world
    from sim.compose import NeuralScene, SceneModelConfig
    from sim.encoding import HashGridConfig
    from sim.field import FieldConfig
    from tasks.scenarios.variants import draw_variant
    from tasks.scenarios.schema import load_scenario_text
    from tasks.scenarios.traffic import actor_library

    world = build_world(WorldConfig())
    small = FieldConfig(grid=HashGridConfig(n_levels=2, log2_table_size=8, base_resolution=4, max_resolution=16), hidden_dim=8,
                        color_hidden_dim=8, sh_degree=0)
    model = NeuralScene(SceneModelConfig(background=small, actor=small, far_field="black"), world.graph.aabb, world.graph.asset_ids)
    with torch.no_grad():
        model.background.density_mlp[-1].bias[0] = -20.0  # empty background: only the actors are obstacles
    road = RoadMap.from_world_config(world.config)
    scene = NavScene(model, world.graph, None, road, name="world")
    env = NavEnv(scene, scenario="cut_in", dynamics="bicycle", observations=(), map_cell=0.25)
    env.reset()
    expected, *_ = draw_variant(load_scenario_text("cut_in"), world.graph, road, 0, None, 20, actor_library(world.graph))
    assert {a.actor_id for a in env.scene.graph.actors} == {a.actor_id for a in expected.graph.actors}
    T0 = expected.ego.pose_at(0.0)
    centre = env.state.position + (env.state.T_world_ego[:3, :3] @ [1.3, 0.0, 0.0])  # rear axle -> body centre
    np.testing.assert_allclose(centre[:2], T0[:2, 3], atol=1e-6)
    assert env.state.speed == pytest.approx(np.linalg.norm(expected.ego.pose_at(0.1)[:2, 3] - T0[:2, 3]) / 0.1, rel=1e-6)
    np.testing.assert_allclose(env.goal[:2], (expected.ego.pose_at(expected.ego.times[-1]) @ [-1.3, 0, 0, 1])[:2], atol=1e-6)
    # nav-eval runs one variant per episode.
    cfg = NavEvalConfig(scene="world", out=tmp_path, pairs=2, videos=0,
                        env=NavConfig(scenario="cut_in", dynamics="bicycle", observations=(), map_cell=0.25, max_steps=20))
    evaluate(cfg, scene=scene)
    episodes = [json.loads(x) for x in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    for e in episodes:
        variant, *_ = draw_variant(load_scenario_text("cut_in"), world.graph, road, e["seed"], None, 20, actor_library(world.graph))
        np.testing.assert_allclose(e["start"][:2], (variant.ego.pose_at(0.0) @ [-1.3, 0, 0, 1])[:2], atol=1e-3)


@pytest.mark.parametrize("dynamics, options", [
    ("quadrotor", {"start": (0.0, 0.0, 1.5, 0.0), "goal": (10.0, -1.0, 2.5)}),  # over the car, past the pole and the pedestrian
    ("bicycle", {"start": (-2.5, -5.0, 0.0), "goal": (6.0, -5.5)}),
])
def test_planner_drives_a_car_and_flies_a_drone(nav_scene, dynamics, options):
    env = small_env(nav_scene, dynamics=dynamics, observations=(), moving_actors=False, start_time=1.0, max_steps=200)
    info, traj = _drive(env, NerfNavPlanner(), options)
    assert info["reached"] and info["collision"] is None and not info["collision_truth"]
    if dynamics == "quadrotor":
        assert np.array(traj)[-1, 2] == pytest.approx(2.5, abs=env.cfg.goal_radius)
