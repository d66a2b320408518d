"""Streaming import (issue 21): peak memory of `nerfsim import` on a 20-s, 6-camera, 1600x900 drive.

The drive is the built-in world's (20 s at 10 Hz, a 6-camera ring + LiDAR), recorded by the twin at
320x180 and scaled 5x to 1600x900 (image content does not change what an importer holds in
memory; the twin would take an hour to ray-cast 1.7 G pixels on 2 cores), exported with
`nerfsim export-log` to each dataset layout, then imported back by `nerfsim import` in a child
process whose peak resident memory (``ru_maxrss``) is read when it ends.

    python -m bench.import_memory --work /tmp/import_memory [--formats nuscenes av2 waymo]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RING = (("front", 0.0), ("front_left", 55.0), ("front_right", -55.0), ("back", 180.0), ("back_left", 110.0), ("back_right", -110.0))


def record(work: Path) -> Path:
    """The 20-s six-camera log of the built-in world at 320x180."""
    from scenes.world import WorldConfig, build_world
    from sensors.recording import CameraSpec, CaptureConfig, generate_capture_log

    out = work / "log_small"
    if not (out / "log.json").exists():
        world = build_world(WorldConfig(duration=20.0, ego_speed=2.0, street_length=50.0))
        cfg = CaptureConfig(name="ring20", cameras=tuple(CameraSpec(n, yaw, 70.0) for n, yaw in RING), duration=20.0)
        generate_capture_log(world, cfg, out)
    return out


def upscale(small: Path, work: Path, factor: int = 5) -> Path:
    """The same log with every image (and its camera) ``factor`` times larger."""
    from PIL import Image

    from scenes.camera import Intrinsics
    from scenes.capture import CaptureCamera, CaptureLogWriter, read_capture_log

    out = work / "log_1600x900"
    if (out / "log.json").exists():
        return out
    log = read_capture_log(small)
    cams = [CaptureCamera(c.name, Intrinsics(c.intrinsics.width * factor, c.intrinsics.height * factor, c.intrinsics.fx * factor,
                                             c.intrinsics.fy * factor, c.intrinsics.cx * factor, c.intrinsics.cy * factor), c.T_ego_cam)
            for c in log.cameras]
    lidar_header = json.loads((small / "log.json").read_text())["lidar"]
    writer = CaptureLogWriter(out, log.name, cams, lidar_header, log.world)
    with writer:
        for f in log.frames:
            images = {c.name: np.asarray(Image.open(f.image_paths[c.name]).convert("RGB").resize((c.intrinsics.width, c.intrinsics.height),
                                                                                                Image.BILINEAR)) for c in cams}
            writer.add_frame(f.time, f.T_world_ego, images, np.load(f.lidar_path))
        writer.close(log.scene)
    return out


AV2_NAMES = {"back": "rear_left", "back_left": "side_left", "back_right": "side_right"}
"""Rig names Argoverse 2's exporter maps to ring cameras (its ring has no camera straight back)."""


def renamed(log_dir: Path, names: dict, out: Path) -> Path:
    """The same log with some cameras renamed (log.json rewritten; images and sweeps linked)."""
    if (out / "log.json").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    d = json.loads((log_dir / "log.json").read_text())
    for c in d["cameras"]:
        c["name"] = names.get(c["name"], c["name"])
    for f in d["frames"]:
        f["images"] = {names.get(k, k): v for k, v in f["images"].items()}
    for sub in ("images", "lidar"):
        (out / sub).symlink_to((log_dir / sub).resolve())
    (out / "log.json").write_text(json.dumps(d))
    return out


def peak_import(fmt: str, exported: Path, out: Path) -> dict:
    """Import ``exported`` in a child process; its wall time and peak resident memory."""
    shutil.rmtree(out, ignore_errors=True)
    code = ("import resource, sys; from tasks.cli import main; rc = main(sys.argv[1:]); "
            "print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)")
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, "import", fmt, str(exported), "--out", str(out)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"import {fmt} failed: {p.stderr[-2000:]}")
    kib = int(next(line.split()[1] for line in p.stdout.splitlines() if line.startswith("MAXRSS")))
    return {"format": fmt, "peak_rss_gib": round(kib / 2**20, 3), "import_seconds": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/import_memory"))
    ap.add_argument("--formats", nargs="+", default=["nuscenes", "av2", "waymo"])
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    big = upscale(record(a.work), a.work)
    from scenes.capture import read_capture_log
    from tasks.cli import main as cli

    log = read_capture_log(big)
    rows = []
    for fmt in a.formats:
        exported = a.work / f"export_{fmt}"
        source = renamed(big, AV2_NAMES, a.work / "log_1600x900_av2") if fmt == "av2" else big
        if not exported.exists():
            cli(["export-log", str(source), "--format", fmt, "--out", str(exported)])
        rows.append(peak_import(fmt, exported, a.work / f"imported_{fmt}"))
        print(json.dumps(rows[-1]))
    print(json.dumps({"frames": len(log.frames), "cameras": [c.name for c in log.cameras], "size": [1600, 900],
                      "duration_s": log.frames[-1].time - log.frames[0].time, "imports": rows}, indent=1))


if __name__ == "__main__":
    main()
