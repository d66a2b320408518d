"""The built-in world recorded the way real cameras record it (issue 20): through a strongly
distorted lens, and with a different exposure on every image. Each log trains for the same time
and is scored on the same novel views against the ground-truth twin.

Variants (the default world, seed 0, its default 3-camera rig at 320x180, 10 Hz):

- ``pinhole``: the reference log (ideal pinhole cameras, constant exposure);
- ``pinhole_no_gains``: the same, without the per-image gains (what they cost where nothing varies);
- ``lens``: the same drive through an OpenCV lens, k1 = -0.3, k2 = 0.08 (strong barrel: straight
  lines bow by ~9 px at the image corners), trained with rays through the lens;
- ``lens_ignored``: the same images with the lens left out of log.json: what training did before
  this issue (it warned, then treated the photos as pinhole);
- ``exposure``: the reference drive with a gain uniform in [0.7, 1.3] on every image (per camera
  and frame), trained with per-image colour gains (`SceneModelConfig.image_gains`, on by default);
- ``exposure_no_gains``: the same log with the gains switched off.

Score: the novel views of `tasks.eval.evaluate.novel_cameras` (rig cameras of 4 held-out frames
moved 1 m up / 1 m left), as *pinhole* cameras at the reference exposure, against the twin: the
undistorted, reference-exposure view every variant should reproduce. The lens variant is also
scored through its own lens (``novel_lens_psnr``: the distorted photo's geometry), the exposure
variant on how well its learned gains follow the true ones (correlation).

    python -m bench.log_effects --seconds 240 --work /tmp/le [--only lens --only lens_ignored]
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.arms import run_arms

VARIANTS = ("pinhole", "pinhole_no_gains", "lens", "lens_ignored", "exposure", "exposure_no_gains")
LENS = (-0.3, 0.08, 0.0, 0.0)
EXPOSURE_JITTER = 0.3
HOLDOUT_EVERY = 10


def _logs(work: Path) -> dict[str, Path]:
    """Write the three recorded logs (once) and the lens-ignored copy; variant -> log folder."""
    from scenes.world import WorldConfig, build_world
    from sensors.recording import CaptureConfig, generate_capture_log

    world = build_world(WorldConfig(seed=0))
    specs = {"pinhole": CaptureConfig(), "lens": CaptureConfig(distortion=LENS),
             "exposure": CaptureConfig(exposure_jitter=EXPOSURE_JITTER)}
    logs = {}
    for name, cfg in specs.items():
        logs[name] = work / f"log_{name}"
        if not (logs[name] / "log.json").exists():
            generate_capture_log(world, replace(cfg, name=name), logs[name], overwrite=True)
    logs["lens_ignored"] = _without_lens(logs["lens"], work / "log_lens_ignored")
    logs["exposure_no_gains"], logs["pinhole_no_gains"] = logs["exposure"], logs["pinhole"]
    return logs


def _without_lens(src: Path, dst: Path) -> Path:
    """``src`` with the lenses deleted from log.json (the image folders linked, not copied)."""
    dst.mkdir(exist_ok=True)
    for sub in ("images", "semantics", "lidar"):
        if not (dst / sub).exists():
            os.symlink((src / sub).resolve(), dst / sub)
    log = json.loads((src / "log.json").read_text())
    for cam in log["cameras"]:
        cam.pop("lens", None)
    (dst / "log.json").write_text(json.dumps(log))
    return dst


def _pinhole(cams):
    from scenes.camera import Camera

    return [Camera(c.intrinsics, c.T_world_cam, c.time, c.name) for c in cams]


def _gain_correlation(scene, log, picture: Path) -> float:
    """Correlation of the learned per-image log-gains (mean over RGB) with the true log-exposures,
    in the training images' order (`sim.data.bank_from_capture_log`); the scatter plot to ``picture``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.data import holdout_frame

    truth = np.log([f.exposures[c.name] for f in log.frames if not holdout_frame(f.index, HOLDOUT_EVERY) for c in log.cameras])
    learned = scene.model.image_log_gains.detach().numpy()
    learned = learned.mean(1) - learned.mean()
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot(truth, learned, ".", alpha=0.6)
    ax.plot([truth.min(), truth.max()], [truth.min() - truth.mean(), truth.max() - truth.mean()], "k--", lw=1, label="learned = true")
    ax.set_xlabel("true log exposure of the image")
    ax.set_ylabel("learned log gain (centred)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(picture, dpi=110)
    plt.close(fig)
    return float(np.corrcoef(truth, learned)[0, 1])


def run_variant(name: str, log_dir: Path, work: Path, seconds: float) -> dict:
    from scenes.capture import read_capture_log
    from sim.train import TrainConfig
    from tasks.eval.evaluate import compare, novel_cameras
    from tasks.pipeline import load_scene, train_scene, twin_for

    scene_dir = work / f"scene_{name}"
    overrides = {"image_gains": 0} if name.endswith("_no_gains") else None
    stats = train_scene(log_dir, scene_dir, TrainConfig(steps=100_000, max_seconds=seconds), HOLDOUT_EVERY, model_overrides=overrides)
    scene = load_scene(scene_dir)
    log = read_capture_log(log_dir)
    twin = twin_for(scene)
    cams = novel_cameras(log, HOLDOUT_EVERY, 4)
    novel = compare(scene.model, twin, _pinhole(cams), scene.graph)
    out = {"steps": stats.get("steps"), "rays_per_s": stats.get("rays_per_s"), "samples_per_ray": stats.get("samples_per_ray"),
           "novel_psnr": novel["psnr"], "novel_ssim": novel["ssim"], "novel_depth_abs_rel": novel["depth_abs_rel"],
           "n_views": novel["n_views"]}
    if name == "lens":
        out["novel_lens_psnr"] = compare(scene.model, twin, cams, scene.graph)["psnr"]
    if name == "exposure":
        out["gain_correlation"] = _gain_correlation(scene, log, work / "exposure_gains.png")
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=240.0, help="training time of each variant")
    ap.add_argument("--work", type=Path, default=Path("bench/out/log_effects"))
    ap.add_argument("--only", choices=VARIANTS, action="append", help="variants to run (default: all)")
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    logs = _logs(args.work)
    results_path = args.work / "results.json"
    return run_arms(args.only or VARIANTS, results_path, lambda name: run_variant(name, logs[name], args.work, args.seconds))


if __name__ == "__main__":
    main()
