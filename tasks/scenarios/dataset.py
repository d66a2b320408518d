"""`nerfsim generate SCENARIO --variants N --out DIR`: labelled datasets of scenario variants.

Each variant of a scenario (`tasks.scenarios.schema`) is drawn, simulated (`tasks.scenarios.traffic`)
on the scene's street (`tasks.pipeline.road_for_scene`: the built-in world's, or one fitted to the
recorded drive the scene was trained from), checked for sanity (a draw whose world breaks a rule is
redrawn, up to ``max_attempts``; what was rejected and why goes in the manifest), then rendered
from the trained scene with the ego's rig and labelled.
Variants run as Ray tasks (a local Ray by default, ``--ray-address`` for a cluster) or, with
``--workers 0``, one after another in this process.

Resuming: every file is written atomically; a frame is done once its ``boxes`` JSON (written last)
exists, so a killed run re-renders at most the frames it was in the middle of, and labels, preview
and manifest are rebuilt from the frames on disk. Same scenario, seed and scene -> the same labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import yaml

from scenes.classes import CLASS_NAMES
from scenes.errors import InputError
from scenes.files import atomic_write, atomic_write_text as _atomic_text
from scenes.settings import AT_LEAST_ONE
from sensors.boxes import BoxLabel
from scenes.lens import CameraModel
from sensors.rig import CameraSensor, Rig
from sim.tracks import refinement_of
from tasks.scenarios.labels import CocoBuilder, kitti_calib_text, kitti_object_lines, kitti_tracking_lines
from tasks.media import colorize_depth, depth_mm, write_png, write_video
from tasks.pipeline import road_for_scene, shared_scene
from tasks.scenarios.schema import ScenarioText, expand, load_scenario_text, scenario_from_tree
from tasks.scenarios.traffic import AssetInfo, ScenarioWorld, actor_library, check_scenario_world
from tasks.scenarios.variants import draw_variant

MANIFEST = "manifest.json"
LAYOUT_VERSION = 1

README = """# nerfsim generated dataset

`manifest.json`: the scenario, its seed, the scene, and per variant the values drawn, the draw
attempt kept, the draws rejected by the sanity checks (and why), the behaviour events, remaining
sanity findings, the street it ran on (`road`: lane widths and `T_world_road`, where the road
coordinates of `scenario.yaml` lie in the world) and the sha256 of every file. Per variant `variant_NNNN/`:

| path | content |
|---|---|
| `scenario.yaml` | the variant with every distribution drawn (replayable) |
| `images/<cam>/<frame>.png` | RGB, 8-bit |
| `depth/<cam>/<frame>.png` | uint16 z-depth in millimetres (0 = sky / beyond 65.535 m) |
| `instance/<cam>/<frame>.png` | uint16 actor instance id (0 = background) |
| `semantic/<cam>/<frame>.png` | uint8 class id: {classes}; 255 = unlabelled |
| `boxes/<cam>/<frame>.json` | every actor's 3D box (camera frame and KITTI), amodal / modal 2D boxes, truncation, occlusion, visible pixels |
| `poses.json` | per frame: time, `T_world_ego`, each camera's `T_world_cam`, each actor's id, class, instance id, asset, size and `T_world_actor`; `refined_tracks`: the actors whose boxes come from tracks refined in training (below) |
| `kitti_object/<cam>/{{image_2,label_2,calib}}/<frame>` | KITTI object format (15 fields per line; `tasks.scenarios.labels`) |
| `kitti_tracking/<cam>/{{image_02/0000,label_02/0000.txt,calib/0000.txt}}` | KITTI tracking format (17 fields; track id = instance id) |
| `coco.json` | COCO instances of every camera: visible boxes, RLE masks, `track_id`, truncation / occlusion |
| `preview.mp4` | the first camera with 2D boxes drawn, beside its depth |

Boxes from refined tracks: a scene trained with `--track-refinement` learned corrections of its
logged actors' tracks (`sim.tracks`); the actors of the scene a variant keeps move along those
refined tracks, and `poses.json`, the `info` of `coco.json` and the manifest name them
(`refined_tracks`; empty: every box comes from tracks as logged or simulated). KITTI files have no
place for a note.

Conventions: world z up, metres; cameras OpenCV (x right, y down, z forward); pixel centres at
integer + 0.5; frames are numbered from 0 at `1 / rate_hz` seconds apart.
"""


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate."""

    scenario: str
    """Scenario file, or a template name of the corner-case library (`nerfsim scenarios`)."""
    out: Path = Path("dataset")
    """Output folder (created; an existing one is resumed; its README.md documents the layout)."""
    variants: Annotated[int, AT_LEAST_ONE] = 1
    """Number of variants to draw from the scenario's distributions."""
    scene: Path | None = None
    """Trained scene folder; default: the scenario's ``scene``."""
    seed: int | None = None
    """Seed of the draws; default: the scenario's ``seed``."""
    workers: int = 1
    """Ray workers (local Ray); 0 = no Ray, variants one after another in this process."""
    ray_address: str | None = None
    """Address of a running Ray cluster (``ray://host:10001`` or ``auto``); default: a local Ray."""
    max_attempts: Annotated[int, AT_LEAST_ONE] = 20
    """Draws per variant until one passes the sanity checks (the last one is kept either way)."""
    max_frames: Annotated[Optional[int], AT_LEAST_ONE] = None
    """Render only the first frames of each variant (quick looks)."""
    preview: bool = True
    """Write ``preview.mp4`` per variant."""
    progress: bool = True
    """Show a progress bar (frames/s, ETA)."""


# ----------------------------------------------------------------------------------- planning
def scenario_rig(scene, spec, source: str = "scenario") -> Rig:
    """The ego's cameras: the scene's capture rig (or the built-in default rig), at the scenario's
    resolution (intrinsics scaled), restricted to the cameras it names."""
    from scenes.capture import read_capture_log
    from sensors.recording import CaptureConfig

    log_source = scene.meta.get("extra", {}).get("source", {})
    try:
        rig = Rig.from_capture_log(read_capture_log(log_source["path"]))
    except (KeyError, InputError):
        cfg = CaptureConfig()
        rig = Rig(tuple(CameraSensor(c.name, CameraModel.from_intrinsics(cfg.intrinsics(c)), c.T_ego_cam()) for c in cfg.cameras))
    by_name = {c.name: c for c in rig.cameras}
    unknown = [n for n in spec.cameras if n not in by_name]
    if unknown:
        raise InputError(source, "ego.rig.cameras", f"no camera {unknown[0]!r} in the scene's rig; known: {list(by_name)}")
    cams = tuple(by_name[n] for n in spec.cameras) if spec.cameras else rig.cameras
    return Rig(tuple(replace(c, model=_scaled(c.model, spec.width, spec.height)) for c in cams), rig.lidars)


def _scaled(m: CameraModel, width: int, height: int) -> CameraModel:
    sx, sy = width / m.width, height / m.height
    return replace(m, width=width, height=height, fx=m.fx * sx, fy=m.fy * sy, cx=m.cx * sx, cy=m.cy * sy)


# ---------------------------------------------------------------------------------- rendering
def _frame_name(i: int) -> str:
    return f"{i:06d}"


def render_variant(renderer, world: ScenarioWorld, rig: Rig, out: Path, max_frames: int | None = None, on_frame=None) -> int:
    """Render every frame of every rig camera not on disk yet; returns the number of frames."""
    from sensors.frame import capture_rig_camera

    times = world.scenario.frame_times[: max_frames or None]
    for i, t in enumerate(times):
        for cam in rig.cameras:
            done = out / "boxes" / cam.name / f"{_frame_name(i)}.json"
            if done.exists():
                continue
            f = capture_rig_camera(renderer, cam, world.T_world_ego(t), world.graph.at, float(t),
                                   ("rgb", "depth", "instances", "semantics", "boxes"))
            _write_frame(out, cam.name, i, f)
        if on_frame is not None:
            on_frame(i)
    return len(times)


def _write_frame(out: Path, cam: str, i: int, f) -> None:
    name = _frame_name(i)
    for sub in ("images", "depth", "instance", "semantic", "boxes"):
        (out / sub / cam).mkdir(parents=True, exist_ok=True)
    write_png(out / "images" / cam / f"{name}.png", f.rgb)
    write_png(out / "depth" / cam / f"{name}.png", depth_mm(f.depth))
    write_png(out / "instance" / cam / f"{name}.png", f.instance.astype(np.uint16))
    write_png(out / "semantic" / cam / f"{name}.png", f.semantic.astype(np.uint8))
    doc = {"camera": {"name": cam, "time": f.time, "model": f.model.to_dict(), "T_world_cam": f.T_world_cam.tolist()},
           "boxes": [b.to_dict() for b in f.boxes]}
    _atomic_text(out / "boxes" / cam / f"{name}.json", json.dumps(doc, indent=1))  # last: marks the frame done


# ------------------------------------------------------------------------------------- labels
def _load_boxes(path: Path) -> tuple[dict, list[BoxLabel]]:
    doc = json.loads(path.read_text())
    boxes = [BoxLabel(**{k: tuple(v) if isinstance(v, list) and k != "R_cam_box" else v for k, v in b.items()})
             for b in doc["boxes"]]
    return doc["camera"], boxes


def write_labels(out: Path, world: ScenarioWorld, rig: Rig, n_frames: int, preview: bool = True) -> None:
    """KITTI object + tracking, COCO, poses and the preview, from the frames on disk."""
    import imageio.v3 as iio

    refined = refined_track_actors(world.graph)
    coco = CocoBuilder(info={"refined_tracks": refined} if refined else None)
    for cam in rig.cameras:
        T_cam_lidar = np.linalg.inv(cam.T_ego_cam) @ rig.lidars[0].T_ego_lidar if rig.lidars else None
        calib = kitti_calib_text(cam.model, T_cam_lidar)
        obj, trk = out / "kitti_object" / cam.name, out / "kitti_tracking" / cam.name
        for d in (obj / "image_2", obj / "label_2", obj / "calib", trk / "image_02" / "0000", trk / "label_02", trk / "calib"):
            d.mkdir(parents=True, exist_ok=True)
        tracking = []
        for i in range(n_frames):
            name = _frame_name(i)
            _, boxes = _load_boxes(out / "boxes" / cam.name / f"{name}.json")
            image = out / "images" / cam.name / f"{name}.png"
            _link(image, obj / "image_2" / f"{name}.png")
            _link(image, trk / "image_02" / "0000" / f"{name}.png")
            _atomic_text(obj / "label_2" / f"{name}.txt", "".join(line + "\n" for line in kitti_object_lines(boxes)))
            _atomic_text(obj / "calib" / f"{name}.txt", calib)
            tracking += kitti_tracking_lines(i, boxes)
            instance = iio.imread(out / "instance" / cam.name / f"{name}.png")
            image_id = coco.add_image(f"images/{cam.name}/{name}.png", cam.model.width, cam.model.height, i, {"camera": cam.name})
            coco.add_instances(image_id, instance.astype(np.int64), boxes)
        _atomic_text(trk / "label_02" / "0000.txt", "".join(line + "\n" for line in tracking))
        _atomic_text(trk / "calib" / "0000.txt", calib)
    coco.write(out / "coco.json")
    _atomic_text(out / "poses.json", json.dumps({**_poses(world, rig, n_frames), "refined_tracks": refined}, indent=1))
    if preview:
        _write_preview(out, world, rig.cameras[0].name, n_frames)


def refined_track_actors(graph) -> list[str]:
    """Ids of the actors of ``graph`` whose boxes come from tracks refined in training (`sim.tracks`):
    the scene's logged actors a variant kept (re-skinned ones too: same track)."""
    record = refinement_of(graph)
    return [] if record is None else [a.actor_id for a in graph.actors if a.actor_id in record["actors"]]


def _poses(world: ScenarioWorld, rig: Rig, n_frames: int) -> dict:
    frames = []
    for i, t in enumerate(world.scenario.frame_times[:n_frames]):
        T_ego = world.T_world_ego(t)
        state = world.graph.at(t)
        frames.append({"frame": i, "time": float(t), "T_world_ego": T_ego.tolist(),
                       "cameras": {c.name: c.pose(T_ego).tolist() for c in rig.cameras},
                       "actors": [{"actor_id": a.actor_id, "class_name": a.class_name, "instance_id": a.instance_id,
                                   "asset_id": a.asset_id, "size": list(a.size), "T_world_actor": np.asarray(a.T_world_actor).tolist()}
                                  for a in state.actors]})
    return {"ego_size": list(world.ego_size), "frames": frames}


def _write_preview(out: Path, world: ScenarioWorld, cam: str, n_frames: int) -> None:
    import imageio.v3 as iio
    from PIL import Image, ImageDraw

    pictures = []
    for i in range(n_frames):
        name = _frame_name(i)
        rgb = Image.open(out / "images" / cam / f"{name}.png").convert("RGB")
        draw = ImageDraw.Draw(rgb)
        _, boxes = _load_boxes(out / "boxes" / cam / f"{name}.json")
        for b in boxes:
            if b.box2d_modal is None:
                continue
            colour = (255, 80, 80) if b.class_name == "pedestrian" else (80, 200, 255)
            draw.rectangle([round(v) for v in b.box2d_modal], outline=colour, width=2)
            draw.text((b.box2d_modal[0] + 2, max(0, b.box2d_modal[1] - 11)), b.actor_id, fill=colour)
        draw.text((4, 4), f"{world.scenario.name}  t={world.scenario.frame_times[i]:.1f}s", fill=(255, 255, 255))
        depth = iio.imread(out / "depth" / cam / f"{name}.png").astype(np.float32) / 1000.0
        depth[depth == 0] = np.inf
        pictures.append(np.concatenate([np.asarray(rgb, np.float32) / 255.0, colorize_depth(depth)], axis=1))
    write_video(out / "preview.mp4", pictures, fps=world.scenario.rate_hz)


# ----------------------------------------------------------------------------------- variants
def scene_with_library(scene_path: str, library: tuple[str, ...], source: str):
    """The scene, with the actor assets of the ``library`` scenes imported as ``<folder>/<asset>``;
    returns ``(scene, assets)`` (`tasks.scenarios.traffic.AssetInfo` by asset id)."""
    scene = shared_scene(scene_path)
    assets = actor_library(scene.graph)
    for i, lib in enumerate(library):
        if not (Path(lib) / "scene.json").is_file():
            raise InputError(source, f"library[{i}]", f"'{lib}' is not a trained scene folder (no scene.json)")
        other = shared_scene(lib)
        for aid, info in actor_library(other.graph).items():
            name = f"{Path(lib).name}/{aid}"
            if not scene.model.has_asset(name):
                scene.model.import_asset(name, other.model, aid)
            assets[name] = AssetInfo(name, info.class_name, info.size)
    return scene, assets


def generate_variant(scene_path: str, scenario: str, variant: int, out: str, seed: int | None = None, max_attempts: int = 20,
                     max_frames: int | None = None, preview: bool = True, threads: int | None = None, on_frame=None) -> dict:
    """Draw, render and label one variant into ``out/variant_NNNN``; returns its manifest entry."""
    import torch

    from sensors.renderers import NeuralRenderer

    if threads:  # a share of the machine's cores per worker: torch's and numba's pools both
        import numba

        torch.set_num_threads(threads)
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    text = load_scenario_text(scenario)
    library = scenario_from_tree(text, expand(text, variant, seed)[0]).library
    scene, assets = scene_with_library(scene_path, library, text.source)
    road = road_for_scene(scene)
    world, drawn, attempt, rejected = draw_variant(text, scene.graph, road, variant, seed, max_attempts, assets)
    folder = Path(out) / f"variant_{variant:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.rglob("*.tmp-*"):  # half-written files of a killed run
        stale.unlink()
    rig = scenario_rig(scene, world.scenario.ego.rig, text.source)
    tree, _ = expand(text, variant, seed, attempt)
    _atomic_text(folder / "scenario.yaml", yaml.safe_dump(tree, sort_keys=False))
    t0 = time.perf_counter()
    n = render_variant(NeuralRenderer(scene.model), world, rig, folder, max_frames, on_frame)
    render_s = time.perf_counter() - t0
    write_labels(folder, world, rig, n, preview)
    files = {str(p.relative_to(folder)): _sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    return {"variant": variant, "attempt": attempt, "drawn": drawn, "rejected": rejected,
            "violations": check_scenario_world(world, road), "events": [list(e) for e in world.events], "road": road.to_dict(),
            "frames": n, "cameras": [c.name for c in rig.cameras], "render_seconds": round(render_s, 2), "files": files,
            "refined_tracks": refined_track_actors(world.graph)}


# ------------------------------------------------------------------------------------- driver
def generate(cfg: GenerateConfig) -> dict:
    """Generate (or finish) every variant; returns the manifest."""
    text = load_scenario_text(cfg.scenario)
    scene_path = _scene_path(cfg, text)
    _validate(text, scene_path, cfg.seed)
    out = Path(cfg.out)
    manifest = _open_manifest(out, cfg, text, scene_path)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_text(out / "README.md", README.format(classes=", ".join(f"{i} {n}" for i, n in enumerate(CLASS_NAMES))))
    todo = [v for v in range(cfg.variants) if not _variant_complete(out, manifest["variants"].get(str(v)))]
    run = _run_in_process if cfg.workers <= 0 else _run_on_ray
    for entry in run(cfg, scene_path, todo):
        manifest["variants"][str(entry["variant"])] = entry
        _atomic_text(out / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


def _validate(text: ScenarioText, scene_path: str, seed: int | None) -> None:
    """Draw and simulate variant 0 here, before any worker starts: a bad file (unknown key, actor,
    asset, lane...) stops the run with its one-line error instead of failing inside a Ray task."""
    library = scenario_from_tree(text, expand(text, 0, seed)[0]).library
    scene, assets = scene_with_library(scene_path, library, text.source)
    world = draw_variant(text, scene.graph, road_for_scene(scene), 0, seed, 1, assets)[0]
    scenario_rig(scene, world.scenario.ego.rig, text.source)


def _scene_path(cfg: GenerateConfig, text: ScenarioText) -> str:
    if cfg.scene is not None:
        path = Path(cfg.scene)
    elif isinstance(text.tree.get("scene"), str):
        path = Path(text.tree["scene"])
        if not path.is_absolute():
            path = Path(text.source).parent / path
    else:
        raise InputError(text.source, "scene", "no trained scene: give --scene DIR or 'scene:' in the scenario")
    if not (path / "scene.json").is_file():
        raise InputError(path, None, "not a trained scene folder (no scene.json); train one with `nerfsim train` or `nerfsim demo`")
    return str(path.resolve())


def _open_manifest(out: Path, cfg: GenerateConfig, text: ScenarioText, scene_path: str) -> dict:
    head = {"layout_version": LAYOUT_VERSION, "scenario": text.tree, "scenario_source": text.source,
            "seed": cfg.seed if cfg.seed is not None else text.tree.get("seed", 0), "scene": scene_path}
    path = out / MANIFEST
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(path, None, f"unreadable manifest ({e}); delete it or use another --out") from None
        if any(old.get(k) != v for k, v in head.items()):
            changed = [k for k, v in head.items() if old.get(k) != v]
            raise InputError(path, changed[0], "the folder holds a dataset of another scenario / seed / scene; use another --out")
        return old
    return {**head, "variants": {}}


def _variant_complete(out: Path, entry: dict | None) -> bool:
    if not entry:
        return False
    folder = out / f"variant_{entry['variant']:04d}"
    return all((folder / f).is_file() for f in entry["files"])


def _run_in_process(cfg: GenerateConfig, scene_path: str, todo: list[int]):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, disable=not cfg.progress) as bar:
        for v in todo:
            task = bar.add_task(f"variant {v}", total=None, rate="")
            start = time.perf_counter()

            def tick(i, task=task, start=start):
                bar.update(task, completed=i + 1, rate=f"{(i + 1) / (time.perf_counter() - start):.2f} frames/s")

            entry = generate_variant(scene_path, cfg.scenario, v, str(cfg.out), cfg.seed, cfg.max_attempts, cfg.max_frames,
                                     cfg.preview, on_frame=tick)
            bar.update(task, total=entry["frames"], completed=entry["frames"])
            yield entry


def _run_on_ray(cfg: GenerateConfig, scene_path: str, todo: list[int]):
    import ray
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if not ray.is_initialized():
        if cfg.ray_address:
            ray.init(address=cfg.ray_address, log_to_driver=False)
        else:
            ray.init(num_cpus=cfg.workers, include_dashboard=False, log_to_driver=False)
    threads = max(1, (os.cpu_count() or 1) // max(1, cfg.workers)) if not cfg.ray_address else None
    task = ray.remote(num_cpus=1)(generate_variant)
    pending = [task.remote(scene_path, cfg.scenario, v, str(Path(cfg.out).resolve()), cfg.seed, cfg.max_attempts,
                           cfg.max_frames, cfg.preview, threads) for v in todo]
    with Progress(TextColumn("[bold]variants"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), disable=not cfg.progress) as bar:
        t = bar.add_task("variants", total=len(pending))
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.advance(t)
            try:
                entry = ray.get(done[0])
            except ray.exceptions.RayTaskError as e:
                if isinstance(e.cause, InputError):  # bad input found by a worker: one line, not a remote traceback
                    raise e.cause from None
                raise
            yield entry


# ---------------------------------------------------------------------------------------- files
def _link(src: Path, dst: Path) -> None:
    """``dst`` the same file as ``src`` (a hard link; a copy where links are not possible)."""
    atomic_write(dst, lambda tmp: _link_or_copy(src, tmp))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)  # a stale temporary file of a killed run
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
