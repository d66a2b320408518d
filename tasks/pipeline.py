"""The jobs behind the command line: world -> train -> render / eval, each a plain function.

Training sources are detected from the folder: a nerfsim capture log (``log.json``) or a captured
static dataset (Blender ``transforms_*.json``, nerfstudio or instant-ngp ``transforms.json``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import yaml

from scenes.camera import Camera
from scenes.classes import BACKGROUND_CLASSES
from scenes.capture import read_capture_log
from sensors.recording import CaptureConfig, generate_capture_log
from scenes.edits import Edit, apply_edits, edits_to_dict, load_edits
from scenes.errors import InputError
from scenes.files import atomic_write_json, atomic_write_text
from scenes.graph import SceneGraph
from scenes.roadmap import RoadMap
from scenes.world import WorldConfig, build_world
from sensors.mesh import MeshConfig
from sensors.rig import Rig
from sim.checkpoint import load_checkpoint
from sim.compose import NeuralScene, SceneModelConfig
from sim.data import bank_from_capture_log, bank_from_static
from sim.device import resolve_device
from sim.tracks import TrackSmoothing, smooth_tracks
from sim.train import TrainConfig, train
from tasks.cli.outputs import DEFAULT_OUTPUTS, render_views


# ---- world ------------------------------------------------------------------------------------
def make_world_log(out: Path, tiny: bool = False, seed: int = 0, width: int | None = None, height: int | None = None,
                   progress: bool = True, overwrite: bool = False, distortion: tuple[float, ...] = (),
                   exposure_jitter: float = 0.0) -> Path:
    """Build the procedural street and write its capture log to ``out`` (``distortion`` and
    ``exposure_jitter``: see `sensors.recording.CaptureConfig`)."""
    wcfg = WorldConfig.tiny(seed) if tiny else WorldConfig(seed=seed)
    ccfg = CaptureConfig.tiny() if tiny else CaptureConfig()
    ccfg = replace(ccfg, width=width or ccfg.width, height=height or ccfg.height, distortion=tuple(distortion),
                   exposure_jitter=exposure_jitter, exposure_seed=seed)
    return generate_capture_log(build_world(wcfg), ccfg, out, progress=progress, overwrite=overwrite)


def world_config_from_dict(d: dict) -> WorldConfig:
    known = {f.name for f in fields(WorldConfig)}
    return WorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


# ---- training -----------------------------------------------------------------------------------
def is_capture_log(path: Path) -> bool:
    return (Path(path) / "log.json").exists()


def model_config_for(aabb, far_field: str, semantic_classes: tuple[str, ...] = (), unbounded: bool = False,
                     near: float = 0.0, pixel_angle: float | None = None, n_images: int = 0) -> SceneModelConfig:
    """Sampling scaled to the scene: ~128 occupancy cells and ~512 steps across the AABB diagonal for
    small object-centric scenes; metric defaults for street-scale logs. ``semantic_classes`` gives
    the background field a semantic head (data with labels). ``unbounded``: a real capture whose
    AABB is the inner box of a contracted background (`sim.contraction`), ``near`` its near depth,
    marched with cone steps of ``pixel_angle`` (the cameras' angle per pixel), with an appearance
    code for each of its ``n_images`` training photos. A street log gets a colour gain per training
    image instead (its cameras' auto-exposure, `SceneModelConfig.image_gains`)."""
    extent = np.asarray(aabb[1]) - np.asarray(aabb[0])
    if unbounded:
        return unbounded_model_config(extent, far_field, near, pixel_angle or 1.0 / 512, n_images)
    if extent.max() > 20:  # a street in metres
        # min_alpha 1e-4: with 1e-3, thin structures (16 cm poles) that the young field leaves faint
        # lose their samples, hence their gradient, and never appear (measured: pole PSNR 14.7 -> 23.8 dB).
        cfg = SceneModelConfig(far_field=far_field, min_alpha=1e-4, image_gains=n_images)
        return replace(cfg, background=replace(cfg.background, semantic_classes=tuple(semantic_classes)))
    diag = float(np.linalg.norm(extent))
    return SceneModelConfig(far_field=far_field, occupancy_cell=float(extent.max()) / 128, occupancy_cell_z=None, step_min=diag / 512,
                            step_cone=0.0, step_max=diag / 512)


def unbounded_model_config(extent: np.ndarray, far_field: str, near: float, pixel_angle: float, n_images: int = 0) -> SceneModelConfig:
    """A contracted background: 128 occupancy cells across the contracted cube (64 across the inner
    box), steps of ~1/256 of the inner box up close, growing with the pixel footprint, the hash grid
    reaching 4096 cells across the cube (2048 across the inner box), an 8-number appearance code
    per training photo (exposure, white balance), and renders that drop the faintest samples
    (`SceneModelConfig.render_min_alpha`)."""
    size = float(extent.max())
    cfg = SceneModelConfig(far_field=far_field, unbounded=True, near=0.8 * near, occupancy_cell=2 * size / 128,
                           occupancy_cell_z=None, step_min=size / 256, step_cone=pixel_angle, step_max=size, image_codes=n_images,
                           render_min_transmittance=1e-2, render_min_alpha=3e-3)
    grid = replace(cfg.background.grid, log2_table_size=19, max_resolution=4096)
    return replace(cfg, background=replace(cfg.background, grid=grid, image_code_dim=8 if n_images else 0))


def train_scene(data: Path, out: Path, cfg: TrainConfig, holdout_every: int = 10, on_step=None,
                model_overrides: dict | None = None) -> dict:
    """Train a scene from a capture log or a static dataset into the checkpoint folder ``out``
    (``on_step``: see `sim.train.train`). ``model_overrides``: settings of `SceneModelConfig`
    (nested configs as nested dicts) that replace those `model_config_for` scales to the data."""
    data = Path(data)
    if not data.exists():
        raise InputError(data, None, "no such training data folder")
    if is_capture_log(data):
        log = read_capture_log(data)
        if cfg.track_refinement and cfg.track_smoothing_s > 0:
            log.scene = smooth_tracks(log.scene, TrackSmoothing(window_s=cfg.track_smoothing_s))
        bank = bank_from_capture_log(log, holdout_every)
        graph, far = log.scene, "sky"
        unbounded, near = False, 0.0  # a street log: bounded by its AABB, LiDAR-seeded
        extra = {"source": {"kind": "capture-log", "path": str(data.resolve()), "holdout_every": holdout_every},
                 "world": log.world}
    else:
        from scenes.datasets import load_static_dataset

        ds = load_static_dataset(data, "train")
        bank = bank_from_static(ds)
        graph = SceneGraph(aabb=ds.aabb)
        far = "white" if ds.background == (1.0, 1.0, 1.0) else "sky"
        unbounded, near = ds.unbounded, ds.near
        extra = {"source": {"kind": ds.meta.get("kind", "static"), "path": str(data.resolve())}}
    classes = BACKGROUND_CLASSES if bank.semantic is not None else ()
    pixel_angle = 1.0 / float(bank.K[:, 0].median())
    model_cfg = model_config_for(graph.aabb, far, classes, unbounded, near, pixel_angle, len(bank.K))
    model = NeuralScene(with_overrides(model_cfg, model_overrides or {}), graph.aabb, graph.asset_ids)
    return train(model, bank, graph, cfg, out, extra_meta=extra, on_step=on_step)


def with_overrides(config, overrides: dict):
    """A config dataclass with some settings replaced (``{name: value}``, nested configs as dicts)."""
    values = {k: with_overrides(getattr(config, k), v) if isinstance(v, dict) else v for k, v in overrides.items()}
    return replace(config, **values)


# ---- rendering ----------------------------------------------------------------------------------
@dataclass
class LoadedScene:
    model: NeuralScene
    graph: SceneGraph
    meta: dict
    path: Path

    @property
    def world_config(self) -> WorldConfig | None:
        world = self.meta.get("extra", {}).get("world")
        return world_config_from_dict(world["config"]) if world else None


def load_scene(path: Path, device: str = "cpu") -> LoadedScene:
    """A trained scene, its model on ``device`` (`sim.device.resolve_device` names)."""
    model, graph, meta = load_checkpoint(path, str(resolve_device(device)))
    return LoadedScene(model, graph, meta, Path(path))


_SHARED: dict = {}


def shared_scene(path: Path | str, load=load_scene):
    """``load(path)`` once per process and ``load`` (a `LoadedScene` by default; navigation keeps its
    `tasks.nav.scene.NavScene`): Ray workers and vector environments reuse it between tasks. The
    object is shared: callers must not change it."""
    key = (getattr(load, "__qualname__", repr(load)), str(Path(path).resolve()))
    if key not in _SHARED:
        _SHARED[key] = load(key[1])
    return _SHARED[key]


TIME_MARGIN_S = 1.0
"""How far outside its time range a scene may be rendered (seconds): the actors' poses are held at
their first / last keyframe there. Farther is refused (`check_view_times`)."""


def scene_time_range(graph: SceneGraph) -> tuple[float, float] | None:
    """First and last keyframe time of the scene's moving actors; None when nothing moves (any time
    then shows the same scene)."""
    times = [a.track.times for a in graph.actors if len(a.track.times) > 1]
    if not times:
        return None
    return float(min(t[0] for t in times)), float(max(t[-1] for t in times))


def check_view_times(graph: SceneGraph, views: list, source: str = "cameras") -> None:
    """`InputError` for a view whose time lies more than `TIME_MARGIN_S` outside the scene's time
    range: the scene was never seen then, and clamping the actors silently would pass it off as real."""
    span = scene_time_range(graph)
    if span is None:
        return
    lo, hi = span
    for i, v in enumerate(views):
        if not lo - TIME_MARGIN_S <= v.time <= hi + TIME_MARGIN_S:
            raise InputError(source, f"cameras[{i}].time", f"{v.time:g} s is outside the scene's time range [{lo:g}, {hi:g}] s "
                                                          f"(by more than {TIME_MARGIN_S:g} s)")


def twin_for(scene: LoadedScene):
    """The ground-truth twin of a scene trained on the built-in world."""
    from scenes.twin import Twin

    wcfg = scene.world_config
    if wcfg is None:
        raise InputError(scene.path / "scene.json", "extra.world", "this scene was not trained on the built-in world: no twin")
    return Twin(build_world(wcfg))


def road_for_scene(scene: LoadedScene) -> RoadMap:
    """The street a scene's scenarios run on (`scenes.roadmap.RoadMap`): the built-in world's layout,
    or the street fitted to the recorded drive it was trained from (its capture log's ego
    path and actor tracks, `RoadMap.from_drive`). `InputError` for a scene without a street (a
    static dataset), a drive whose log is gone, or one the layout cannot hold (a tight turn)."""
    wcfg = scene.world_config
    if wcfg is not None:
        return RoadMap.from_world_config(wcfg)
    where = scene.path / "scene.json"
    source = scene.meta.get("extra", {}).get("source", {})
    if source.get("kind") != "capture-log":
        raise InputError(where, "extra.source", f"scenarios need a street (the built-in world or a recorded drive); this scene was "
                                                f"trained on a {source.get('kind', 'static')} dataset ({source.get('path', 'unknown')})")
    log_path = Path(source["path"])
    if not (log_path / "log.json").is_file():
        raise InputError(where, "extra.source.path", f"the capture log {log_path} is gone: the street of a recorded drive is fitted "
                                                     "to its ego path and tracks")
    log = read_capture_log(log_path)
    return RoadMap.from_drive(np.stack([f.T_world_ego for f in log.frames]), scene.graph.actors, source=str(log_path / "log.json"))


def edited_graph(graph: SceneGraph, edits: list[Edit] | Path | None, source: str = "edits") -> SceneGraph:
    if edits is None:
        return graph
    if isinstance(edits, (str, Path)):
        source, edits = str(edits), load_edits(edits)
    return apply_edits(graph, edits, source)


def render_to_folder(scene_path: Path, views: list, out: Path, edits: Path | None = None, use_twin: bool = False,
                     outputs: tuple[str, ...] = DEFAULT_OUTPUTS, progress: bool = True, cameras_source: str = "cameras") -> list[str]:
    """Render ``outputs`` (see `tasks.cli.outputs`) of ``views`` (`tasks.cli.camera_files.View` or pinhole
    `Camera`) from a trained scene, or from its mesh twin, after optional edits. Returns the file
    stem of each view. Views far outside the scene's time range are refused (`check_view_times`;
    ``cameras_source`` names their file in the error)."""
    from sensors.renderers import NeuralRenderer, TwinRenderer
    from tasks.cli.camera_files import view_of

    scene = load_scene(scene_path)
    graph = edited_graph(scene.graph, edits)
    views = [view_of(v) if isinstance(v, Camera) else v for v in views]
    check_view_times(graph, views, cameras_source)
    renderer = TwinRenderer(twin_for(scene)) if use_twin else NeuralRenderer(scene.model)
    lidar = None
    source = scene.meta.get("extra", {}).get("source", {})
    if source.get("kind") == "capture-log" and "lidar" in outputs:
        # LiDAR products use the scan pattern the scene was captured with.
        lidars = Rig.from_capture_log(read_capture_log(source["path"])).lidars
        lidar = lidars[0].pattern if lidars else None
    return render_views(renderer, views, graph, out, outputs, lidar, progress)


def export_scene_meshes(scene_path: Path, out: Path, fmt: str = "ply", background: bool = True, actors: bool = True,
                        cfg: MeshConfig = MeshConfig()) -> list[Path]:
    """Write the meshes of a trained scene (see `sensors.mesh`) and ``meshes.json`` describing them."""
    from rich.progress import Progress

    from sensors.mesh import actor_mesh, background_mesh, export_mesh

    if fmt not in ("ply", "obj", "glb"):
        raise InputError("--fmt", None, f"expected ply, obj or glb, got '{fmt}'")
    scene = load_scene(scene_path)
    sizes = {}
    for a in scene.graph.actors:
        sizes.setdefault(a.asset_id, a.size)
    jobs = ([("background", None)] if background else []) + ([(f"actor_{k}", k) for k in sizes] if actors else [])
    written, index = [], {}
    with Progress() as bar:
        task = bar.add_task("marching cubes", total=len(jobs))
        for name, asset in jobs:
            mesh = background_mesh(scene.model, cfg) if asset is None else actor_mesh(scene.model, asset, sizes[asset], cfg)
            path = export_mesh(mesh, Path(out) / f"{name}.{fmt}")
            written.append(path)
            index[name] = {"file": path.name, "frame": "world" if asset is None else f"box of asset '{asset}'",
                           "box_size": None if asset is None else list(sizes[asset]), "vertices": len(mesh.vertices),
                           "faces": len(mesh.faces)}
            bar.advance(task)
    atomic_write_json(Path(out) / "meshes.json", index)
    return written


def write_edits(edits: list[Edit], path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(edits_to_dict(edits), sort_keys=False))
