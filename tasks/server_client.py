"""A Python client of `nerfsim serve` (tasks/server.py), and the closed loop a driving stack runs
against it (the NeuroNCAP pattern): send the ego pose, get the rig's images, let the planner choose
the next pose, repeat.

    nerfsim serve scene --port 8000 &
    python -m tasks.server_client --url http://127.0.0.1:8000 --steps 30 --out loop.mp4

The example planner here keeps the ego's heading at a constant speed (replace ``plan`` with a real
stack's); the video shows what the front camera saw at each step.
"""

from __future__ import annotations

import argparse
import base64
import io
from pathlib import Path
from typing import Callable

import numpy as np

from scenes.errors import InputError


class RenderClient:
    """The server's endpoints as methods; images come back as numpy arrays. ``http``: an
    ``httpx.Client`` (or FastAPI's ``TestClient``) to use instead of one made for ``url``."""

    def __init__(self, url: str = "http://127.0.0.1:8000", token: str | None = None, http=None, timeout: float = 120.0):
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = http or httpx.Client(base_url=url, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kw) -> dict:
        r = self.http.request(method, path, **kw)
        if r.status_code != 200:
            detail = r.json().get("detail", r.text) if r.headers.get("content-type", "").startswith("application/json") else r.text
            raise InputError(f"server {path}", None, f"HTTP {r.status_code}: {detail}")
        return r.json()

    def scene(self) -> dict:
        return self._call("GET", "/scene")

    def render(self, camera: str, T_world_ego: np.ndarray, time: float, outputs: tuple[str, ...] = ("rgb",)) -> dict[str, np.ndarray]:
        """The rig camera ``camera`` at ``T_world_ego`` and ``time``: ``{output: array}`` (float32
        rgb / depth / normals, integer masks)."""
        body = {"camera": camera, "T_world_ego": np.asarray(T_world_ego).tolist(), "time": float(time), "outputs": list(outputs),
                "encoding": "npy"}
        out = self._call("POST", "/render", json=body)["outputs"]
        return {k: np.load(io.BytesIO(base64.b64decode(v))) for k, v in out.items()}

    def actors(self, time: float) -> list[dict]:
        """Every actor of the (edited) scene at ``time``: ``actor_id`` and ``T_world_actor`` (4x4)."""
        return self._call("GET", "/actors", params={"time": float(time)})["actors"]

    def edits(self, edits: list[dict]) -> dict:
        return self._call("POST", "/edits", json={"edits": edits})

    def reset(self) -> dict:
        return self._call("POST", "/reset")


def keep_heading(speed: float) -> Callable[[np.ndarray, dict, float], np.ndarray]:
    """A planner that drives straight on at ``speed`` m/s: ``plan(T_world_ego, images, dt)``."""

    def plan(T_world_ego: np.ndarray, images: dict, dt: float) -> np.ndarray:  # noqa: ARG001 (a real planner looks)
        T = np.array(T_world_ego, dtype=np.float64)
        T[:3, 3] += T[:3, 0] * speed * dt
        return T

    return plan


def closed_loop(client: RenderClient, T_world_ego: np.ndarray, t0: float, steps: int, dt: float, plan,
                camera: str = "front") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``steps`` rounds of render -> plan -> move; returns the front images and the ego poses."""
    frames, poses = [], [np.asarray(T_world_ego, dtype=np.float64)]
    for i in range(steps):
        images = client.render(camera, poses[-1], t0 + i * dt)
        frames.append(images["rgb"])
        poses.append(plan(poses[-1], images, dt))
    return frames, poses[:-1]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--token", default=None)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--dt", type=float, default=0.1, help="seconds between steps")
    ap.add_argument("--speed", type=float, default=8.0, help="m/s of the example planner")
    ap.add_argument("--out", type=Path, default=Path("loop.mp4"))
    a = ap.parse_args(argv)
    client = RenderClient(a.url, a.token)
    scene = client.scene()
    if not scene["rig"]:
        raise SystemExit("this scene has no rig (not trained from a capture log)")
    t0, start = scene["start_time"], np.array(scene["start_T_world_ego"])
    frames, _ = closed_loop(client, start, t0, a.steps, a.dt, keep_heading(a.speed), scene["rig"]["cameras"][0]["name"])
    from tasks.media import write_video

    write_video(a.out, frames, fps=1.0 / a.dt)
    print(a.out)


if __name__ == "__main__":
    main()
