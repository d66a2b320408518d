"""Scenario files: parsing with file:line errors, distributions, behaviours simulated on the
built-in world, sanity checks, and fuzzed files that may only fail with clear errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenes.errors import InputError
from scenes.roadmap import RoadMap
from scenes.world import WorldConfig, build_world
from tasks.scenarios.variants import draw_variant
from tasks.scenarios.schema import (ScenarioText, expand, list_templates, load_scenario_text, parse_scenario_text,
                            scenario_from_tree)
from tasks.scenarios.traffic import SIM_DT, build_scenario_world, check_scenario_world

TEMPLATES = ("cut_in", "dense_traffic", "jaywalker", "lead_hard_brake", "occluded_pedestrian", "stalled_vehicle",
             "tailgater", "wrong_way_driver")


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig())


@pytest.fixture(scope="module")
def road(world):
    return RoadMap.from_world_config(world.config)


def _world_of(name, world, road, variant=0):
    scenario_world, drawn, attempt, rejected = draw_variant(load_scenario_text(name), world.graph, road, variant, None, 20)
    return scenario_world, drawn, attempt


def _track(scenario_world, actor_id):
    return next(a for a in scenario_world.graph.actors if a.actor_id == actor_id).track


def _speeds(track, times):
    p = np.stack([track.pose_at(t)[:3, 3] for t in times])
    return np.linalg.norm(np.diff(p[:, :2], axis=0), axis=1) / np.diff(times)


# ------------------------------------------------------------------------------- the library
def test_the_library_has_the_eight_corner_cases():
    assert set(TEMPLATES) <= set(list_templates())


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_template_runs_on_the_built_in_world_and_passes_the_sanity_checks(name, world, road):
    for variant in range(3):
        sw, drawn, attempt = _world_of(name, world, road, variant)
        assert check_scenario_world(sw, road) == [], (name, variant)
        assert attempt < 20 and drawn  # every template has something to vary
        inserted = {s.id for s in sw.scenario.insert}
        assert inserted <= {a.actor_id for a in sw.graph.actors}
        # boxes stand on the ground: the road (z = h/2) or the sidewalk (z = h/2 + curb)
        for a in sw.graph.actors:
            if a.actor_id in inserted:
                z = np.array([a.track.pose_at(t)[2, 3] for t in sw.scenario.frame_times]) - a.size[2] / 2
                assert np.all(np.isclose(z, 0.0) | np.isclose(z, world.config.sidewalk_height)), a.actor_id


def test_hard_brake_decelerates_at_the_drawn_rate_and_the_follower_stops_behind(world, road):
    sw, drawn, _ = _world_of("lead_hard_brake", world, road)
    decel = drawn["actors.insert[0].behaviours[0].hard_brake.decel"]
    t_brake = drawn["actors.insert[0].behaviours[0].trigger.time"]
    times = np.arange(0, sw.scenario.duration, SIM_DT)
    v = _speeds(_track(sw, "lead"), times)
    assert np.allclose(v[times[1:] < t_brake - 0.1], 6.0, atol=1e-6)
    braking = (times[1:] > t_brake + 0.15) & (v > 0.5)
    assert braking.any() and np.allclose(np.diff(v)[braking[1:]], -decel * SIM_DT, atol=0.02)
    assert v[-1] < 1e-6  # stopped
    ego = np.stack([sw.T_world_ego(t)[:2, 3] for t in times])
    lead = np.stack([_track(sw, "lead").pose_at(t)[:2, 3] for t in times])
    gap = lead[:, 0] - ego[:, 0] - sw.ego_size[0] / 2 - _track_size(sw, "lead")[0] / 2
    assert gap.min() > 1.0  # the ego kept its distance


def _track_size(sw, actor_id):
    return next(a for a in sw.graph.actors if a.actor_id == actor_id).size


def test_cut_in_starts_at_the_drawn_gap_and_ends_in_the_ego_lane(world, road):
    sw, drawn, _ = _world_of("cut_in", world, road)
    gap = drawn["actors.insert[0].behaviours[0].trigger.ahead_of_ego"]
    start = next(t for t, who, what in sw.events if who == "cutter" and what == "cut_in")
    cutter = _track(sw, "cutter")
    ego_x = sw.T_world_ego(start)[0, 3]
    front_gap = cutter.pose_at(start)[0, 3] - ego_x - sw.ego_size[0] / 2 - _track_size(sw, "cutter")[0] / 2
    assert gap <= front_gap < gap + 0.6  # fired the first step the gap was reached (<= one step of closing)
    assert cutter.pose_at(start - 0.2)[1, 3] == pytest.approx(road.lane("left").y)
    offset = drawn["actors.insert[0].behaviours[0].cut_in.lateral_offset"]
    assert cutter.pose_at(sw.scenario.duration)[1, 3] == pytest.approx(road.lane("right").y + offset, abs=1e-6)


def test_occluded_pedestrian_waits_behind_the_van_then_crosses(world, road):
    sw, drawn, _ = _world_of("occluded_pedestrian", world, road)
    van, child = _track(sw, "parked_van"), _track(sw, "child")
    p_van, p_child = van.pose_at(0.0)[:3, 3], child.pose_at(0.0)[:3, 3]
    assert p_child[0] > p_van[0] + _track_size(sw, "parked_van")[0] / 2  # beyond the van, seen from the ego
    assert p_child[1] == pytest.approx(p_van[1])
    # the ego's front camera ray to the child passes through the van's box: hidden at the start
    eye = sw.T_world_ego(0.0)[:3, 3] + np.array([1.0, 0, 1.6])
    hits = [_inside_box(eye + s * (p_child - eye), van.pose_at(0.0), _track_size(sw, "parked_van")) for s in np.linspace(0, 1, 400)]
    assert any(hits)
    start = next(t for t, who, what in sw.events if who == "child")
    assert np.allclose(child.pose_at(start - 0.1)[:3, 3], p_child)  # still before the trigger
    assert child.pose_at(sw.scenario.duration)[1, 3] > p_child[1] + 2.0  # walking across, away from its curb


def _inside_box(p, T_world_box, size):
    q = np.linalg.inv(T_world_box) @ np.append(p, 1.0)
    return bool(np.all(np.abs(q[:3]) <= np.asarray(size) / 2))


def test_wrong_way_driver_comes_head_on_then_returns_to_its_lane(world, road):
    sw, _, _ = _world_of("wrong_way_driver", world, road)
    ghost = _track(sw, "ghost_driver")
    p0, p1 = ghost.pose_at(0.0), ghost.pose_at(0.5)
    assert p1[0, 3] < p0[0, 3] and p0[1, 3] == pytest.approx(road.lane("right").y)  # towards -x in the ego's lane
    assert np.dot(p0[:2, 0], [-1.0, 0.0]) > 0.99  # facing -x
    assert ghost.pose_at(sw.scenario.duration)[1, 3] == pytest.approx(road.lane("left").y, abs=1e-6)


def test_stalled_car_never_moves_and_the_ego_passes_it_in_the_other_lane(world, road):
    sw, _, _ = _world_of("stalled_vehicle", world, road)
    stalled = _track(sw, "stalled")
    assert np.ptp(stalled.positions, axis=0).max() == 0.0
    assert sw.T_world_ego(sw.scenario.duration)[1, 3] == pytest.approx(road.lane("left").y, abs=1e-6)


# ----------------------------------------------------------------------------- distributions
def test_variants_are_deterministic_distinct_and_inside_their_ranges():
    text = load_scenario_text("cut_in")
    a, drawn_a = expand(text, 3)
    b, drawn_b = expand(text, 3)
    c, drawn_c = expand(text, 4)
    assert a == b and drawn_a == drawn_b and drawn_a != drawn_c
    for variant in range(50):
        _, drawn = expand(text, variant)
        assert 6.5 <= drawn["actors.insert[0].speed"] <= 7.5
        assert -4.0 <= drawn["actors.insert[0].gap"] <= -2.5
    assert expand(text, 3, seed=11)[1] != drawn_a


def test_normal_with_clip_and_choice():
    text = parse_scenario_text("name: t\nego: {speed: {normal: [5.0, 10.0], clip: [4.0, 6.0]}, lane: {choice: [right, left]}}\n", "t.yaml")
    speeds, lanes = set(), set()
    for v in range(40):
        tree, _ = expand(text, v)
        speeds.add(tree["ego"]["speed"])
        lanes.add(tree["ego"]["lane"])
    assert min(speeds) >= 4.0 and max(speeds) <= 6.0 and {4.0, 6.0} <= speeds
    assert lanes == {"right", "left"}


# ------------------------------------------------------------------------------------ errors
BAD = [
    ("ego:\n  lane: middle\n", 2, "ego.lane", "right"),
    ("actors:\n  insert:\n    - id: a\n      class: car\n      speed: fast\n", 5, "actors.insert[0].speed", "number"),
    ("actors:\n  insert:\n    - id: a\n      class: car\n      behaviours:\n        - stalled: {}\n          trigger: {time: 1}\n",
     7, "actors.insert[0].behaviours[0].trigger", "no trigger"),
    ("actors:\n  insert:\n    - id: a\n      class: car\n      behaviours:\n        - teleport: {}\n", 6,
     "actors.insert[0].behaviours[0].teleport", "exactly one behaviour"),
    ("duration: 4\nwheels: 4\n", 2, "wheels", "unknown key"),
    ("ego:\n  speed: {uniform: [9, 2]}\n", 2, "ego.speed.uniform", "lo <= hi"),
    ("actors:\n  insert:\n    - id: a\n      asset: car_000\n      class: car\n", 3, "actors.insert[0]", "exactly one of"),
    ("ego:\n  behaviours:\n    - cut_in: {duration: 1}\n", 3, "ego.behaviours[0].cut_in", "the ego's behaviours"),
]


@pytest.mark.parametrize("text,line,field,words", BAD)
def test_bad_scenarios_name_file_line_and_field(text, line, field, words):
    with pytest.raises(InputError) as e:
        scenario_from_tree(t := parse_scenario_text("name: bad\n" + text, "bad.yaml"), expand(t, 0)[0])
    msg = str(e.value)
    assert f"bad.yaml:{line + 1}" in msg and f"'{field}'" in msg and words in msg, msg


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(InputError, match=r"broken.yaml:4: not valid YAML .*flow sequence at line 3"):
        parse_scenario_text("name: x\nego:\n  speed: [1, 2\n", "broken.yaml")


def test_references_to_unknown_actors_and_assets_are_clear_errors(world, road):
    base = "name: refs\nactors:\n  insert:\n    - id: a\n"
    cases = [(base + "      asset: truck_9\n", "actors.insert[0].asset", "truck_9"),
             (base + "      class: bicycle\n", "actors.insert[0].class", "bicycle"),
             (base + "      class: car\n      behaviours:\n        - follow: {target: ghost}\n", "follow.target", "ghost"),
             ("name: refs\nactors:\n  remove: [car_999]\n", "actors.remove[0]", "car_999")]
    for text, field, words in cases:
        t = parse_scenario_text(text, "refs.yaml")
        with pytest.raises(InputError) as e:
            build_scenario_world(scenario_from_tree(t, expand(t, 0)[0]), world.graph, road)
        assert field in str(e.value) and words in str(e.value) and "refs.yaml" in str(e.value)


# ------------------------------------------------------------------------------------ sanity
def test_sanity_checks_find_planted_violations(world, road):
    text = parse_scenario_text(
        "name: broken\nactors:\n  existing: none\n  insert:\n"
        "    - {id: a, class: car, lane: left, x: 20.0}\n"
        "    - {id: b, class: car, lane: left, x: 21.0}\n"                  # on top of a
        "    - {id: c, class: car, lane: sidewalk_right, x: 30.0}\n"       # a car on the sidewalk
        "    - {id: d, class: pedestrian, lane: right, x: 35.0}\n"         # a pedestrian walking in the lane
        "    - {id: e, class: car, lane: parking_left, x: 9.0, collide: true}\n"
        "    - {id: f, class: car, lane: parking_left, x: 10.0}\n", "broken.yaml")
    sw = build_scenario_world(scenario_from_tree(text, expand(text, 0)[0]), world.graph, road)
    found = {(v["kind"], tuple(v["actors"])) for v in check_scenario_world(sw, road)}
    assert found == {("overlap", ("a", "b")), ("vehicle_off_road", ("c",)), ("pedestrian_off_sidewalk", ("d",))}


# ---------------------------------------------------------------------------------- fuzzing
def _paths(tree, path=()):
    yield path
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, path + (i,))


junk = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                    max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(template=st.sampled_from(TEMPLATES), pick=st.integers(0, 10_000), value=junk, drop=st.booleans())
def test_fuzzed_scenarios_fail_only_with_clear_errors(world, road, template, pick, value, drop):
    text = load_scenario_text(template)
    tree = copy.deepcopy(text.tree)
    paths = [p for p in _paths(tree) if p]
    path = paths[pick % len(paths)]
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if drop and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    mutated = ScenarioText(tree, text.lines, text.source)
    try:
        concrete, _ = expand(mutated, 0)
        build_scenario_world(scenario_from_tree(mutated, concrete), world.graph, road)
    except InputError as e:
        assert text.source in str(e)


def test_a_behaviour_added_to_the_registry_is_validated_and_simulated(world, road, monkeypatch):
    """One place: an entry in tasks.scenarios.behaviours.BEHAVIOURS is all a new behaviour needs."""
    from tasks.scenarios import behaviours

    def creep(sim, agent, p, t):
        agent.target_speed = p.get("speed", 0.5)

    monkeypatch.setitem(behaviours.BEHAVIOURS, "creep", behaviours.BehaviourKind({"speed": behaviours.Param(strict=True)}, creep))
    tree = {"name": "creeper", "duration": 6.0, "ego": {"lane": "right", "x": -40.0, "speed": 2.0},
            "actors": {"existing": "none", "insert": [{"id": "slow", "class": "car", "lane": "right", "x": 0.0, "speed": 4.0,
                                                       "behaviours": [{"creep": {"speed": 1.0}, "trigger": {"time": 1.0}}]}]}}
    text = parse_scenario_text(yaml.safe_dump(tree), "creeper.yaml")
    sw = build_scenario_world(scenario_from_tree(text, tree), world.graph, road)
    assert (1.0, "slow", "creep") in sw.events
    v = _speeds(_track(sw, "slow"), np.array([0.0, 0.5, 5.5, 6.0]))
    assert v[0] == pytest.approx(4.0, abs=0.05) and v[-1] == pytest.approx(1.0, abs=0.05)
    tree["actors"]["insert"][0]["behaviours"][0]["creep"] = {"speed": 0.0}
    with pytest.raises(InputError, match=r"creep\.speed"):
        scenario_from_tree(parse_scenario_text(yaml.safe_dump(tree), "creeper.yaml"), tree)
    tree["actors"]["insert"][0]["behaviours"][0]["creep"] = {"pace": 1.0}
    with pytest.raises(InputError, match="unknown key"):
        scenario_from_tree(parse_scenario_text(yaml.safe_dump(tree), "creeper.yaml"), tree)
