"""The commands of ``nerfsim``: one dataclass each, whose fields (and the fields of the config
dataclasses nested in it) are the command's settings, and whose ``run`` does the job.

The settings are declared once, on the dataclasses: `tyro` builds the flags and their help from the
fields and their docstrings (``Literal`` fields list their choices), and `tasks.cli.settings` reads
the same names from a config file. A config nested with ``tyro.conf.arg(name="")`` (`Unprefixed`) shows its settings
without a prefix (``--max-seconds``, not ``--train.max-seconds``); the others keep their name as
prefix (``--model.min-alpha``, ``--mesh.level``, ``--env.dynamics``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro
from tyro.conf import Positional, PositionalRequiredArgs

from scenes.errors import InputError
from scenes.settings import AT_LEAST_ONE, POSITIVE, Range
from sensors.mesh import MeshConfig
from sim.compose import SceneModelConfig
from sim.train import TrainConfig
from tasks.nav.evaluate import NavEvalConfig
from tasks.pose.bop import PoseDataConfig
from tasks.pose.inversion import InversionConfig
from tasks.scenarios.dataset import GenerateConfig
from tasks.cli.drive_logs import EgoMask, ExportLog, Import
from tasks.server import ServerConfig
from tasks.viewer.app import ViewerConfig

Unprefixed = tyro.conf.arg(name="")
"""A nested config whose settings the command shows without the config's name as prefix."""


@dataclass
class World:
    """Write a capture log (3 cameras + LiDAR at 10 Hz, actor tracks) of the built-in street world."""

    out: Path = Path("world_log")
    """Folder of the capture log (written atomically)."""
    tiny: bool = False
    """The small test world (short street, 3 actors, 2 s) instead of the default street."""
    seed: int = 0
    """World seed: same seed, same world."""
    width: Annotated[Optional[int], Range(lo=8)] = None
    """Image width override, pixels."""
    height: Annotated[Optional[int], Range(lo=8)] = None
    """Image height override, pixels."""
    distortion: tuple[float, ...] = ()
    """OpenCV lens of every camera, (k1, k2, p1, p2[, k3]), e.g. -0.3 0.08 0 0; none = pinhole."""
    exposure_jitter: Annotated[float, Range(lo=0.0, hi=0.95)] = 0.0
    """Each image recorded at a gain drawn in [1 - j, 1 + j] (auto-exposure); 0 = constant."""
    overwrite: bool = False
    """Replace an existing log."""

    def run(self) -> None:
        from tasks.pipeline import make_world_log

        print(make_world_log(self.out, self.tiny, self.seed, self.width, self.height, overwrite=self.overwrite,
                             distortion=self.distortion, exposure_jitter=self.exposure_jitter))


@dataclass
class Train:
    """Train a compositional scene from a capture log or a static dataset (Blender / nerfstudio /
    instant-ngp). Resumes from the checkpoint in OUT after a kill."""

    data: Positional[Path]
    """Capture log folder (log.json) or dataset folder."""
    out: Path = Path("scene")
    """Checkpoint folder."""
    holdout_every: int = 10
    """Capture logs: hold out every N-th frame for evaluation (0 = none)."""
    train: Annotated[TrainConfig, Unprefixed] = field(default_factory=TrainConfig)
    """Optimisation settings."""
    model: SceneModelConfig = field(default_factory=SceneModelConfig)
    """Scene model settings. One left at its default keeps the value scaled to the data (a street
    in metres or a small object); one set here replaces it."""
    view: bool = False
    """Show the scene in the browser while it trains (the `nerfsim view` page, at --viewer.port)."""
    viewer: ViewerConfig = field(default_factory=ViewerConfig)
    """Viewer settings (with --view)."""

    def run(self) -> None:
        from tasks.pipeline import train_scene
        from tasks.viewer.app import TrainingView

        overrides = changed_settings(self.model, SceneModelConfig())
        on_step = TrainingView(self.viewer, data=self.data).on_step if self.view else None
        print(json.dumps(train_scene(self.data, self.out, self.train, self.holdout_every, on_step, model_overrides=overrides)))


@dataclass
class Render:
    """Render a scene (after optional edits) from the cameras of a file (pinhole, OpenCV-distorted,
    fisheye or equirectangular lenses). A camera's time must lie within the scene's time range
    (its actors' tracks) give or take 1 s: times far outside it are refused, not clamped."""

    scene: Positional[Path]
    """Checkpoint folder written by `nerfsim train`."""
    cameras: Path
    """nerfsim cameras.json or nerfstudio camera_path.json."""
    out: Path = Path("render")
    """Output folder (its README.md documents the files)."""
    edits: Optional[Path] = None
    """Edits file (YAML/JSON): remove / move / insert actors."""
    twin: bool = False
    """Render the ground-truth mesh twin instead (built-in world only)."""
    outputs: str = "rgb,depth,instances"
    """Comma-separated products: rgb, depth, normals, semantics, instances, boxes, lidar, flow (or all)."""

    def run(self) -> None:
        from tasks.cli.camera_files import load_views
        from tasks.cli.outputs import parse_outputs
        from tasks.pipeline import render_to_folder

        outputs = parse_outputs(self.outputs)
        render_to_folder(self.scene, load_views(self.cameras), self.out, self.edits, self.twin, outputs,
                         cameras_source=str(self.cameras))
        print(self.out)


@dataclass
class ExportMesh:
    """Marching-cubes meshes of a scene's fields with vertex colours: the background in world
    coordinates, each actor asset in its own box frame (x forward, y left, z up, metres)."""

    scene: Positional[Path]
    """Checkpoint folder."""
    out: Path = Path("meshes")
    """Output folder: background.<fmt> and actor_<asset>.<fmt>, plus meshes.json (asset -> box size, files)."""
    fmt: Literal["ply", "obj", "glb"] = "ply"
    """Mesh file format."""
    background: bool = True
    """Export the background."""
    actors: bool = True
    """Export every actor asset."""
    mesh: MeshConfig = field(default_factory=MeshConfig)
    """Grid and iso-level settings."""

    def run(self) -> None:
        from tasks.pipeline import export_scene_meshes

        for p in export_scene_meshes(self.scene, self.out, self.fmt, self.background, self.actors, self.mesh):
            print(p)


@dataclass
class Serve:
    """Serve a trained scene over HTTP for closed-loop use by a driving stack: render rig or free
    cameras and LiDAR at any time and ego pose, edit actors, reset (API: tasks/server.py; the
    OpenAPI schema at /openapi.json, docs at /docs)."""

    scene: Positional[Path]
    """Checkpoint folder."""
    server: Annotated[ServerConfig, Unprefixed] = field(default_factory=ServerConfig)
    """Address, token and limits."""

    def run(self) -> None:
        from tasks.server import serve

        serve(self.scene, self.server)


@dataclass
class View:
    """Look at a trained scene in the browser (viser): fly the camera, play the actors' tracks, pick
    the output and lens, drag / turn / delete / duplicate actors, save edits.yaml and
    camera_path.json for `nerfsim render` (tasks/viewer/app.py)."""

    scene: Positional[Path]
    """Checkpoint folder."""
    viewer: Annotated[ViewerConfig, Unprefixed] = field(default_factory=ViewerConfig)
    """Address, frame sizes, output folder."""

    def run(self) -> None:
        from tasks.viewer.app import view

        view(self.scene, self.viewer)


@dataclass
class Eval:
    """Evaluate a scene: held-out views, novel views against the twin, and the same after edits."""

    scene: Positional[Path]
    """Checkpoint folder."""
    json: bool = False
    """Print one JSON object instead of a table."""
    max_frames: Annotated[int, AT_LEAST_ONE] = 4
    """Held-out frames to evaluate (each with several cameras)."""
    sensors: bool = False
    """Also measure every sensor product against the twin (normals, masks, boxes, correspondences,
    LiDAR, car meshes; built-in world only)."""

    def run(self) -> None:
        from tasks.eval.report import evaluate_scene

        metrics = evaluate_scene(self.scene, max_frames=self.max_frames)
        if self.sensors:
            from tasks.eval.sensors import evaluate_scene_sensors

            metrics.update({f"sensors_{k}": v for k, v in evaluate_scene_sensors(self.scene, self.max_frames).items()})
        if self.json:
            print(json.dumps(metrics))
        else:
            for k, v in metrics.items():
                print(f"{k:>32}: {v}")


@dataclass
class Demo:
    """World -> capture log -> train -> render an edited drive (actor removed, moved, inserted) ->
    preview.mp4 + contact_sheet.png beside the twin, and metrics.json. Resumes where it stopped."""

    out: Path = Path("demo_out")
    """Demo folder; keeps the log, the scene, cameras.json and edits.yaml to repeat each step."""
    train_seconds: Annotated[float, POSITIVE] = 360.0
    """Training time budget, seconds."""
    tiny: bool = False
    """Use the tiny test world (fast smoke run)."""

    def run(self) -> None:
        from tasks.demo import run_demo

        run_demo(self.out, self.train_seconds, self.tiny)


@dataclass
class Generate:
    """Render a labelled dataset of scenario variants: RGB, depth, instance and semantic masks, boxes,
    KITTI object + tracking, COCO, poses, a preview.mp4 per variant and a manifest with hashes.
    Resumes after a kill (frames on disk are kept)."""

    settings: Annotated[GenerateConfig, Unprefixed, PositionalRequiredArgs]
    """What to generate."""

    def run(self) -> None:
        from tasks.scenarios.dataset import generate

        manifest = generate(self.settings)
        for v, entry in sorted(manifest["variants"].items(), key=lambda kv: int(kv[0])):
            flags = f", {len(entry['violations'])} sanity findings" if entry["violations"] else ""
            print(f"variant {v}: {entry['frames']} frames x {len(entry['cameras'])} cameras, draw {entry['attempt']}{flags}")
        print(Path(self.settings.out) / "manifest.json")


@dataclass
class Scenarios:
    """List the corner-case templates; with --check SCENE, simulate each (no rendering) and report
    the sanity findings of its first variants."""

    check: Optional[Path] = None
    """A trained scene (of the built-in world or a recorded drive) to check the templates on."""
    variants: Annotated[int, AT_LEAST_ONE] = 3
    """Variants per template to check."""

    def run(self) -> None:
        from tasks.scenarios.schema import list_templates, load_scenario_text

        for name in list_templates():
            text = load_scenario_text(name)
            line = f"{name:>22}  {' '.join(str(text.tree.get('description', '')).split())}"
            if self.check is not None:
                from tasks.pipeline import load_scene, road_for_scene
                from tasks.scenarios.variants import draw_variant

                sc = load_scene(self.check)
                road = road_for_scene(sc)
                kept = [draw_variant(text, sc.graph, road, v, None, 20)[2:] for v in range(self.variants)]
                line += f"\n{'':>24}redraws per variant: {[attempt for attempt, _ in kept]}"
            print(line)


@dataclass
class Localize:
    """iNeRF: find the camera pose of an image in a trained scene, from a rough initial pose (tens of
    degrees off is fine: feature matching against renders moves it before the photometric descent).
    Writes result.json (pose, PSNR, convergence, iterations, seconds, loss curve), cameras.json of
    the estimated pose (renderable with `nerfsim render`) and loss.png."""

    scene: Positional[Path]
    """Checkpoint folder."""
    image: Path
    """The image (PNG/JPEG, the initial camera's size)."""
    init: Path
    """cameras.json whose first camera gives the lens, the time and the initial T_world_cam."""
    out: Path = Path("localized")
    """Output folder."""
    edits: Optional[Path] = None
    """Edits file: the scene as edited when the image was taken."""
    inversion: Annotated[InversionConfig, Unprefixed] = field(default_factory=InversionConfig)
    """Pose optimisation settings."""

    def run(self) -> None:
        import imageio.v3 as iio
        import numpy as np

        from tasks.cli.camera_files import load_views
        from tasks.pipeline import check_view_times, edited_graph, load_scene
        from tasks.pose.inversion import invert_camera_pose, write_localization

        view = load_views(self.init)[0]
        if not self.image.is_file():
            raise InputError(self.image, None, "no such image file")
        try:
            img = np.asarray(iio.imread(self.image), dtype=np.float32)[..., :3] / 255.0
        except Exception as e:  # imageio raises many types for unreadable files
            raise InputError(self.image, None, f"unreadable image ({e})") from None
        if img.shape[:2] != (view.model.height, view.model.width):
            raise InputError(self.image, None, f"image is {img.shape[1]}x{img.shape[0]}, the camera in {self.init} is "
                                               f"{view.model.width}x{view.model.height}")
        sc = load_scene(self.scene)
        graph = edited_graph(sc.graph, self.edits)
        check_view_times(graph, [view], str(self.init))
        res = invert_camera_pose(sc.model, img, view.model, view.T_world_cam, graph.at(view.time), self.inversion)
        write_localization(self.out, res, view)
        print(json.dumps({"converged": res.converged, "psnr": round(res.psnr, 2), "seconds": round(res.seconds, 1), "out": str(self.out)}))


@dataclass
class PoseData:
    """Object pose-estimation data of one actor in BOP format: views sampled around it in its scene,
    with 6-DoF pose, camera, full and visible masks, boxes and model-frame coordinates per pixel."""

    scene: Positional[Path]
    """Checkpoint folder."""
    actor: str
    """Actor id (see the scene's graph, e.g. car_003)."""
    out: Path = Path("pose_data")
    """BOP dataset folder."""
    mesh: bool = True
    """Also write the actor's mesh as models/obj_000001.ply."""
    viewpoints: Annotated[PoseDataConfig, Unprefixed] = field(default_factory=PoseDataConfig)
    """Viewpoints and images."""

    def run(self) -> None:
        from sensors.mesh import actor_mesh
        from sensors.renderers import NeuralRenderer
        from tasks.pipeline import load_scene
        from tasks.pose.bop import write_pose_data

        sc = load_scene(self.scene)
        state = sc.graph.at(self.viewpoints.time)
        target = next((a for a in state.actors if a.actor_id == self.actor), None)
        model_mesh = actor_mesh(sc.model, target.asset_id, target.size) if self.mesh and target is not None else None
        infos = write_pose_data(NeuralRenderer(sc.model), sc.model, state, self.actor, self.out, self.viewpoints, model_mesh)
        fractions = [v[0]["visib_fract"] for v in infos.values()]
        print(json.dumps({"views": len(infos), "mean_visib_fract": round(float(sum(fractions) / len(fractions)), 3), "out": str(self.out)}))


@dataclass
class NavEval:
    """Closed-loop navigation test: drive a controller through the neural scene between sampled
    start-goal pairs; report collision rate, success, path-length ratio (summary.json), with an
    overview map of all trajectories and videos of the first episodes. Resumes after a kill."""

    settings: Annotated[NavEvalConfig, Unprefixed, PositionalRequiredArgs]
    """The evaluation and its environment (``--env.*``)."""

    def run(self) -> None:
        from tasks.nav.evaluate import evaluate

        evaluate(self.settings)


COMMANDS: dict[str, type] = {"world": World, "train": Train, "render": Render, "eval": Eval, "export-mesh": ExportMesh,
                             "demo": Demo, "generate": Generate, "scenarios": Scenarios, "localize": Localize,
                             "pose-data": PoseData, "nav-eval": NavEval, "import": Import, "export-log": ExportLog, "ego-mask": EgoMask, "serve": Serve,
                             "view": View}


def changed_settings(config, default) -> dict:
    """The settings of a config dataclass that differ from ``default``'s: ``{name: value}``, nested
    configs as nested dicts of their own changes."""
    out = {}
    for f in dataclasses.fields(config):
        a, b = getattr(config, f.name), getattr(default, f.name)
        if dataclasses.is_dataclass(a) and dataclasses.is_dataclass(b) and type(a) is type(b):
            sub = changed_settings(a, b)
            if sub:
                out[f.name] = sub
        elif a != b:
            out[f.name] = a
    return out


def output_folders(command) -> list[Path]:
    """The output folders (``out`` settings) of a command."""
    found = []
    for f in dataclasses.fields(command):
        value = getattr(command, f.name)
        if f.name == "out" and isinstance(value, Path):
            found.append(value)
        elif dataclasses.is_dataclass(value):
            found += output_folders(value)
    return found


def check_output_folders(command) -> None:
    """`InputError` for an ``--out`` that names an existing file (a folder is expected)."""
    for out in output_folders(command):
        if out.exists() and not out.is_dir():
            raise InputError("--out", None, f"'{out}' is an existing file; expected a folder (new or existing)")
