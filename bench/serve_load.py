"""Load test of `nerfsim serve` (issue 22): the server in a subprocess on 127.0.0.1, ``--clients``
threads each posting 320x180 RGB + depth renders of the rig's front camera (ego poses along the
recorded drive) for ``--seconds``; errors counted, latency percentiles reported.

    python -m bench.serve_load SCENE --clients 4 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(scene: Path, clients: int, seconds: float, width: int = 320, height: int = 180) -> dict:
    import httpx

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "tasks.cli", "serve", str(scene), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # the scene loads (numba JIT included) before the port answers
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        info = httpx.get(f"{url}/scene").json()
        cam = info["rig"]["cameras"][0]
        model = dict(cam["model"], width=width, height=height)
        scale = width / cam["model"]["width"]
        model.update(fx=cam["model"]["fx"] * scale, fy=cam["model"]["fy"] * scale, cx=cam["model"]["cx"] * scale,
                     cy=cam["model"]["cy"] * scale)
        T_ego_cam = np.array(cam["T_ego_cam"])
        start, t0 = np.array(info["start_T_world_ego"]), info["start_time"]
        latencies: list[float] = []
        errors: list[str] = []
        stop = time.perf_counter() + seconds

        def client(k: int) -> None:
            with httpx.Client(base_url=url, timeout=300) as http:
                i = 0
                while time.perf_counter() < stop:
                    T = start.copy()
                    T[:3, 3] += T[:3, 0] * (2.0 * ((i * clients + k) % 20))  # along the drive, 2 m apart
                    body = {"model": model, "T_world_cam": (T @ T_ego_cam).tolist(), "time": t0, "outputs": ["rgb", "depth"]}
                    t = time.perf_counter()
                    r = http.post("/render", json=body)
                    latencies.append(time.perf_counter() - t)
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                    i += 1

        threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        lat = np.array(latencies)
        return {"clients": clients, "seconds": seconds, "requests": len(lat), "errors": len(errors), "first_errors": errors[:3],
                "renders_per_s": len(lat) / seconds, "latency_p50_s": float(np.percentile(lat, 50)),
                "latency_p90_s": float(np.percentile(lat, 90)), "latency_p99_s": float(np.percentile(lat, 99)),
                "latency_max_s": float(lat.max()), "size": f"{width}x{height}"}
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    a = ap.parse_args(argv)
    out = run(a.scene, a.clients, a.seconds)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
