"""The ``nerfsim`` command line (tyro). Run ``nerfsim --help`` or ``nerfsim COMMAND --help``.

Bad input is reported as one line naming the file, the field and what was expected (exit code 2).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import tyro
from tyro.conf import Positional

from scenes.errors import InputError
from sensors.mesh import MeshConfig


def world(out: Path = Path("world_log"), tiny: bool = False, seed: int = 0, width: Optional[int] = None,
          height: Optional[int] = None, overwrite: bool = False) -> None:
    """Write a capture log (3 cameras + LiDAR at 10 Hz, actor tracks) of the built-in street world.

    Args:
        out: Folder of the capture log (written atomically).
        tiny: The small test world (short street, 3 actors, 2 s) instead of the default street.
        seed: World seed: same seed, same world.
        width: Image width override, pixels.
        height: Image height override, pixels.
        overwrite: Replace an existing log.
    """
    from tasks.pipeline import make_world_log

    print(make_world_log(out, tiny, seed, width, height, overwrite=overwrite))


def train(data: Positional[Path], out: Path = Path("scene"), steps: int = 2000, max_seconds: Optional[float] = None,
          rays_per_batch: Optional[int] = None, holdout_every: int = 10, seed: int = 0, device: str = "auto") -> None:
    """Train a compositional scene from a capture log or a static dataset (Blender / nerfstudio /
    instant-ngp). Resumes from the checkpoint in OUT after a kill.

    Args:
        data: Capture log folder (log.json) or dataset folder.
        out: Checkpoint folder.
        steps: Optimisation steps.
        max_seconds: Stop after this much training time.
        rays_per_batch: Camera rays per step (default: 1024 on a CPU, 8192 on a GPU).
        holdout_every: Capture logs: hold out every N-th frame for evaluation (0 = none).
        seed: Random seed.
        device: auto (CUDA when a GPU is visible), cpu, cuda or cuda:N. The checkpoint is the same.
    """
    from sim.train import TrainConfig
    from tasks.pipeline import train_scene

    stats = train_scene(data, out, TrainConfig(steps=steps, max_seconds=max_seconds, rays_per_batch=rays_per_batch, seed=seed, device=device), holdout_every)
    print(json.dumps(stats))


def render(scene: Positional[Path], cameras: Path, out: Path = Path("render"), edits: Optional[Path] = None,
           twin: bool = False, outputs: str = "rgb,depth,instances") -> None:
    """Render a scene (after optional edits) from the cameras of a file (pinhole, OpenCV-distorted,
    fisheye or equirectangular lenses).

    Args:
        scene: Checkpoint folder written by `nerfsim train`.
        cameras: nerfsim cameras.json or nerfstudio camera_path.json.
        out: Output folder (its README.md documents the files).
        edits: Edits file (YAML/JSON): remove / move / insert actors.
        twin: Render the ground-truth mesh twin instead (built-in world only).
        outputs: Comma-separated products: rgb, depth, normals, semantics, instances, boxes, lidar, flow (or all).
    """
    from tasks.cameras import load_views
    from tasks.outputs import parse_outputs
    from tasks.pipeline import render_to_folder

    render_to_folder(scene, load_views(cameras), out, edits, twin, parse_outputs(outputs))
    print(out)


def export_mesh(scene: Positional[Path], out: Path = Path("meshes"), fmt: str = "ply", background: bool = True,
                actors: bool = True, mesh: MeshConfig = MeshConfig()) -> None:
    """Marching-cubes meshes of a scene's fields with vertex colours: the background in world
    coordinates, each actor asset in its own box frame (x forward, y left, z up, metres).

    Args:
        scene: Checkpoint folder.
        out: Output folder: background.<fmt> and actor_<asset>.<fmt>, plus meshes.json (asset -> box size, files).
        fmt: ply, obj or glb.
        background: Export the background.
        actors: Export every actor asset.
        mesh: Grid and iso-level settings.
    """
    from tasks.pipeline import export_scene_meshes

    for p in export_scene_meshes(scene, out, fmt, background, actors, mesh):
        print(p)


def evaluate(scene: Positional[Path], json_out: bool = False, max_frames: int = 4, sensors: bool = False) -> None:
    """Evaluate a scene: held-out views, novel views against the twin, and the same after edits.

    Args:
        scene: Checkpoint folder.
        json_out: Print one JSON object instead of a table.
        max_frames: Held-out frames to evaluate (each with several cameras).
        sensors: Also measure every sensor product against the twin (normals, masks, boxes,
            correspondences, LiDAR, car meshes; built-in world only).
    """
    from tasks.report import evaluate_scene

    metrics = evaluate_scene(scene, max_frames=max_frames)
    if sensors:
        from tasks.sensor_report import evaluate_scene_sensors

        metrics.update({f"sensors_{k}": v for k, v in evaluate_scene_sensors(scene, max_frames).items()})
    if json_out:
        print(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            print(f"{k:>32}: {v}")


def demo(out: Path = Path("demo_out"), train_seconds: float = 360.0, tiny: bool = False) -> None:
    """World -> capture log -> train -> render an edited drive (actor removed, moved, inserted) ->
    preview.mp4 + contact_sheet.png beside the twin, and metrics.json. Resumes where it stopped.

    Args:
        out: Demo folder; keeps the log, the scene, cameras.json and edits.yaml to repeat each step.
        train_seconds: Training time budget.
        tiny: Use the tiny test world (fast smoke run).
    """
    from tasks.demo import run_demo

    run_demo(out, train_seconds, tiny)


def generate(scenario: Positional[str], out: Path = Path("dataset"), variants: int = 1, scene: Optional[Path] = None,
             seed: Optional[int] = None, workers: int = 1, ray_address: Optional[str] = None, max_attempts: int = 20,
             max_frames: Optional[int] = None, preview: bool = True) -> None:
    """Render a labelled dataset of scenario variants: RGB, depth, instance and semantic masks, boxes,
    KITTI object + tracking, COCO, poses, a preview.mp4 per variant and a manifest with hashes.
    Resumes after a kill (frames on disk are kept).

    Args:
        scenario: Scenario YAML, or a template name (`nerfsim scenarios` lists them).
        out: Dataset folder (its README.md documents the layout).
        variants: Variants to draw from the scenario's distributions.
        scene: Trained scene folder (default: the scenario's `scene`).
        seed: Seed of the draws (default: the scenario's).
        workers: Ray workers on this machine (0 = no Ray: one variant after another in this process).
        ray_address: A running Ray cluster to use instead of a local Ray (e.g. ray://head:10001).
        max_attempts: Redraws of a variant whose world fails the sanity checks.
        max_frames: Only the first frames of each variant (quick looks).
        preview: Write preview.mp4 per variant.
    """
    from tasks.generate import GenerateConfig, generate as run

    manifest = run(GenerateConfig(scenario, out, variants, scene, seed, workers, ray_address, max_attempts, max_frames, preview))
    for v, entry in sorted(manifest["variants"].items(), key=lambda kv: int(kv[0])):
        flags = f", {len(entry['violations'])} sanity findings" if entry["violations"] else ""
        print(f"variant {v}: {entry['frames']} frames x {len(entry['cameras'])} cameras, draw {entry['attempt']}{flags}")
    print(out / "manifest.json")


def scenarios(check: Optional[Path] = None, variants: int = 3) -> None:
    """List the corner-case templates; with --check SCENE, simulate each (no rendering) and report
    the sanity findings of its first variants.

    Args:
        check: A trained scene of the built-in world to check the templates on.
        variants: Variants per template to check.
    """
    from tasks.scenario import list_templates, load_scenario_text

    for name in list_templates():
        text = load_scenario_text(name)
        line = f"{name:>22}  {' '.join(str(text.tree.get('description', '')).split())}"
        if check is not None:
            from scenes.roadmap import RoadMap
            from tasks.generate import draw_variant
            from tasks.pipeline import load_scene

            sc = load_scene(check)
            road = RoadMap.from_world_config(sc.world_config)
            kept = [draw_variant(text, sc.graph, road, v, None, 20)[2:] for v in range(variants)]
            line += f"\n{'':>24}redraws per variant: {[attempt for attempt, _ in kept]}"
        print(line)


def localize(scene: Positional[Path], image: Path, init: Path, out: Path = Path("localized"), iterations: int = 200,
             rays: int = 1024, sampling: str = "interest_regions", hypotheses: int = 3, match_rounds: int = 2,
             edits: Optional[Path] = None) -> None:
    """iNeRF: find the camera pose of an image in a trained scene, from a rough initial pose (tens of
    degrees off is fine: feature matching against renders moves it before the photometric descent).
    Writes result.json (pose, PSNR, convergence, iterations, seconds, loss curve), cameras.json of
    the estimated pose (renderable with `nerfsim render`) and loss.png.

    Args:
        scene: Checkpoint folder.
        image: The image (PNG/JPEG, the initial camera's size).
        init: cameras.json whose first camera gives the lens, the time and the initial T_world_cam.
        out: Output folder.
        iterations: Adam steps per hypothesis when feature matching fails (after a match: a short refinement).
        rays: Pixels rendered per step.
        sampling: random, interest_points or interest_regions.
        hypotheses: Starts tried while the photometric check fails.
        match_rounds: Render / match / PnP rounds before the descent (0 = the photometric descent alone).
        edits: Edits file: the scene as edited when the image was taken.
    """
    import imageio.v3 as iio
    import numpy as np

    from tasks.cameras import load_views
    from tasks.inversion import InversionConfig, invert_camera_pose, write_localization
    from tasks.pipeline import edited_graph, load_scene

    view = load_views(init)[0]
    if not image.is_file():
        raise InputError(image, None, "no such image file")
    try:
        img = np.asarray(iio.imread(image), dtype=np.float32)[..., :3] / 255.0
    except Exception as e:  # imageio raises many types for unreadable files
        raise InputError(image, None, f"unreadable image ({e})") from None
    if img.shape[:2] != (view.model.height, view.model.width):
        raise InputError(image, None, f"image is {img.shape[1]}x{img.shape[0]}, the camera in {init} is {view.model.width}x{view.model.height}")
    if sampling not in ("random", "interest_points", "interest_regions"):
        raise InputError("--sampling", None, f"expected random, interest_points or interest_regions, got '{sampling}'")
    sc = load_scene(scene)
    state = edited_graph(sc.graph, edits).at(view.time)
    res = invert_camera_pose(sc.model, img, view.model, view.T_world_cam, state,
                             InversionConfig(iterations=iterations, rays=rays, sampling=sampling, hypotheses=hypotheses,
                                             match_rounds=match_rounds))
    write_localization(out, res, view)
    print(json.dumps({"converged": res.converged, "psnr": round(res.psnr, 2), "seconds": round(res.seconds, 1), "out": str(out)}))


def pose_data(scene: Positional[Path], actor: str, out: Path = Path("pose_data"), views: int = 50, width: int = 320,
              height: int = 240, time: float = 0.0, seed: int = 0, mesh: bool = True) -> None:
    """Object pose-estimation data of one actor in BOP format: views sampled around it in its scene,
    with 6-DoF pose, camera, full and visible masks, boxes and model-frame coordinates per pixel.

    Args:
        scene: Checkpoint folder.
        actor: Actor id (see the scene's graph, e.g. car_003).
        out: BOP dataset folder.
        views: Number of viewpoints.
        width: Image width, pixels.
        height: Image height, pixels.
        time: Scene time of the views.
        seed: Seed of the viewpoints.
        mesh: Also write the actor's mesh as models/obj_000001.ply.
    """
    from sensors.mesh import actor_mesh
    from sensors.renderers import NeuralRenderer
    from tasks.pipeline import load_scene
    from tasks.pose_data import PoseDataConfig, write_pose_data

    sc = load_scene(scene)
    state = sc.graph.at(time)
    target = next((a for a in state.actors if a.actor_id == actor), None)
    model_mesh = actor_mesh(sc.model, target.asset_id, target.size) if mesh and target is not None else None
    cfg = PoseDataConfig(views=views, width=width, height=height, time=time, seed=seed)
    infos = write_pose_data(NeuralRenderer(sc.model), sc.model, state, actor, out, cfg, model_mesh)
    fractions = [v[0]["visib_fract"] for v in infos.values()]
    print(json.dumps({"views": len(infos), "mean_visib_fract": round(float(sum(fractions) / len(fractions)), 3), "out": str(out)}))


def nav_eval(scene: Positional[Path], out: Path = Path("nav_eval"), controller: str = "planner", dynamics: str = "unicycle",
             pairs: int = 50, seed: int = 0, observations: str = "depth", width: int = 128, height: int = 72,
             moving_actors: bool = True, max_steps: int = 600, videos: int = 2, scenario: str = "") -> None:
    """Closed-loop navigation test: drive a controller through the neural scene between sampled
    start-goal pairs; report collision rate, success, path-length ratio (summary.json), with an
    overview map of all trajectories and videos of the first episodes. Resumes after a kill.

    Args:
        scene: Trained scene folder.
        out: Output folder.
        controller: 'planner' (NeRF-Nav-style trajectory optimisation on the density) or 'reactive' (depth image).
        dynamics: 'unicycle' (ground robot), 'bicycle' (car) or 'quadrotor' (drone).
        pairs: Start-goal pairs (episodes).
        seed: Seed of the first pair.
        observations: Comma-separated sensors rendered each step (rgb, depth, lidar; '' for none).
        width: Camera width, pixels.
        height: Camera height, pixels.
        moving_actors: Actors follow their tracks (False: the scene is frozen at time 0).
        max_steps: Steps (0.1 s each) before an episode times out.
        videos: MP4s of the first this many episodes.
        scenario: A scenario (template name or YAML file): its actors populate the scene and the agent
            takes the scripted ego's place; episode i runs variant seed + i.
    """
    from tasks.nav.env import NavConfig
    from tasks.nav.evaluate import NavEvalConfig, evaluate as run

    obs = tuple(o.strip() for o in observations.split(",") if o.strip())
    env = NavConfig(scene=str(scene), dynamics=dynamics, observations=obs, width=width, height=height,
                    moving_actors=moving_actors, max_steps=max_steps, scenario=scenario, scenario_variant=seed)
    run(NavEvalConfig(scene, out, controller, pairs, seed, videos, env))


COMMANDS = {"world": world, "train": train, "render": render, "eval": evaluate, "export-mesh": export_mesh, "demo": demo,
            "generate": generate, "scenarios": scenarios, "localize": localize,
            "pose-data": pose_data, "nav-eval": nav_eval}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # `--json` is the documented spelling for eval.
    argv = ["--json-out" if a == "--json" else a for a in argv]
    try:
        tyro.extras.subcommand_cli_from_dict(COMMANDS, prog="nerfsim", args=argv)
    except InputError as e:
        print(f"nerfsim: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
