import numpy as np
import pytest
import yaml

from scenes.edits import InsertActor, MoveActor, RemoveActor, apply_edits, edits_to_dict, load_edits
from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.transforms import make_pose, yaw_of


def graph():
    car = Actor("car_1", "car", 1, (4, 2, 1.5), ActorTrack.from_poses([0, 1], [make_pose(np.eye(3), [0, 0, 0.75]), make_pose(np.eye(3), [5, 0, 0.75])]))
    ped = Actor("ped_1", "pedestrian", 2, (0.5, 0.5, 1.8), ActorTrack.static(make_pose(np.eye(3), [3, 4, 0.9])))
    return SceneGraph((car, ped), aabb=((-10, -10, -1), (10, 10, 5)))


def test_move_remove_insert():
    g = apply_edits(graph(), [MoveActor("car_1", (0, 2, 0), 90), RemoveActor("ped_1"), InsertActor("car_1", "car_2", (10, 0, 0))])
    assert [a.actor_id for a in g.actors] == ["car_1", "car_2"]
    T = g.actor("car_1").track.pose_at(0.5)
    assert np.allclose(T[:3, 3], [2.5, 2, 0.75]) and np.isclose(yaw_of(T[:3, :3]), np.pi / 2)
    copy = g.actor("car_2")
    assert copy.asset_id == "car_1" and copy.instance_id not in (1,) and copy.size == (4, 2, 1.5)
    assert np.allclose(copy.track.pose_at(0.5)[:3, 3], [12.5, 2, 0.75])  # copy of the moved track, shifted


def test_file_roundtrip(tmp_path):
    edits = [RemoveActor("ped_1"), MoveActor("car_1", (1, 0, 0), 10.0), InsertActor("car_1", "c2", (0, 3, 0))]
    p = tmp_path / "edits.yaml"
    p.write_text(yaml.safe_dump(edits_to_dict(edits)))
    assert load_edits(p) == edits


@pytest.mark.parametrize("text, field", [
    ("edits: [{remove: car_9}]", "edits[0]"),
    ("edits: [{move: car_1, translate: [1, 2]}]", "edits[0].translate"),
    ("edits: [{move: car_1, yaw_deg: .nan}]", "edits[0].yaw_deg"),
    ("edits: [{insert: car_1, colour: red}]", "edits[0].colour"),
    ("edits: [{teleport: car_1}]", "edits[0]"),
    ("edits: {remove: car_1}", "edits"),
])
def test_bad_edits_name_file_and_field(tmp_path, text, field):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as e:
        apply_edits(graph(), load_edits(p), str(p))
    assert str(p) in str(e.value) and f"'{field}'" in str(e.value)


def test_unparseable_file(tmp_path):
    p = tmp_path / "e.yaml"
    p.write_text("edits: [remove: {")
    with pytest.raises(InputError, match="cannot parse"):
        load_edits(p)
