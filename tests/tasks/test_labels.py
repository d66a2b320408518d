"""KITTI / COCO label writers: fields round-trip, 3D boxes rebuild, calib projects like the lens,
pycocotools reads the COCO file and scores detections made from the masks alone perfectly, and the
files are the same byte for byte in another process."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from scenes.errors import InputError
from sensors.boxes import BoxLabel, amodal_box, box_corners, kitti_box_to_cam, kitti_pose, modal_box
from scenes.lens import CameraModel
from tasks.scenarios.labels import (CocoBuilder, kitti_calib_text, kitti_object_lines, kitti_occluded_level, kitti_tracking_lines,
                          kitti_truncation_level, parse_kitti_calib, parse_kitti_object_line, parse_kitti_tracking_line)

MODEL = CameraModel("pinhole", 160, 120, 100.0, 95.0, 81.0, 58.5)
# Box frame (x forward, y left, z up) aligned with a LiDAR-like frame: x -> z_cam, y -> -x_cam, z -> -y_cam.
R_CAM_FLAT = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
CAR, PED = (4.5, 1.8, 1.5), (0.6, 0.6, 1.8)
# actor id: (instance id, class, size, centre in camera, yaw about the box's up axis)
ACTORS = {
    "car_near": (3, "car", CAR, (1.0, 0.9, 12.0), 0.4),
    "ped": (5, "pedestrian", PED, (0.3, 0.6, 8.0), -1.0),  # in front of car_near, hiding part of it
    "car_edge": (7, "car", CAR, (7.5, 0.9, 10.0), 1.2),  # sticks out of the right image border
    "car_behind": (9, "car", CAR, (0.0, 0.9, -10.0), 0.0),  # behind the camera: no 2D box
    "car_hidden": (11, "car", (2.0, 1.0, 0.8), (1.0, 1.0, 24.0), 0.3),  # wholly behind car_near
}


def _T_cam_box(center, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:3, :3] = R_CAM_FLAT @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T[:3, 3] = center
    return T


def _box_pixels(box2d) -> np.ndarray:
    """Pixels whose centres lie inside a 2D box."""
    u, v = np.meshgrid(np.arange(MODEL.width) + 0.5, np.arange(MODEL.height) + 0.5)
    return (u >= box2d[0]) & (u < box2d[2]) & (v >= box2d[1]) & (v < box2d[3])


def _scene(actors: dict = ACTORS) -> tuple[list[BoxLabel], np.ndarray, dict]:
    """Box labels of ``actors`` and an instance mask painting each one's amodal rectangle, far to near."""
    instance = np.zeros((MODEL.height, MODEL.width), np.int32)
    alone, poses = {}, {}
    for aid, (iid, _, size, center, yaw) in sorted(actors.items(), key=lambda kv: -np.linalg.norm(kv[1][3])):
        poses[aid] = _T_cam_box(center, yaw)
        box2d, _ = amodal_box(MODEL, size, poses[aid])
        if box2d is not None:
            rect = _box_pixels(box2d)
            instance[rect] = iid
            alone[aid] = int(rect.sum())
    labels = []
    for aid, (iid, cls, size, center, yaw) in actors.items():
        box2d, trunc = amodal_box(MODEL, size, poses[aid])
        modal, visible = modal_box(instance, iid)
        occlusion = 1.0 - visible / alone[aid] if alone.get(aid) else 1.0
        dims, loc, ry, alpha = kitti_pose(size, poses[aid])
        labels.append(BoxLabel(aid, iid, cls, size, tuple(center), poses[aid][:3, :3].tolist(), dims, loc, ry, alpha,
                               box2d, modal, trunc, occlusion, visible))
    return labels, instance, poses


LABELS, INSTANCE, POSES = _scene()
BY_ID = {b.actor_id: b for b in LABELS}


def test_scene_is_what_the_tests_assume():
    assert BY_ID["car_behind"].box2d_amodal is None
    assert BY_ID["car_hidden"].box2d_amodal is not None and BY_ID["car_hidden"].visible_pixels == 0
    assert 0.1 < BY_ID["car_edge"].truncation < 0.9 and BY_ID["car_edge"].box2d_amodal[2] == MODEL.width
    assert BY_ID["car_near"].truncation == 0.0 and 0.1 < BY_ID["car_near"].occlusion < 0.5
    assert BY_ID["ped"].occlusion == 0.0 and BY_ID["ped"].visible_pixels > 20


# ---- KITTI object ---------------------------------------------------------------------------------
def test_kitti_object_lines_round_trip():
    lines = kitti_object_lines(LABELS)
    labelled = [BY_ID[a] for a in ("car_near", "ped", "car_edge")]  # input order; no 2D box / no pixel -> no line
    assert len(lines) == len(labelled)
    for line, b in zip(lines, labelled):
        assert len(line.split()) == 15
        f = parse_kitti_object_line(line)
        assert f["type"] == {"car": "Car", "pedestrian": "Pedestrian"}[b.class_name]
        assert f["truncated"] == pytest.approx(b.truncation, abs=0.005 + 1e-9)
        assert f["occluded"] == kitti_occluded_level(b.occlusion)
        assert np.allclose(f["bbox"], b.box2d_amodal, atol=0.005 + 1e-9)
        for key, want in (("dimensions", b.kitti_dimensions), ("location", b.kitti_location),
                          ("rotation_y", b.kitti_rotation_y), ("alpha", b.kitti_alpha)):
            assert np.allclose(f[key], want, atol=0.005 + 1e-9), key
    assert parse_kitti_object_line(lines[0])["bbox"][0] >= 0 and parse_kitti_object_line(lines[2])["bbox"][2] == MODEL.width


@pytest.mark.parametrize("decimals, tol", [(3, 1e-2), (2, 0.03)])
def test_kitti_fields_rebuild_the_3d_box(decimals, tol):
    # With 2 decimals (KITTI's files) the corner error is bounded by sqrt(3) * (0.005 + 0.0025) m from
    # location and half-dimensions plus 0.005 rad times the half-diagonal (2.4 m): < 0.03 m.
    for line, b in zip(kitti_object_lines(LABELS, decimals=decimals), [BY_ID[a] for a in ("car_near", "ped", "car_edge")]):
        f = parse_kitti_object_line(line)
        T = kitti_box_to_cam(f["dimensions"], f["location"], f["rotation_y"])
        h, w, l = f["dimensions"]
        err = np.abs(box_corners((l, w, h), T) - box_corners(b.size, POSES[b.actor_id])).max()
        assert err < tol, (b.actor_id, err)


def test_kitti_filters_by_visible_pixels_and_class():
    all_lines = kitti_object_lines(LABELS, min_visible_pixels=0)
    assert len(all_lines) == 4  # car_hidden joins; car_behind never (no 2D box)
    hidden = parse_kitti_object_line(all_lines[-1])
    assert hidden["occluded"] == 2 and hidden["type"] == "Car"
    ped_pixels = BY_ID["ped"].visible_pixels
    assert len(kitti_object_lines(LABELS, min_visible_pixels=ped_pixels + 1)) == len(
        [b for b in LABELS if b.box2d_amodal is not None and b.visible_pixels > ped_pixels])
    assert kitti_object_lines([dataclasses.replace(BY_ID["car_near"], class_name="pole")]) == []


def test_occluded_and_truncation_levels():
    assert [kitti_occluded_level(x) for x in (0.0, 0.099, 0.1, 0.49, 0.5, 1.0)] == [0, 0, 1, 1, 2, 2]
    assert kitti_occluded_level(float("nan")) == 3
    assert [kitti_truncation_level(x) for x in (0.0, 0.099, 0.1, 0.89, 0.9, 1.0)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(InputError, match="occlusion"):
        kitti_occluded_level(1.5)
    with pytest.raises(InputError, match="truncation"):
        kitti_truncation_level(-0.1)


def test_parse_rejects_wrong_field_count_and_text():
    line = kitti_object_lines(LABELS)[0]
    with pytest.raises(InputError, match=r"expected 15 fields \(16 with a score\), got 14") as e:
        parse_kitti_object_line(" ".join(line.split()[:14]))
    assert e.value.field == "field count"
    assert parse_kitti_object_line(line + " 0.87")["score"] == pytest.approx(0.87)
    with pytest.raises(InputError, match="expected numbers"):
        parse_kitti_object_line(line.replace(line.split()[5], "left", 1))


# ---- KITTI tracking -------------------------------------------------------------------------------
def test_kitti_tracking_lines():
    lines = kitti_tracking_lines(42, LABELS)
    objects = kitti_object_lines(LABELS)
    assert len(lines) == len(objects) == 3
    for line, obj, aid in zip(lines, objects, ("car_near", "ped", "car_edge")):
        assert len(line.split()) == 17
        t, o = parse_kitti_tracking_line(line), parse_kitti_object_line(obj)
        assert t["frame"] == 42 and t["track_id"] == BY_ID[aid].instance_id
        assert t["truncated"] == kitti_truncation_level(BY_ID[aid].truncation)
        assert line.split()[4:] == obj.split()[2:]  # occluded onwards identical to the object line
        assert t["type"] == o["type"]
    assert [parse_kitti_tracking_line(x)["truncated"] for x in lines] == [0, 0, 1]
    assert [parse_kitti_tracking_line(x)["occluded"] for x in lines] == [1, 0, 0]
    mapped = kitti_tracking_lines(0, LABELS, track_ids={"car_near": 0, "ped": 1, "car_edge": 2})
    assert [line.split()[:2] for line in mapped] == [["0", "0"], ["0", "1"], ["0", "2"]]
    with pytest.raises(InputError, match="ped"):
        kitti_tracking_lines(0, LABELS, track_ids={"car_near": 0, "car_edge": 2})


# ---- KITTI calib ----------------------------------------------------------------------------------
def test_kitti_calib_projects_like_the_lens():
    text = kitti_calib_text(MODEL)
    assert [line.split(":")[0] for line in text.splitlines()] == ["P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam",
                                                                 "Tr_imu_to_velo"]
    assert re.fullmatch(r"P2:( -?\d\.\d{12}e[+-]\d\d){12}", text.splitlines()[2])
    calib = parse_kitti_calib(text)
    K = np.array([[MODEL.fx, 0, MODEL.cx], [0, MODEL.fy, MODEL.cy], [0, 0, 1]])
    assert calib["P2"].shape == (3, 4) and np.array_equal(calib["P2"][:, :3], K) and not calib["P2"][:, 3].any()
    assert np.array_equal(calib["R0_rect"], np.eye(3)) and np.array_equal(calib["Tr_imu_to_velo"], np.eye(4)[:3])
    pts = np.random.default_rng(0).uniform([-5, -3, 1], [5, 3, 40], size=(200, 3))
    uvw = np.c_[pts, np.ones(len(pts))] @ calib["P2"].T
    uv, _ = MODEL.project(pts)
    assert np.abs(uvw[:, :2] / uvw[:, 2:] - uv).max() < 1e-9
    # Default LiDAR axes: 10 m forward, 2 m left, 1 m up -> x = -2 (left), y = -1 (up), z = 10 in the camera.
    assert np.allclose(calib["Tr_velo_to_cam"] @ [10.0, 2.0, 1.0, 1.0], [-2.0, -1.0, 10.0])


def test_kitti_calib_custom_extrinsics_and_bad_models():
    T = np.eye(4)
    T[:3, :3] = R_CAM_FLAT @ np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    T[:3, 3] = [0.1, -0.3, 1.25]
    assert np.allclose(parse_kitti_calib(kitti_calib_text(MODEL, T))["Tr_velo_to_cam"], T[:3], atol=1e-12)
    with pytest.raises(InputError, match="pinhole"):
        kitti_calib_text(CameraModel("fisheye", 64, 64, 20.0, 20.0, 32.0, 32.0))
    with pytest.raises(InputError, match="T_cam_lidar"):
        kitti_calib_text(MODEL, np.eye(3))
    with pytest.raises(InputError, match="P2"):
        parse_kitti_calib("P2: 1 2 x\n")


# ---- COCO -----------------------------------------------------------------------------------------
def _coco_builder() -> CocoBuilder:
    """Two images: the full scene, and the scene without the pedestrian."""
    coco = CocoBuilder(["car", "pedestrian"])
    for frame, actors in enumerate([ACTORS, {k: v for k, v in ACTORS.items() if k != "ped"}]):
        labels, instance, _ = _scene(actors)
        image_id = coco.add_image(f"{frame:06d}.png", MODEL.width, MODEL.height, frame, extra={"camera": "front"})
        coco.add_instances(image_id, instance, labels)
    return coco


def _frames() -> list[tuple[list[BoxLabel], np.ndarray]]:
    """The two images of `_coco_builder`: labels and instance mask."""
    return [_scene(actors)[:2] for actors in (ACTORS, {k: v for k, v in ACTORS.items() if k != "ped"})]


def _predictions(shift_px: int = 0) -> list[dict]:
    """Detections made independently of the writer: every instance's mask of the painted image,
    encoded by pycocotools, its box from the mask (pycocotools), its category from the class name;
    ``shift_px`` moves every mask right (a detector that is off)."""
    preds = []
    for image_id, (labels, instance) in enumerate(_frames(), start=1):
        for b in labels:
            mask = np.roll(instance == b.instance_id, shift_px, axis=1)
            if not mask.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode()
            preds.append({"image_id": image_id, "category_id": {"car": 1, "pedestrian": 2}[b.class_name],
                          "bbox": mask_utils.toBbox(rle).tolist(), "segmentation": rle, "score": 1.0})
    return preds


def _average_precision(gt: COCO, predictions: list[dict], iou_type: str) -> float:
    ev = COCOeval(gt, gt.loadRes(predictions), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[0])


def test_coco_file_loads_and_pycocotools_scores_exact_detections_perfectly(tmp_path):
    """pycocotools reads the file, and detections built from the masks alone (not from the file)
    score AP 1 against it; shifted by 3 pixels they do not: the file's masks and boxes are the
    images' instances."""
    path = _coco_builder().write(tmp_path / "instances.json")
    gt = COCO(str(path))
    assert len(gt.dataset["annotations"]) == 5  # 3 visible actors, then 2 without the pedestrian
    assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["car", "pedestrian"]
    for iou_type in ("bbox", "segm"):
        assert _average_precision(gt, _predictions(), iou_type) == pytest.approx(1.0, abs=1e-6), iou_type
        assert _average_precision(gt, _predictions(shift_px=3), iou_type) < 0.9, iou_type


def test_coco_annotations_match_the_mask(tmp_path):
    coco = _coco_builder()
    doc = json.loads(coco.write(tmp_path / "instances.json").read_text())
    assert [a["id"] for a in doc["annotations"]] == [1, 2, 3, 4, 5]
    assert [i["id"] for i in doc["images"]] == [1, 2] and doc["images"][1]["frame_index"] == 1
    assert doc["images"][0]["camera"] == "front"
    first = [a for a in doc["annotations"] if a["image_id"] == 1]
    assert [a["track_id"] for a in first] == [3, 5, 7]
    assert [a["category_id"] for a in first] == [1, 2, 1]
    for a in first:
        label = next(b for b in LABELS if b.instance_id == a["track_id"])
        painted = INSTANCE == label.instance_id
        decoded = mask_utils.decode(a["segmentation"]).astype(bool)
        assert np.array_equal(decoded, painted)
        assert a["area"] == painted.sum() == mask_utils.area(a["segmentation"]) == label.visible_pixels
        u0, v0, u1, v1 = label.box2d_modal
        assert a["bbox"] == [u0, v0, u1 - u0, v1 - v0]
        assert np.allclose(mask_utils.toBbox(a["segmentation"]), a["bbox"])
        assert a["iscrowd"] == 0
        assert a["attributes"]["occlusion"] == label.occlusion and a["attributes"]["truncation"] == label.truncation
        x, y, w, h = a["attributes"]["amodal_bbox"]
        assert np.allclose([x, y, x + w, y + h], label.box2d_amodal)


_WRITE_LABELS = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_labels import LABELS, MODEL, _coco_builder
from tasks.scenarios.labels import kitti_calib_text, kitti_object_lines
out = Path({out!r})
_coco_builder().write(out / "coco.json")
(out / "kitti.txt").write_text("".join(line + "\\n" for line in kitti_object_lines(LABELS)) + kitti_calib_text(MODEL))
"""


def test_outputs_are_the_same_bytes_in_another_process(tmp_path):
    """Same labels, same files: written here and by a fresh interpreter with another hash seed
    (set and dict orders that depend on it would show), the files are identical."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = tmp_path / "here"
    here.mkdir()
    _coco_builder().write(here / "coco.json")
    (here / "kitti.txt").write_text("".join(line + "\n" for line in kitti_object_lines(LABELS)) + kitti_calib_text(MODEL))
    there = tmp_path / "there"
    there.mkdir()
    env = dict(os.environ, PYTHONHASHSEED="12345")
    script = _WRITE_LABELS.format(tests=str(Path(__file__).parent), out=str(there))
    subprocess.run([sys.executable, "-c", script], check=True, env=env, cwd=Path(__file__).parents[2])
    for name in ("coco.json", "kitti.txt"):
        assert (here / name).read_bytes() == (there / name).read_bytes(), name
    assert not list(tmp_path.rglob(".*tmp*"))


def test_kitti_calib_text_is_the_kitti_layout_of_the_lens():
    """Written out by hand from the lens (fx 100, fy 95, cx 81, cy 58.5) and KITTI's layout."""
    P = "1.000000000000e+02 0.000000000000e+00 8.100000000000e+01 0.000000000000e+00 " \
        "0.000000000000e+00 9.500000000000e+01 5.850000000000e+01 0.000000000000e+00 " \
        "0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00"
    lines = kitti_calib_text(MODEL).splitlines()
    assert lines[:4] == [f"P{i}: {P}" for i in range(4)]
    assert lines[4] == "R0_rect: " + " ".join(f"{v:.12e}" for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_coco_bad_input():
    coco = CocoBuilder()
    with pytest.raises(InputError, match="image_id"):
        coco.add_instances(1, INSTANCE, LABELS)
    image_id = coco.add_image("x.png", MODEL.width, MODEL.height, 0)
    with pytest.raises(InputError, match="instance_mask"):
        coco.add_instances(image_id, INSTANCE[:, :-1], LABELS)
    with pytest.raises(InputError, match="categories"):
        CocoBuilder(["car", "car"])
    with pytest.raises(InputError, match="categories"):
        CocoBuilder(["truck"])
    assert CocoBuilder(["pedestrian"]).category_ids == {"pedestrian": 1}


def test_coco_info_and_poses_name_the_actors_with_refined_tracks():
    """A scene trained with track refinement (`sim.tracks`): the actors it logged are named; an actor
    a scenario added is not; a graph without the record names none."""
    from scenes.graph import Actor, ActorTrack, SceneGraph
    from sim.tracks import META_KEY
    from tasks.scenarios.dataset import refined_track_actors

    track = ActorTrack.static(np.eye(4))
    actors = (Actor("car_000", "car", 1, (4, 2, 1.5), track), Actor("inserted_0", "car", 2, (4, 2, 1.5), track))
    record = {"refined": True, "times": [0.0], "actors": {"car_000": {"static": True, "corrections": [[0.1, 0, 1]], "raw_track": track.to_dict()}}}
    assert refined_track_actors(SceneGraph(actors=actors, meta={META_KEY: record})) == ["car_000"]
    assert refined_track_actors(SceneGraph(actors=actors)) == []
    info = CocoBuilder(info={"refined_tracks": ["car_000"]}).to_dict()["info"]
    assert info["refined_tracks"] == ["car_000"] and info["description"] == "nerfsim instance labels"
    assert "refined_tracks" not in CocoBuilder().to_dict()["info"]
