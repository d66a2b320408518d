"""Learned track corrections (`sim.tracks`, `TrainConfig.track_refinement`): the parametrisation,
the regularisers on known inputs, and recovery of known track errors on the tiny built-in world.

The recovery run (module fixture): the tiny world recorded at 192x108 with a 32-beam LiDAR; a model
trained on the clean log (refinement off), then trained on a copy of the log whose tracks are wrong
with refinement on: the parked car's box 0.3 m to the side and 4 deg off at all times, the moving
car's boxes jittered by a seeded 0.2 m / 3 deg per time. Trained first on the clean log, the field
already draws each car where it is in its box: a correction the same at every time is otherwise
almost a gauge freedom (the field may draw the car shifted in its box instead; `sim.tracks`,
"Observability"), which a run of a few hundred steps does not settle. The frame-to-frame jitter is
what a from-scratch run observes (bench/noisy_tracks.py measures that).
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from scenes.capture import read_capture_log
from scenes.classes import BACKGROUND_CLASSES
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.transforms import make_pose, rot_z, yaw_of
from scenes.world import WorldConfig, build_world
from sensors.lidar import LidarConfig
from sensors.recording import CaptureConfig, generate_capture_log
from sim.checkpoint import load_checkpoint
from sim.compose import NeuralScene, SceneModelConfig
from sim.data import bank_from_capture_log
from sim.encoding import HashGridConfig
from sim.field import FieldConfig
from sim.tracks import (META_KEY, SMOOTHING_KEY, TrackRefiner, TrackSmoothing, correction_matrix, correction_pose,
                        inverse_correction_matrix, off_line, refined_track, refinement_of, smooth_track, smooth_tracks)
from sim.train import TrainConfig, train

OFFSET_M, OFFSET_DEG = 0.3, 4.0  # the parked car's error, at all times
JITTER_M, JITTER_DEG = 0.2, 3.0  # the moving car's, per time
PARKED, MOVING, PED = "car_000", "car_001", "ped_002"


# ---- the parametrisation and the regularisers --------------------------------------------------
def test_zero_correction_is_the_identity():
    c = torch.zeros(5, 3)
    eye = torch.eye(4).expand(5, 4, 4)
    assert torch.equal(correction_matrix(c, 2.0), eye) and torch.equal(inverse_correction_matrix(c, 2.0), eye)


def test_correction_matrix_is_the_documented_pose_and_its_inverse():
    c = torch.tensor([[0.3, -0.2, 0.25]], dtype=torch.float64)  # s = 0.25 m of nose travel on a 4 m box
    D = correction_matrix(c, 2.0)[0].numpy()
    np.testing.assert_allclose(D, correction_pose(0.3, -0.2, 0.125), atol=1e-12)  # yaw = s / (length / 2)
    np.testing.assert_allclose(D[:3, :3] @ [2.0, 0, 0] - [2.0, 0, 0], [2 * (math.cos(0.125) - 1), 2 * math.sin(0.125), 0], atol=1e-12)
    np.testing.assert_allclose((inverse_correction_matrix(c, 2.0) @ correction_matrix(c, 2.0))[0].numpy(), np.eye(4), atol=1e-12)


def test_yaw_wraps():
    """A correction a full turn away is the same pose, in the torch map and in a baked track."""
    hl = 2.0
    a, b = torch.tensor([0.1, 0.2, 0.1 * hl]), torch.tensor([0.1, 0.2, (0.1 + 2 * math.pi) * hl])
    torch.testing.assert_close(correction_matrix(a, hl), correction_matrix(b, hl), atol=1e-5, rtol=0)
    track = ActorTrack.from_poses([0.0, 1.0], [make_pose(rot_z(3.1), [0, 0, 0]), make_pose(rot_z(-3.1), [1, 0, 0])])
    times = np.array([0.0, 1.0])
    one = refined_track(track, times, np.array([[0, 0, 4.0], [0, 0, 4.0]]), static=False)
    turn = refined_track(track, times, np.array([[0, 0, 364.0], [0, 0, -356.0]]), static=False)
    for t in (0.0, 0.5, 1.0):
        np.testing.assert_allclose(one.pose_at(t), turn.pose_at(t), atol=1e-9)
    assert abs(np.degrees(yaw_of(one.pose_at(0.0)[:3, :3])) - (np.degrees(3.1) + 4 - 360)) < 1e-6  # wrapped past +180


def test_off_line_is_a_second_difference():
    x = torch.tensor([[0.0], [1.0], [0.0], [2.0]])
    uniform = torch.tensor([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(off_line(x, uniform)[:, 0].numpy(), [1.0, -1.5])  # (2 x1 - x0 - x2) / 2
    uneven = torch.tensor([0.0, 1.0, 3.0, 4.0])
    np.testing.assert_allclose(off_line(uneven[:, None] * 2.0, uneven).numpy(), 0.0, atol=1e-6)  # a line in time


def _synthetic_bank(tracks: dict[str, ActorTrack], times) -> SimpleNamespace:
    """What `TrackRefiner` reads of a `RayBank`: the graph, the time table, the poses table."""
    actors = tuple(Actor(aid, "car", i + 1, (4.0, 2.0, 1.5), tr) for i, (aid, tr) in enumerate(tracks.items()))
    poses = np.stack([[np.linalg.inv(a.track.pose_at(t)) for a in actors] for t in times])
    return SimpleNamespace(graph=SceneGraph(actors=actors, aabb=((-10, -10, -1), (10, 10, 3))), times=np.asarray(times),
                           poses=torch.tensor(poses, dtype=torch.float32))


def test_regularisers_on_known_corrections():
    """A car driving along +x at 1 m/s; a lateral correction of 0.1 m at t = 1 s only: the refined
    track leaves its line by 0.1 m at t = 1 and by -0.05 m at t = 2 (interior times 1, 2, 3)."""
    times = [0.0, 1.0, 2.0, 3.0, 4.0]
    drive = ActorTrack.from_poses([0.0, 4.0], [make_pose(np.eye(3), [0, 0, 0]), make_pose(np.eye(3), [4, 0, 0])])
    parked = ActorTrack.static(make_pose(rot_z(1.0), [5, 5, 0]))
    ref = TrackRefiner(_synthetic_bank({"drive": drive, "parked": parked}, times))
    with torch.no_grad():
        ref.corrections[0, 1, 1] = 0.1
        ref.corrections[1, :, 0] = 0.2  # the parked car's first column is the one in use: (0.2, 0, 0)
        ref.corrections[1, 1:, 1] = 5.0  # ... and the others are not
    smooth, magnitude = ref.regularisers()
    assert smooth.item() == pytest.approx((0.1**2 + 0.05**2) / 3, rel=1e-5)
    assert magnitude.item() == pytest.approx((0.1**2 + 0.2**2) / 6, rel=1e-5)  # 5 times of one, 1 of the other


def test_smoothness_is_of_the_refined_track_not_of_the_corrections():
    """A jittered log whose corrections undo the jitter exactly has a smooth refined track: no penalty."""
    times = np.arange(6) * 0.1
    jitter = np.random.default_rng(0).normal(0, 0.2, (6, 2))
    poses = [make_pose(rot_z(0.3), [2 * t + jx, jy, 0]) for t, (jx, jy) in zip(times, jitter)]
    ref = TrackRefiner(_synthetic_bank({"jittery": ActorTrack.from_poses(times, poses)}, times))
    raw, _ = ref.regularisers()
    with torch.no_grad():  # in the actor frame: the world jitter rotated back by the heading
        ref.corrections[0, :, :2] = torch.tensor(-jitter @ rot_z(0.3)[:2, :2], dtype=torch.float32)
    undone, _ = ref.regularisers()
    assert raw.item() > 0.01 and undone.item() < 1e-9, (raw.item(), undone.item())


def test_record_round_trip_and_baked_parked_track():
    times = [0.0, 0.5, 1.0]
    drive = ActorTrack.from_poses([0.0, 1.0], [make_pose(np.eye(3), [0, 0, 0]), make_pose(np.eye(3), [4, 0, 0])])
    parked = ActorTrack.static(make_pose(rot_z(1.0), [5, 5, 0]))
    bank = _synthetic_bank({"drive": drive, "parked": parked}, times)
    ref = TrackRefiner(bank)
    with torch.no_grad():
        ref.corrections.copy_(torch.randn(ref.corrections.shape, generator=torch.Generator().manual_seed(0)) * 0.1)
    graph = ref.refined_graph(bank.graph)
    record = refinement_of(graph)
    assert record["refined"] is True and record["actors"]["drive"]["raw_track"] == drive.to_dict()
    again = TrackRefiner(bank)
    again.load_record(record)
    torch.testing.assert_close(again.effective(), ref.effective(), atol=1e-6, rtol=0)
    # The parked car stays one pose: its logged one moved by (dx, dy) in its own frame and yawed.
    dx, dy, dyaw = record["actors"]["parked"]["corrections"][0]
    np.testing.assert_allclose(graph.actor("parked").track.pose_at(3.0), parked.pose_at(0.0) @ correction_pose(dx, dy, np.radians(dyaw)), atol=1e-9)
    assert len(graph.actor("parked").track.times) == 1


# ---- recovery on the tiny world ------------------------------------------------------------------
@pytest.fixture(scope="module")
def log(tmp_path_factory):
    cfg = dataclasses.replace(CaptureConfig.tiny(), width=192, height=108, lidar=LidarConfig(n_beams=32, n_azimuth=512))
    return read_capture_log(generate_capture_log(build_world(WorldConfig.tiny()), cfg, tmp_path_factory.mktemp("tiny") / "log", progress=False))


def noisy_scene(scene: SceneGraph, times: np.ndarray) -> SceneGraph:
    """The parked car off by a constant offset, the moving car jittered at every time (seeded)."""
    rng = np.random.default_rng(21)
    actors = []
    for a in scene.actors:
        if a.actor_id == PARKED:
            E = correction_pose(0.0, OFFSET_M, np.radians(OFFSET_DEG))
            a = dataclasses.replace(a, track=ActorTrack.from_poses(a.track.times, [a.track.pose_at(t) @ E for t in a.track.times]))
        elif a.actor_id == MOVING:
            E = [correction_pose(*rng.normal(0, JITTER_M, 2), np.radians(rng.normal(0, JITTER_DEG))) for _ in times]
            a = dataclasses.replace(a, track=ActorTrack.from_poses(times, [a.track.pose_at(t) @ e for t, e in zip(times, E)]))
        actors.append(a)
    return scene.with_actors(actors)


def small_model(scene: SceneGraph) -> NeuralScene:
    torch.manual_seed(0)
    cfg = SceneModelConfig(
        background=FieldConfig(grid=HashGridConfig(n_levels=8, log2_table_size=14, base_resolution=16, max_resolution=256),
                               hidden_dim=32, color_hidden_dim=32, sh_degree=2, semantic_classes=BACKGROUND_CLASSES),
        actor=FieldConfig(grid=HashGridConfig(n_levels=6, log2_table_size=12, base_resolution=8, max_resolution=64),
                          hidden_dim=16, color_hidden_dim=16, sh_degree=2, mirror_y=True),
        occupancy_cell=0.5, actor_occupancy_resolution=16, step_min=0.05, actor_steps=48)
    return NeuralScene(cfg, scene.aabb, scene.asset_ids)


def train_cfg(steps: int, **kw) -> TrainConfig:
    # Without the LiDAR surface hinge: with it this tiny log's parked car refines to 3.3-3.5 deg of
    # its 4 deg, not 2.0 (`sim.lidar_loss`, "Open"); the street-scale check is bench/noisy_tracks.py.
    return TrainConfig(steps=steps, rays_per_batch=1024, lidar_rays_per_batch=256, lr=2e-2, occupancy_update_every=16,
                       occupancy_samples=4096, progress=False, color_floor_steps=20, lidar_surface_weight=0.0, **kw)


@pytest.fixture(scope="module")
def runs(log, tmp_path_factory):
    clean = bank_from_capture_log(log)
    noisy = noisy_scene(log.scene, clean.times)
    bank = bank_from_capture_log(dataclasses.replace(log, scene=noisy))
    folder = tmp_path_factory.mktemp("tracks")
    model = small_model(log.scene)
    train(model, clean, log.scene, train_cfg(150), folder / "clean")
    stats = train(model, bank, noisy, train_cfg(300, track_refinement=True, track_lr=1e-2, track_magnitude_weight=1e-3), folder / "refined")
    return SimpleNamespace(folder=folder, noisy=noisy, times=clean.times, stats=stats)


def errors(graph: SceneGraph, truth: SceneGraph, actor_id: str, times) -> tuple[float, float]:
    """Median over ``times`` of the box-centre distance (m) and the yaw difference (deg) to the truth."""
    a, b = graph.actor(actor_id).track, truth.actor(actor_id).track
    dist = [np.linalg.norm(a.pose_at(t)[:3, 3] - b.pose_at(t)[:3, 3]) for t in times]
    yaw = [abs(np.degrees(np.angle(np.exp(1j * (yaw_of(a.pose_at(t)[:3, :3]) - yaw_of(b.pose_at(t)[:3, :3])))))) for t in times]
    return float(np.median(dist)), float(np.median(yaw))


@pytest.mark.slow
def test_training_without_refinement_keeps_the_logged_tracks(runs, log):
    _, graph, meta = load_checkpoint(runs.folder / "clean")
    assert graph.to_dict() == log.scene.to_dict() and META_KEY not in graph.meta
    assert "track_smoothness" not in meta["train_state"]["stats"]


@pytest.mark.slow
def test_refinement_recovers_known_track_errors(runs, log):
    _, graph, _ = load_checkpoint(runs.folder / "refined")
    measured = {aid: (errors(runs.noisy, log.scene, aid, runs.times), errors(graph, log.scene, aid, runs.times))
                for aid in (PARKED, MOVING, PED)}
    (raw_m, raw_deg), (ref_m, ref_deg) = measured[PARKED]
    assert raw_m == pytest.approx(OFFSET_M) and raw_deg == pytest.approx(OFFSET_DEG)
    # Yaw is the weakly observed one here (a 4 deg turn of the parked car moves its ends by 14 cm,
    # mostly in depth for cameras passing beside it): asked to move a quarter of the way.
    assert ref_m < 0.5 * raw_m and ref_deg < 0.75 * raw_deg, measured
    (raw_m, raw_deg), (ref_m, ref_deg) = measured[MOVING]
    assert ref_m < 0.6 * raw_m and ref_deg < 0.6 * raw_deg, measured
    assert measured[PED][1][0] < 0.05, measured  # logged right: stays put
    assert runs.stats["track_smoothness"] >= 0 and runs.stats["track_magnitude"] > 0


@pytest.mark.slow
def test_the_loaded_scene_graph_carries_the_refined_tracks(runs):
    _, graph, _ = load_checkpoint(runs.folder / "refined")
    record = refinement_of(graph)
    assert record is not None and np.allclose(record["times"], runs.times)
    for a in graph.actors:
        raw = runs.noisy.actor(a.actor_id).track
        entry = record["actors"][a.actor_id]
        assert entry["raw_track"] == raw.to_dict() and entry["static"] == (len(raw.times) == 1)
        expected = refined_track(raw, runs.times, np.asarray(entry["corrections"]), entry["static"])
        for t in (0.0, 0.35, 1.0, 2.0):  # between and at the bank's times
            np.testing.assert_allclose(a.track.pose_at(t), expected.pose_at(t), atol=1e-6)
        assert np.abs(np.asarray(entry["corrections"])).max() > 1e-3  # really moved
    moving = graph.actor(MOVING).track
    assert set(np.round(runs.times, 6)) <= set(np.round(moving.times, 6))
    state = graph.at(1.0)  # what every renderer and label writer reads
    np.testing.assert_allclose(state.actors[[a.actor_id for a in graph.actors].index(PARKED)].T_world_actor,
                               graph.actor(PARKED).track.pose_at(1.0))


def test_zero_corrections_give_the_logged_poses_exactly():
    """Refinement on, nothing learned yet: the very poses `RayBank.actor_rays` gives, bit for bit."""
    times = [0.0, 0.5, 1.0]
    drive = ActorTrack.from_poses([0.0, 1.0], [make_pose(rot_z(0.4), [0, 1, 0]), make_pose(rot_z(0.5), [4, 2, 0])])
    bank = _synthetic_bank({"drive": drive, "parked": ActorTrack.static(make_pose(rot_z(1.0), [5, 5, 0]))}, times)
    tidx = torch.tensor([2, 0, 0, 1, 2])
    moving, parked = TrackRefiner(bank).actor_rays(tidx)
    assert torch.equal(moving.T_actor_world, bank.poses[tidx, 0]) and moving.T_actor_world.requires_grad
    assert torch.equal(moving.T_distinct, bank.poses[torch.tensor([0, 1, 2]), 0])
    assert torch.equal(parked.T_actor_world, bank.poses[:1, 1])


def test_baked_track_has_keys_at_the_bank_times_only_within_their_range():
    """A logged key between the bank's times (a held-out frame, with its own error) is replaced by
    the refined poses around it; keys beyond the bank's time range stay, corrected."""
    poses = [make_pose(np.eye(3), [x, y, 0]) for x, y in ((0, 0), (1, 0.7), (2, 0), (3, 0))]
    track = ActorTrack.from_poses([0.0, 0.5, 1.0, 3.0], poses)
    baked = refined_track(track, np.array([0.0, 1.0]), np.array([[0, 0.1, 0], [0, 0.1, 0]]), static=False)
    np.testing.assert_allclose(baked.times, [0.0, 1.0, 3.0])
    np.testing.assert_allclose(baked.pose_at(0.5)[:3, 3], [1.0, 0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(baked.pose_at(3.0)[:3, 3], [3.0, 0.1, 0.0], atol=1e-12)


@pytest.mark.slow
def test_a_killed_refinement_resumes_with_its_corrections(log, tmp_path, monkeypatch):
    """Killed after 3 steps (a checkpoint each step), resumed: the corrections and their Adam
    moments come back from the checkpoint, not from zero."""
    import sim.train as train_mod

    bank = bank_from_capture_log(dataclasses.replace(log, scene=noisy_scene(log.scene, bank_from_capture_log(log).times)))
    seen, real_step = [], train_mod.training_step

    def step(model, bank, cfg, gen, tracks=None):
        if len(seen) == 3:
            raise KeyboardInterrupt  # killed between two steps
        seen.append(tracks.corrections.detach().clone())
        return real_step(model, bank, cfg, gen, tracks)

    monkeypatch.setattr(train_mod, "training_step", step)
    cfg = train_cfg(5, track_refinement=True, track_lr=0.05, checkpoint_every_s=0.0)
    with pytest.raises(KeyboardInterrupt):
        train(small_model(log.scene), bank, bank.graph, cfg, tmp_path / "scene")
    _, graph, meta = load_checkpoint(tmp_path / "scene")
    saved = refinement_of(graph)
    assert meta["step"] == 3 and saved is not None and "optimizer" in meta
    seen.clear()
    monkeypatch.setattr(train_mod, "training_step", lambda *a, **k: (seen.append(a[4].corrections.detach().clone()), real_step(*a, **k))[1])
    train(small_model(log.scene), bank, bank.graph, cfg, tmp_path / "scene")
    moved = seen[0].abs().max().item()
    ref = TrackRefiner(bank)
    ref.load_record(saved)
    assert len(seen) == 2 and moved > 0.05 and torch.allclose(seen[0], ref.corrections, atol=1e-6), moved


# ---- closed-form smoothing before training -------------------------------------------------------
def _track(times, xy, yaw) -> ActorTrack:
    return ActorTrack.from_poses(times, [make_pose(rot_z(h), [x, y, 0.8]) for (x, y), h in zip(xy, yaw)])


def test_smoothing_keeps_constant_speed_motion_exactly_and_turns_through_pi():
    """A local linear fit reproduces a straight constant-speed track (no lag), including a heading
    that sweeps through +-pi at a constant rate (the yaw is unwrapped first)."""
    times = np.arange(0.0, 4.0 + 1e-9, 0.1)
    xy = np.stack([3.0 + 8.0 * times, -1.0 + 0.5 * times], -1)
    yaw = np.pi - 0.3 + 0.15 * times  # crosses +pi at t = 2 s
    track = _track(times, xy, yaw)
    smoothed, parked = smooth_track(track, TrackSmoothing(window_s=1.0))
    assert not parked
    for t in times:
        np.testing.assert_allclose(smoothed.pose_at(t), track.pose_at(t), atol=1e-6)


def test_smoothing_removes_per_frame_jitter_and_parks_still_actors():
    rng = np.random.default_rng(3)
    times = np.arange(0.0, 6.0 + 1e-9, 0.1)
    true_xy = np.stack([10.0 * times, np.zeros_like(times)], -1)
    jitter = lambda n: (rng.normal(0, 0.2, (n, 2)), np.radians(rng.normal(0, 3.0, n)))
    dxy, dyaw = jitter(len(times))
    moving = _track(times, true_xy + dxy, dyaw)
    pxy, pyaw = jitter(len(times))
    still = _track(times, np.array([5.0, 3.0]) + pxy, np.radians(170.0) + pyaw)
    walker_xy = np.stack([1.3 * times, np.full_like(times, 4.0)], -1)  # a pedestrian: slow, but moving
    walker = _track(times, walker_xy + 0.05 * rng.normal(size=(len(times), 2)), np.zeros_like(times))
    cfg = TrackSmoothing(window_s=1.0)
    sm, parked = smooth_track(moving, cfg)
    before = np.median([np.linalg.norm(moving.pose_at(t)[:2, 3] - p) for t, p in zip(times, true_xy)])
    after = np.median([np.linalg.norm(sm.pose_at(t)[:2, 3] - p) for t, p in zip(times, true_xy)])
    assert not parked and after < before / 2.5, (before, after)
    yaw_after = np.median([abs(yaw_of(sm.pose_at(t)[:3, :3])) for t in times])
    assert yaw_after < np.radians(1.0)
    assert np.ptp(still.positions, axis=0).max() > 0.8 and still.is_parked() and not walker.is_parked()  # jitter spreads the keys, not their fit
    sp, parked = smooth_track(still, cfg)
    assert parked and len(sp.times) == 1
    assert np.linalg.norm(sp.pose_at(0.0)[:2, 3] - [5.0, 3.0]) < 0.06
    assert abs(np.degrees(np.angle(np.exp(1j * (yaw_of(sp.pose_at(0.0)[:3, :3]) - np.radians(170.0)))))) < 1.0
    assert sp.pose_at(0.0)[2, 3] == pytest.approx(0.8)
    assert not smooth_track(walker, cfg)[1]


def test_smooth_tracks_records_what_it_changed():
    times = np.arange(0.0, 2.0 + 1e-9, 0.1)
    still = _track(times, np.array([[5.0, 3.0]]) + 0.01 * np.sin(7 * times)[:, None], np.zeros_like(times))
    one_key = ActorTrack.static(make_pose(np.eye(3), [0.0, 0.0, 0.8]))
    graph = SceneGraph(actors=(Actor("car_000", "car", 1, (4.5, 1.9, 1.6), still), Actor("car_001", "car", 2, (4.5, 1.9, 1.6), one_key)),
                       aabb=((-10.0, -10.0, -1.0), (10.0, 10.0, 5.0)))
    out = smooth_tracks(graph, TrackSmoothing())
    record = out.meta[SMOOTHING_KEY]
    assert record["parked"] == ["car_000"] and set(record["logged_tracks"]) == {"car_000"}
    assert ActorTrack.from_dict(record["logged_tracks"]["car_000"]).times.tolist() == still.times.tolist()
    assert out.actor("car_001").track is one_key
    assert smooth_tracks(graph, TrackSmoothing(window_s=0.0)) is graph
