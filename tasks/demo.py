"""`nerfsim demo`: world -> capture log -> train -> edited drive rendered beside the twin.

Every step writes into the demo folder and is skipped when its output is already there, so a killed
demo resumes where it stopped. The folder keeps what is needed to repeat each step by hand:
``log/``, ``scene/``, ``cameras.json``, ``edits.yaml`` (and the commands in ``README.md``).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from scenes.camera import Camera
from scenes.capture import read_capture_log
from scenes.edits import apply_edits, load_edits
from scenes.files import atomic_write_json, atomic_write_text
from sim.render import render_camera
from sim.train import TrainConfig
from tasks.cli.camera_files import save_cameras
from tasks.eval.evaluate import standard_edits
from tasks.eval.metrics import psnr
from tasks.media import colorize_depth, colorize_ids, grid, label, write_png, write_video
from tasks.pipeline import load_scene, make_world_log, train_scene, twin_for, write_edits
from tasks.eval.report import evaluate_scene

console = Console()


def drive_cameras(log, camera: str = "front", every: int = 2):
    """The chosen rig camera along the logged drive (every ``every``-th frame)."""
    cams = [log.camera(f, camera) for f in log.frames[::every]]
    return [Camera(c.intrinsics, c.T_world_cam, c.time, f"{camera}_{f.index:04d}") for c, f in zip(cams, log.frames[::every])]


def _demo_readme(out: Path, train_seconds: float, tiny: bool) -> str:
    t = " --tiny" if tiny else ""
    return f"""# nerfsim demo output

Each step can be repeated by hand:

    nerfsim world --out {out}/log{t}
    nerfsim train {out}/log --out {out}/scene --steps 100000 --max-seconds {train_seconds:g}
    nerfsim render {out}/scene --cameras {out}/cameras.json --edits {out}/edits.yaml --out {out}/render
    nerfsim render {out}/scene --cameras {out}/cameras.json --edits {out}/edits.yaml --out {out}/twin --twin
    nerfsim eval {out}/scene --json

- `preview.mp4`: the edited drive, neural render (left) beside the ground-truth twin (right),
  with depth and instance rows below.
- `contact_sheet.png`: a few frames: neural RGB, twin RGB, neural depth, neural instance mask.
- `metrics.json`: `nerfsim eval` of the scene plus the PSNR of each rendered drive frame.
"""


def run_demo(out: Path, train_seconds: float = 360.0, tiny: bool = False) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    atomic_write_text(out / "README.md", _demo_readme(out, train_seconds, tiny))
    log_dir = out / "log"
    if not (log_dir / "log.json").exists():
        console.rule("1/4 built-in world -> capture log")
        make_world_log(log_dir, tiny=tiny, overwrite=True)
    log = read_capture_log(log_dir)
    console.rule("2/4 train")
    train_scene(log_dir, out / "scene", TrainConfig(steps=100_000, max_seconds=train_seconds, seed=0))
    scene = load_scene(out / "scene")
    twin = twin_for(scene)

    console.rule("3/4 edited drive: neural render beside the twin")
    edits_path = out / "edits.yaml"
    if not edits_path.exists():
        write_edits(standard_edits(scene.graph, (0.0, twin.world.config.street_length), log.frames[-1].time), edits_path)
    graph = apply_edits(scene.graph, load_edits(edits_path), str(edits_path))
    cams = drive_cameras(log, every=3)
    save_cameras(cams, out / "cameras.json")
    frames, sheet, frame_psnr = [], [], []
    with Progress(console=console) as bar:
        task = bar.add_task("render", total=len(cams))
        for i, cam in enumerate(cams):
            state = graph.at(cam.time)
            r, g = render_camera(scene.model, cam, state), twin.render(cam, state)
            frame_psnr.append(psnr(r["rgb"], g["rgb"]))
            rows = [[label(r["rgb"], "nerfsim"), label(g["rgb"], "twin (ground truth)")],
                    [label(colorize_depth(r["depth"]), "depth"), label(colorize_ids(r["instance"]), "instances")]]
            frames.append(grid(rows))
            if i % max(1, len(cams) // 4) == 0 and len(sheet) < 4:
                sheet.append([label(r["rgb"], f"t={cam.time:.1f}s nerfsim"), label(g["rgb"], "twin"),
                              label(colorize_depth(r["depth"]), "depth"), label(colorize_ids(r["instance"]), "instances")])
            bar.advance(task)
    write_video(out / "preview.mp4", frames, fps=5)
    write_png(out / "contact_sheet.png", grid(sheet))

    console.rule("4/4 evaluate")
    metrics = evaluate_scene(out / "scene", max_frames=1)
    metrics["drive_edited_psnr_mean"] = float(np.mean(frame_psnr))
    metrics["demo_seconds"] = time.perf_counter() - t_start
    atomic_write_json(out / "metrics.json", metrics)
    console.print(metrics)
    console.print(f"[bold green]demo written to {out}[/]: preview.mp4, contact_sheet.png, metrics.json")
    return metrics
