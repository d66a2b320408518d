"""The jobs behind the command line: world -> train -> render / eval, each a plain function.

Training sources are detected from the folder: a nerfsim capture log (``log.json``) or a captured
static dataset (Blender ``transforms_*.json``, nerfstudio or instant-ngp ``transforms.json``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import yaml

from scenes.camera import Camera
from scenes.capture import CaptureConfig, generate_capture_log, read_capture_log
from scenes.edits import Edit, apply_edits, edits_to_dict, load_edits
from scenes.errors import InputError
from scenes.graph import SceneGraph
from scenes.world import WorldConfig, build_world
from sim.checkpoint import load_checkpoint, read_checkpoint_meta
from sim.compose import NeuralScene, SceneModelConfig
from sim.data import bank_from_capture_log, bank_from_static
from sim.render import render_camera
from sim.train import TrainConfig, train
from tasks.media import colorize_depth, colorize_ids, write_png


# ---- world ------------------------------------------------------------------------------------
def make_world_log(out: Path, tiny: bool = False, seed: int = 0, width: int | None = None, height: int | None = None,
                   progress: bool = True, overwrite: bool = False) -> Path:
    """Build the procedural street and write its capture log to ``out``."""
    wcfg = WorldConfig.tiny(seed) if tiny else WorldConfig(seed=seed)
    ccfg = CaptureConfig.tiny() if tiny else CaptureConfig()
    if width or height:
        ccfg = replace(ccfg, width=width or ccfg.width, height=height or ccfg.height)
    return generate_capture_log(build_world(wcfg), ccfg, out, progress=progress, overwrite=overwrite)


def world_config_from_dict(d: dict) -> WorldConfig:
    known = {f.name for f in fields(WorldConfig)}
    return WorldConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


# ---- training -----------------------------------------------------------------------------------
def is_capture_log(path: Path) -> bool:
    return (Path(path) / "log.json").exists()


def model_config_for(aabb, far_field: str) -> SceneModelConfig:
    """Sampling scaled to the scene: ~128 occupancy cells and ~512 steps across the AABB diagonal for
    small object-centric scenes; metric defaults for street-scale logs."""
    extent = np.asarray(aabb[1]) - np.asarray(aabb[0])
    if extent.max() > 20:  # a street in metres
        return SceneModelConfig(far_field=far_field)
    diag = float(np.linalg.norm(extent))
    return SceneModelConfig(far_field=far_field, occupancy_cell=float(extent.max()) / 128, occupancy_cell_z=None, step_min=diag / 512,
                            step_cone=0.0, step_max=diag / 512)


def train_scene(data: Path, out: Path, cfg: TrainConfig, holdout_every: int = 10) -> dict:
    """Train a scene from a capture log or a static dataset into the checkpoint folder ``out``."""
    data = Path(data)
    if not data.exists():
        raise InputError(data, None, "no such training data folder")
    if is_capture_log(data):
        log = read_capture_log(data)
        bank = bank_from_capture_log(log, holdout_every)
        graph, far = log.scene, "sky"
        extra = {"source": {"kind": "capture-log", "path": str(data.resolve()), "holdout_every": holdout_every},
                 "world": log.world}
    else:
        from scenes.datasets import load_static_dataset

        ds = load_static_dataset(data, "train")
        bank = bank_from_static(ds)
        graph = SceneGraph(aabb=ds.aabb)
        far = "white" if ds.background == (1.0, 1.0, 1.0) else "sky"
        extra = {"source": {"kind": ds.meta.get("kind", "static"), "path": str(data.resolve())}}
    model = NeuralScene(model_config_for(graph.aabb, far), graph.aabb, graph.asset_ids)
    return train(model, bank, graph, cfg, out, extra_meta=extra)


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


def load_scene(path: Path) -> LoadedScene:
    model, graph, meta = load_checkpoint(path)
    return LoadedScene(model, graph, meta, Path(path))


def twin_for(scene: LoadedScene):
    """The ground-truth twin of a scene trained on the built-in world."""
    from scenes.twin import Twin

    wcfg = scene.world_config
    if wcfg is None:
        raise InputError(scene.path / "scene.json", "extra.world", "this scene was not trained on the built-in world: no twin")
    return Twin(build_world(wcfg))


def edited_graph(graph: SceneGraph, edits: list[Edit] | Path | None, source: str = "edits") -> SceneGraph:
    if edits is None:
        return graph
    if isinstance(edits, (str, Path)):
        source, edits = str(edits), load_edits(edits)
    return apply_edits(graph, edits, source)


def render_products(model: NeuralScene | None, twin, camera: Camera, graph: SceneGraph) -> dict:
    state = graph.at(camera.time)
    return twin.render(camera, state) if twin is not None else render_camera(model, camera, state)


def write_products(out: Path, name: str, products: dict) -> None:
    """RGB PNG, metric depth (.npy, metres, z-depth, inf = sky), instance ids (16-bit PNG) and previews."""
    import imageio.v3 as iio

    out.mkdir(parents=True, exist_ok=True)
    write_png(out / f"{name}_rgb.png", products["rgb"])
    np.save(out / f"{name}_depth.npy", products["depth"].astype(np.float32))
    write_png(out / f"{name}_depth_vis.png", colorize_depth(products["depth"]))
    iio.imwrite(out / f"{name}_instance.png", products["instance"].astype(np.uint16))
    write_png(out / f"{name}_instance_vis.png", colorize_ids(products["instance"]))


OUTPUT_README = """# nerfsim render output

One set of files per camera (name from the cameras file):
- `<name>_rgb.png`: 8-bit sRGB-like colour (the scene's own colour space), what the camera sees.
- `<name>_depth.npy`: float32 [H, W] metric z-depth along the camera's optical axis, metres; `inf` = sky.
- `<name>_instance.png`: uint16 [H, W] actor instance id (0 = background / sky).
- `<name>_depth_vis.png`, `<name>_instance_vis.png`: colour-mapped previews, for looking only.
Cameras follow OpenCV (x right, y down, z forward); world z up, metres.
"""


def render_to_folder(scene_path: Path, cameras: list[Camera], out: Path, edits: Path | None = None, use_twin: bool = False,
                     progress: bool = True) -> list[dict]:
    from rich.progress import Progress

    scene = load_scene(scene_path)
    graph = edited_graph(scene.graph, edits)
    twin = twin_for(scene) if use_twin else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(OUTPUT_README)
    results = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task("render", total=len(cameras))
        names = [c.name for c in cameras]
        for i, cam in enumerate(cameras):
            p = render_products(scene.model, twin, cam, graph)
            # Files are named after the camera; repeated names get their index so nothing is overwritten.
            write_products(out, cam.name if names.count(cam.name) == 1 else f"{cam.name}_{i:05d}", p)
            results.append(p)
            bar.advance(task)
    return results


def write_edits(edits: list[Edit], path: Path) -> None:
    path.write_text(yaml.safe_dump(edits_to_dict(edits), sort_keys=False))


def atomic_write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
