"""Viewer latency (issue 22): `nerfsim view` of a trained scene opened in headless Chromium at a
640x360 viewport; the page's camera is moved (through the viewer's API) to ``--moves`` poses of the
recorded drive's front camera, a few seconds apart. For each move: the time from the camera update
reaching the viewer to the preview frame (``--preview`` px wide) being sent, and to the full
640x360 frame being sent (this includes ``settle_s`` of stillness), and each frame's own render +
send time. The headless browser draws its WebGL canvas in software (SwiftShader) on the same two
cores, which a user's browser does on its GPU: the same frames are also timed without a browser
(the viewer's render call alone, ``alone``). Writes a screenshot of the page (bench/viewer.png) for the README.

    python -m bench.viewer_latency demo_out/scene --moves 10
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _look_from(client, T_world_cam: np.ndarray) -> None:
    cam = client.camera
    cam.up_direction = tuple(-T_world_cam[:3, 1])
    cam.position = tuple(T_world_cam[:3, 3])
    cam.look_at = tuple(T_world_cam[:3, 3] + 10.0 * T_world_cam[:3, 2])


def render_alone(loaded, log, frames, preview: int) -> dict:
    """The viewer's render path (`capture_camera` + the picture) for the same views, no browser."""
    from sensors.frame import capture_camera
    from sensors.renderers import NeuralRenderer
    from tasks.viewer.frames import ViewCamera, picture

    renderer, out = NeuralRenderer(loaded.model), {}
    for name, width in (("preview", preview), ("full", 640)):
        times = []
        for f in frames:
            T = log.camera(f, "front").T_world_cam
            lens = ViewCamera.from_pose(T, np.radians(60.0), 16 / 9).lens(width)
            t0 = time.perf_counter()
            state = loaded.graph.at(f.time)
            picture(capture_camera(renderer, lens, T, state, f.time, "viewer", ("rgb",)), "rgb", state)
            times.append(time.perf_counter() - t0)
        out[f"{name}_render_s"] = {"median": round(float(np.median(times)), 3), "max": round(float(max(times)), 3), "size": [lens.width, lens.height]}
    return out


def run(scene: Path, moves: int, preview: int, screenshot: Path | None) -> dict:
    from scenes.capture import read_capture_log
    from tasks.pipeline import load_scene
    from tasks.viewer.app import Viewer, ViewerConfig
    from tasks.viewer.browser import viewer_page

    loaded = load_scene(scene)
    log = read_capture_log(loaded.meta["extra"]["source"]["path"])
    frames = log.frames[:: max(1, len(log.frames) // moves)][:moves]
    viewer = Viewer(loaded, ViewerConfig(port=_free_port(), width=640, preview=preview))
    rows = []
    try:
        with viewer_page(viewer, 640, 360) as (driver, client):
            loop = viewer.loops[client.client_id]
            _look_from(client, log.camera(frames[0], "front").T_world_cam)  # warm-up (numba, caches)
            viewer.wait_frame(client.client_id, loop.version - 1, timeout=300)
            for f in frames:
                viewer.time.value = float(f.time)
                time.sleep(3.0)
                before = loop.version
                _look_from(client, log.camera(f, "front").T_world_cam)
                quick = viewer.wait_frame(client.client_id, before, preview=True, timeout=300)
                full = viewer.wait_frame(client.client_id, before, timeout=300)
                rows.append((quick.latency_s, quick.render_s, full.latency_s, full.render_s, quick.image.shape, full.image.shape))
            if screenshot is not None:
                driver.execute_script("document.querySelector('svg.tabler-icon-chevron-left').closest('button, div').click()")
                time.sleep(2.0)
                driver.save_screenshot(str(screenshot))
    finally:
        viewer.close()
    alone = render_alone(loaded, log, frames, preview)
    arr = np.array([r[:4] for r in rows])

    def stats(col: int) -> dict:
        return {"median": round(float(np.median(arr[:, col])), 3), "max": round(float(arr[:, col].max()), 3)}

    return {"scene": str(scene), "moves": len(rows), "preview_size": list(rows[0][4][:2][::-1]), "full_size": list(rows[0][5][:2][::-1]),
            "preview_after_move_s": stats(0), "preview_render_s": stats(1), "full_after_move_s": stats(2), "full_render_s": stats(3),
            "alone": alone}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("--moves", type=int, default=10)
    ap.add_argument("--preview", type=int, default=128)
    ap.add_argument("--screenshot", type=Path, default=Path("bench/viewer.png"))
    a = ap.parse_args()
    print(json.dumps(run(a.scene, a.moves, a.preview, a.screenshot), indent=1))


if __name__ == "__main__":
    main()
