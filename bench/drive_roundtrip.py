"""A built-in log through a driving dataset's format and back, then trained (issue 21): does an
imported drive train as well as the native log?

The default world's log is exported (``--format nuscenes``, ``waymo`` or ``av2``), imported back with
`nerfsim import`'s function, trained for ``--seconds``, and scored like `bench.log_effects` (24 novel
views: held-out rig cameras 1 m up / 1 m left, against the twin). What the round trip loses is part
of the answer: semantic labels (nuScenes carries none; Waymo's camera_segmentation does), LiDAR
misses (datasets store returns only), the scene box (the importer measures it from the LiDAR),
actor ids (nuScenes' are tokens), image quality (Waymo's images are JPEG).

    python -m bench.drive_roundtrip --native-log /tmp/q/le/log_pinhole --seconds 240 --work /tmp/q/rt
    python -m bench.drive_roundtrip --native-log LOG --format waymo --set steps=1400 --set max_seconds=1e9 --work W

(a fixed step count instead of a time budget: runs that compare formats then do not depend on how
busy the machine was).

Where the round trip's loss comes from: ``--native-without semantics`` (and / or ``lidar-misses``)
trains the *native* log with that taken out instead (no export), so each piece's share shows;
``--format native`` trains the native log itself (the reference, to run in the same hour);
``--score-scene DIR`` only scores a scene trained before (PSNR on actors, other surfaces, sky too).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def stripped_log(native: Path, work: Path, what: tuple[str, ...]) -> Path:
    """A copy of the native log without its semantic labels and / or its LiDAR misses (rays with no
    return: a recorded dataset keeps returns only); images are linked, not copied."""
    import os

    dst = work / ("native_without_" + "_".join(sorted(what)))
    dst.mkdir(parents=True, exist_ok=True)
    doc = json.loads((native / "log.json").read_text())
    if os.path.lexists(dst / "images"):
        os.unlink(dst / "images")
    os.symlink((native / "images").resolve(), dst / "images")
    for f in doc["frames"]:
        for img in f["images"].values():
            if "semantics" in what:
                img.pop("semantic_path", None)
            elif "semantic_path" in img and not os.path.lexists(dst / "semantics"):
                os.symlink((native / "semantics").resolve(), dst / "semantics")
        scan = np.load(native / f["lidar"]["path"])
        if "lidar-misses" in what:
            scan = scan[np.isfinite(scan[:, 3])]
        (dst / f["lidar"]["path"]).parent.mkdir(parents=True, exist_ok=True)
        np.save(dst / f["lidar"]["path"], scan)
    if "lidar-misses" in what:
        doc["lidar"]["returns_only"] = True
    (dst / "log.json").write_text(json.dumps(doc))
    return dst


def run(native: Path, work: Path, seconds: float, fmt: str, without: tuple[str, ...] = (), train_settings: dict | None = None,
        train_log: Path | None = None, model_overrides: dict | None = None) -> dict:
    from scenes.capture import read_capture_log
    from sim.train import TrainConfig
    from tasks.logs.av2 import export_av2, import_av2
    from tasks.logs.nuscenes import export_nuscenes, import_nuscenes
    from tasks.logs.waymo import export_waymo, import_waymo
    from tasks.pipeline import train_scene

    formats = {"nuscenes": (export_nuscenes, import_nuscenes), "waymo": (export_waymo, import_waymo),
               "av2": (lambda log, out: export_av2(log, out, progress=False), lambda src, out, overwrite: import_av2(src, out, overwrite=overwrite))}
    if fmt not in formats and fmt != "native":
        raise SystemExit("only --format nuscenes, waymo or av2 keeps the whole rig (KITTI tracking has one forward stereo pair)")
    log = read_capture_log(native)
    if train_log is not None:  # a log made by hand (e.g. an import with another scene box), scored like the rest
        imported = train_log
    elif without:
        imported = stripped_log(native, work, without)
    elif fmt == "native":  # the reference: the native log itself
        imported = native
    else:
        export, import_ = formats[fmt]
        imported = import_(export(log, work / "exported"), work / "imported", overwrite=True).log
    stats = train_scene(imported, work / "scene", TrainConfig(**{"steps": 100_000, "max_seconds": seconds, **(train_settings or {})}), holdout_every=10,
                        model_overrides=model_overrides)
    scores = score(work / "scene", log)
    channels = sorted(c.name for c in read_capture_log(imported).cameras)
    name = str(train_log) if train_log is not None else fmt if not without else "native without " + " and ".join(without)
    return {"format": name, "steps": stats.get("steps"), "rays_per_s": stats.get("rays_per_s"), **scores, "imported_cameras": channels,
            "native_aabb": [list(log.scene.aabb[0]), list(log.scene.aabb[1])]}


def score(scene_dir: Path, log) -> dict:
    """A trained scene scored on the native log's 24 novel views against the twin: mean PSNR and
    depth AbsRel, and PSNR on the pixels of actors, of other surfaces and of the sky (the twin's
    instance mask and depth; MSE averaged over the views)."""
    from scenes.camera import Camera
    from scenes.twin import Twin
    from scenes.world import build_world
    from sim.render import render_camera
    from tasks.eval.evaluate import novel_cameras
    from tasks.eval.metrics import depth_abs_rel, psnr
    from tasks.pipeline import load_scene, world_config_from_dict

    scene = load_scene(scene_dir)
    twin = Twin(build_world(world_config_from_dict(log.world["config"])))
    # The native log's novel cameras; the imported scene's actors are the same boxes at the same
    # times under other ids, so the native graph (with the twin) is the ground truth.
    cams = [Camera(c.intrinsics, c.T_world_cam, c.time, c.name) for c in novel_cameras(log, 10, 4)]
    ps, ab, mse = [], [], {"actors": [], "surfaces": [], "sky": []}
    for cam in cams:
        r = render_camera(scene.model, cam, scene.graph.at(cam.time))
        g = twin.render(cam, log.scene.at(cam.time))
        ps.append(psnr(r["rgb"], g["rgb"]))
        ab.append(depth_abs_rel(r["depth"], g["depth"]))
        err = ((np.asarray(r["rgb"]) - np.asarray(g["rgb"])) ** 2).mean(-1)
        actor, sky = np.asarray(g["instance"]) > 0, ~np.isfinite(np.asarray(g["depth"]))
        for region, where in (("actors", actor), ("surfaces", ~actor & ~sky), ("sky", sky)):
            if where.any():
                mse[region].append(err[where].mean())
    regions = {f"psnr_{k}": float(-10 * np.log10(np.mean(v))) for k, v in mse.items() if v}
    return {"novel_psnr": float(np.mean(ps)), "novel_depth_abs_rel": float(np.nanmean(ab)), "n_views": len(cams), **regions,
            "imported_aabb": [list(scene.graph.aabb[0]), list(scene.graph.aabb[1])]}


def key_json(items: list[str]) -> dict:
    """``KEY=JSON`` command-line items as a dict."""
    return dict((k, json.loads(v)) for k, v in (item.split("=", 1) for item in items))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--native-log", type=Path, required=True, help="a capture log of the built-in world")
    ap.add_argument("--format", default="nuscenes", choices=("nuscenes", "waymo", "av2", "native"),
                    help="the dataset format of the round trip; native: train the native log itself (the reference)")
    ap.add_argument("--seconds", type=float, default=240.0)
    ap.add_argument("--work", type=Path, default=Path("bench/out/drive_roundtrip"))
    ap.add_argument("--native-without", action="append", choices=("semantics", "lidar-misses"), default=[],
                    help="train the native log without this instead of the round trip (repeatable)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a TrainConfig setting (repeatable)")
    ap.add_argument("--model", action="append", default=[], metavar="KEY=JSON",
                    help="a SceneModelConfig setting, nested configs as JSON objects (repeatable), e.g. background='{\"sh_degree\": 1}'")
    ap.add_argument("--train-log", type=Path, help="train this capture log instead (an import edited by hand) and score it")
    ap.add_argument("--score-scene", type=Path, help="only score this trained scene (no export, no training)")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if a.score_scene is not None:
        from scenes.capture import read_capture_log

        out = {"scene": str(a.score_scene), **score(a.score_scene, read_capture_log(a.native_log))}
        print(json.dumps(out))
        return out
    settings, model = key_json(a.set), key_json(a.model)
    out = run(a.native_log, a.work, a.seconds, a.format, tuple(a.native_without), settings, a.train_log, model)
    out["settings"], out["model_overrides"] = settings, model
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
