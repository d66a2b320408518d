"""`nerfsim serve`: a trained scene behind an HTTP API, for closed-loop use by any driving stack
(the NeuroNCAP pattern: ego pose in, sensor data out, the stack's trajectory back as the next pose).

Endpoints (JSON; the OpenAPI schema is at ``/openapi.json``, interactive docs at ``/docs``):

- ``GET /health``: ``{"status": "ok"}``.
- ``GET /scene``: the rig (cameras with lens model and ``T_ego_cam``; the LiDAR), the time range,
  the AABB, the actors (id, class, size, asset) and where the recorded drive started
  (``start_time``, ``start_T_world_ego``).
- ``GET /actors?time=T``: every actor's ``T_world_actor`` at ``T`` in the current (edited) scene.
- ``POST /edits`` ``{"edits": [...]}``: apply edits, the schema of ``edits.yaml`` (remove, move with
  a new track or an offset, insert a copy); ``POST /reset`` drops them all.
- ``POST /render``: one camera: a rig camera by ``camera`` name + ``T_world_ego``, or an explicit
  ``model`` (lens dict) + ``T_world_cam``; ``time``; ``outputs`` among rgb, depth, normals,
  semantics, instances; ``encoding`` ``png`` (8-bit RGB, 16-bit depth in millimetres, 8-bit
  masks) or ``npy`` (the arrays, float32 / uint8). Each output comes back base64-encoded.
- ``POST /lidar``: a sweep of the rig's LiDAR from ``T_world_ego`` at ``time``: points ``[N, 3]`` in
  the LiDAR frame and ranges, base64 ``npy``.

Errors: a malformed request is answered 422 (FastAPI's validation, naming the field); a well-formed
one that makes no sense (unknown camera or actor, non-rigid pose, a time outside the scene's range,
an image over `ServerConfig.max_pixels`) 400 with the same one-line message the command line gives.
Concurrency: one lock around every render and every change of the scene (renders use all cores
anyway; the lock makes a render see one consistent scene). Security: binds to 127.0.0.1 by default;
with ``token`` set every request needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import numpy as np
from pydantic import BaseModel, Field

from scenes.errors import InputError
from scenes.lens import CameraModel
from scenes.settings import AT_LEAST_ONE, Range
from scenes.transforms import rigid_pose

OUTPUTS = ("rgb", "depth", "normals", "semantics", "instances")
Pose = list[list[float]]


class RenderRequest(BaseModel):
    """One camera to render."""

    camera: Optional[str] = Field(None, description="a rig camera (GET /scene), posed by T_world_ego")
    T_world_ego: Optional[Pose] = Field(None, description="4x4 ego pose, row-major")
    model: Optional[dict] = Field(None, description="a lens: kind, width, height, fx, fy, cx, cy, distortion")
    T_world_cam: Optional[Pose] = Field(None, description="4x4 camera pose (OpenCV axes), row-major")
    time: float = 0.0
    outputs: list[Literal["rgb", "depth", "normals", "semantics", "instances"]] = ["rgb"]
    encoding: Literal["png", "npy"] = "png"


class LidarRequest(BaseModel):
    """One LiDAR sweep of the rig's LiDAR."""

    T_world_ego: Pose
    time: float = 0.0


class EditsRequest(BaseModel):
    """Edits in the schema of edits.yaml."""

    edits: list[dict]


@dataclass
class ServerConfig:
    """`nerfsim serve` settings."""

    host: str = "127.0.0.1"
    """Address to bind (127.0.0.1: this machine only)."""
    port: Annotated[int, Range(lo=1, hi=65535)] = 8000
    """TCP port."""
    token: Optional[str] = None
    """When set, every request must send ``Authorization: Bearer <token>``."""
    max_pixels: Annotated[int, AT_LEAST_ONE] = 1920 * 1080
    """Largest image a render request may ask for."""
    device: str = "cpu"
    """Device to render on (cpu, cuda, auto)."""


class SceneSession:
    """The served scene: the trained model, its graph as edited so far, and the lock."""

    def __init__(self, scene_path: Path, cfg: ServerConfig):
        from scenes.capture import read_capture_log
        from sensors.renderers import NeuralRenderer
        from sensors.rig import Rig
        from tasks.pipeline import load_scene

        self.cfg, self.scene = cfg, load_scene(scene_path, cfg.device)
        self.renderer = NeuralRenderer(self.scene.model)
        source = self.scene.meta.get("extra", {}).get("source", {})
        self.rig, self.start = None, None
        if source.get("kind") == "capture-log":
            log = read_capture_log(source["path"])
            self.rig, self.start = Rig.from_capture_log(log), (log.frames[0].time, log.frames[0].T_world_ego)
        self.edits: list = []
        self.graph = self.scene.graph
        self.lock = threading.Lock()

    def info(self) -> dict:
        from tasks.pipeline import scene_time_range

        g = self.graph
        rig = {"cameras": [{"name": c.name, "model": c.model.to_dict(), "T_ego_cam": c.T_ego_cam.tolist()} for c in self.rig.cameras],
               "lidar": [{"name": s.name, "T_ego_lidar": s.T_ego_lidar.tolist()} for s in self.rig.lidars]} if self.rig else None
        start = {"start_time": self.start[0], "start_T_world_ego": self.start[1].tolist()} if self.start else {}
        return {"rig": rig, "time_range": scene_time_range(g), "aabb": [list(g.aabb[0]), list(g.aabb[1])], **start,
                "actors": [{"actor_id": a.actor_id, "class": a.class_name, "instance_id": a.instance_id, "size": list(a.size),
                            "asset_id": a.asset_id} for a in g.actors], "edits": len(self.edits)}

    def apply_edits(self, items: list) -> dict:
        from scenes.edits import apply_edits, parse_edits

        edits = parse_edits({"edits": items}, "request: edits")
        with self.lock:
            graph = apply_edits(self.scene.graph, self.edits + edits, "request: edits")
            self.edits, self.graph = self.edits + edits, graph
        return self.info()

    def reset(self) -> dict:
        with self.lock:
            self.edits, self.graph = [], self.scene.graph
        return self.info()

    def camera(self, req) -> tuple[CameraModel, np.ndarray]:
        if (req.camera is None) == (req.model is None):
            raise InputError("request", "camera / model", "give either a rig camera name (with T_world_ego) or a lens model (with T_world_cam)")
        if req.camera is not None:
            if self.rig is None:
                raise InputError("request", "camera", "this scene has no rig (not trained from a capture log): give model + T_world_cam")
            if req.T_world_ego is None:
                raise InputError("request", "T_world_ego", "a rig camera needs the ego pose")
            sensor = self.rig.camera(req.camera)
            return sensor.model, sensor.pose(rigid_pose(req.T_world_ego, "request", "T_world_ego"))
        if req.T_world_cam is None:
            raise InputError("request", "T_world_cam", "a lens model needs the camera pose")
        return CameraModel.from_dict(req.model, "request: model"), rigid_pose(req.T_world_cam, "request", "T_world_cam")

    def render(self, req) -> dict:
        from sensors.frame import capture_camera
        from tasks.pipeline import check_view_times

        model, T = self.camera(req)
        if model.width * model.height > self.cfg.max_pixels:
            raise InputError("request", "model", f"{model.width}x{model.height} is over the server's limit of {self.cfg.max_pixels} pixels")
        with self.lock:
            check_view_times(self.graph, [req], "request")
            frame = capture_camera(self.renderer, model, T, self.graph.at(req.time), req.time, "request", _products(req.outputs))
        return {"width": model.width, "height": model.height, "time": req.time, "T_world_cam": T.tolist(),
                "outputs": {k: _encode(k, frame, req.encoding) for k in req.outputs}}

    def lidar(self, req) -> dict:
        from sensors.lidar import capture_lidar

        if self.rig is None or not self.rig.lidars:
            raise InputError("request", "lidar", "this scene has no LiDAR in its rig")
        T_world_ego = rigid_pose(req.T_world_ego, "request", "T_world_ego")
        from tasks.pipeline import check_view_times

        with self.lock:
            check_view_times(self.graph, [req], "request")
            sweep = capture_lidar(self.renderer, self.rig.lidars[0], T_world_ego, self.graph.at(req.time))
        return {"n_beams": len(sweep.range), "n_returns": int(sweep.hit.sum()), "T_world_lidar": sweep.T_world_lidar.tolist(),
                "points_lidar": _b64_npy(sweep.points().astype(np.float32)), "ranges": _b64_npy(sweep.range.astype(np.float32))}


def _products(outputs) -> tuple[str, ...]:
    return tuple(p for p in ("normals",) if p in outputs) + ("rgb",)


def _b64_npy(a: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


def _encode(name: str, frame, encoding: str) -> str:
    """One output of a frame, base64: the PNG `nerfsim render` writes for it (rgb 8-bit, depth
    uint16 millimetres, normals' picture, semantic uint8 and instance uint16 ids) or the array."""
    import imageio.v3 as iio

    from tasks.media import depth_mm, to_uint8

    arrays = {"rgb": frame.rgb, "depth": frame.depth, "normals": frame.normals, "semantics": frame.semantic, "instances": frame.instance}
    a = arrays[name]
    if encoding == "npy":
        return _b64_npy(a.astype(np.float32) if a.dtype.kind == "f" else a)
    png = {"rgb": lambda: to_uint8(a), "depth": lambda: depth_mm(a),
           "normals": lambda: to_uint8((a * np.array([0.5, -0.5, -0.5]) + 0.5) * (np.abs(a).sum(-1, keepdims=True) > 0)),
           "semantics": lambda: a.astype(np.uint8), "instances": lambda: a.astype(np.uint16)}[name]()
    return base64.b64encode(iio.imwrite("<bytes>", png, extension=".png")).decode()


def create_app(scene_path: str | Path, cfg: ServerConfig = ServerConfig()):
    """The FastAPI application serving ``scene_path`` (module docstring)."""
    from fastapi import Depends, FastAPI, Header, HTTPException, Request
    from fastapi.responses import JSONResponse

    session = SceneSession(Path(scene_path), cfg)

    def authorised(authorization: Optional[str] = Header(None)) -> None:
        if cfg.token is not None and authorization != f"Bearer {cfg.token}":
            raise HTTPException(401, "missing or wrong token (Authorization: Bearer <token>)")

    app = FastAPI(title="nerfsim render server", description=__doc__.split("\n\n")[0], dependencies=[Depends(authorised)])

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError):  # noqa: ARG001 (FastAPI's signature)
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.get("/scene")
    def scene() -> dict:
        return session.info()

    @app.get("/actors")
    def actors(time: float = 0.0) -> dict:
        with session.lock:
            state = session.graph.at(time)
        return {"time": time, "actors": [{"actor_id": a.actor_id, "T_world_actor": a.T_world_actor.tolist()} for a in state.actors]}

    @app.post("/edits")
    def edits(req: EditsRequest) -> dict:
        return session.apply_edits(req.edits)

    @app.post("/reset")
    def reset() -> dict:
        return session.reset()

    @app.post("/render")
    def render(req: RenderRequest) -> dict:
        return session.render(req)

    @app.post("/lidar")
    def lidar(req: LidarRequest) -> dict:
        return session.lidar(req)

    app.state.session = session
    return app


def serve(scene_path: str | Path, cfg: ServerConfig = ServerConfig()) -> None:
    import uvicorn

    uvicorn.run(create_app(scene_path, cfg), host=cfg.host, port=cfg.port, log_level="info")
