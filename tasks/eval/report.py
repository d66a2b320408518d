"""Scene reports: the numbers `nerfsim eval` prints and `make bench` records.

For a scene trained on the built-in world: held-out log views (against the log images), novel views
1 m up / 1 m left of the driven path (against the twin: PSNR, SSIM, depth AbsRel), and the same novel
views after the standard edits (actor removed, moved, inserted) against the twin of the same edit.
For a static dataset: PSNR / SSIM on its test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scenes.capture import read_capture_log
from scenes.edits import apply_edits
from sim.data import holdout_frame
from sim.render import render_camera
from tasks.eval.evaluate import compare, novel_cameras, standard_edits
from tasks.eval.metrics import psnr, ssim
from tasks.pipeline import LoadedScene, load_scene, twin_for


def heldout_log_metrics(scene: LoadedScene, log, holdout_every: int, max_frames: int) -> dict:
    frames = [f for f in log.frames if holdout_frame(f.index, holdout_every)][:max_frames]
    ps, ss = [], []
    for f in frames:
        for c in log.cameras:
            cam = log.camera(f, c.name)
            r = render_camera(scene.model, cam, scene.graph.at(f.time))["rgb"]
            gt = log.load_image(f.image_paths[c.name])
            ps.append(psnr(r, gt, c.mask))  # the ego's own body (masked) is not the scene's to draw
            ss.append(ssim(r, gt, c.mask))
    return {"heldout_psnr": float(np.mean(ps)), "heldout_ssim": float(np.mean(ss)), "heldout_views": len(ps)} if ps else {}


def static_test_metrics(scene: LoadedScene, max_views: int) -> dict:
    from scenes.datasets import load_static_dataset

    ds = load_static_dataset(scene.meta["extra"]["source"]["path"], "test")
    bg = ds.background or (0.0, 0.0, 0.0)
    gts = ds.composited(bg) if ds.alphas is not None else ds.images
    idx = np.linspace(0, len(ds.cameras) - 1, min(max_views, len(ds.cameras))).round().astype(int)
    ps, ss = [], []
    for i in idx:
        r = render_camera(scene.model, ds.cameras[i], scene.graph.at(0.0))["rgb"]
        ps.append(psnr(r, gts[i]))
        ss.append(ssim(r, gts[i]))
    return {"test_psnr": float(np.mean(ps)), "test_ssim": float(np.mean(ss)), "test_views": len(ps)}


def evaluate_scene(path: Path, max_frames: int = 4, device: str = "cpu", twin: bool = True) -> dict:
    """The report of a trained scene (module docstring). ``device`` renders on another device;
    ``twin=False`` skips the twin comparisons (held-out log views only: no open3d needed)."""
    scene = load_scene(path, device)
    source = scene.meta.get("extra", {}).get("source", {})
    metrics: dict = {"train_" + k: v for k, v in scene.meta.get("train_state", {}).get("stats", {}).items()
                     if k in ("steps", "train_seconds", "rays_per_s", "samples_per_ray")}
    if source.get("kind") != "capture-log":
        metrics.update(static_test_metrics(scene, max_views=max_frames * 3))
        return metrics
    log = read_capture_log(source["path"])
    every = int(source.get("holdout_every", 10))
    metrics.update(heldout_log_metrics(scene, log, every, max_frames))
    if not twin:
        return metrics
    truth = twin_for(scene)
    cams = novel_cameras(log, every, max_frames)
    novel = compare(scene.model, truth, cams, scene.graph)
    metrics.update({f"novel_{k}": v for k, v in novel.items()})
    edits = standard_edits(scene.graph, (0.0, truth.world.config.street_length), log.frames[-1].time)
    edited = compare(scene.model, truth, cams, apply_edits(scene.graph, edits))
    metrics.update({f"edited_{k}": v for k, v in edited.items()})
    metrics["edit_psnr_drop"] = novel["psnr"] - edited["psnr"]
    metrics["edits"] = [type(e).__name__ for e in edits]
    return metrics
