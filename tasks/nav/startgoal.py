"""Start-goal pairs for navigation episodes, and the free space they are drawn from.

A pair is drawn from the cells where the agent's footprint fits (the density map's clearance exceeds
its radius plus a margin, no actor box within that margin at the start time; for the start also
during the next ``SPAWN_LOOKAHEAD`` seconds, for the goal as long as actors move), on the street when
the scene has a road map, with goal and start in one connected piece of free space and
``min_distance <= |goal - start| <= max_distance``. The agent starts facing roughly towards the goal.

Conventions: world z up, metres; cell indices of `tasks.nav.scene.DensityMap`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from scenes.errors import InputError

START_MARGIN = 0.4
"""Extra clearance (metres) around a start or goal beyond the footprint radius."""
SPAWN_LOOKAHEAD = 3.0
"""No start where a moving actor passes within the first this many seconds (an unavoidable hit)."""


def moving_actor_ids(graph) -> set[str]:
    """Actors whose track moves them."""
    return {a.actor_id for a in graph.actors if np.ptp(a.track.positions, axis=0).max() > 1e-3}


def actor_mask(dmap, state, z_band: tuple[float, float], grow: float = 0.0, ids: set[str] | None = None) -> np.ndarray:
    """Cells ``[nx, ny]`` covered by the actors' box footprints (grown by ``grow`` metres) whose boxes
    reach into ``z_band``; only the actors named in ``ids`` when given."""
    mask = np.zeros(dmap.shape, dtype=bool)
    xy = dmap.cell_centres()
    for a in state.actors:
        T, half = a.T_world_actor, np.asarray(a.size) / 2
        if (ids is not None and a.actor_id not in ids) or T[2, 3] - half[2] > z_band[1] or T[2, 3] + half[2] < z_band[0]:
            continue
        local = (xy - T[:2, 3]) @ T[:2, :2]
        mask |= (np.abs(local) <= half[:2] + grow).all(-1)
    return mask


def free_space(env, grow: float, lookahead: float = 0.0) -> np.ndarray:
    """Cells where the footprint (radius + ``grow``) clears the background and the actors at the
    start time (and for ``lookahead`` seconds after it: no spawning in front of a moving car),
    restricted to the street (cars: the road) when the scene has a road map."""
    dmap, dyn = env.map, env.dynamics
    free = dmap.clearance_2d > dyn.footprint_radius + grow
    for dt in np.arange(0.0, lookahead + 1e-9, 0.25) if env.cfg.moving_actors else [0.0]:
        free &= ~actor_mask(dmap, env.scene_state(env.cfg.start_time + dt), env.body_band(), dyn.footprint_radius + grow)
    road = env.scene.roadmap
    if road is not None:
        xy = road.xy_to_road(dmap.cell_centres())
        half = road.road_half_width + (0.0 if dyn.name == "bicycle" else road.sidewalk_width)  # cars keep off the sidewalks
        free &= (xy[..., 0] >= 0.0) & (xy[..., 0] <= road.street_length) & (np.abs(xy[..., 1]) <= half)
    return free


def _motion_span(env) -> float:
    """Seconds from the start time until the moving actors stop for good (their tracks end) or the
    episode does: no goal where an actor will stand."""
    moving = moving_actor_ids(env.scene.graph)
    ends = [float(a.track.times[-1]) for a in env.scene.graph.actors if a.actor_id in moving]
    return float(np.clip(max(ends, default=0.0) - env.cfg.start_time, 0.0, env.cfg.max_steps * env.cfg.dt))


def sample_start_goal(env, rng: np.random.Generator, tries: int = 200):
    """``(start [3], yaw, goal [3])`` for a new episode of ``env`` (see the module docstring)."""
    cfg, dmap = env.cfg, env.map
    free = free_space(env, START_MARGIN)
    labels, _ = ndimage.label(free, structure=np.ones((3, 3)))
    cells = np.argwhere(free & free_space(env, START_MARGIN, SPAWN_LOOKAHEAD))
    goals = free & free_space(env, START_MARGIN, _motion_span(env))
    if len(cells) < 2:
        raise InputError(env.scene.name, "density map", "no free space for the agent: is the scene trained, the threshold right?")
    for _ in range(tries):
        s = cells[rng.integers(len(cells))]
        same = np.argwhere(goals & (labels == labels[s[0], s[1]]))
        d = np.linalg.norm((same - s) * dmap.cell, axis=1)
        ok = same[(d >= cfg.min_distance) & (d <= cfg.max_distance)]
        if len(ok):
            g = ok[rng.integers(len(ok))]
            start, goal = dmap.world(s), dmap.world(g)
            z0 = env.scene.ground_z
            zs, zg = (z0, z0) if env.dynamics.ground else z0 + rng.uniform(*cfg.flight_heights, size=2)
            yaw = float(np.arctan2(*(goal - start)[::-1]) + rng.uniform(-0.3, 0.3))
            return np.array([*start, zs]), yaw, np.array([*goal, zg])
    raise InputError(env.scene.name, "min_distance/max_distance", f"no start-goal pair {cfg.min_distance}-{cfg.max_distance} m apart in free space")
