"""The command line: errors name file and field; cameras files parse; edits render only their boxes."""

import json

import numpy as np
import pytest
import torch

from scenes.camera import Intrinsics
from scenes.edits import MoveActor, apply_edits
from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.transforms import look_at, make_pose, rot_z
from sim.compose import NeuralScene, SceneModelConfig
from sim.encoding import HashGridConfig
from sim.field import FieldConfig
from sim.rays import camera_rays, ray_aabb
from sim.render import render_camera
from tasks.cli.camera_files import load_cameras, save_cameras
from tasks.cli import main
from scenes.camera import Camera


def test_missing_inputs_give_one_line_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path / "nope"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "no such" in err and "Traceback" not in err
    assert main(["render", str(tmp_path / "nope"), "--cameras", str(tmp_path / "c.json")]) == 2
    assert "c.json" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()  # nothing half-written


def test_cameras_file_roundtrip_and_errors(tmp_path):
    cams = [Camera(Intrinsics.from_fov(64, 48, 70), look_at([0, 0, 1.5], [10, 1, 1]), 0.3, "a")]
    p = tmp_path / "cameras.json"
    save_cameras(cams, p)
    back = load_cameras(p)
    assert np.allclose(back[0].T_world_cam, cams[0].T_world_cam) and back[0].intrinsics == cams[0].intrinsics and back[0].time == 0.3
    d = json.loads(p.read_text())
    d["cameras"][0]["T_world_cam"][0][0] = float("nan")
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"cameras\[0\].T_world_cam"):
        load_cameras(p)
    d["cameras"][0]["T_world_cam"] = np.asarray(cams[0].T_world_cam).flatten().tolist()  # 16 numbers: nerfstudio's form, not ours
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match=r"cameras\[0\].T_world_cam.*4x4 matrix, got shape \(16,\)"):
        load_cameras(p)
    d["cameras"][0]["T_world_cam"] = (np.diag([1.0, 1.0, 2.0, 1.0]) @ cams[0].T_world_cam).tolist()  # scaled: not rigid
    p.write_text(json.dumps(d))
    with pytest.raises(InputError, match="rigid transform"):
        load_cameras(p)
    p.write_text("{broken")
    with pytest.raises(InputError, match="not valid JSON"):
        load_cameras(p)


def test_nerfstudio_camera_path_is_converted_to_opencv(tmp_path):
    T_cv = look_at([1, 2, 3], [5, 2, 3])
    T_gl = T_cv @ np.diag([1, -1, -1, 1])
    p = tmp_path / "camera_path.json"
    p.write_text(json.dumps({"render_width": 80, "render_height": 60, "fps": 5,
                             "camera_path": [{"camera_to_world": T_gl.flatten().tolist(), "fov": 60}] * 2}))
    cams = load_cameras(p)
    assert np.allclose(cams[0].T_world_cam, T_cv) and cams[1].time == pytest.approx(0.2)
    assert cams[0].intrinsics.fy == pytest.approx(30 / np.tan(np.radians(30)))


def _tiny_scene():
    small = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=12, base_resolution=4, max_resolution=32), hidden_dim=16, color_hidden_dim=16, sh_degree=0)
    cfg = SceneModelConfig(background=small, actor=small, far_field="black", step_min=0.1, actor_steps=32)
    car = Actor("car", "car", 1, (4, 2, 1.5), ActorTrack.static(make_pose(rot_z(0.3), [10, 0, 0.75])))
    graph = SceneGraph((car,), aabb=((-5, -10, -1), (25, 10, 6)))
    torch.manual_seed(0)
    model = NeuralScene(cfg, graph.aabb, graph.asset_ids)
    with torch.no_grad():  # make every field visibly dense and coloured
        for p in model.parameters():
            p.uniform_(-1, 1)
        model.background.density_mlp[-1].weight.mul_(0.1)  # thin haze in front of the car
        model.background.density_mlp[-1].bias[0] = -3.0
    return model, graph


def _box_mask(cam, actor_state):
    o, d, _ = camera_rays(cam)
    T = torch.tensor(np.linalg.inv(actor_state.T_world_actor), dtype=torch.float32)
    o = o @ T[:3, :3].T + T[:3, 3]
    d = d @ T[:3, :3].T
    half = torch.tensor(actor_state.size) / 2
    near, far = ray_aabb(o, d, -half, half)
    return (far > near).reshape(cam.intrinsics.height, cam.intrinsics.width).numpy()


def test_moving_an_actor_changes_exactly_the_pixels_of_its_old_and_new_box():
    model, graph = _tiny_scene()
    cam = Camera(Intrinsics.from_fov(64, 40, 80), look_at([0, -1, 2], [10, 0, 1]), 0.0)
    moved = apply_edits(graph, [MoveActor("car", (0, 3, 0), 20)])
    a = render_camera(model, cam, graph.at(0))
    b = render_camera(model, cam, moved.at(0))
    changed = np.abs(a["rgb"] - b["rgb"]).max(-1) > 0
    boxes = _box_mask(cam, graph.at(0).actors[0]) | _box_mask(cam, moved.at(0).actors[0])
    assert changed.any() and boxes.mean() < 0.6
    assert not (changed & ~boxes).any()  # nothing outside the two boxes moved
    assert (a["instance"][~boxes] == 0).all() and (a["instance"] == 1).any()


def test_render_writes_one_set_of_files_per_camera_even_with_repeated_names(tmp_path):
    from sim.checkpoint import save_checkpoint
    from tasks.pipeline import render_to_folder

    model, graph = _tiny_scene()
    save_checkpoint(tmp_path / "scene", model, graph)
    cam = Camera(Intrinsics.from_fov(16, 12, 80), look_at([0, -1, 2], [10, 0, 1]), 0.0, "front")
    results = render_to_folder(tmp_path / "scene", [cam, cam], tmp_path / "out", progress=False)
    rgb = sorted(p.name for p in (tmp_path / "out").glob("*_rgb.png"))
    assert rgb == ["front_00000_rgb.png", "front_00001_rgb.png"] and results == ["front_00000", "front_00001"]
    depth = np.load(tmp_path / "out" / "front_00000_depth.npy")
    assert depth.shape == (12, 16) and depth.dtype == np.float32


def test_video_and_contact_sheet_are_written_and_readable(tmp_path):
    import imageio.v3 as iio

    from tasks.media import colorize_depth, grid, write_png, write_video

    frames = [np.full((12, 17, 3), i / 5, np.float32) for i in range(5)]
    write_video(tmp_path / "v.mp4", frames, fps=5)
    back = iio.imread(tmp_path / "v.mp4")
    assert back.shape[0] == 5 and back.shape[1:3] == (12, 18)  # padded to even width
    assert abs(int(back[4, :, :16].mean()) - 204) < 6 and back[0, :, :16].mean() < 10
    depth = np.array([[2.0, 10.0], [60.0, np.inf]], np.float32)
    vis = colorize_depth(depth)
    assert np.all(vis[1, 1] == 0) and not np.allclose(vis[0, 0], vis[1, 0])
    write_png(tmp_path / "s.png", grid([[vis, vis], [vis]]))
    assert iio.imread(tmp_path / "s.png").shape == (2 * 2 + 2, 2 * 2 + 2, 3)


def test_render_all_outputs_and_export_meshes_from_the_command_line(tmp_path, capsys):
    import open3d as o3d
    import trimesh

    from sim.checkpoint import save_checkpoint
    from tasks.cli.camera_files import cameras_to_dict

    model, graph = _tiny_scene()
    save_checkpoint(tmp_path / "scene", model, graph)
    cams = [Camera(Intrinsics.from_fov(24, 16, 80), look_at([0, y, 2], [10, 0, 1]), 0.0, "front") for y in (-1.0, -0.5)]
    d = cameras_to_dict(cams)
    d["cameras"].append({"name": "fish", "time": 0.0, "T_world_cam": cams[0].T_world_cam.tolist(),
                         "model": {"kind": "fisheye", "width": 20, "height": 20, "fx": 6.0, "fy": 6.0, "cx": 10.0, "cy": 10.0}})
    (tmp_path / "cameras.json").write_text(json.dumps(d))
    out = tmp_path / "out"
    assert main(["render", str(tmp_path / "scene"), "--cameras", str(tmp_path / "cameras.json"), "--out", str(out),
                 "--outputs", "all"]) == 0
    names = {p.name for p in out.iterdir()}
    for stem in ("front_00000", "front_00001", "fish"):
        for suffix in ("_rgb.png", "_depth.npy", "_depth_median.npy", "_ray_dist.npy", "_depth_mm.png", "_normals.npy",
                       "_semantic.png", "_instance.png", "_boxes.json", "_lidar.npy", "_lidar.ply", "_lidar.pcd"):
            assert stem + suffix in names, stem + suffix
    assert "front_00000_flow.npz" in names and "fish_flow.npz" not in names  # flow to the next camera
    assert not [n for n in names if "tmp" in n]
    depth = np.load(out / "front_00000_depth.npy")
    import imageio.v3 as iio

    mm = iio.imread(out / "front_00000_depth_mm.png")
    assert mm.dtype == np.uint16 and np.allclose(mm[np.isfinite(depth)], np.round(depth[np.isfinite(depth)] * 1000), atol=1)
    boxes = json.loads((out / "front_00000_boxes.json").read_text())
    assert [b["actor_id"] for b in boxes["boxes"]] == ["car"] and len(boxes["boxes"][0]["kitti_dimensions"]) == 3
    normals = np.load(out / "fish_normals.npy")
    assert normals.shape == (20, 20, 3)
    assert main(["render", str(tmp_path / "scene"), "--cameras", str(tmp_path / "cameras.json"), "--outputs", "rgb,radar"]) == 2
    assert "radar" in capsys.readouterr().err

    assert main(["export-mesh", str(tmp_path / "scene"), "--out", str(tmp_path / "meshes"), "--mesh.background-cell", "0.5",
                 "--mesh.actor-resolution", "24", "--mesh.level", "1.0"]) == 0
    index = json.loads((tmp_path / "meshes" / "meshes.json").read_text())
    assert set(index) == {"background", "actor_car"} and index["actor_car"]["box_size"] == [4, 2, 1.5]
    car = trimesh.load(tmp_path / "meshes" / "actor_car.ply", force="mesh")
    assert len(car.faces) == index["actor_car"]["faces"] > 0
    assert np.all(np.abs(car.vertices) <= np.array([2, 1, 0.75]) + 1e-3)  # in the box frame
    assert len(o3d.io.read_triangle_mesh(str(tmp_path / "meshes" / "background.ply")).triangles) == index["background"]["faces"]


def test_a_camera_far_outside_the_scene_time_range_is_refused(tmp_path, capsys):
    """Actors are known between their first and last keyframe: a camera at 1e9 s would show them
    clamped at their last pose without a word. It is refused (1 s of margin either side)."""
    from sim.checkpoint import save_checkpoint
    from tasks.cli.camera_files import cameras_to_dict
    from tasks.pipeline import TIME_MARGIN_S

    model, graph = _tiny_scene()
    car = graph.actors[0]
    track = ActorTrack.from_poses([0.0, 4.0], [car.track.pose_at(0.0), make_pose(rot_z(0.3), [14, 0, 0.75])])
    graph = graph.with_actors([Actor(car.actor_id, car.class_name, car.instance_id, car.size, track)])
    save_checkpoint(tmp_path / "scene", model, graph)
    lens = Intrinsics.from_fov(16, 12, 80)
    for t, ok in ((4.0 + TIME_MARGIN_S - 0.01, True), (1e9, False), (-TIME_MARGIN_S - 0.5, False)):
        cams = [Camera(lens, look_at([0, -1, 2], [10, 0, 1]), 0.0, "a"), Camera(lens, look_at([0, -1, 2], [10, 0, 1]), t, "b")]
        (tmp_path / "cameras.json").write_text(json.dumps(cameras_to_dict(cams)))
        out = tmp_path / f"out_{t:g}"
        code = main(["render", str(tmp_path / "scene"), "--cameras", str(tmp_path / "cameras.json"), "--out", str(out)])
        err = capsys.readouterr().err
        assert code == (0 if ok else 2), err
        if not ok:
            assert "cameras[1].time" in err and "cameras.json" in err and "[0, 4]" in err and "Traceback" not in err
            assert not out.exists()  # refused before anything was written
