"""The street of a recorded drive (`RoadMap.from_drive`): direction, lane centres, widths, ground
and placement of straight synthetic drives against hand-computed layouts; bending drives against
the exact Frenet coordinates of an arc street; drives the layout cannot hold (a tight turn, a lane
change in one step, a climb, left-hand traffic, a standing ego) are refused with the log named and
the reason given."""

import numpy as np
import pytest

from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack
from scenes.roadmap import DEFAULT_LANE_WIDTH, DEFAULT_PARKING_WIDTH, RoadMap
from scenes.transforms import make_pose, rot_z
from scenes.world import WorldConfig

HEADING = np.radians(30.0)
T_TRUE = make_pose(rot_z(HEADING), (100.0, -50.0, 12.0))
"""Where the street of the synthetic drives lies: heading 30 deg, ground at z = 12."""
LW = 3.2
CAR = (4.5, 1.8, 1.5)


def _world(x, y, z=0.0, yaw=0.0):
    """A pose given in the true road frame, in world coordinates."""
    return T_TRUE @ make_pose(rot_z(yaw), (x, y, z))


def _ego(n=41, length=40.0, lateral=lambda s: 0.0, height=0.0, rise=lambda s: 0.0):
    return np.stack([_world(s, -LW / 2 + lateral(s), height + rise(s)) for s in np.linspace(0.0, length, n)])


def _car(aid, iid, poses, times=None, size=CAR, cls="car"):
    times = np.arange(len(poses), dtype=float) if times is None else times
    return Actor(aid, cls, iid, size, ActorTrack.from_poses(times, poses))


def _moving(aid, iid, x0, x1, y, yaw):
    return _car(aid, iid, [_world(x, y, CAR[2] / 2, yaw) for x in np.linspace(x0, x1, 9)])


def _parked(aid, iid, x, y, yaw=0.0):
    return _car(aid, iid, [_world(x, y, CAR[2] / 2, yaw)])


def _street():
    """Oncoming cars 3.1 / 3.2 / 3.3 m left of the ego's lane centre, parked cars on both sides, and
    vehicles that must not count: one ahead in the ego's lane, one standing in the oncoming lane, one
    in a parking lot 12 m off the street, a pedestrian."""
    return [
        _moving("on_a", 1, 50.0, 0.0, LW / 2 - 0.1, np.pi), _moving("on_b", 2, 45.0, -5.0, LW / 2, np.pi),
        _moving("on_c", 3, 30.0, -10.0, LW / 2 + 0.1, np.pi),
        _parked("park_r", 4, 10.0, -(LW + 1.1)),  # strip centre 1.1 m beyond the lane: 2.2 m; needs 1.1 + 0.9 = 2.0 m
        _parked("park_l", 5, 25.0, LW + 1.3, np.pi),  # 2.6 m; needs 2.2 m -> median 2.4 m
        _moving("ahead", 6, 10.0, 60.0, -LW / 2, 0.0), _parked("stopped", 7, 20.0, LW / 2, np.pi),
        _parked("lot", 8, 15.0, -12.0), _car("ped", 9, [_world(5.0, LW + 0.5, 0.9)], size=(0.5, 0.6, 1.8), cls="pedestrian"),
    ]


def test_a_straight_drive_gives_the_hand_computed_street():
    road = RoadMap.from_drive(_ego(), _street(), source="drive/log.json")
    assert road.placed and road.source == "drive/log.json"
    assert road.lane_width == pytest.approx(LW)  # median of 3.1, 3.2, 3.3
    assert road.parking_width == pytest.approx(2.4)
    assert road.street_length == pytest.approx(40.0)
    assert road.ego_height == pytest.approx(0.0, abs=1e-9)
    assert np.allclose(road.T_world_road, T_TRUE, atol=1e-9)  # heading 30 deg, origin on the centre line at the start, z 12
    # lanes in world coordinates: the ego's path is the right lane's centre, the oncoming one the left's
    assert road.lane("right").y == pytest.approx(-LW / 2) and road.lane("left").y == pytest.approx(LW / 2)
    assert road.lane("parking_left").y == pytest.approx(LW + 1.2)
    ego_xy = _ego()[:, :2, 3]
    assert np.allclose(road.xy_to_road(ego_xy)[:, 1], -LW / 2) and np.allclose(road.xy_to_road(ego_xy)[[0, -1], 0], [0.0, 40.0])
    # every parked car kept in the layout stands on the street
    for a in _street():
        if a.actor_id.startswith("park"):
            corners = a.track.positions[0, :2] + np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * [0, CAR[1] / 2] @ rot_z(HEADING)[:2, :2].T
            assert road.on_road(road.xy_to_road(corners)).all()


def test_a_drive_the_other_way_turns_the_street_around():
    road = RoadMap.from_drive(_ego()[::-1], [], source="back")
    heading = np.arctan2(road.T_world_road[1, 0], road.T_world_road[0, 0])
    assert np.degrees(heading) == pytest.approx(30.0 - 180.0)
    assert road.xy_to_road(_ego()[-1, :2, 3])[0] == pytest.approx(0.0)  # x = 0 where this drive starts


def test_defaults_without_oncoming_or_parked_vehicles_and_the_ground_from_the_boxes():
    # the ego frame 0.93 m above the ground (KITTI's IMU); a car ahead stands on the ground at z = 12
    road = RoadMap.from_drive(_ego(height=0.93), [_moving("ahead", 1, 10.0, 60.0, -LW / 2, 0.0)], source="kitti")
    assert (road.lane_width, road.parking_width) == (DEFAULT_LANE_WIDTH, DEFAULT_PARKING_WIDTH)
    assert road.T_world_road[2, 3] == pytest.approx(12.0) and road.ego_height == pytest.approx(0.93)
    alone = RoadMap.from_drive(_ego(height=0.0), [], source="alone")  # no boxes: the ego's origin is on the ground
    assert alone.T_world_road[2, 3] == pytest.approx(12.0) and alone.ego_height == 0.0


def test_the_built_in_street_stays_in_the_world_frame():
    road = RoadMap.from_world_config(WorldConfig())
    assert not road.placed and np.array_equal(road.T_world_road, np.eye(4)) and road.ego_height == 0.0
    xy = np.array([[3.0, -1.5], [7.0, 2.0]])
    assert road.xy_to_road(xy) is not None and np.array_equal(road.xy_to_road(xy), xy)


ARC = 40.0  # radius of a bending street's centre line, metres


def _on_arc(s, d, z=0.0, yaw=0.0, radius=ARC):
    """A pose given in the road coordinates of a street whose centre line is an arc (left turn for
    radius > 0) starting where the true straight street starts: the exact Frenet map."""
    phi = s / radius
    xy = np.array([0.0, radius]) + (radius - d) * np.array([np.sin(phi), -np.cos(phi)])
    return T_TRUE @ make_pose(rot_z(phi + yaw), (xy[0], xy[1], z))


def _bending_street(radius):
    ego = np.stack([_on_arc(s, -LW / 2, radius=radius) for s in np.linspace(0.0, 40.0, 41)])
    arc_car = lambda aid, iid, s0, s1, d, yaw: _car(aid, iid, [_on_arc(s, d, CAR[2] / 2, yaw, radius) for s in np.linspace(s0, s1, 9)])
    actors = [arc_car("on_a", 1, 50.0, 0.0, LW / 2 - 0.1, np.pi), arc_car("on_b", 2, 45.0, -5.0, LW / 2, np.pi),
              arc_car("on_c", 3, 30.0, -10.0, LW / 2 + 0.1, np.pi),
              arc_car("park_r", 4, 10.0, 10.0, -(LW + 1.1), 0.0), arc_car("park_l", 5, 25.0, 25.0, LW + 1.3, np.pi)]
    return ego, actors


@pytest.mark.parametrize("radius", [ARC, -ARC])
def test_a_bending_drive_gives_a_street_that_follows_the_bend(radius):
    """A left and a right bend (radius 40 m, 57 deg over the drive): the same layout as the straight
    street's, and road coordinates equal to the true street's Frenet coordinates within 1 cm / 0.05 deg."""
    ego, actors = _bending_street(radius)
    road = RoadMap.from_drive(ego, actors, source="bend")
    assert road.bends and road.placed
    assert road.lane_width == pytest.approx(LW, abs=5e-3) and road.parking_width == pytest.approx(2.4, abs=5e-3)
    assert road.street_length == pytest.approx(40.0, abs=0.01)  # along the centre line
    assert abs(road.frame.min_radius()) == pytest.approx(abs(radius), rel=0.01)
    rng = np.random.default_rng(3)
    truth = np.stack([rng.uniform(0, 40, 200), rng.uniform(-9, 9, 200)], axis=1)  # beyond its ends the street goes on straight
    for i, (s, d) in enumerate(truth):
        pose = _on_arc(s, d, 0.3, 0.2, radius)
        got = road.poses_to_road(pose)[0]
        assert got[:2, 3] == pytest.approx([s, d], abs=0.01), i
        assert got[2, 3] == pytest.approx(0.3, abs=1e-6)
        assert np.degrees(np.arctan2(got[1, 0], got[0, 0])) == pytest.approx(np.degrees(0.2), abs=0.05)
        assert np.allclose(road.poses_to_world(got)[0], pose, atol=1e-6)  # exact inverse
    assert len(road.to_dict()["centre_line"]) > 10


def test_a_bending_drive_with_jittered_poses_still_gives_a_smooth_street():
    ego, actors = _bending_street(ARC)
    jitter = np.random.default_rng(0).normal(0.0, 0.02, (len(ego), 2))
    ego = ego.copy()
    ego[:, :2, 3] += jitter
    road = RoadMap.from_drive(ego, actors, source="jitter")
    assert abs(road.frame.min_radius()) > 0.7 * ARC  # jitter does not kink the street
    s = np.linspace(2.0, 38.0, 10)
    got = road.xy_to_road(np.stack([_on_arc(x, 0.0)[:2, 3] for x in s]))
    assert np.abs(got[:, 1]).max() < 0.03 and np.abs(got[:, 0] - s).max() < 0.05


@pytest.mark.parametrize("ego,actors,words", [
    (lambda: np.stack([_on_arc(s, -LW / 2, radius=9.0) for s in np.linspace(0, 20, 41)]), [], r"turns with a radius of [89]\.\d m, tighter than the street.s half width with its sidewalks \(9.0 m\)"),
    (lambda: _ego(lateral=lambda s: 0.0 if s < 20 else LW), [], "turns with a radius"),  # a lane change in one step
    (lambda: _ego(rise=lambda s: 0.05 * s), [], "rises 2.00 m"),
    (lambda: _ego(length=0.4), [], "moves 0.40 m"),
    (lambda: _ego(), [_moving("on", 1, 50.0, 0.0, -LW / 2 - 3.3, np.pi)], "left-hand traffic"),
])
def test_a_drive_the_layout_cannot_hold_is_refused_with_the_reason(ego, actors, words):
    with pytest.raises(InputError, match=words) as e:
        RoadMap.from_drive(ego(), actors, source="logs/drive_7/log.json")
    assert str(e.value).startswith("logs/drive_7/log.json")
