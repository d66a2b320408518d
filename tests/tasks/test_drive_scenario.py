"""Scenarios on a recorded drive: a built-in log, turned to a 30 deg heading and moved, goes out as
KITTI tracking and comes back through the importer (no world config: an imported drive). A scene of
it (random fields) gets the cut-in scenario: the street is fitted to the drive, the dataset is
written, pycocotools reads the cut-in car's boxes, and its track lies in the drive's lanes in the
scene's world frame. Navigation uses the drive's street; on a placed street only what the scenario
placed is judged, and the ego keeps the log's height. Scenes without a street are refused with the
reason."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import yaml
from conftest import save_random_scene

from scenes.capture import read_capture_log
from scenes.errors import InputError
from scenes.transforms import make_pose, matrix_to_quat, quat_to_matrix, rot_z
from scenes.world import WorldConfig, build_world
from sensors.recording import CaptureConfig, generate_capture_log
from tasks.logs.kitti_mot import export_kitti_mot, import_kitti_mot
from tasks.pipeline import load_scene, road_for_scene
from tasks.scenarios.dataset import GenerateConfig, generate
from tasks.scenarios.schema import TEMPLATES_DIR

WORLD = replace(WorldConfig.tiny(), street_length=30.0, duration=5.0)  # the ego drives 20 m from x = 1 down y = -1.75
T_TURN = make_pose(rot_z(np.radians(30.0)), (40.0, -25.0, 3.0))
"""Where the original drive goes: turned by 30 deg about z and moved."""


def _moved_log(src, dst, pose_map):
    """A copy of capture log ``src`` with every world pose ``M`` replaced by ``pose_map(M)`` (a rigid
    move, or a bend; sensors move with the ego, rigidly) and no world config."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / "log.json").read_text())

    def with_ego(owner: dict, sensor: dict, key: str) -> None:
        ego = np.asarray(owner["T_world_ego"])
        sensor[key] = (pose_map(ego) @ np.linalg.inv(ego) @ np.asarray(sensor[key])).tolist()

    for f in doc["frames"]:
        with_ego(f, f["lidar"], "T_world_lidar")
        for img in f["images"].values():
            with_ego(img if "T_world_ego" in img else f, img, "T_world_cam")
            if "T_world_ego" in img:
                img["T_world_ego"] = pose_map(np.asarray(img["T_world_ego"])).tolist()
        f["T_world_ego"] = pose_map(np.asarray(f["T_world_ego"])).tolist()
    for a in doc["scene"]["actors"]:
        tr = a["track"]
        poses = [pose_map(make_pose(quat_to_matrix(np.asarray(q)), p)) for p, q in zip(tr["positions"], tr["quats"])]
        tr["positions"] = [P[:3, 3].tolist() for P in poses]
        tr["quats"] = [matrix_to_quat(P[:3, :3]).tolist() for P in poses]
    lo, hi = np.asarray(doc["scene"]["aabb"])
    grid = np.stack(np.meshgrid(*[np.linspace(lo[i], hi[i], 11) for i in range(3)], indexing="ij"), -1).reshape(-1, 3)
    points = np.array([pose_map(make_pose(np.eye(3), p))[:3, 3] for p in grid])  # the box's new extent
    doc["scene"]["aabb"] = [points.min(0).tolist(), points.max(0).tolist()]
    doc["world"] = {}
    (dst / "log.json").write_text(json.dumps(doc))
    return dst


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    """The tiny world's drive at 2 Hz, as recorded."""
    root = tmp_path_factory.mktemp("native")
    return generate_capture_log(build_world(WORLD), replace(CaptureConfig.tiny(), fps=2.0), root / "native", progress=False)


@pytest.fixture(scope="module")
def drive(native, tmp_path_factory):
    """``(scene folder, T_world_original)``: the turned drive after a KITTI round trip, and where
    the original world's frame lies in the imported one (KITTI puts the origin at the first frame)."""
    root = tmp_path_factory.mktemp("drive")
    turned = read_capture_log(_moved_log(native, root / "turned", lambda M: T_TURN @ M))
    kitti = export_kitti_mot(turned, root / "KITTI", "front", "0000")
    log = read_capture_log(import_kitti_mot(kitti, root / "imported", "0000").log)
    assert log.world == {} and [c.name for c in log.cameras] == ["image_02"]
    T_world_original = log.frames[0].T_world_ego @ np.linalg.inv(read_capture_log(native).frames[0].T_world_ego)
    scene = save_random_scene(log, root / "scene", log2_table_size=10, actor_steps=24, density_weight_scale=0.05, ground_cells=1)
    return scene, T_world_original


def test_the_street_of_the_imported_drive_is_the_original_street(drive):
    scene_path, T_wo = drive
    assert np.degrees(np.arctan2(T_wo[1, 0], T_wo[0, 0])) == pytest.approx(30.0, abs=1e-3)
    road = road_for_scene(load_scene(scene_path))
    assert road.placed and road.source.endswith("imported/log.json")
    assert road.lane_width == pytest.approx(WORLD.lane_width, abs=1e-3)
    assert road.street_length == pytest.approx(WORLD.ego_speed * WORLD.duration, abs=1e-3)
    # the road frame is the original street's frame moved to where the ego started (x = 1)
    assert np.allclose(road.T_world_road, T_wo @ make_pose(np.eye(3), (WORLD.ego_start_x, 0.0, 0.0)), atol=1e-3)


def _cut_in(scene_path, camera, tmp_path_factory):
    """The cut-in template made to fit the 20 m drive (slower, 4 s at 2 Hz: 8 frames), on the
    drive's ``camera`` at 64x36, generated: ``(dataset folder, manifest)``."""
    tree = yaml.safe_load((TEMPLATES_DIR / "cut_in.yaml").read_text())
    tree.update(duration=4.0, rate_hz=2, scene=str(scene_path))
    tree["ego"].update(x=2.0, speed=2.5, rig={"cameras": [camera], "width": 64, "height": 36})
    tree["ego"]["behaviours"][0]["follow"].update(speed=2.5, time_gap=1.0, min_gap=2.0)
    cutter = tree["actors"]["insert"][0]
    cutter.update(gap={"uniform": [0.5, 1.5]}, speed={"uniform": [4.5, 5.0]})
    cutter["behaviours"][0]["cut_in"]["duration"] = 1.0
    cutter["behaviours"][0]["trigger"]["ahead_of_ego"] = {"uniform": [0.5, 1.0]}
    cutter["behaviours"][1] = {"keep_lane": {"speed": 3.0}, "trigger": {"time": 3.0}}
    path = tmp_path_factory.mktemp("scenario") / "cut_in_drive.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    out = tmp_path_factory.mktemp("out") / "data"
    return out, generate(GenerateConfig(str(path), out, variants=1, workers=0, progress=False))


@pytest.fixture(scope="module")
def cut_in(drive, tmp_path_factory):
    return _cut_in(drive[0], "image_02", tmp_path_factory)


def test_a_cut_in_runs_on_the_imported_drive_and_pycocotools_reads_the_cutter(cut_in):
    from pycocotools.coco import COCO

    out, manifest = cut_in
    entry = manifest["variants"]["0"]
    assert entry["violations"] == [] and entry["frames"] == 8
    assert [who for _, who, what in entry["events"] if what == "cut_in"] == ["cutter"]
    poses = json.loads((out / "variant_0000" / "poses.json").read_text())["frames"]
    cutter_id = next(a["instance_id"] for a in poses[0]["actors"] if a["actor_id"] == "cutter")
    coco = COCO(str(out / "variant_0000" / "coco.json"))
    boxes = coco.loadAnns(coco.getAnnIds(catIds=coco.getCatIds(catNms=["car"])))
    frames_seen = {coco.loadImgs(b["image_id"])[0]["frame_index"] for b in boxes if b["track_id"] == cutter_id}
    assert len(frames_seen) >= 5  # ahead of the ego from t = 2 s on, at least
    assert all(b["bbox"][2] > 0 and b["bbox"][3] > 0 for b in boxes)


def test_the_cutter_goes_from_the_adjacent_lane_into_the_ego_lane_in_world_coordinates(cut_in, drive):
    """The world poses the dataset rendered, taken back to the original street (independent of the
    fitted road): the cutter starts in the left lane and ends in the ego's, heading down the street."""
    out, manifest = cut_in
    _, T_wo = drive
    T_ow = np.linalg.inv(T_wo)
    _check_cut_in_on_the_original_street(out, manifest, lambda M: T_ow @ M, 1e-3, 1e-3)
    road = manifest["variants"]["0"]["road"]
    assert np.allclose(road["T_world_road"], T_wo @ make_pose(np.eye(3), (WORLD.ego_start_x, 0.0, 0.0)), atol=1e-3)


def _check_cut_in_on_the_original_street(out, manifest, to_original, tol_m, tol_deg):
    """The dataset's world poses taken back to the original street by ``to_original``: the cutter
    starts in the left lane and ends in the ego's, heading down the street; the ego keeps its lane."""
    poses = json.loads((out / "variant_0000" / "poses.json").read_text())["frames"]
    drawn = manifest["variants"]["0"]["drawn"]
    cutter = [to_original(np.array(next(a for a in f["actors"] if a["actor_id"] == "cutter")["T_world_actor"])) for f in poses]
    ego = [to_original(np.array(f["T_world_ego"])) for f in poses]
    lw = WORLD.lane_width
    assert cutter[0][1, 3] == pytest.approx(lw / 2, abs=tol_m)  # the left lane's centre
    offset = drawn["actors.insert[0].behaviours[0].cut_in.lateral_offset"]
    assert cutter[-1][1, 3] == pytest.approx(-lw / 2 + offset, abs=tol_m)  # the ego's lane
    heading = np.array([np.degrees(np.arctan2(T[1, 0], T[0, 0])) for T in cutter])
    assert abs(heading[0]) < tol_deg and abs(heading[-1]) < tol_deg and np.all(heading <= tol_deg) and heading.min() < -5  # down the street, swerving right
    assert cutter[-1][0, 3] > ego[-1][0, 3]  # ahead of the ego
    assert ego[0][:3, 3] == pytest.approx([WORLD.ego_start_x + 2.0, -lw / 2, 0.0], abs=tol_m)
    assert all(abs(T[1, 3] + lw / 2) < tol_m and abs(T[2, 3]) < tol_m for T in ego)  # the ego keeps its lane, on the ground


# ------------------------------------------------------------------------- a drive that bends
BEND = 30.0
"""Radius (metres) of the arc the built-in street is bent onto: the drive turns left by 38 deg."""


def _bent(M):
    """The built-in street bent onto an arc (the exact Frenet map: x along the arc from the origin,
    heading +x, y to its left)."""
    phi = M[0, 3] / BEND
    out = M.copy()
    out[:2, 3] = np.array([0.0, BEND]) + (BEND - M[1, 3]) * np.array([np.sin(phi), -np.cos(phi)])
    out[:3, :3] = rot_z(phi) @ M[:3, :3]
    return out


def _unbent(M):
    rel = M[:2, 3] - np.array([0.0, BEND])
    phi = np.arctan2(rel[0], -rel[1])
    out = M.copy()
    out[:2, 3] = BEND * phi, BEND - np.linalg.norm(rel)
    out[:3, :3] = rot_z(-phi) @ M[:3, :3]
    return out


@pytest.fixture(scope="module")
def bent_cut_in(native, tmp_path_factory):
    root = tmp_path_factory.mktemp("bent")
    log = read_capture_log(_moved_log(native, root / "bent", _bent))
    scene = save_random_scene(log, root / "scene", log2_table_size=10, actor_steps=24, density_weight_scale=0.05, ground_cells=1)
    return scene, _cut_in(scene, "front", tmp_path_factory)


def test_on_a_drive_that_bends_the_cut_in_follows_the_bend(bent_cut_in):
    """The same cut-in on the drive bent onto a 30-m arc: its street bends with it, and the
    dataset's poses, unbent, are the straight drive's within 2 cm / 0.3 deg."""
    scene_path, (out, manifest) = bent_cut_in
    road = road_for_scene(load_scene(scene_path))
    assert road.bends and road.lane_width == pytest.approx(WORLD.lane_width, abs=0.01)
    assert manifest["variants"]["0"]["violations"] == [] and "centre_line" in manifest["variants"]["0"]["road"]
    _check_cut_in_on_the_original_street(out, manifest, _unbent, 0.02, 0.3)


def test_scenes_without_a_street_are_refused_with_the_reason(drive, tmp_path):
    scene_path, _ = drive
    static = tmp_path / "static"
    shutil.copytree(scene_path, static)
    _set_source(static, {"kind": "blender", "path": "/data/lego"})
    with pytest.raises(InputError, match="scenarios need a street.*blender"):
        road_for_scene(load_scene(static))
    _set_source(static, {"kind": "capture-log", "path": str(tmp_path / "moved_away")})
    with pytest.raises(InputError, match="moved_away is gone"):
        road_for_scene(load_scene(static))


def _set_source(scene_path, source):
    doc = json.loads((scene_path / "scene.json").read_text())
    doc["extra"]["source"] = source
    (scene_path / "scene.json").write_text(json.dumps(doc))


# ------------------------------------------------------------------------------------ navigation
def test_navigation_on_the_drive_uses_its_street(drive):
    """A navigation scene of the drive has the drive's street (ground plane, scenario actors in its
    lanes) and keeps start-goal sampling to the street in road coordinates."""
    from types import SimpleNamespace

    from scenes.graph import SceneState
    from tasks.nav.scene import DensityMap, NavScene
    from tasks.nav.startgoal import free_space

    scene_path, T_wo = drive
    nav = NavScene.load(scene_path)
    road = nav.roadmap
    assert road is not None and road.placed and np.allclose(road.T_world_road, road_for_scene(load_scene(scene_path)).T_world_road)
    assert nav.ground_z == pytest.approx(T_wo[2, 3], abs=1e-3)
    with_cut_in = nav.with_scenario("cut_in")
    cutter = next(a for a in with_cut_in.graph.actors if a.actor_id == "cutter").track.pose_at(0.0)
    assert (np.linalg.inv(T_wo) @ cutter)[1, 3] == pytest.approx(WORLD.lane_width / 2, abs=1e-3)  # the drive's left lane

    # an open density map over the street's surroundings: free exactly where road x, y are on the street
    lo = T_wo[:2, 3] - 40.0
    dmap = DensityMap(lo, 0.5, np.array([0.0]), np.zeros((160, 160, 1), np.float32), 10.0)
    env = SimpleNamespace(map=dmap, dynamics=SimpleNamespace(footprint_radius=0.5, name="unicycle"),
                          cfg=SimpleNamespace(moving_actors=False, start_time=0.0), scene=nav,
                          scene_state=lambda t: SceneState(t), body_band=lambda: (0.0, 1.5))
    free = free_space(env, 0.0)
    xy = road.xy_to_road(dmap.cell_centres())
    half = road.road_half_width + road.sidewalk_width
    assert free.any() and np.array_equal(free, (xy[..., 0] >= 0) & (xy[..., 0] <= road.street_length) & (np.abs(xy[..., 1]) <= half))
    original = (np.linalg.inv(T_wo)[:2, :2] @ (dmap.cell_centres()[free] - T_wo[:2, 3]).T).T  # the same cells, on the original street
    assert original[:, 0].min() >= WORLD.ego_start_x - 0.3 and np.abs(original[:, 1]).max() <= half + 0.3


def test_a_static_scene_navigates_without_a_street_and_says_why_it_has_no_scenarios(drive, tmp_path):
    from tasks.nav.scene import NavScene

    scene_path, _ = drive
    static = tmp_path / "static"
    shutil.copytree(scene_path, static)
    _set_source(static, {"kind": "nerfstudio", "path": "/data/poster"})
    nav = NavScene.load(static)
    assert nav.roadmap is None and nav.ground_z == 0.0
    with pytest.raises(InputError, match="scenarios need a street.*nerfstudio"):
        nav.with_scenario("cut_in")


# ------------------------------------------------------------------ simulation on a placed street
def test_on_a_drive_only_what_the_scenario_placed_is_judged_and_the_ego_keeps_the_logs_height():
    """A drive at heading 120 deg whose ego frame is 0.93 m above the ground (KITTI's IMU): recorded
    actors off the fitted street or touching each other are as labelled (no finding), an inserted
    car on the sidewalk is found; the scripted ego rides at the log's height in the right lane."""
    from scenes.graph import Actor, ActorTrack, SceneGraph
    from scenes.roadmap import RoadMap
    from tasks.scenarios.schema import expand, parse_scenario_text, scenario_from_tree
    from tasks.scenarios.traffic import build_scenario_world, check_scenario_world

    T_road = make_pose(rot_z(np.radians(120.0)), (-7.0, 15.0, 2.0))
    place = lambda x, y, z: T_road @ make_pose(np.eye(3), (x, y, z))  # noqa: E731
    ego = np.stack([place(s, -1.75, 0.93) for s in np.linspace(0.0, 40.0, 21)])
    size = (4.5, 1.8, 1.5)
    recorded = [Actor("lot_car", "car", 1, size, ActorTrack.static(place(20.0, -15.0, 0.75))),  # in a parking lot
                Actor("park_a", "car", 2, size, ActorTrack.static(place(30.0, -4.7, 0.75))),
                Actor("park_b", "car", 3, size, ActorTrack.static(place(33.0, -4.7, 0.75)))]  # touching park_a
    road = RoadMap.from_drive(ego, recorded, source="imu/log.json")
    assert road.ego_height == pytest.approx(0.93) and road.T_world_road[2, 3] == pytest.approx(2.0)
    graph = SceneGraph(tuple(recorded), ((-60.0, -40.0, -5.0), (40.0, 60.0, 20.0)))
    text = parse_scenario_text("name: t\nduration: 1.0\nego: {x: 2.0, speed: 3.0}\nactors:\n  existing: keep\n  insert:\n"
                               "    - {id: on_walk, class: car, lane: sidewalk_left, x: 10.0, speed: 0.0}\n", "t.yaml")
    world = build_scenario_world(scenario_from_tree(text, expand(text, 0)[0]), graph, road)
    found = {(v["kind"], tuple(v["actors"])) for v in check_scenario_world(world, road)}
    assert found == {("vehicle_off_road", ("on_walk",))}
    for t in (0.0, 0.5, 1.0):
        local = np.linalg.inv(T_road) @ world.T_world_ego(t)
        assert local[:3, 3] == pytest.approx([2.0 + 3.0 * t, -1.75, 0.93], abs=1e-6)
    assert np.allclose(next(a for a in world.graph.actors if a.actor_id == "lot_car").track.pose_at(0.0), recorded[0].track.pose_at(0.0))
