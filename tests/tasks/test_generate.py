"""`nerfsim generate`: every label format read back by the real tools, consistent with the 3D boxes;
same seed -> same files; a killed run resumes without losing or duplicating frames; Ray and the
in-process runner agree."""

from __future__ import annotations

import hashlib
import json

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from conftest import random_model

import tasks.scenarios.dataset as gen
from scenes.errors import InputError
from scenes.world import WorldConfig, build_world
from sensors.boxes import box_corners, kitti_box_to_cam
from sim.checkpoint import save_checkpoint
from tasks.pipeline import shared_scene
from tasks.scenarios.dataset import GenerateConfig, generate
from tasks.scenarios.labels import parse_kitti_calib, parse_kitti_object_line, parse_kitti_tracking_line
from tasks.scenarios.schema import TEMPLATES_DIR

FRAMES = 4


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A scene of the default built-in world with small random fields (dense actors, hazy background)."""
    world = build_world(WorldConfig())
    model = random_model(world.graph.aabb, world.graph.asset_ids, log2_table_size=10, actor_steps=24, density_weight_scale=0.05)
    path = tmp_path_factory.mktemp("scene") / "scene"
    save_checkpoint(path, model, world.graph, extra={"world": {"seed": 0, "config": world.config.to_dict()}})
    return path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The occluded-pedestrian template, small and short: two cameras of 64x36, 0.4 s."""
    tree = yaml.safe_load((TEMPLATES_DIR / "occluded_pedestrian.yaml").read_text())
    tree["duration"] = FRAMES / tree["rate_hz"]
    tree["ego"]["rig"] = {"cameras": ["front", "front_left"], "width": 64, "height": 36}
    path = tmp_path_factory.mktemp("scenario") / "small.yaml"
    path.write_text(yaml.safe_dump(tree))
    return str(path)


def _config(scenario, scene, out, **kw):
    return GenerateConfig(scenario, out, variants=kw.pop("variants", 2), scene=scene, workers=kw.pop("workers", 0), progress=False, **kw)


@pytest.fixture(scope="module")
def reference(scenario, scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "data"
    return out, generate(_config(scenario, scene, out))


def test_manifest_lists_every_file_with_its_hash(reference):
    out, manifest = reference
    assert sorted(manifest["variants"]) == ["0", "1"]
    for v, entry in manifest["variants"].items():
        folder = out / f"variant_{int(v):04d}"
        assert entry["frames"] == FRAMES and entry["cameras"] == ["front", "front_left"] and entry["violations"] == []
        on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
        assert on_disk == set(entry["files"])
        assert all(hashlib.sha256((folder / f).read_bytes()).hexdigest() == h for f, h in entry["files"].items())
        for cam in entry["cameras"]:
            assert len(list((folder / "images" / cam).glob("*.png"))) == FRAMES
    assert json.loads((out / "manifest.json").read_text()) == json.loads(json.dumps(manifest, sort_keys=True))
    # different draws for the two variants, each replayable from its scenario.yaml
    assert manifest["variants"]["0"]["drawn"] != manifest["variants"]["1"]["drawn"]
    assert "uniform" not in (out / "variant_0001" / "scenario.yaml").read_text()


def test_coco_reads_back_with_pycocotools_and_scores_ap_1_on_the_instance_images(reference):
    """Detections made from the instance images on disk alone (masks encoded and boxed by
    pycocotools) score AP 1 against the COCO file."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    out, _ = reference
    coco = COCO(str(out / "variant_0000" / "coco.json"))
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(coco.getImgIds()) == 2 * FRAMES and len(anns) > 0
    found = []
    for ann in anns:  # masks match the instance images on disk
        img = coco.loadImgs(ann["image_id"])[0]
        instance = iio.imread(out / "variant_0000" / img["file_name"].replace("images/", "instance/"))
        assert np.array_equal(coco.annToMask(ann).astype(bool), instance == ann["track_id"])
        rle = mask_utils.encode(np.asfortranarray((instance == ann["track_id"]).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode()
        found.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                      "bbox": mask_utils.toBbox(rle).tolist(), "score": 1.0})
    for iou in ("bbox", "segm"):
        dets = coco.loadRes(found)
        ev = COCOeval(coco, dets, iou)
        ev.params.areaRng = [[0, 1e10]] * 4  # tiny test images: every object is 'small'
        ev.evaluate(), ev.accumulate(), ev.summarize()
        assert ev.stats[0] == pytest.approx(1.0)


def test_kitti_labels_parse_and_agree_with_the_3d_boxes(reference):
    out, _ = reference
    folder = out / "variant_0000"
    poses = json.loads((folder / "poses.json").read_text())["frames"]
    n_lines = 0
    for cam in ("front", "front_left"):
        calib = parse_kitti_calib((folder / "kitti_object" / cam / "calib" / "000000.txt").read_text())
        model = json.loads((folder / "boxes" / cam / "000000.json").read_text())["camera"]["model"]
        assert np.allclose(calib["P2"][:, :3], [[model["fx"], 0, model["cx"]], [0, model["fy"], model["cy"]], [0, 0, 1]])
        for i, frame in enumerate(poses):
            T_cam_world = np.linalg.inv(np.array(frame["cameras"][cam]))
            truth = [(a, T_cam_world @ np.array(a["T_world_actor"])) for a in frame["actors"]]
            for line in (folder / "kitti_object" / cam / "label_2" / f"{i:06d}.txt").read_text().splitlines():
                n_lines += 1
                lab = parse_kitti_object_line(line)
                T = kitti_box_to_cam(lab["dimensions"], lab["location"], lab["rotation_y"])
                h, w, l = lab["dimensions"]
                match = [a for a, T_true in truth if np.allclose(T[:3, 3], T_true[:3, 3], atol=0.02)]
                assert len(match) == 1, line
                a = match[0]
                assert np.allclose((h, w, l), np.array(a["size"])[[2, 1, 0]], atol=0.006)
                T_true = T_cam_world @ np.array(a["T_world_actor"])
                assert np.abs(box_corners(a["size"], T) - box_corners(a["size"], T_true)).max() < 0.05
                assert lab["type"] == {"car": "Car", "pedestrian": "Pedestrian"}[a["class_name"]]
        tracks = (folder / "kitti_tracking" / cam / "label_02" / "0000.txt").read_text().splitlines()
        ids = {a["instance_id"] for f in poses for a in f["actors"]}
        for line in tracks:
            lab = parse_kitti_tracking_line(line)
            assert 0 <= lab["frame"] < FRAMES and lab["track_id"] in ids
    assert n_lines > 0


def test_same_seed_gives_identical_files(reference, scenario, scene, tmp_path):
    out, manifest = reference
    again = generate(_config(scenario, scene, tmp_path / "again"))
    for v in ("0", "1"):
        assert again["variants"][v]["files"] == manifest["variants"][v]["files"]


def test_a_killed_run_resumes_without_losing_or_duplicating_frames(reference, scenario, scene, tmp_path, monkeypatch):
    out, manifest = reference
    calls = {"n": 0}
    real = gen.write_png

    def dies_mid_frame(path, img):
        calls["n"] += 1
        if calls["n"] == 23:  # inside the 6th camera frame of variant 0, after some of its files
            raise KeyboardInterrupt
        real(path, img)

    monkeypatch.setattr(gen, "write_png", dies_mid_frame)
    with pytest.raises(KeyboardInterrupt):
        generate(_config(scenario, scene, tmp_path / "run"))
    assert not (tmp_path / "run" / "manifest.json").exists() or not json.loads((tmp_path / "run" / "manifest.json").read_text())["variants"]
    monkeypatch.setattr(gen, "write_png", real)
    boxes = lambda: {p: p.stat().st_mtime_ns for p in (tmp_path / "run").glob("variant_*/boxes/*/*.json")}
    before = boxes()  # a frame's boxes file is written last: what is on disk was finished
    resumed = generate(_config(scenario, scene, tmp_path / "run"))
    rendered = [(p.parent.parent.parent.name, p.parent.name, int(p.stem)) for p, t in boxes().items() if before.get(p) != t]
    v0 = {(cam, i) for folder, cam, i in rendered if folder == "variant_0000"}
    assert {("front_left", 2), ("front", 3)} <= v0 and len(v0) == 3  # only what was missing of variant 0
    assert len(rendered) == 3 + 2 * FRAMES  # then all of variant 1
    for v in ("0", "1"):
        assert resumed["variants"][v]["files"] == manifest["variants"][v]["files"]
    assert not [p for p in (tmp_path / "run").rglob("*") if ".tmp-" in p.name]


def test_a_folder_of_another_scenario_or_seed_is_not_overwritten(reference, scenario, scene):
    out, _ = reference
    with pytest.raises(InputError, match="seed"):
        generate(_config(scenario, scene, out, seed=99))
    with pytest.raises(InputError, match="not a trained scene"):
        generate(_config(scenario, out, out / "elsewhere"))


@pytest.mark.slow
def test_ray_workers_make_the_same_dataset(reference, scenario, scene, tmp_path):
    ray = pytest.importorskip("ray")
    out, manifest = reference
    try:
        on_ray = generate(_config(scenario, scene, tmp_path / "ray", workers=2))
    finally:
        ray.shutdown()
    for v in ("0", "1"):
        assert on_ray["variants"][v]["files"] == manifest["variants"][v]["files"]


def test_actors_of_another_trained_scene_can_be_inserted(scene, tmp_path):
    import shutil

    other = tmp_path / "other_street"
    shutil.copytree(scene, other)
    tree = {"name": "guest", "duration": 0.2, "library": [str(other)],
            "ego": {"rig": {"cameras": ["front"], "width": 48, "height": 27}},
            "actors": {"existing": "none", "insert": [{"id": "guest", "asset": "other_street/car_001", "lane": "right", "gap": 9.0}]}}
    path = tmp_path / "guest.yaml"
    path.write_text(yaml.safe_dump(tree))
    manifest = generate(GenerateConfig(str(path), tmp_path / "out", 1, scene, workers=0, progress=False))
    poses = json.loads((tmp_path / "out" / "variant_0000" / "poses.json").read_text())
    guest = poses["frames"][0]["actors"][0]
    assert guest["asset_id"] == "other_street/car_001" and manifest["variants"]["0"]["violations"] == []
    host, lib = shared_scene(scene), shared_scene(other)
    assert host.model.actor_field("other_street/car_001") is lib.model.actor_field("car_001")
    boxes = json.loads((tmp_path / "out" / "variant_0000" / "boxes" / "front" / "000000.json").read_text())["boxes"]
    assert boxes[0]["actor_id"] == "guest" and boxes[0]["visible_pixels"] > 0
    tree["library"] = [str(tmp_path / "nowhere")]
    path.write_text(yaml.safe_dump(tree))
    with pytest.raises(InputError, match=r"library\[0\].*not a trained scene"):
        generate(GenerateConfig(str(path), tmp_path / "out2", 1, scene, workers=0, progress=False))


def test_a_bad_scenario_stops_before_anything_is_written(scene, tmp_path, capsys):
    from tasks.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nactors:\n  insert:\n    - id: a\n      class: car\n      lane: middle\n")
    assert main(["generate", str(bad), "--scene", str(scene), "--out", str(tmp_path / "out"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:6" in err and "actors.insert[0].lane" in err and "Traceback" not in err
    bad.write_text("name: bad\nactors:\n  insert:\n    - {id: a, asset: truck_9}\n")
    assert main(["generate", str(bad), "--scene", str(scene), "--out", str(tmp_path / "out"), "--workers", "2"]) == 2
    assert "truck_9" in capsys.readouterr().err
    bad.write_text("name: bad\nego: {rig: {cameras: [roof]}}\n")
    assert main(["generate", str(bad), "--scene", str(scene), "--out", str(tmp_path / "out"), "--workers", "0"]) == 2
    assert "bad.yaml" in (err := capsys.readouterr().err) and "ego.rig.cameras" in err and "roof" in err
    assert not (tmp_path / "out").exists()
