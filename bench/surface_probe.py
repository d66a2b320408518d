"""Do the built-in street's lamp poles survive training? (issue 21, `sim.lidar_loss`)

Trains a capture log of the default world for a few hundred steps and, every 50 steps, prints the
background's density at points 3 cm behind the LiDAR returns on its lamp poles (every 10th such
return of every 6th frame): its median and mean. Without per-pixel labels and without the LiDAR
surface hinge the median falls to ~0 by step 100 and stays there (the poles vanish); with labels or
the hinge it does not.

    python -m bench.surface_probe --log LOG [--set lidar_surface_weight=0] [--steps 400]

``LOG`` a capture log of the default world (e.g. `bench.noisy_tracks`' clean log, or that log
without its labels: `bench.drive_roundtrip.stripped_log`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch


def pole_probe_points(log, every_frame: int = 6, every_point: int = 10) -> np.ndarray:
    """World points 3 cm behind the LiDAR returns within 15 cm of a lamp pole's axis (0.3-5.5 m up)."""
    from scenes.world import build_world
    from tasks.pipeline import world_config_from_dict

    world = build_world(world_config_from_dict(log.world["config"]))
    lo, hi = log.scene.aabb[0][0], log.scene.aabb[1][0]
    axes = np.array([[T[0, 3], T[1, 3]] for T, size in world.obstacles if size[2] > 5.5 and lo < T[0, 3] < hi])  # poles: 6 m
    points = []
    for f in log.frames[::every_frame]:
        o, d, r = log.lidar_rays(f)
        hit = np.isfinite(r)
        p = o[hit] + d[hit] * (r[hit, None] + 0.03)
        near = np.linalg.norm(p[:, None, :2] - axes[None], axis=-1).min(1) < 0.15
        points.append(p[near & (p[:, 2] > 0.3) & (p[:, 2] < 5.5)])
    return np.concatenate(points)[::every_point]


def main(argv=None) -> list:
    from bench.drive_roundtrip import key_json
    from scenes.capture import read_capture_log
    from sim.train import TrainConfig
    from tasks.pipeline import train_scene

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="a TrainConfig setting (repeatable)")
    a = ap.parse_args(argv)
    settings = key_json(a.set)
    pts = torch.tensor(pole_probe_points(read_capture_log(a.log)), dtype=torch.float32)
    print(f"{len(pts)} probe points")
    rows = []

    def on_step(step, _elapsed, model):
        if step % 50 == 0:
            with torch.no_grad():
                sigma = model.background.density(model.world_to_unit(pts))
            rows.append({"step": step, "median": float(sigma.median()), "mean": float(sigma.mean())})
            print(json.dumps(rows[-1]), flush=True)

    with tempfile.TemporaryDirectory() as out:
        train_scene(a.log, Path(out) / "scene", TrainConfig(steps=a.steps, max_seconds=1e9, progress=False, **settings), holdout_every=10,
                    on_step=on_step)
    return rows


if __name__ == "__main__":
    main()
