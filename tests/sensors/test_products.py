"""Camera products of the neural renderer against the mesh twin on the analytic box world."""

import numpy as np
import pytest

from scenes.classes import CLASS_IDS
from scenes.edits import MoveActor, RemoveActor, apply_edits
from scenes.transforms import look_at
from sensors.boxes import box_corners, kitti_box_to_cam, kitti_pose
from sensors.flow import correspondences, sampled_correspondences
from sensors.frame import capture_camera
from scenes.lens import CameraModel
from sensors.renderers import UNLABELLED, NeuralRenderer, TwinRenderer
from tasks.eval.metrics import angular_error_deg, box_iou, mask_iou

PINHOLE = CameraModel("pinhole", 96, 64, 60.0, 60.0, 48.0, 32.0)
T_CAM = look_at(np.array([0.0, 0.5, 1.6]), np.array([8.0, -0.5, 0.8]))


def capture_both(box_world, model=PINHOLE, T=T_CAM, t=0.0, graph=None):
    state = (graph or box_world.graph).at(t)
    n = capture_camera(NeuralRenderer(box_world.model), model, T, state, name="cam")
    g = capture_camera(TwinRenderer(box_world.twin), model, T, state, name="cam")
    return n, g, state


@pytest.fixture(scope="module")
def frames(box_world):
    return capture_both(box_world)


def test_depths_match_the_twin(frames):
    n, g, _ = frames
    hit = np.isfinite(g.depth)
    assert hit.mean() > 0.5 and (np.isfinite(n.depth) == hit).mean() > 0.995
    both = hit & np.isfinite(n.depth)
    rel = np.abs(n.depth[both] - g.depth[both]) / g.depth[both]
    assert np.median(rel) < 0.002 and rel.mean() < 0.01, (np.median(rel), rel.mean())
    # first-surface depth is solved inside the crossing sample: not quantised to the 1 cm step
    rel_med = np.abs(n.depth_median[both] - g.depth[both]) / g.depth[both]
    assert np.median(rel_med) < 0.0005 and np.percentile(rel_med, 90) < 0.0015, (np.median(rel_med), np.percentile(rel_med, 90))
    # z-depth = ray distance * cos(angle to the optical axis)
    d_cam, _ = PINHOLE.pixel_directions()
    assert np.allclose(n.depth[both], (n.ray_dist * d_cam[..., 2])[both], rtol=1e-5)


def test_normals_from_density_gradient_match_the_twin(frames):
    n, g, _ = frames
    hit = np.isfinite(g.depth) & np.isfinite(n.depth)
    err = angular_error_deg(n.normals[hit], g.normals[hit])
    assert np.median(err) < 1.0 and np.mean(err < 10) > 0.95, (np.median(err), np.mean(err < 10))
    # camera frame, facing the camera: normals point against the viewing ray
    d_cam, _ = PINHOLE.pixel_directions()
    assert (np.einsum("...i,...i->...", n.normals, d_cam)[hit] < 0).mean() > 0.99


def test_instance_and_semantic_masks(frames, box_world):
    n, g, _ = frames
    for iid in (1, 2):
        assert (g.instance == iid).sum() > 100
        assert mask_iou(n.instance == iid, g.instance == iid) > 0.95
    actors = g.instance > 0
    assert (n.semantic[actors] == g.semantic[actors]).mean() > 0.97
    assert set(np.unique(g.semantic[g.instance == 1])) == {CLASS_IDS["car"]}
    # the box world's neural background has no semantic head: unlabelled, never a wrong class
    bg = (n.instance == 0) & np.isfinite(n.depth)
    assert (n.semantic[bg] == UNLABELLED).all()


def test_boxes_3d_exact_2d_and_occlusion_match_the_twin(frames, box_world):
    n, g, state = frames
    T_cam_world = np.linalg.inv(T_CAM)
    for bn, bg in zip(n.boxes, g.boxes):
        actor = next(a for a in state.actors if a.instance_id == bn.instance_id)
        # 3D: the twin mesh's vertices in the camera frame are exactly the label's corners
        mesh = box_world.actor_assets[actor.asset_id][0].mesh
        verts = (np.c_[mesh.vertices, np.ones(len(mesh.vertices))] @ (T_cam_world @ actor.T_world_actor).T)[:, :3]
        T_cam_box = np.eye(4)
        T_cam_box[:3, :3], T_cam_box[:3, 3] = np.array(bn.R_cam_box), bn.center_cam
        corners = box_corners(bn.size, T_cam_box)
        assert np.allclose(np.sort(verts, 0), np.sort(corners, 0), atol=1e-9)
        assert bn.box2d_amodal == bg.box2d_amodal
        assert box_iou(bn.box2d_modal, bg.box2d_modal) > 0.9
        assert abs(bn.visible_pixels - bg.visible_pixels) <= 0.05 * bg.visible_pixels
        assert abs(bn.occlusion - bg.occlusion) < 0.05
    car = next(b for b in g.boxes if b.actor_id == "car_0")
    assert 0.05 < car.occlusion < 0.6  # the pole hides part of the car


def test_kitti_convention_round_trip():
    # A level camera (OpenCV: y down) and upright boxes: KITTI's parametrisation is exact.
    T_world_cam = look_at(np.array([0.0, 0.0, 1.5]), np.array([10.0, 0.0, 1.5]))
    for yaw in (-170.0, -35.0, 0.0, 80.0):
        a = np.radians(yaw)
        T_world_box = np.eye(4)
        T_world_box[:3, :3] = [[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]
        T_world_box[:3, 3] = (9.0, 2.0, 0.75)
        T_cam_box = np.linalg.inv(T_world_cam) @ T_world_box
        dims, loc, ry, alpha = kitti_pose((4.0, 1.8, 1.5), T_cam_box)
        assert dims == (1.5, 1.8, 4.0)
        assert np.isclose(loc[1], 1.5, atol=1e-9)  # bottom face on the ground, 1.5 m below the camera (y down)
        # heading: a box facing the camera's forward (world +x, yaw 0) has rotation_y = -pi/2 in
        # KITTI; yaw turns the box left (counter-clockwise from above) = negative about camera y
        expected = -np.radians(yaw) - np.pi / 2
        assert np.isclose(np.angle(np.exp(1j * (ry - expected))), 0.0, atol=1e-9)
        assert -np.pi <= ry < np.pi
        assert np.allclose(kitti_box_to_cam(dims, loc, ry), T_cam_box, atol=1e-9)


def test_truncation_of_a_box_leaving_the_image(box_world):
    T = look_at(np.array([0.0, 0.5, 1.6]), np.array([6.0, 4.0, 1.0]))  # the car straddles the right edge
    n, g, _ = capture_both(box_world, T=T)
    car = next(b for b in g.boxes if b.actor_id == "car_0")
    assert car.box2d_amodal is not None and car.box2d_amodal[2] == PINHOLE.width and 0.1 < car.truncation < 0.9
    assert car.visible_pixels > 0
    assert next(b for b in n.boxes if b.actor_id == "car_0").truncation == car.truncation


@pytest.mark.parametrize("lens", [CameraModel("opencv", 96, 64, 60.0, 60.0, 47.0, 33.0, (-0.2, 0.05, 0.002, -0.001, 0.0)),
                                  CameraModel("fisheye", 96, 96, 30.0, 30.0, 48.0, 48.0, max_fov_deg=200.0),
                                  CameraModel.equirectangular(128)])
def test_other_lenses_render_consistently(box_world, lens):
    n, g, _ = capture_both(box_world, model=lens)
    assert (n.valid == g.valid).all()
    hit = np.isfinite(g.ray_dist) & np.isfinite(n.ray_dist)
    assert hit.sum() > 500
    rel = np.abs(n.ray_dist[hit] - g.ray_dist[hit]) / g.ray_dist[hit]
    assert np.median(rel) < 0.003
    assert mask_iou(n.instance == 1, g.instance == 1) > 0.9


def test_correspondences_between_two_cameras_and_an_edit(box_world):
    n_a, g_a, s_a = capture_both(box_world)
    T_b = look_at(np.array([1.0, -0.5, 2.0]), np.array([8.0, -1.0, 0.8]))
    edited = apply_edits(box_world.graph, [MoveActor("car_0", (0.0, 1.0, 0.0), 0.0), RemoveActor("ped_0")])
    n_b, g_b, s_b = capture_both(box_world, T=T_b, graph=edited)
    pred, true = correspondences(n_a, s_a, n_b, s_b), correspondences(g_a, s_a, g_b, s_b)
    co = true.visible
    assert co.sum() > 1000
    err = np.linalg.norm(pred.flow - true.flow, axis=-1)
    assert (err[co & pred.in_view] <= 2.0).mean() > 0.95
    assert (pred.visible & true.visible).sum() / pred.visible.sum() > 0.97
    # the removed pedestrian has no correspondence; the moved car's pixels moved with the car
    assert not true.in_view[g_a.instance == 2].any()
    car = (g_a.instance == 1) & true.visible
    assert car.sum() > 50
    # independent check of the twin flow on the background: reproject with the cameras' poses
    bg = co & (g_a.instance == 0)
    P = g_a.points_world()[bg]
    p_b = (np.c_[P, np.ones(len(P))] @ np.linalg.inv(T_b).T)[:, :3]
    uv_b, _ = PINHOLE.project(p_b)
    v, u = np.nonzero(bg)
    assert np.allclose(uv_b - np.c_[u + 0.5, v + 0.5], true.flow[bg], atol=1e-3)


def test_sampled_correspondences_follow_the_surface(box_world):
    n_a, _, s_a = capture_both(box_world)
    T_b = look_at(np.array([1.0, -0.5, 2.0]), np.array([8.0, -1.0, 0.8]))
    n_b, _, s_b = capture_both(box_world, T=T_b)
    plain = correspondences(n_a, s_a, n_b, s_b)
    draws = sampled_correspondences(NeuralRenderer(box_world.model).sample_distances, n_a, s_a, n_b, s_b, n_draws=3)
    for d in draws:
        both = d.visible & plain.visible
        assert both.sum() > 0.9 * plain.visible.sum()
        # solid surfaces: every draw lands within a marching step of the surface -> < 1 px apart
        assert np.median(np.linalg.norm(d.flow - plain.flow, axis=-1)[both]) < 0.5
