"""`nerfsim nav-eval`: run a controller over a set of start-goal pairs and report how it fared.

Per episode (``episodes.jsonl``, one JSON object a line, appended as each episode ends so a killed
run resumes where it stopped): ``collision`` (the environment's verdict: actor boxes + background
density), ``collision_kind``, ``collision_truth`` (the ground-truth twin's verdict anywhere along the
episode; null without a twin), ``reached``, ``steps``, ``path_length``, ``shortest_path`` (geodesic
distance from the start to the goal's disc over the free cells of the density map, the footprint
inflated; actors where they stand at the start), the
``path_length_ratio`` of the two (reached episodes), ``route_completion`` (1 - remaining / initial
geodesic distance), ``min_clearance``, ``min_ttc``, ``progress`` (straight-line metres gained) and
``step_hz`` (environment steps per wall-clock second, controller included).

Summary (``summary.json``): the collision rate (environment and ground truth), success rate, mean and
median path-length ratio, mean route completion, step rate. Pictures: ``overview.png`` (every
trajectory on the map: green reached, red collided, grey timed out) and ``episode_NNN.mp4`` (camera
beside the top-down map) for the first ``videos`` episodes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from skimage.graph import MCP_Geometric

from scenes.errors import InputError
from scenes.files import atomic_write_text
from scenes.settings import AT_LEAST_ONE
from tasks.media import write_png, write_video
from tasks.nav.env import NavConfig, NavEnv
from tasks.nav.planner import CONTROLLERS
from tasks.nav.startgoal import free_space
from tasks.nav.topdown import MapCanvas, episode_frame

console = Console()


@dataclass
class NavEvalConfig:
    """A navigation evaluation: a controller over ``pairs`` sampled start-goal pairs."""

    scene: Path
    """Trained scene folder."""
    out: Path = Path("nav_eval")
    """Output folder (episodes.jsonl, summary.json, overview.png, videos)."""
    controller: Literal["planner", "reactive"] = "planner"
    """'planner' (NeRF-Nav-style, density map) or 'reactive' (depth image only)."""
    pairs: Annotated[int, AT_LEAST_ONE] = 50
    """Number of start-goal pairs (episode i is seeded with seed + i; with a scenario in the
    environment config, episode i is that scenario's variant seed + i)."""
    seed: int = 0
    """Seed of the first pair."""
    videos: int = 2
    """Write an MP4 of the first this many episodes."""
    env: NavConfig = field(default_factory=lambda: NavConfig(observations=("depth",)))
    """The environment (the scene field is set from ``scene``)."""


def shortest_path_length(env) -> float:
    """Geodesic distance (metres) from the agent to the goal's disc (``goal_radius``) over cells where
    the footprint fits (inf if none)."""
    free = free_space(env, 0.0) | _disc(env.map, env.state.position, env.dynamics.footprint_radius + 0.3)
    mcp = MCP_Geometric(np.where(free, 1.0, -1.0))
    cost, _ = mcp.find_costs([tuple(env.map.index(env.goal[:2]))])
    return max(float(cost[tuple(env.map.index(env.state.position[:2]))] * env.map.cell) - env.cfg.goal_radius, 0.0)


def _disc(dmap, centre, radius) -> np.ndarray:
    return np.linalg.norm(dmap.cell_centres() - centre[:2], axis=-1) <= radius


def run_episode(env, controller, seed: int, record: bool = False) -> tuple[dict, list[np.ndarray]]:
    """One episode from ``reset(seed=seed)`` to its end: metrics (see the module docstring) and,
    with ``record``, its video frames."""
    obs, info = env.reset(seed=seed)
    u = env.unwrapped
    start, goal = u.state.position.copy(), u.goal.copy()
    shortest = shortest_path_length(u)
    controller.reset(env)
    frames = [episode_frame(u, getattr(controller, "plan", None))] if record else []
    min_clear, min_ttc, truth = info["clearance"], info["ttc"], False
    t0 = time.perf_counter()
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(controller.act(obs, info))
        done = terminated or truncated
        min_clear, min_ttc = min(min_clear, info["clearance"]), min(min_ttc, info["ttc"])
        truth = truth or bool(info["collision_truth"])
        if record:
            frames.append(episode_frame(u, getattr(controller, "plan", None)))
    wall = time.perf_counter() - t0
    traj = np.array(u.trajectory)
    path = float(np.linalg.norm(np.diff(traj[:, :2], axis=0), axis=1).sum())
    remaining = shortest_path_length(u) if not info["reached"] else 0.0
    m = {"seed": seed, "start": start.round(3).tolist(), "goal": goal.round(3).tolist(), "collision": info["collision"] is not None,
         "collision_kind": info["collision"], "collision_truth": truth if u.scene.twin is not None else None,
         "reached": bool(info["reached"]), "steps": u.steps, "path_length": path, "shortest_path": shortest,
         "path_length_ratio": path / shortest if info["reached"] and shortest > 0 else None,
         "route_completion": float(np.clip(1.0 - remaining / shortest, 0.0, 1.0)) if np.isfinite(shortest) and shortest > 0 else None,
         "min_clearance": float(min_clear), "min_ttc": float(min_ttc),
         "progress": float(np.linalg.norm((goal - start)[:2]) - np.linalg.norm((goal - traj[-1])[:2])),
         "step_hz": u.steps / wall, "trajectory": traj[:, :3].round(3).tolist()}
    return m, frames


def summarise(episodes: list[dict]) -> dict:
    n = len(episodes)
    ratios = [e["path_length_ratio"] for e in episodes if e["path_length_ratio"] is not None]
    truth = [e["collision_truth"] for e in episodes if e["collision_truth"] is not None]
    completion = [e["route_completion"] for e in episodes if e["route_completion"] is not None]
    return {"episodes": n, "collision_rate": sum(e["collision"] for e in episodes) / max(n, 1),
            "collision_rate_truth": sum(truth) / len(truth) if truth else None,
            "success_rate": sum(e["reached"] for e in episodes) / max(n, 1),
            "path_length_ratio_mean": float(np.mean(ratios)) if ratios else None,
            "path_length_ratio_median": float(np.median(ratios)) if ratios else None,
            "route_completion_mean": float(np.mean(completion)) if completion else None,
            "min_clearance_median": float(np.median([e["min_clearance"] for e in episodes])) if n else None,
            "collision_kinds": sorted({e["collision_kind"] for e in episodes if e["collision_kind"]}),
            "step_hz_mean": float(np.mean([e["step_hz"] for e in episodes])) if n else None}


def overview(env, episodes: list[dict]) -> np.ndarray:
    c = MapCanvas(env.map)
    c.boxes(env.scene_state(env.cfg.start_time))
    for e in episodes:
        color = (30, 160, 50) if e["reached"] else (220, 30, 30) if e["collision"] else (130, 130, 130)
        c.path(np.array(e["trajectory"]), color)
        c.disc(e["goal"][:2], 0.4, color)
    return c.array()


def _read_episodes(path: Path) -> dict[int, dict]:
    done = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                e = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a kill: that episode runs again
                continue
            done[e["seed"]] = e
    return done


def evaluate(cfg: NavEvalConfig, scene=None) -> dict:
    """Run (or resume) the evaluation; ``scene`` (a `NavScene`) overrides loading ``cfg.scene``."""
    if cfg.controller not in CONTROLLERS:
        raise InputError("nav-eval", "controller", f"expected one of {sorted(CONTROLLERS)}, got {cfg.controller!r}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    env = NavEnv(scene if scene is not None else str(cfg.scene), cfg.env)
    controller = CONTROLLERS[cfg.controller]()
    log = out / "episodes.jsonl"
    done = _read_episodes(log)
    atomic_write_text(log, "".join(json.dumps(done[s]) + "\n" for s in sorted(done)))  # drop a torn last line
    seeds = [cfg.seed + i for i in range(cfg.pairs)]
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} episodes"),
               TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar, log.open("a") as f:
        task = bar.add_task(f"nav-eval {cfg.controller}", total=len(seeds), completed=sum(s in done for s in seeds), stats="")
        for i, seed in enumerate(seeds):
            if seed in done:
                continue
            if cfg.env.scenario:  # one variant of the scenario per episode; the density map is shared
                env = NavEnv(scene if scene is not None else str(cfg.scene), replace(cfg.env, scenario_variant=seed))
            m, frames = run_episode(env, controller, seed, record=i < cfg.videos)
            if frames:
                write_video(out / f"episode_{seed:03d}.mp4", frames, fps=1.0 / cfg.env.dt)
            f.write(json.dumps(m) + "\n")
            f.flush()
            done[seed] = m
            s = summarise([done[k] for k in seeds if k in done])
            bar.update(task, advance=1, stats=f"collisions {s['collision_rate']:.0%}  reached {s['success_rate']:.0%}  {m['step_hz']:.1f} steps/s")
    episodes = [done[s] for s in seeds]
    summary = summarise(episodes) | {"controller": cfg.controller, "dynamics": cfg.env.dynamics, "scene": str(cfg.scene),
                                     "observations": list(cfg.env.observations), "resolution": [cfg.env.width, cfg.env.height]}
    write_png(out / "overview.png", overview(env, episodes))
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    console.print(summary)
    return summary
