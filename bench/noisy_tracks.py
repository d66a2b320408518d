"""Noisy tracks (issue 21, item 2): the built-in world's log with every actor box perturbed per
frame, as a detector's would be, trained with and without track refinement (`sim.tracks`,
`TrainConfig.track_refinement`) against the clean log. Every arm trains for the same time and is
scored on the same views against the ground-truth twin.

Arms (the default world, seed 0, its default 3-camera rig at 320x180, 10 Hz; every 10th frame held
out):

- ``clean``: the log as recorded (the baseline);
- ``noisy``: the same images and LiDAR, each actor's box at every frame moved by N(0, 20 cm) along
  its own x and y and turned by N(0, 3 deg) (seeded), trained as logged;
- ``noisy_smoothed``: the noisy log with its tracks smoothed before training (`sim.tracks.TrackSmoothing`)
  and no learned corrections (track refinement with a zero learning rate);
- ``noisy_refined``: the noisy log with track refinement (smoothing, then learned corrections);
- ``clean_refined``: the clean log with track refinement (what it costs when the tracks are right).

Per-frame noise gives every actor a key per frame, parked cars too, so they are no longer parked
for training (`sim.train.block_static_actor_volumes` keeps the background out of parked boxes only);
``--parked-once`` draws one error per parked car instead (a box annotated once) and keeps it parked.

Scores:

- ``box_cm`` / ``box_deg``: median over actors and log frames (held-out ones included) of the box
  centre's distance and the yaw difference between the trained scene's tracks and the truth;
  ``car_box_*`` the same over cars only (a pedestrian's yaw is barely observable);
- ``novel_psnr`` (+ SSIM, depth AbsRel): the novel views of `tasks.eval.evaluate.novel_cameras`
  (rig cameras of held-out frames moved 1 m up / left), the scene rendered with its own graph,
  the twin with the *true* graph (the noisy one would move the twin's meshes too);
- ``edited_psnr``, ``edit_psnr_drop``: the same views after the standard edits
  (`tasks.eval.evaluate.standard_edits`, chosen on the true graph, applied to both graphs by actor id).

    python -m bench.noisy_tracks --seconds 300 --work /tmp/nt [--only noisy --only noisy_refined]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.arms import run_arms

ARMS = ("clean", "noisy", "noisy_smoothed", "noisy_refined", "clean_refined")
SIGMA_M, SIGMA_DEG = 0.20, 3.0
HOLDOUT_EVERY = 10


def _clean_log(work: Path, tiny: bool) -> Path:
    from scenes.world import WorldConfig, build_world
    from sensors.recording import CaptureConfig, generate_capture_log

    path = work / "log_clean"
    if not (path / "log.json").exists():
        world = build_world(WorldConfig.tiny() if tiny else WorldConfig(seed=0))
        generate_capture_log(world, CaptureConfig.tiny() if tiny else CaptureConfig(), path, overwrite=True)
    return path


def noisy_graph(graph, frame_times: np.ndarray, seed: int, parked_once: bool = False):
    """``graph`` with every actor's box at every frame time moved by N(0, `SIGMA_M`) along its x and y
    and turned by N(0, `SIGMA_DEG`) about its z, in its own frame (``parked_once``: one draw per
    parked car, kept parked)."""
    from scenes.graph import ActorTrack
    from sim.tracks import correction_pose

    rng = np.random.default_rng(seed)
    draw = lambda: correction_pose(*rng.normal(0.0, SIGMA_M, 2), np.radians(rng.normal(0.0, SIGMA_DEG)))
    actors = []
    for a in graph.actors:
        if parked_once and len(a.track.times) == 1:
            track = ActorTrack.from_poses(a.track.times, [a.track.pose_at(0.0) @ draw()])
        else:
            track = ActorTrack.from_poses(frame_times, [a.track.pose_at(float(t)) @ draw() for t in frame_times])
        actors.append(replace(a, track=track))
    return graph.with_actors(actors)


def _noisy_log(clean: Path, work: Path, seed: int, parked_once: bool) -> Path:
    """``clean`` with its actor tracks perturbed in log.json (the image, label and LiDAR folders linked)."""
    from scenes.graph import SceneGraph

    dst = work / ("log_noisy_parked_once" if parked_once else "log_noisy")
    dst.mkdir(exist_ok=True)
    for sub in ("images", "semantics", "lidar"):
        if (clean / sub).exists() and not (dst / sub).exists():
            os.symlink((clean / sub).resolve(), dst / sub)
    log = json.loads((clean / "log.json").read_text())
    times = np.array([f["time"] for f in log["frames"]], dtype=np.float64)
    log["scene"] = noisy_graph(SceneGraph.from_dict(log["scene"]), times, seed, parked_once).to_dict()
    (dst / "log.json").write_text(json.dumps(log))
    return dst


def box_errors(graph, truth, times: np.ndarray, classes: tuple[str, ...] | None = None) -> dict:
    """Median box-centre distance (cm) and yaw difference (deg) of ``graph``'s tracks from ``truth``'s."""
    from scenes.transforms import yaw_of

    dist, yaw = [], []
    for a in truth.actors:
        if classes and a.class_name not in classes:
            continue
        mine = graph.actor(a.actor_id).track
        for t in times:
            T, G = mine.pose_at(float(t)), a.track.pose_at(float(t))
            dist.append(100.0 * np.linalg.norm(T[:3, 3] - G[:3, 3]))
            yaw.append(abs(np.degrees(np.angle(np.exp(1j * (yaw_of(T[:3, :3]) - yaw_of(G[:3, :3])))))))
    return {"cm": float(np.median(dist)), "deg": float(np.median(yaw))}


def compare_to_truth(model, graph, twin, truth, cameras) -> dict:
    """Mean PSNR / SSIM / depth AbsRel of the scene rendered with ``graph`` against the twin with ``truth``."""
    from sim.render import render_camera
    from tasks.eval.metrics import depth_abs_rel, psnr, ssim

    ps, ss, ab = [], [], []
    for cam in cameras:
        r, g = render_camera(model, cam, graph.at(cam.time)), twin.render(cam, truth.at(cam.time))
        ps.append(psnr(r["rgb"], g["rgb"]))
        ss.append(ssim(r["rgb"], g["rgb"]))
        ab.append(depth_abs_rel(r["depth"], g["depth"]))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "depth_abs_rel": float(np.nanmean(ab)), "n_views": len(cameras)}


def run_arm(name: str, log_dir: Path, clean_dir: Path, work: Path, seconds: float, eval_frames: int, overrides: dict) -> dict:
    from scenes.capture import read_capture_log
    from scenes.edits import apply_edits
    from sim.train import TrainConfig
    from sim.tracks import refinement_of
    from tasks.eval.evaluate import novel_cameras, standard_edits
    from tasks.pipeline import load_scene, train_scene, twin_for

    scene_dir = work / f"scene_{name}"
    cfg = TrainConfig(steps=100_000, max_seconds=seconds, track_refinement=name.endswith(("_refined", "_smoothed")),
                      **({"track_lr": 0.0} if name.endswith("_smoothed") else overrides if name.endswith("_refined") else {}))
    stats = train_scene(log_dir, scene_dir, cfg, HOLDOUT_EVERY)
    scene = load_scene(scene_dir)
    clean = read_capture_log(clean_dir)
    truth, twin = clean.scene, twin_for(scene)
    times = np.array([f.time for f in clean.frames])
    cams = novel_cameras(clean, HOLDOUT_EVERY, eval_frames)
    novel = compare_to_truth(scene.model, scene.graph, twin, truth, cams)
    edits = standard_edits(truth, (0.0, twin.world.config.street_length), clean.frames[-1].time)
    edited = compare_to_truth(scene.model, apply_edits(scene.graph, edits), twin, apply_edits(truth, edits), cams)
    boxes, cars = box_errors(scene.graph, truth, times), box_errors(scene.graph, truth, times, ("car",))
    return {"steps": stats.get("steps"), "rays_per_s": stats.get("rays_per_s"), "refined": refinement_of(scene.graph) is not None,
            "box_cm": boxes["cm"], "box_deg": boxes["deg"], "car_box_cm": cars["cm"], "car_box_deg": cars["deg"],
            "novel_psnr": novel["psnr"], "novel_ssim": novel["ssim"], "novel_depth_abs_rel": novel["depth_abs_rel"],
            "edited_psnr": edited["psnr"], "edit_psnr_drop": novel["psnr"] - edited["psnr"], "n_views": novel["n_views"],
            "edits": [type(e).__name__ for e in edits]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="training time of each arm")
    ap.add_argument("--work", type=Path, default=Path("bench/out/noisy_tracks"))
    ap.add_argument("--only", choices=ARMS, action="append", help="arms to run (default: all)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the box noise")
    ap.add_argument("--parked-once", action="store_true", help="one error per parked car (kept parked), not one per frame")
    ap.add_argument("--eval-frames", type=int, default=4, help="held-out frames whose rig cameras are moved into novel views")
    ap.add_argument("--tiny", action="store_true", help="the tiny world and capture (a smoke run, not a measurement)")
    ap.add_argument("--track-lr", type=float, help="the refined arms' TrainConfig.track_lr (default: TrainConfig's)")
    ap.add_argument("--track-magnitude-weight", type=float, help="the refined arms' TrainConfig.track_magnitude_weight")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    clean = _clean_log(args.work, args.tiny)
    noisy = _noisy_log(clean, args.work, args.seed, args.parked_once)
    logs = {"clean": clean, "clean_refined": clean, "noisy": noisy, "noisy_smoothed": noisy, "noisy_refined": noisy}
    overrides = {k: v for k, v in (("track_lr", args.track_lr), ("track_magnitude_weight", args.track_magnitude_weight)) if v is not None}
    results_path = args.work / "results.json"
    return run_arms(args.only or ARMS, results_path,
                    lambda name: run_arm(name, logs[name], clean, args.work, args.seconds, args.eval_frames, overrides))


if __name__ == "__main__":
    main()
