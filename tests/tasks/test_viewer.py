"""The viewer: its functional core against hand-computed answers, and the real page in headless
Chromium (Debian's chromium + chromium-driver): the test moves the camera and the time slider
through the viewer's own API, and the screenshots must show what `nerfsim render` renders for the
same camera (the viewer's saved camera_path.json); edits saved from the viewer render the same."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from conftest import random_street_scene

from scenes.edits import InsertActor, MoveActor, RemoveActor, apply_edits, load_edits
from scenes.transforms import make_pose, matrix_to_quat, rot_z
from tasks.cli.camera_files import load_views
from tasks.eval.metrics import psnr
from tasks.viewer.frames import ViewCamera, add_edit, camera_path_dict, move_from_gizmo, split_view

WIDTH, HEIGHT = 640, 360  # the page's viewport (viser's page does not lay out below ~400 px)
HANDLE = 60  # pixels: the collapsed control panel's handle in the top-right corner


# ---- the functional core --------------------------------------------------------------------------
def test_view_camera_lens_follows_the_canvas():
    cam = ViewCamera((0.0, 0.0, 1.0), (1.0, 0.0, 0.0, 0.0), np.radians(60.0), 16 / 9)
    pin = cam.lens(640)
    assert (pin.width, pin.height) == (640, 360)
    assert pin.fy == pytest.approx(180 / np.tan(np.radians(30)))  # vertical fov kept
    fish = cam.lens(640, "fisheye")
    assert fish.fy == pytest.approx(180 / np.radians(30))  # equidistant: r = f * theta
    assert cam.lens(512, "equirectangular").height == 256


def test_gizmo_drag_becomes_one_move_edit_that_lands_the_actor_where_dragged(box_world):
    graph, actor = box_world.graph, box_world.graph.actors[0]
    T = actor.track.pose_at(0.0)
    target = make_pose(T[:3, :3] @ rot_z(np.radians(25.0)), T[:3, 3] + np.array([1.0, -2.0, 0.0]))
    edit = move_from_gizmo(actor.actor_id, T, target[:3, 3], matrix_to_quat(target[:3, :3]))
    assert edit.yaw_deg == pytest.approx(25.0) and np.allclose(edit.translate, (1.0, -2.0, 0.0))
    moved = apply_edits(graph, [edit]).actor(actor.actor_id).track.pose_at(0.0)
    assert np.allclose(moved, target, atol=1e-9)
    # a drag in two steps saves as one edit with the same result
    half = move_from_gizmo(actor.actor_id, T, T[:3, 3] + [0.5, -1.0, 0.0], matrix_to_quat(T[:3, :3] @ rot_z(np.radians(10.0))))
    T_half = apply_edits(graph, [half]).actor(actor.actor_id).track.pose_at(0.0)
    rest = move_from_gizmo(actor.actor_id, T_half, target[:3, 3], matrix_to_quat(target[:3, :3]))
    edits = add_edit([half], rest)
    assert len(edits) == 1 and np.allclose(apply_edits(graph, edits).actor(actor.actor_id).track.pose_at(0.0), target, atol=1e-9)
    # removing the actor drops its moves; other edits stay
    other = InsertActor(actor.actor_id, "copy")
    assert add_edit([other, MoveActor(actor.actor_id, (1, 0, 0))], RemoveActor(actor.actor_id)) == [other, RemoveActor(actor.actor_id)]


def test_saved_camera_path_reads_back_as_the_same_cameras(tmp_path):
    from scenes.files import atomic_write_json

    T = make_pose(rot_z(0.3) @ np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float), np.array([1.0, 2.0, 1.5]))
    keys = [(ViewCamera.from_pose(T, np.radians(50.0), 16 / 9), 0.4), (ViewCamera.from_pose(T, np.radians(50.0), 16 / 9), 1.2)]
    atomic_write_json(tmp_path / "camera_path.json", camera_path_dict(keys, 320))
    views = load_views(tmp_path / "camera_path.json")
    assert [v.time for v in views] == [0.4, 1.2]
    assert np.allclose(views[0].T_world_cam, T, atol=1e-9)
    assert (views[0].model.width, views[0].model.height) == (320, 180)
    assert views[0].model.fy == pytest.approx(keys[0][0].lens(320).fy)


def test_split_view_takes_each_half_from_its_image():
    a, b = np.zeros((4, 8, 3)), np.ones((4, 8, 3)) * 0.5
    s = split_view(a, b)
    assert np.all(s[:, :3] == 0) and np.all(s[:, 5:] == 0.5) and np.all(s[:, 3:5] == 1.0)


# ---- the page in a real browser -----------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    # random fields over a ground slab, sky above: cheap to render, and any wrong pixel shows
    return random_street_scene(tmp_path_factory.mktemp("viewer"), duration=2.0, far_field="sky", density_bias=0.0, ground_cells=12)


@pytest.fixture(scope="module")
def browser_viewer(scene_dir, tmp_path_factory):
    from tasks.pipeline import load_scene
    from tasks.viewer.app import Viewer, ViewerConfig
    from tasks.viewer.browser import chromium_paths, viewer_page

    if chromium_paths() is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make setup installs them)")
    pytest.importorskip("selenium")
    out = tmp_path_factory.mktemp("viewer_out")
    viewer = Viewer(load_scene(scene_dir), ViewerConfig(port=_free_port(), width=WIDTH, preview=128, out=out))
    viewer.show_boxes.value = False  # no wireframes over the image
    try:
        with viewer_page(viewer, WIDTH, HEIGHT) as (driver, _):
            yield viewer, driver, out
    finally:
        viewer.close()


def page_psnr(shot: np.ndarray, expected: np.ndarray) -> float:
    """PSNR of a screenshot against an image of the canvas' size, outside the top-right corner
    where the collapsed panel's handle (a 48-px button) stays over the canvas."""
    if shot.shape != expected.shape:
        return 0.0
    keep = np.ones(shot.shape[:2], bool)
    keep[:HANDLE, -HANDLE:] = False
    return psnr(shot[keep], expected[keep])


def _screenshot_matching(driver, expected: np.ndarray, timeout: float = 20.0) -> tuple[np.ndarray, float]:
    """The page's screenshot once it shows ``expected`` (or the last one after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        shot = iio.imread(driver.get_screenshot_as_png())[..., :3].astype(np.float32) / 255.0
        score = page_psnr(shot, expected)
        if score >= 30.0 or time.monotonic() > deadline:
            return shot, score
        time.sleep(0.5)


def _look(viewer, position, look_at) -> int:
    """Move the (one) browser's camera; returns the frame version before the move."""
    loop = next(iter(viewer.loops.values()))
    before = loop.version
    cam = loop.client.camera
    cam.up_direction = (0.0, 0.0, 1.0)
    cam.position = position
    cam.look_at = look_at
    return before


def _render_command(scene_dir, cameras: Path, out: Path, edits: Path | None = None) -> np.ndarray:
    from tasks.cli import main

    argv = ["render", str(scene_dir), "--cameras", str(cameras), "--out", str(out), "--outputs", "rgb"]
    main(argv + (["--edits", str(edits)] if edits else []))
    (png,) = sorted(out.glob("*_rgb.png"))
    return iio.imread(png)[..., :3].astype(np.float32) / 255.0


@pytest.mark.slow
def test_browser_shows_what_nerfsim_render_renders_as_camera_and_time_move(browser_viewer, scene_dir, tmp_path):
    viewer, driver, out = browser_viewer
    client_id = next(iter(viewer.loops))
    before = _look(viewer, (-2.0, -1.5, 2.0), (12.0, -1.5, 0.0))
    frame = viewer.wait_frame(client_id, before)
    assert frame.image.shape == (HEIGHT, WIDTH, 3)
    viewer.add_keyframe(viewer.loops[client_id].client)
    first, score = _screenshot_matching(driver, frame.image)
    assert score >= 30.0, f"screenshot vs the viewer's own frame: {score:.1f} dB"
    rendered = _render_command(scene_dir, viewer.save_camera_path(), tmp_path / "r0")
    assert page_psnr(first, rendered) >= 30.0

    # the time slider moves the actors: the page changes, and still shows nerfsim render's frame
    before = viewer.loops[client_id].version
    viewer.time.value = 1.5
    later = viewer.wait_frame(client_id, before)
    assert later.time == pytest.approx(1.5)
    second, score = _screenshot_matching(driver, later.image)
    assert score >= 30.0
    moved = np.abs(first - second).max(-1) > 0.1  # the actors' pixels then and now
    moved[:HANDLE, -HANDLE:] = False
    assert moved.sum() > 300, "moving the time slider did not change the picture"
    viewer.keyframes.clear()
    viewer.add_keyframe(viewer.loops[client_id].client)
    assert page_psnr(second, _render_command(scene_dir, viewer.save_camera_path(), tmp_path / "r1")) >= 30.0


@pytest.mark.slow
def test_edits_saved_from_the_viewer_render_the_same_with_nerfsim_render(browser_viewer, scene_dir, tmp_path):
    viewer, driver, out = browser_viewer
    client_id = next(iter(viewer.loops))
    viewer.time.value = 1.0
    actor = viewer.graph.actors[0].actor_id
    T = viewer.actor_pose(actor)
    before = _look(viewer, tuple(T[:3, 3] + [-8.0, 0.0, 3.0]), tuple(T[:3, 3]))
    viewer.wait_frame(client_id, before)
    before = viewer.loops[client_id].version
    target = make_pose(T[:3, :3] @ rot_z(np.radians(30.0)), T[:3, 3] + [0.0, 1.5, 0.0])
    viewer.move_actor(actor, target[:3, 3], matrix_to_quat(target[:3, :3]))  # what the gizmo's drag calls
    viewer.duplicate_actor(actor)
    frame = viewer.wait_frame(client_id, before)
    edits_file = viewer.save_edits()
    assert [type(e) for e in load_edits(edits_file)] == [MoveActor, InsertActor]
    viewer.keyframes.clear()
    viewer.add_keyframe(viewer.loops[client_id].client)
    rendered = _render_command(scene_dir, viewer.save_camera_path(), tmp_path / "edited", edits_file)
    assert np.array_equal((np.clip(frame.image, 0, 1) * 255 + 0.5).astype(np.uint8), (rendered * 255 + 0.5).astype(np.uint8))
    unedited = _render_command(scene_dir, viewer.save_camera_path(), tmp_path / "plain")
    assert psnr(rendered, unedited) < 40.0, "the edit did not change the picture"
    shot, score = _screenshot_matching(driver, frame.image)
    assert score >= 30.0


@pytest.mark.slow
def test_training_view_shows_the_model_as_it_trains(scene_dir):
    """``nerfsim train --view``: the training loop's on_step feeds the page preview frames of the
    model as it is now; a changed model shows in the next frame."""
    import torch

    from tasks.pipeline import load_scene
    from tasks.viewer.app import TrainingView, ViewerConfig
    from tasks.viewer.browser import chromium_paths, viewer_page

    if chromium_paths() is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make setup installs them)")
    model = load_scene(scene_dir).model
    log = json.loads((scene_dir / "scene.json").read_text())["extra"]["source"]["path"]
    view = TrainingView(ViewerConfig(port=_free_port(), preview=128), data=Path(log), every_s=0.0)
    view.on_step(0, 0.0, model)  # opens the page's server
    try:
        assert {a.actor_id for a in view.viewer.graph.actors} == {a.actor_id for a in load_scene(scene_dir).graph.actors}
        with viewer_page(view.viewer, WIDTH, HEIGHT) as (_, client):
            _look(view.viewer, (-2.0, -1.5, 2.0), (12.0, -1.5, 0.0))
            time.sleep(1.0)
            view.on_step(1, 0.1, model)
            first = view.viewer.frames[-1]
            assert first.preview and first.image.shape[1] == 128
            with torch.no_grad():
                for p in model.sky.parameters():
                    p.mul_(-1.0)  # "a training step" that changes what the sky looks like
            view.on_step(2, 0.2, model)
            second = view.viewer.frames[-1]
            assert second is not first and psnr(first.image, second.image) < 30.0
    finally:
        view.viewer.close()


def test_boxes_output_draws_each_box_edge_where_its_corners_project():
    from scenes.graph import ActorState, SceneState
    from sensors.boxes import box_corners
    from tasks.viewer.frames import draw_boxes

    cam = ViewCamera.from_pose(np.eye(4), np.radians(60.0), 16 / 9)  # OpenCV axes: looking along +z
    lens = cam.lens(320)
    T_box = make_pose(rot_z(0.4), np.array([0.5, 0.3, 12.0]))
    state = SceneState(0.0, (ActorState("car", "car", "car", 3, (4.0, 1.8, 1.5), T_box),))
    img = draw_boxes(np.zeros((lens.height, lens.width, 3)), lens, np.eye(4), state)
    uv, ok = lens.project(box_corners((4.0, 1.8, 1.5), T_box))
    assert ok.all()
    lit = img.sum(-1) > 0
    for u, v in uv:  # every corner is on a drawn line (within the 2-px width)
        assert lit[int(v) - 2:int(v) + 3, int(u) - 2:int(u) + 3].any()
    lo, hi = uv.min(0), uv.max(0)
    outside = np.ones_like(lit)
    outside[int(lo[1]) - 3:int(hi[1]) + 4, int(lo[0]) - 3:int(hi[0]) + 4] = False
    assert not lit[outside].any() and lit.sum() > 50


@pytest.mark.parametrize("kind", ["pinhole", "fisheye", "equirectangular"])
def test_a_full_frame_in_row_bands_sees_exactly_the_whole_frame(kind):
    from tasks.viewer.frames import row_bands

    lens = ViewCamera((0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0), np.radians(70.0), 16 / 9).lens(200, kind)
    bands = row_bands(lens, 2000)
    assert sum(b.height for b in bands) == lens.height and all(b.width == lens.width for b in bands)
    assert len(bands) == (1 if kind == "equirectangular" else -(-lens.height // 10))
    whole, valid = lens.pixel_directions()
    stacked = np.concatenate([b.pixel_directions()[0] for b in bands], axis=0)
    assert np.allclose(stacked, whole, atol=1e-12) and np.concatenate([b.pixel_directions()[1] for b in bands]).tolist() == valid.tolist()
