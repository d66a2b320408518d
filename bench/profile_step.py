"""Training-step and 640x360 render times of the default world on one device, swept over the GPU
marching chunk (``SceneModelConfig.march_chunk_gpu``; on a CPU, ``march_chunk``), then a torch
profile of 5 steps. How the GPU figures of bench/RESULTS.md (2026-11-26, H200) were measured:

    python -m bench.profile_step --log WORLD_LOG --device cuda

WORLD_LOG is a capture log of the default world (`nerfsim world --out WORLD_LOG`).
"""

from __future__ import annotations

import argparse
import time

import torch

from scenes.camera import Camera
from scenes.capture import read_capture_log
from scenes.classes import BACKGROUND_CLASSES
from sim.compose import NeuralScene
from sim.data import bank_from_capture_log
from sim.device import resolve_device, synchronize
from sim.render import render_camera
from sim.train import TrainConfig, init_occupancy_from_lidar, make_optimizer, training_step, update_occupancy
from tasks.pipeline import model_config_for


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--log", required=True, help="capture log of the default world")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--warmup-steps", type=int, default=150, help="steps trained before timing (a young field marches differently)")
    ap.add_argument("--chunks", default="32,128,256,1024,4096")
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    log = read_capture_log(args.log)
    bank = bank_from_capture_log(log, 10)
    g = log.scene
    model = NeuralScene(model_config_for(g.aabb, "sky", BACKGROUND_CLASSES), g.aabb, g.asset_ids).to(dev)
    init_occupancy_from_lidar(model, bank)
    cfg = TrainConfig(device=str(dev), progress=False).resolved()
    opt = make_optimizer(model, cfg.lr)
    gen = torch.Generator().manual_seed(0)

    def steps(n: int) -> None:
        for i in range(n):
            opt.zero_grad(set_to_none=True)
            training_step(model, bank, cfg, gen)
            opt.step()
            if i % cfg.occupancy_update_every == 0 and i > 0:
                update_occupancy(model, cfg.occupancy_samples)
        synchronize(dev)

    steps(args.warmup_steps)
    f = log.frames[len(log.frames) // 2]
    cam = log.camera(f, "front")
    cam = Camera(cam.intrinsics.scaled(640 / cam.intrinsics.width), cam.T_world_cam, cam.time, "bench")
    field = "march_chunk_gpu" if dev.type == "cuda" else "march_chunk"
    for chunk in (int(c) for c in args.chunks.split(",")):
        setattr(model.cfg, field, chunk)
        steps(3)
        t = time.perf_counter()
        steps(10)
        dt = (time.perf_counter() - t) / 10
        render_camera(model, cam, g.at(cam.time))
        t = time.perf_counter()
        r = render_camera(model, cam, g.at(cam.time))
        rt = time.perf_counter() - t
        print(f"{field} {chunk:5d}: train step {dt * 1e3:.1f} ms = {cfg.rays_per_batch / dt:,.0f} rays/s; "
              f"render 640x360 {rt:.3f} s = {640 * 360 / rt:,.0f} rays/s, {r['samples_per_ray']:.1f} samples/ray")
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=activities) as prof:
        steps(5)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25, max_name_column_width=50))


if __name__ == "__main__":
    main()
