"""`nerfsim view`: a trained scene in the browser, on viser (nerfstudio's viewer library).

Each browser tab gets its own render loop (a thread): when its camera moves, a preview frame
(`ViewerConfig.preview` pixels wide) is rendered at once; when the camera has been still for
``settle_s``, the full frame (the width slider). Renders of all tabs share one lock with the edits:
the model is used by one render at a time (it uses every core anyway) and sees one scene.

The panel: time slider (+ play), output (rgb, depth, normals, semantics, instances, boxes, lidar),
lens, width, the ground-truth twin beside the scene (split view; built-in world only), the actors
(each box drawn in 3D; pick one to get a gizmo: drag / turn it, delete, duplicate), and saving: the
edits as ``edits.yaml`` (`nerfsim render --edits`) and camera keyframes as nerfstudio's
``camera_path.json`` (`nerfsim render --cameras`), both in `ViewerConfig.out`.

``nerfsim train --view`` shows a scene while it trains (`TrainingView`): frames are rendered by the
training loop itself between steps, at preview size, so training never races a render.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np

from scenes.edits import RemoveActor, apply_edits
from scenes.errors import InputError
from scenes.settings import AT_LEAST_ONE, Range
from scenes.transforms import matrix_to_quat
from tasks.viewer.frames import (LENSES, OUTPUTS, ViewCamera, add_edit, camera_path_dict, duplicate_beside, instance_colour,
                                 move_from_gizmo, picture, preview_width, row_bands, split_view)

NO_ACTOR = "(none)"
BAND_RAYS = 1 << 14
"""Rays per band of a full frame (~0.2 s on 2 cores): how long a camera move may wait for one."""


@dataclass
class ViewerConfig:
    """`nerfsim view` settings."""

    host: str = "127.0.0.1"
    """Address to bind (127.0.0.1: this machine only)."""
    port: Annotated[int, Range(lo=1, hi=65535)] = 7007
    """TCP port of the web page."""
    width: Annotated[int, Range(lo=16, hi=3840)] = 640
    """Width of the full frame, pixels (its height follows the browser window's aspect)."""
    preview: Annotated[int, Range(lo=16, hi=3840)] = 128
    """Width of the quick frame shown while the camera moves, pixels."""
    settle_s: Annotated[float, Range(lo=0.0, hi=10.0)] = 0.15
    """The camera must be still this long before the full frame is rendered, seconds."""
    out: Path = Path("viewer_out")
    """Where the viewer saves edits.yaml and camera_path.json."""
    device: str = "cpu"
    """Device to render on (cpu, cuda, auto)."""
    fps: Annotated[float, AT_LEAST_ONE] = 10.0
    """Frame rate of saved camera paths (and of playing the time slider)."""


@dataclass
class ViewerFrame:
    """A frame the viewer sent to a browser (kept for tests and the latency bench)."""

    client_id: int
    version: int
    preview: bool
    image: np.ndarray
    camera: ViewCamera
    lens: object
    time: float
    latency_s: float
    """From the change that asked for it (camera move, slider) to the image sent."""
    render_s: float
    """Rendering and sending it."""


class _ClientLoop:
    """The render loop of one browser tab (module docstring)."""

    def __init__(self, viewer: "Viewer", client):
        self.viewer, self.client = viewer, client
        self.version, self.changed_at, self.alive = 0, time.perf_counter(), True
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self.run, name=f"viewer-client-{client.client_id}", daemon=True)

    def bump(self) -> None:
        with self.cond:
            self.version += 1
            self.changed_at = time.perf_counter()
            self.cond.notify()

    def stop(self) -> None:
        with self.cond:
            self.alive = False
            self.cond.notify()

    def run(self) -> None:
        shown = (-1, False)  # (version, full frame?) on screen
        while True:
            with self.cond:
                while self.alive and shown == (self.version, True):
                    self.cond.wait(0.5)
                if not self.alive:
                    return
                version, since = self.version, time.perf_counter() - self.changed_at
            if shown[0] != version:
                preview = True
            elif since < self.viewer.cfg.settle_s:
                time.sleep(self.viewer.cfg.settle_s - since)
                continue
            else:
                preview = False
            try:
                done = self.viewer.render_for(self.client, version, preview, self.changed_at, lambda: self.version != version)
            except Exception as e:  # noqa: BLE001 - a bad frame must not kill the tab's loop
                self.viewer.status(f"render failed: {e}")
                done = True
            if done is not None:
                shown = (version, not preview)


class Viewer:
    """A scene in the browser (module docstring). ``live=False``: no render loops (the training
    view renders from its own loop)."""

    def __init__(self, scene, cfg: ViewerConfig = ViewerConfig(), live: bool = True):
        import viser

        from sensors.renderers import NeuralRenderer

        self.scene, self.cfg, self.live = scene, cfg, live
        self.renderer = NeuralRenderer(scene.model)
        self.twin_renderer = None
        self.edits: list = []
        self.graph = scene.graph
        self.keyframes: list[tuple[ViewCamera, float]] = []
        self.lock = threading.RLock()
        self.frames: list[ViewerFrame] = []
        self.frames_cond = threading.Condition()
        self.loops: dict[int, _ClientLoop] = {}
        self.server = viser.ViserServer(host=cfg.host, port=cfg.port, verbose=False)
        self.server.gui.configure_theme(control_layout="collapsible", show_share_button=False, show_logo=False)
        self._box_handles: dict = {}
        self.gizmo = None
        self._build_gui()
        self.draw_actor_boxes()
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)

    # ---- GUI -------------------------------------------------------------------------------------
    def _build_gui(self) -> None:
        from tasks.pipeline import scene_time_range

        gui = self.server.gui
        span = scene_time_range(self.graph) or (0.0, 0.0)
        self.span = span
        with gui.add_folder("View"):
            self.output = gui.add_dropdown("Output", OUTPUTS, "rgb")
            self.lens = gui.add_dropdown("Lens", LENSES, "pinhole")
            self.width = gui.add_slider("Width", 64, 1920, 16, self.cfg.width)
            self.twin = gui.add_checkbox("Twin (ground truth, right half)", False, disabled=self.scene.world_config is None)
        with gui.add_folder("Time"):
            self.time = gui.add_slider("Time (s)", span[0], max(span[1], span[0] + 1e-3), 0.05, span[0], disabled=span[0] == span[1])
            self.play = gui.add_checkbox("Play", False, disabled=span[0] == span[1])
        with gui.add_folder("Actors"):
            self.show_boxes = gui.add_checkbox("Boxes in 3D", True)
            self.actor = gui.add_dropdown("Actor", self._actor_options(), NO_ACTOR)
            delete, duplicate = gui.add_button("Delete"), gui.add_button("Duplicate")
        with gui.add_folder("Save"):
            save_edits, add_key, save_path = gui.add_button("Save edits.yaml"), gui.add_button("Add camera keyframe"), gui.add_button(
                "Save camera_path.json")
            self.status_text = gui.add_markdown(f"Saving to `{self.cfg.out}`")
        for handle in (self.output, self.lens, self.width, self.twin):
            handle.on_update(lambda _: self.refresh())
        self.time.on_update(lambda _: self._time_changed())
        self.show_boxes.on_update(lambda _: self.draw_actor_boxes())
        self.play.on_update(lambda _: self._start_playing() if self.play.value else None)
        self.actor.on_update(lambda _: self._select(self.actor.value))
        delete.on_click(lambda _: self.delete_actor(self.actor.value))
        duplicate.on_click(lambda _: self.duplicate_actor(self.actor.value))
        save_edits.on_click(lambda _: self.status(f"wrote {self.save_edits()}"))
        add_key.on_click(lambda event: self.add_keyframe(event.client))
        save_path.on_click(lambda _: self.status(f"wrote {self.save_camera_path()}"))

    def status(self, text: str) -> None:
        self.status_text.content = text

    def _actor_options(self) -> tuple[str, ...]:
        return (NO_ACTOR,) + tuple(a.actor_id for a in self.graph.actors)

    # ---- clients ---------------------------------------------------------------------------------
    def _connect(self, client) -> None:
        loop = _ClientLoop(self, client)
        self.loops[client.client_id] = loop
        client.camera.on_update(lambda _: loop.bump())
        if self.live:
            loop.thread.start()

    def _disconnect(self, client) -> None:
        loop = self.loops.pop(client.client_id, None)
        if loop is not None:
            loop.stop()

    def refresh(self) -> None:
        """Render every tab again (a setting, the time or the scene changed)."""
        for loop in list(self.loops.values()):
            loop.bump()

    def render_for(self, client, version: int, preview: bool, changed_at: float, stale=lambda: False) -> ViewerFrame | None:
        """Render what ``client``'s camera sees now and send it as the page's background. A full
        frame is rendered in bands of rows and given up (None) as soon as ``stale()`` says a newer
        view is wanted, so a camera move never waits for a full frame it no longer needs."""
        from sensors.frame import capture_camera

        start = time.perf_counter()
        cam = ViewCamera.of(client.camera)
        width = preview_width(self.width.value, self.cfg.preview) if preview else int(self.width.value)
        lens = cam.lens(width, self.lens.value)
        output, t = self.output.value, float(self.time.value)
        products = ("rgb", "normals") if output == "normals" else ("rgb",)
        with self.lock:
            state = self.graph.at(t)
        pieces = []
        for band in [lens] if preview else row_bands(lens, BAND_RAYS):
            if stale():
                return None
            with self.lock:  # per band: edits and other tabs get their turn between bands
                piece = picture(capture_camera(self.renderer, band, cam.T_world_cam, state, t, "viewer", products), output, state)
                if self.twin.value and not preview:
                    twin = capture_camera(self._twin(), band, cam.T_world_cam, state, t, "twin", products)
                    piece = split_view(piece, picture(twin, output, state))
            pieces.append(piece)
        image = np.concatenate(pieces, axis=0)
        if output == "lidar" and not preview:
            with self.lock:
                self._show_lidar(client, cam, state)
        client.scene.set_background_image(image, format="jpeg" if preview else "png", jpeg_quality=90)
        done = time.perf_counter()
        record = ViewerFrame(client.client_id, version, preview, image, cam, lens, t, done - changed_at, done - start)
        with self.frames_cond:
            self.frames.append(record)
            del self.frames[:-50]
            self.frames_cond.notify_all()
        return record

    def wait_frame(self, client_id: int, after: int, preview: bool = False, timeout: float = 60.0) -> ViewerFrame:
        """The first frame for ``client_id`` of a version above ``after`` (full, or preview)."""
        deadline = time.monotonic() + timeout
        with self.frames_cond:
            while True:
                for f in self.frames:
                    if f.client_id == client_id and f.version > after and f.preview == preview:
                        return f
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {'preview' if preview else 'full'} frame for client {client_id} within {timeout} s")
                self.frames_cond.wait(left)

    def _twin(self):
        from sensors.renderers import TwinRenderer
        from tasks.pipeline import twin_for

        if self.twin_renderer is None:
            self.twin_renderer = TwinRenderer(twin_for(self.scene))
        return self.twin_renderer

    def _show_lidar(self, client, cam: ViewCamera, state) -> None:
        """A LiDAR sweep from the camera centre (the `nerfsim render --outputs lidar` sensor), its
        returns drawn as points coloured by range."""
        from sensors.lidar import LidarConfig, capture_lidar
        from sensors.rig import LidarSensor
        from tasks.cli.outputs import T_CAM_LIDAR
        from tasks.media import colorize_depth

        sweep = capture_lidar(self.renderer, LidarSensor("viewer", LidarConfig(), T_CAM_LIDAR), cam.T_world_cam, state)
        pts = sweep.points() @ sweep.T_world_lidar[:3, :3].T + sweep.T_world_lidar[:3, 3]
        colours = colorize_depth(sweep.range[sweep.hit])
        client.scene.add_point_cloud("/lidar", pts.astype(np.float32), colours, point_size=0.08)

    # ---- time ------------------------------------------------------------------------------------
    def _time_changed(self) -> None:
        self.draw_actor_boxes()
        self.refresh()

    def _start_playing(self) -> None:
        def play() -> None:
            step = 1.0 / self.cfg.fps
            while self.play.value:
                t = self.time.value + step
                self.time.value = self.span[0] if t > self.span[1] + 1e-9 else t
                time.sleep(step)

        threading.Thread(target=play, name="viewer-play", daemon=True).start()

    # ---- actors and edits ------------------------------------------------------------------------
    def draw_actor_boxes(self) -> None:
        """Every actor's box at the slider's time, as a wireframe in the 3D view."""
        import trimesh.creation

        with self.lock:
            state = self.graph.at(float(self.time.value))
        shown = {a.actor_id for a in state.actors} if self.show_boxes.value else set()
        for gone in set(self._box_handles) - shown:
            self._box_handles.pop(gone).remove()
        for a in (a for a in state.actors if a.actor_id in shown):
            box = trimesh.creation.box(a.size)
            self._box_handles[a.actor_id] = self.server.scene.add_mesh_simple(
                f"/actors/{a.actor_id}", box.vertices, box.faces, color=instance_colour(a.instance_id), wireframe=True,
                wxyz=tuple(matrix_to_quat(a.T_world_actor[:3, :3])), position=tuple(a.T_world_actor[:3, 3]))
        self._place_gizmo()

    def actor_pose(self, actor_id: str) -> np.ndarray:
        with self.lock:
            for a in self.graph.at(float(self.time.value)).actors:
                if a.actor_id == actor_id:
                    return a.T_world_actor
        raise InputError("viewer", "actor", f"no actor {actor_id!r} in the scene now")

    def _select(self, actor_id: str) -> None:
        if self.gizmo is not None:
            self.gizmo.remove()
            self.gizmo = None
        if actor_id == NO_ACTOR:
            return
        self.gizmo = self.server.scene.add_transform_controls("/gizmo", scale=2.0, disable_sliders=True)
        self._place_gizmo()
        self.gizmo.on_update(lambda _: self.move_actor(self.actor.value, self.gizmo.position, self.gizmo.wxyz))

    def _place_gizmo(self) -> None:
        if self.gizmo is not None and self.actor.value != NO_ACTOR:
            T = self.actor_pose(self.actor.value)
            self.gizmo.wxyz, self.gizmo.position = tuple(matrix_to_quat(T[:3, :3])), tuple(T[:3, 3])

    def edit(self, edit) -> None:
        """Apply one more edit (the scene's graph is rebuilt from all of them) and show it."""
        with self.lock:
            edits = add_edit(self.edits, edit)
            self.graph = apply_edits(self.scene.graph, edits, "viewer edits")
            self.edits = edits
        self.actor.options = self._actor_options()
        self.draw_actor_boxes()
        self.refresh()

    def move_actor(self, actor_id: str, position, wxyz) -> None:
        self.edit(move_from_gizmo(actor_id, self.actor_pose(actor_id), position, wxyz))

    def delete_actor(self, actor_id: str) -> None:
        if actor_id != NO_ACTOR:
            self.actor.value = NO_ACTOR
            self.edit(RemoveActor(actor_id))

    def duplicate_actor(self, actor_id: str) -> str | None:
        if actor_id == NO_ACTOR:
            return None
        taken = {a.actor_id for a in self.graph.actors}
        new_id = next(f"{actor_id}_copy{i}" for i in range(1, len(taken) + 2) if f"{actor_id}_copy{i}" not in taken)
        size = self.graph.actor(actor_id).size
        self.edit(duplicate_beside(actor_id, self.actor_pose(actor_id), size, new_id))
        return new_id

    def save_edits(self) -> Path:
        from tasks.pipeline import write_edits

        path = Path(self.cfg.out) / "edits.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_edits(self.edits, path)
        return path

    # ---- camera paths ----------------------------------------------------------------------------
    def add_keyframe(self, client) -> None:
        self.keyframes.append((ViewCamera.of(client.camera), float(self.time.value)))
        self.status(f"{len(self.keyframes)} camera keyframe(s)")

    def save_camera_path(self) -> Path:
        from scenes.files import atomic_write_json

        path = Path(self.cfg.out) / "camera_path.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, camera_path_dict(self.keyframes, int(self.width.value), self.lens.value, self.cfg.fps))
        return path

    def close(self) -> None:
        for loop in list(self.loops.values()):
            loop.stop()
        self.server.stop()


def view(scene_path: Path, cfg: ViewerConfig = ViewerConfig()) -> None:
    """Serve the viewer of a trained scene until interrupted (Ctrl-C)."""
    from tasks.pipeline import load_scene

    viewer = Viewer(load_scene(Path(scene_path), cfg.device), cfg)
    print(f"viewer: http://{cfg.host}:{cfg.port}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        viewer.close()


@dataclass
class TrainingView:
    """``nerfsim train --view``: a `Viewer` on the scene being trained, fed by `on_step` (frames
    at preview size, rendered between training steps)."""

    cfg: ViewerConfig = field(default_factory=ViewerConfig)
    data: Path | None = None
    """The training data (a capture log's actors are drawn and placed by time)."""
    every_s: float = 2.0
    """How often a tab gets a new frame while training (one whose camera moved gets one sooner)."""
    viewer: Viewer | None = None
    _shown: dict = field(default_factory=dict)

    def _open(self, model) -> Viewer:
        from scenes.graph import SceneGraph
        from tasks.pipeline import LoadedScene, is_capture_log

        if self.data is not None and is_capture_log(Path(self.data)):
            from scenes.capture import read_capture_log

            graph = read_capture_log(self.data).scene
        else:
            aabb = model.aabb.detach().cpu().numpy().astype(float)
            graph = SceneGraph(aabb=(tuple(aabb[0]), tuple(aabb[1])))
        print(f"viewer: http://{self.cfg.host}:{self.cfg.port}")
        return Viewer(LoadedScene(model, graph, {}, Path(".")), self.cfg, live=False)

    def on_step(self, step: int, elapsed: float, model) -> None:
        if self.viewer is None:
            self.viewer = self._open(model)
        now = time.perf_counter()
        for cid, loop in list(self.viewer.loops.items()):
            version, shown_at = self._shown.get(cid, (-1, 0.0))
            if loop.client.camera.update_timestamp == 0.0 or (loop.version == version and now - shown_at < self.every_s):
                continue
            self.viewer.render_for(loop.client, loop.version, True, loop.changed_at)
            self._shown[cid] = (loop.version, time.perf_counter())
        if step % 50 == 0:
            self.viewer.status(f"training: step {step}, {elapsed:.0f} s")
