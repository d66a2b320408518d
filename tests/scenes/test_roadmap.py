"""The street of a recorded drive (`RoadMap.from_drive`): direction, lane centres, widths, ground
and placement of straight synthetic drives against hand-computed layouts; drives the layout cannot
hold (a bend, a lane change, a climb, left-hand traffic, a standing ego) are refused with the log
named and the reason given."""

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


ARC = 30.0  # radius of a bending road, metres


@pytest.mark.parametrize("ego,actors,words", [
    (lambda: np.stack([_world(ARC * np.sin(s / ARC), -LW / 2 + ARC * (1 - np.cos(s / ARC))) for s in np.linspace(0, 40, 41)]), [],
     "strays .* bends or changes lanes"),
    (lambda: _ego(lateral=lambda s: 0.0 if s < 20 else LW), [], "strays"),  # a lane change
    (lambda: _ego(rise=lambda s: 0.05 * s), [], "rises 2.00 m"),
    (lambda: _ego(length=0.4), [], "moves 0.40 m"),
    (lambda: _ego(), [_moving("on", 1, 50.0, 0.0, -LW / 2 - 3.3, np.pi)], "left-hand traffic"),
])
def test_a_drive_the_layout_cannot_hold_is_refused_with_the_reason(ego, actors, words):
    with pytest.raises(InputError, match=words) as e:
        RoadMap.from_drive(ego(), actors, source="logs/drive_7/log.json")
    assert str(e.value).startswith("logs/drive_7/log.json")
