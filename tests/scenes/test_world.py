"""The procedural street world: determinism, actor boxes, no interpenetration, aabb."""

import numpy as np
import pytest

from scenes.classes import CLASS_NAMES
from scenes.world import WorldConfig, build_world


@pytest.fixture(scope="module")
def default_world():
    return build_world(WorldConfig())


@pytest.fixture(scope="module")
def tiny_world():
    return build_world(WorldConfig.tiny())


def _signature(world):
    """Everything that defines a world's content, as comparable arrays."""
    sig = [(p.name, p.class_name, p.material, np.asarray(p.mesh.vertices), np.asarray(p.mesh.faces)) for p in world.background]
    for aid, parts in sorted(world.actor_assets.items()):
        sig += [(aid, p.name, p.material, np.asarray(p.mesh.vertices)) for p in parts]
    for a in world.graph.actors:
        sig.append((a.actor_id, a.size, a.track.times, a.track.positions, a.track.quats))
    return sig


def _same(sig_a, sig_b) -> bool:
    if len(sig_a) != len(sig_b):
        return False
    for ta, tb in zip(sig_a, sig_b):
        for a, b in zip(ta, tb):
            if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
                if np.shape(a) != np.shape(b) or not np.array_equal(a, b):
                    return False
            elif a != b:
                return False
    return True


def test_deterministic_for_a_seed():
    a, b = build_world(WorldConfig.tiny(seed=3)), build_world(WorldConfig.tiny(seed=3))
    assert _same(_signature(a), _signature(b))
    c = build_world(WorldConfig.tiny(seed=4))
    assert not _same(_signature(a), _signature(c))
    assert a.graph.meta["seed"] == 3


def test_presets_have_requested_content(default_world, tiny_world):
    classes = [a.class_name for a in default_world.graph.actors]
    assert classes.count("car") == 8 and classes.count("pedestrian") == 3
    moving = [a for a in default_world.graph.actors if len(a.track.times) > 1 and a.class_name == "car"]
    assert len(moving) == 3
    for a in moving:  # keyframes every 0.5 s over the duration
        assert np.allclose(np.diff(a.track.times), 0.5) and a.track.times[-1] >= default_world.duration - 1e-9
    tiny_classes = [a.class_name for a in tiny_world.graph.actors]
    assert tiny_classes.count("car") == 2 and tiny_classes.count("pedestrian") == 1
    bg_classes = {p.class_name for p in default_world.background}
    assert {"road", "lane_marking", "sidewalk", "building", "pole", "tree"} <= bg_classes <= set(CLASS_NAMES)


def test_actor_meshes_inside_their_boxes_and_on_the_ground(default_world):
    cfg = default_world.config
    for a in default_world.graph.actors:
        half = np.array(a.size) / 2
        v = np.concatenate([p.mesh.vertices for p in default_world.actor_assets[a.asset_id]])
        assert np.all(np.abs(v) <= half + 1e-9), a.actor_id
        assert np.all(half - np.abs(v).max(axis=0) <= 0.02), f"{a.actor_id}: box not tight"
        assert v[:, 2].min() == pytest.approx(-half[2], abs=1e-9)  # mesh bottom = box bottom
        for t in (0.0, default_world.duration):
            T = a.track.pose_at(t)
            bottom = T[2, 3] - half[2]
            assert min(abs(bottom), abs(bottom - cfg.sidewalk_height)) < 1e-6, (a.actor_id, bottom)


def _sat_overlap(Ta, sa, Tb, sb) -> bool:
    """Exact 3D separating-axis test of two oriented boxes (independent of the world's 2D check)."""
    Ra, Rb = Ta[:3, :3], Tb[:3, :3]
    ha, hb = np.array(sa) / 2, np.array(sb) / 2
    d = Tb[:3, 3] - Ta[:3, 3]
    if np.linalg.norm(d) > np.linalg.norm(ha) + np.linalg.norm(hb):  # bounding spheres apart
        return False
    axes = [Ra[:, i] for i in range(3)] + [Rb[:, i] for i in range(3)]
    axes += [np.cross(Ra[:, i], Rb[:, j]) for i in range(3) for j in range(3)]
    for ax in axes:
        if np.linalg.norm(ax) < 1e-9:
            continue
        ra = np.abs(Ra.T @ ax) @ ha
        rb = np.abs(Rb.T @ ax) @ hb
        if abs(d @ ax) > ra + rb:
            return False
    return True


@pytest.mark.parametrize("which", ["default", "tiny"])
def test_no_two_boxes_overlap_over_time(which, default_world, tiny_world):
    world = default_world if which == "default" else tiny_world
    ego_box = np.diag([1.0, 1, 1, 1])
    ego_box[2, 3] = world.ego_size[2] / 2
    for t in np.arange(0.0, world.duration + 1e-9, 0.05):
        boxes = [(a.actor_id, a.track.pose_at(t), a.size) for a in world.graph.actors]
        boxes.append(("ego", world.T_world_ego(t) @ ego_box, world.ego_size))
        boxes += [(f"obstacle{i}", T, s) for i, (T, s) in enumerate(world.obstacles)]
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                if boxes[i][0].startswith("obstacle") and boxes[j][0].startswith("obstacle"):
                    continue
                assert not _sat_overlap(boxes[i][1], boxes[i][2], boxes[j][1], boxes[j][2]), (t, boxes[i][0], boxes[j][0])


def test_actors_stay_out_of_buildings(default_world):
    fy = default_world.config.facade_y
    for a in default_world.graph.actors:
        for t in np.arange(0.0, default_world.duration + 1e-9, 0.1):
            T = a.track.pose_at(t)
            corners = np.array([[sx, sy] for sx in (-1, 1) for sy in (-1, 1)]) * np.array(a.size[:2]) / 2
            y = corners @ T[1, :2] + T[1, 3]
            assert np.all(np.abs(y) < fy), (a.actor_id, t)


def test_background_inside_aabb(default_world):
    lo, hi = np.array(default_world.graph.aabb)
    for p in default_world.background:
        v = np.asarray(p.mesh.vertices)
        assert np.all(v >= lo) and np.all(v <= hi), p.name


def test_ego_drives_down_the_right_lane(tiny_world):
    cfg = tiny_world.config
    T0, T1 = tiny_world.T_world_ego(0.0), tiny_world.T_world_ego(cfg.duration)
    assert T0[1, 3] == pytest.approx(-cfg.lane_width / 2) and T0[2, 3] == 0.0
    assert T1[0, 3] - T0[0, 3] == pytest.approx(cfg.ego_speed * cfg.duration)
    assert np.allclose(T1[:3, 0], [1, 0, 0])
