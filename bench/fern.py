"""The real-capture benchmark: LLFF fern (../shared/data/fern-llff, images_8 504x378), LLFF protocol.

Trains nerfsim on the 17 training photos for ``--seconds`` of training time, then scores the three
held-out photos (0, 8, 16) and writes what a person would look at:

- test PSNR / SSIM after the run and at the snapshot times on the way (off the training clock),
  drawn as ``fern_psnr_curve.png``;
- samples per ray and the time to render one 504x378 frame (the best of 3 renders);
- ``fern_test.png``: for each test view the photo, the render and its depth (turbo colour map,
  near = bright).

    python -m bench.fern --seconds 600 --work /tmp/fern_bench
    python -m bench.fern --eval-only /tmp/fern_bench/fern_scene   # scores, + the half-image code fit
    python -m bench.fern --seconds 300 --set distortion_loss_weight=0 --model-set image_codes=0   # ablations

Prints one JSON line; bench/RESULTS.md records the figures with the machine and date.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from sim.render import fit_image_code

FERN = Path(__file__).resolve().parents[2] / "shared" / "data" / "fern-llff"
CURVE_SECONDS = (120.0, 300.0)


def test_views(scene, ds, repeats: int = 3) -> tuple[list[dict], float]:
    """Renders of every test camera of ``ds`` and the best of ``repeats`` timings of the first one
    (the shared VM's speed varies by +-10-20% from minute to minute: the minimum is what the code
    costs, as in `bench.run`'s render bench)."""
    from sim.render import render_camera

    state = scene.graph.at(0.0)
    outs = [render_camera(scene.model, cam, state) for cam in ds.cameras]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        render_camera(scene.model, ds.cameras[0], state)
        best = min(best, time.perf_counter() - t0)
    return outs, best


def scores(outs: list[dict], ds) -> dict:
    from tasks.eval.metrics import psnr, ssim

    ps = [psnr(o["rgb"], gt) for o, gt in zip(outs, ds.images)]
    ss = [ssim(o["rgb"], gt) for o, gt in zip(outs, ds.images)]
    return {"test_psnr": float(np.mean(ps)), "test_psnr_per_view": [round(p, 2) for p in ps], "test_ssim": float(np.mean(ss))}


def half_fit_psnr(scene, ds, steps: int = 100) -> float:
    """The per-image appearance protocol (NeRF-W, mip-NeRF 360): each test photo's appearance code
    fitted on its left half (`sim.render.fit_image_code`), PSNR of its right half."""
    from sim.rays import camera_rays
    from sim.render import render_camera
    from tasks.eval.metrics import psnr

    ps = []
    for cam, gt in zip(ds.cameras, ds.images):
        o, d, _ = camera_rays(cam)
        W = cam.intrinsics.width
        left = (torch.arange(len(o)) % W) < W // 2
        code = fit_image_code(scene.model, o[left], d[left], torch.as_tensor(gt.reshape(-1, 3))[left], steps=steps)
        rgb = render_camera(scene.model, cam, scene.graph.at(0.0), image_code=code)["rgb"]
        ps.append(psnr(rgb[:, W // 2 :], gt[:, W // 2 :]))
    return float(np.mean(ps))


def contact_sheet(outs: list[dict], ds, path: Path) -> None:
    """Photo | render | depth, one row per test view."""
    import imageio.v2 as imageio
    import matplotlib

    turbo = matplotlib.colormaps["turbo"]
    rows = []
    for o, gt in zip(outs, ds.images):
        d = o["depth"]
        finite = np.isfinite(d)
        lo, hi = (np.percentile(d[finite], [2, 98]) if finite.any() else (0.0, 1.0))
        depth = turbo(np.clip((hi - np.where(finite, d, hi)) / max(hi - lo, 1e-9), 0, 1))[..., :3]
        rows.append(np.concatenate([gt, o["rgb"], depth], 1))
    imageio.imwrite(path, (np.concatenate(rows, 0) * 255).round().astype(np.uint8))


def run(work: Path, seconds: float, data: Path = FERN, device: str = "cpu", train_settings: dict | None = None,
        model_settings: dict | None = None) -> dict:
    """Train for ``seconds`` and score (``train_settings`` / ``model_settings``: `TrainConfig` /
    `SceneModelConfig` values replacing the defaults, for ablations)."""
    from scenes.datasets import load_static_dataset
    from sim.train import TrainConfig
    from tasks.pipeline import load_scene, train_scene

    if not data.exists():
        return {"fern_skipped": f"{data} not found"}
    scene_dir = work / "fern_scene"
    shutil.rmtree(scene_dir, ignore_errors=True)
    marks = [m for m in CURVE_SECONDS if m < seconds]
    snapshots: list[tuple[float, dict]] = []

    def snapshot(step: int, elapsed: float, model) -> None:
        if len(snapshots) < len(marks) and elapsed >= marks[len(snapshots)]:
            snapshots.append((elapsed, {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}))

    train_cfg = TrainConfig(**{"steps": 1_000_000, "max_seconds": seconds, "device": device, **(train_settings or {})})
    stats = train_scene(data, scene_dir, train_cfg, on_step=snapshot, model_overrides=model_settings)
    test = load_static_dataset(data, "test")
    scene = load_scene(scene_dir, device)
    outs, render_s = test_views(scene, test)
    final = scores(outs, test)
    contact_sheet(outs, test, work / "fern_test.png")
    curve = []
    for elapsed, state in snapshots:  # snapshots are unrefined grids: fine for PSNR, not timings
        scene.model.load_state_dict(state)
        curve.append((round(elapsed, 1), round(scores(test_views(scene, test, repeats=0)[0], test)["test_psnr"], 2)))
    curve.append((round(stats["train_seconds"], 1), round(final["test_psnr"], 2)))
    _plot(curve, work / "fern_psnr_curve.png")
    return {"fern_train_seconds": stats["train_seconds"], "fern_steps": stats["steps"], "fern_train_rays_per_s": stats["rays_per_s"],
            "fern_train_samples_per_ray": stats["samples_per_ray"], **{"fern_" + k: v for k, v in final.items()},
            "fern_render_samples_per_ray": outs[0]["samples_per_ray"], "fern_render_seconds_504x378": render_s,
            "fern_psnr_curve": curve, "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
            "date": time.strftime("%Y-%m-%d %H:%M")}


def evaluate(scene_dir: Path, data: Path = FERN, device: str = "cpu") -> dict:
    """Scores of a trained fern scene: test PSNR with the mean appearance code and with codes
    fitted on each photo's left half (right halves scored)."""
    from scenes.datasets import load_static_dataset
    from tasks.pipeline import load_scene

    test = load_static_dataset(data, "test")
    scene = load_scene(scene_dir, device)
    outs, render_s = test_views(scene, test)
    out = {"fern_" + k: v for k, v in scores(outs, test).items()}
    out["fern_render_seconds_504x378"] = render_s
    out["fern_render_samples_per_ray"] = outs[0]["samples_per_ray"]
    if scene.model.image_codes is not None:
        out["fern_test_psnr_right_half_code_fit_on_left"] = half_fit_psnr(scene, test)
    return out


def _plot(curve: list[tuple[float, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot([c[0] for c in curve], [c[1] for c in curve], "o-")
    ax.set_xlabel("training seconds (2-core CPU)")
    ax.set_ylabel("fern test PSNR (dB)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="training time")
    ap.add_argument("--work", type=Path, default=Path("bench_out"), help="folder for the scene and pictures")
    ap.add_argument("--data", type=Path, default=FERN, help="the LLFF fern folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--eval-only", type=Path, default=None, help="score this trained scene folder instead of training")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=JSON",
                    help="a TrainConfig setting for an ablation, e.g. distortion_loss_weight=0")
    ap.add_argument("--model-set", action="append", default=[], metavar="NAME=JSON",
                    help="a SceneModelConfig setting for an ablation, e.g. image_codes=0")
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    settings = [dict((k, json.loads(v)) for k, v in (item.split("=", 1) for item in items)) for items in (a.set, a.model_set)]
    out = evaluate(a.eval_only, a.data, a.device) if a.eval_only else run(a.work, a.seconds, a.data, a.device, *settings)
    out["settings"] = {"train": settings[0], "model": settings[1]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
