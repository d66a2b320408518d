"""Checkpoints: exact round trip, optimizer moments, atomic replacement, and corrupt inputs."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import sim.checkpoint as ckpt
from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.transforms import make_pose, rot_z
from sim.checkpoint import load_checkpoint, load_optimizer_state, read_checkpoint_meta, save_checkpoint
from sim.compose import NeuralScene, SceneModelConfig
from sim.encoding import HashGridConfig
from sim.field import FieldConfig
from sim.render import actor_rays_for_state
from sim.train import make_optimizer


def small_cfg(log2: int = 10) -> SceneModelConfig:
    f = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=log2, base_resolution=4, max_resolution=64),
                    hidden_dim=16, color_hidden_dim=16, sh_degree=2, density_bias=1.0)
    return SceneModelConfig(background=f, actor=f, occupancy_cell=1.0, actor_occupancy_resolution=8, actor_steps=32,
                            step_min=0.1)


def make_graph() -> SceneGraph:
    car = Actor("car_0", "car", 1, (4.0, 1.8, 1.5),
                ActorTrack.from_poses([0.0, 1.0], [make_pose(rot_z(0.2), [2.0, 1.0, 0.75]),
                                                    make_pose(rot_z(0.4), [4.0, 1.5, 0.75])]))
    ped = Actor("ped_0", "pedestrian", 2, (0.5, 0.6, 1.8), ActorTrack.static(make_pose(rot_z(-1.0), [6.0, -2.0, 0.9])))
    car2 = Actor("car_1", "car", 3, (4.0, 1.8, 1.5), ActorTrack.static(make_pose(np.eye(3), [9.0, 2.0, 0.75])), asset_id="car_0")
    return SceneGraph(actors=(car, ped, car2), aabb=((-2.0, -6.0, -1.0), (14.0, 6.0, 5.0)), meta={"note": "test"})


def make_model(graph: SceneGraph, seed: int = 0, log2: int = 10) -> NeuralScene:
    torch.manual_seed(seed)
    model = NeuralScene(small_cfg(log2), graph.aabb, graph.asset_ids)
    with torch.no_grad():  # make the fields non-trivial so a wrong tensor shows in renders
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    # Non-trivial occupancy (seeded from "surface points"), so the grids must travel with the weights.
    g = torch.Generator().manual_seed(seed)
    model.background_grid.reset_from_points(torch.rand(150, 3, generator=g) * torch.tensor([1.0, 1.0, 0.5]))
    for a in graph.asset_ids:
        model.actor_grid(a).reset_from_points(torch.rand(40, 3, generator=g))
    return model


def rays(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    origins = torch.tensor([-1.0, 0.0, 1.5]) + 0.2 * torch.randn(n, 3, generator=g)
    targets = torch.tensor([6.0, 0.0, 0.5]) + torch.randn(n, 3, generator=g) * torch.tensor([4.0, 3.0, 0.8])
    dirs = torch.nn.functional.normalize(targets - origins, dim=-1)
    return origins, dirs


def render(model: NeuralScene, graph: SceneGraph, t: float = 0.5) -> dict:
    actors, _ = actor_rays_for_state(model, graph.at(t))
    with torch.no_grad():
        return model.render_rays(*rays(), actors)


@pytest.fixture(scope="module")
def graph():
    return make_graph()


@pytest.fixture(scope="module")
def saved(graph, tmp_path_factory):
    """A checkpoint folder written from a model with optimizer moments (two Adam steps)."""
    model = make_model(graph)
    opt = make_optimizer(model, 1e-2)
    for _ in range(2):
        opt.zero_grad()
        out = model.render_rays(*rays(64, seed=5), actor_rays_for_state(model, graph.at(0.0))[0], jitter=True)
        (out["rgb"].square().mean() + out["depth"].mean() * 1e-3).backward()
        opt.step()
    folder = tmp_path_factory.mktemp("ckpt") / "scene"
    save_checkpoint(folder, model, graph, step=2, optimizer=opt, train_state={"elapsed_s": 1.5}, metrics={"psnr": 12.0})
    return folder, model, opt


def fresh_copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------------------------------ round trip
def test_round_trip_is_exact(saved, graph):
    folder, model, _ = saved
    loaded, graph2, meta = load_checkpoint(folder)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    assert graph2.to_dict() == graph.to_dict()
    assert loaded.cfg.to_dict() == model.cfg.to_dict()
    assert meta["step"] == 2 and meta["metrics"] == {"psnr": 12.0} and meta["train_state"]["elapsed_s"] == 1.5
    # The occupancy grids travel with the weights (they are not all-occupied any more).
    assert torch.equal(loaded.background_grid.occupied, model.background_grid.occupied)
    assert 0.05 < model.background_grid.occupancy_fraction() < 0.95
    before, after = render(model, graph), render(loaded, graph2)
    assert float(before["accumulation"].mean()) > 0.05  # renders something
    for k in ("rgb", "depth", "accumulation", "owner_weights"):
        assert torch.equal(before[k], after[k]), k


def test_optimizer_moments_round_trip(saved, graph):
    folder, model, opt = saved
    loaded, _, meta = load_checkpoint(folder)
    opt2 = make_optimizer(loaded, 1e-2)
    load_optimizer_state(folder, meta, opt2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["state"].keys() == s2["state"].keys() and len(s1["state"]) == len(list(model.parameters()))
    for i in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(torch.as_tensor(s1["state"][i][name]), torch.as_tensor(s2["state"][i][name])), (i, name)
    assert float(s2["state"][0]["step"]) == 2
    # One more identical step from both gives identical parameters (moments and hyper-parameters agree).
    model_copy, _, _ = load_checkpoint(folder)
    opt1 = make_optimizer(model_copy, 1e-2)
    load_optimizer_state(folder, meta, opt1)
    for m, o in ((model_copy, opt1), (loaded, opt2)):
        o.zero_grad()
        out = m.render_rays(*rays(64, seed=7), actor_rays_for_state(m, graph.at(0.0))[0])
        out["rgb"].square().mean().backward()
        o.step()
    for (k, p1), p2 in zip(model_copy.named_parameters(), loaded.parameters()):
        assert torch.equal(p1, p2), k
    # And differs from a step with fresh moments (the restored state matters).
    fresh, _, _ = load_checkpoint(folder)
    opt3 = make_optimizer(fresh, 1e-2)
    opt3.zero_grad()
    out = fresh.render_rays(*rays(64, seed=7), actor_rays_for_state(fresh, graph.at(0.0))[0])
    out["rgb"].square().mean().backward()
    opt3.step()
    assert not torch.equal(fresh.background.encoding.table, loaded.background.encoding.table)


def test_folder_holds_only_json_and_safetensors_and_no_pickle_is_used(saved, monkeypatch):
    folder, _, _ = saved
    suffixes = {p.suffix for p in folder.iterdir()}
    assert suffixes <= {".json", ".safetensors"}, suffixes
    for f in folder.glob("*.safetensors"):
        assert f.read_bytes()[:2] != b"\x80\x04"  # not a pickle stream

    def forbidden(*a, **k):
        raise AssertionError("pickle used while loading a checkpoint")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    model, _, meta = load_checkpoint(folder)
    load_optimizer_state(folder, meta, make_optimizer(model, 1e-2))


# ------------------------------------------------------------------------------------ atomicity
def test_new_checkpoint_replaces_old_tensor_files(graph, tmp_path):
    model = make_model(graph, seed=1)
    opt = make_optimizer(model, 1e-2)
    folder = tmp_path / "run"
    save_checkpoint(folder, model, graph, step=3, optimizer=opt)
    save_checkpoint(folder, model, graph, step=7, optimizer=opt)
    meta = read_checkpoint_meta(folder)
    assert meta["weights"] == "weights-00000007.safetensors" and meta["optimizer"] == "optimizer-00000007.safetensors"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["scene.json", meta["weights"], meta["optimizer"]])
    # A final checkpoint without optimizer drops the optimizer file.
    save_checkpoint(folder, model, graph, step=9)
    meta = read_checkpoint_meta(folder)
    assert "optimizer" not in meta
    assert sorted(p.name for p in folder.iterdir()) == ["scene.json", "weights-00000009.safetensors"]


def test_kill_before_scene_json_leaves_previous_checkpoint_loadable(graph, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    m1 = make_model(graph, seed=1)
    save_checkpoint(folder, m1, graph, step=1)
    m2 = make_model(graph, seed=2)

    class Killed(Exception):
        pass

    def killed(*a, **k):
        raise Killed

    monkeypatch.setattr(ckpt, "atomic_write_bytes", killed)  # dies after the tensors, before scene.json
    with pytest.raises(Killed):
        save_checkpoint(folder, m2, graph, step=2)
    monkeypatch.undo()
    loaded, _, meta = load_checkpoint(folder)
    assert meta["step"] == 1
    for k, v in m1.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k

    # Killed while writing the weights file: nothing is replaced either.
    real_save = ckpt.save_file

    def half_written(tensors, path):
        real_save(tensors, path)
        Path(path).write_bytes(Path(path).read_bytes()[:100])
        raise Killed

    monkeypatch.setattr(ckpt, "save_file", half_written)
    with pytest.raises(Killed):
        save_checkpoint(folder, m2, graph, step=1)  # same step: same final file name
    monkeypatch.undo()
    loaded, _, meta = load_checkpoint(folder)
    for k, v in m1.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


# ------------------------------------------------------------------------------------ corrupt input
def expect_input_error(folder: Path, names: str) -> InputError:
    with pytest.raises(InputError) as e:
        load_checkpoint(folder)
    assert names in str(e.value), str(e.value)
    return e.value


def test_missing_folder(tmp_path):
    expect_input_error(tmp_path / "nope", str(tmp_path / "nope"))


def test_scene_json_not_json(saved, tmp_path):
    folder = fresh_copy(saved[0], tmp_path)
    (folder / "scene.json").write_text("{ not json")
    expect_input_error(folder, str(folder / "scene.json"))
    (folder / "scene.json").write_bytes(b"\xff\xfe\x00garbage")
    expect_input_error(folder, str(folder / "scene.json"))


@pytest.mark.parametrize("key,value,field", [("format", "something-else", "format"), ("format_version", 99, "format_version")])
def test_wrong_format_or_version(saved, tmp_path, key, value, field):
    folder = fresh_copy(saved[0], tmp_path)
    meta = json.loads((folder / "scene.json").read_text())
    meta[key] = value
    (folder / "scene.json").write_text(json.dumps(meta))
    err = expect_input_error(folder, str(folder / "scene.json"))
    assert err.field == field


def test_scene_json_missing_key_or_not_a_mapping(saved, tmp_path):
    folder = fresh_copy(saved[0], tmp_path)
    meta = json.loads((folder / "scene.json").read_text())
    del meta["weights"]
    (folder / "scene.json").write_text(json.dumps(meta))
    assert expect_input_error(folder, "scene.json").field == "weights"
    (folder / "scene.json").write_text(json.dumps([1, 2]))
    expect_input_error(folder, "scene.json")


def test_missing_weights_file(saved, tmp_path):
    folder = fresh_copy(saved[0], tmp_path)
    w = folder / read_checkpoint_meta(folder)["weights"]
    w.unlink()
    expect_input_error(folder, str(w))


@pytest.mark.parametrize("keep", [0, 5, 200, "half"])
def test_truncated_weights_file(saved, tmp_path, keep):
    folder = fresh_copy(saved[0], tmp_path)
    w = folder / read_checkpoint_meta(folder)["weights"]
    data = w.read_bytes()
    n = len(data) // 2 if keep == "half" else keep
    w.write_bytes(data[:n])
    expect_input_error(folder, str(w))


def test_weights_of_another_shape(saved, graph, tmp_path):
    folder = fresh_copy(saved[0], tmp_path)
    other = tmp_path / "other"
    save_checkpoint(other, make_model(graph, log2=11), graph, step=2)  # bigger hash tables
    w = folder / read_checkpoint_meta(folder)["weights"]
    shutil.copy(other / "weights-00000002.safetensors", w)
    expect_input_error(folder, str(w))


def test_weights_with_missing_tensor(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = fresh_copy(saved[0], tmp_path)
    w = folder / read_checkpoint_meta(folder)["weights"]
    state = load_file(str(w))
    state.pop("background_grid.occupied")
    save_file(state, str(w))
    err = expect_input_error(folder, str(w))
    assert "background_grid.occupied" in str(err)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_corrupt_optimizer_file(saved, tmp_path, damage):
    folder = fresh_copy(saved[0], tmp_path)
    model, _, meta = load_checkpoint(folder)
    f = folder / meta["optimizer"]
    if damage == "missing":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:300])
    with pytest.raises(InputError) as e:
        load_optimizer_state(folder, meta, make_optimizer(model, 1e-2))
    assert str(f) in str(e.value)


def test_next_save_cleans_up_after_a_killed_save(graph, tmp_path, monkeypatch):
    folder = tmp_path / "run"
    model = make_model(graph, seed=1)
    save_checkpoint(folder, model, graph, step=1)
    real_save = ckpt.save_file

    def killed(tensors, path):
        real_save(tensors, path)
        raise KeyboardInterrupt  # killed after writing the temporary file, before os.replace

    monkeypatch.setattr(ckpt, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, model, graph, step=2)
    monkeypatch.undo()
    save_checkpoint(folder, model, graph, step=3)
    assert sorted(p.name for p in folder.iterdir()) == ["scene.json", "weights-00000003.safetensors"]
