"""Every behaviour a scenario can give an actor (or the ego), in one registry: its parameters (what
the scenario validator accepts, `tasks.scenarios.schema`) and what it does when it starts (what the
traffic simulation runs, `tasks.scenarios.traffic`). Adding a behaviour is adding an entry here.

A start function ``start(sim, agent, params, t)`` changes the agent's plan at time ``t``: its target
speed, deceleration, car following, lateral profile or path. ``sim`` is the running
`tasks.scenarios.traffic._Simulation` (``sim.road``, ``sim.scenario``, ``sim.path(points)``);
``agent`` a `tasks.scenarios.traffic._Agent`. Conventions: metres, seconds, m/s, m/s^2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

DEFAULT_DECEL = {"hard_brake": 7.0, "stop": 2.5}
"""Deceleration of a braking behaviour that names none, m/s^2."""
PEDESTRIAN_SPEED = 1.4
"""Walking speed of a crossing pedestrian that names none, m/s."""
FOLLOW_DECEL = 6.0
"""Deceleration a follower may use to keep its gap (firm braking), unless its ``follow`` says."""


@dataclass(frozen=True)
class Param:
    """One parameter of a behaviour, as a scenario file gives it."""

    kind: Literal["number", "lane", "actor"] = "number"
    """A number; a lane name of `scenes.roadmap`; or the id of another actor (or ``ego``)."""
    lo: float | None = 0.0
    """Smallest number allowed (None: any)."""
    strict: bool = False
    """The number must be greater than ``lo``."""
    default: str | None = None
    """Default of an actor parameter (None: required)."""


@dataclass(frozen=True)
class BehaviourKind:
    """What a behaviour accepts and does."""

    params: dict[str, Param] = field(default_factory=dict)
    start: Callable | None = None
    """``start(sim, agent, params, t)`` when triggered; None: a state the actor has from its first
    frame (it takes no trigger)."""
    ego: bool = False
    """The ego may have it too (on a time trigger)."""
    crossing: bool = False
    """A pedestrian with it may walk on the road."""
    opposite_direction: bool = False
    """The actor drives against its lane's direction from the first frame."""
    stands_still: bool = False
    """The actor never moves."""
    place: Callable | None = None
    """``place(sim, agent, params)`` before the simulation: a start position of its own."""


# ---- start functions -------------------------------------------------------------------------------
def _keep_lane(sim, agent, p: dict, t: float) -> None:
    agent.target_speed = p.get("speed", agent.target_speed)


def _follow(sim, agent, p: dict, t: float) -> None:
    agent.follow = {"target": p.get("target", "ego"), "time_gap": p.get("time_gap", 1.5), "min_gap": p.get("min_gap", 2.0)}
    agent.target_speed = p.get("speed", agent.target_speed)
    agent.decel = p.get("decel", FOLLOW_DECEL)


def _steer_to(agent, y_target: float, t: float, duration: float) -> None:
    """A half-cosine lateral move from the agent's offset to the line ``y = y_target`` (road coordinates)."""
    n_y = agent.path.tangent(agent.s)[0]  # the path's left normal has y component = tangent x
    d1 = (y_target - agent.path.point(agent.s)[1]) / n_y if abs(n_y) > 1e-6 else agent.d
    agent.lateral = (t, duration, agent.d, d1)


def _lane_change(sim, agent, p: dict, t: float) -> None:
    _steer_to(agent, sim.road.lane(p["to"]).y, t, p.get("duration", 2.0))


def _cut_in(sim, agent, p: dict, t: float) -> None:
    _steer_to(agent, sim.road.lane(sim.scenario.ego.lane).y + p.get("lateral_offset", 0.0), t, p.get("duration", 2.0))


def _brake(kind: str):
    def start(sim, agent, p: dict, t: float) -> None:
        agent.target_speed, agent.decel, agent.follow = 0.0, p.get("decel", DEFAULT_DECEL[kind]), None

    return start


def _cross(sim, agent, p: dict, t: float) -> None:
    """Walk straight across the street to the far sidewalk (1 m past the road's edge) and stop."""
    y0 = agent.xy[1]
    side = -np.sign(y0) if abs(y0) > 1e-6 else 1.0
    y_end = side * (sim.road.road_half_width + 1.0)
    agent.path, agent.s, agent.d = sim.path([agent.xy, (agent.xy[0], y_end)], end_stop=True), 0.0, 0.0
    agent.target_speed = agent.v = p.get("speed", PEDESTRIAN_SPEED)


def _behind_occluder(sim, agent, p: dict) -> None:
    """Wait, standing still, just past the far end of the occluder (seen from the ego), on the
    occluder's line across the street."""
    occ = p["occluder"]
    if occ in sim.by_id:
        sim.by_id[occ].place()
    p_occ, _, size_occ = sim.state_of(occ, 0.0)
    away = np.sign(p_occ[0] - sim.ego.path.point(sim.ego.s)[0]) or 1.0
    x = p_occ[0] + away * (size_occ[0] / 2 + agent.size[0] / 2 + 0.3)
    agent.path, agent.s, agent.d, agent.v, agent.target_speed = sim.path([(x, p_occ[1]), (x, p_occ[1] + 1.0)]), 0.0, 0.0, 0.0, 0.0


# ---- the registry ------------------------------------------------------------------------------------
POSITIVE = Param(strict=True)

BEHAVIOURS: dict[str, BehaviourKind] = {
    "keep_lane": BehaviourKind({"speed": Param()}, _keep_lane, ego=True),
    "follow": BehaviourKind({"target": Param("actor", default="ego"), "time_gap": POSITIVE, "min_gap": Param(), "speed": Param(),
                             "decel": POSITIVE}, _follow, ego=True),
    "lane_change": BehaviourKind({"to": Param("lane"), "duration": POSITIVE}, _lane_change, ego=True),
    "cut_in": BehaviourKind({"duration": POSITIVE, "lateral_offset": Param(lo=None)}, _cut_in),
    "hard_brake": BehaviourKind({"decel": POSITIVE}, _brake("hard_brake"), ego=True),
    "stop": BehaviourKind({"decel": POSITIVE}, _brake("stop"), ego=True),
    "stalled": BehaviourKind(stands_still=True),
    "wrong_way": BehaviourKind(opposite_direction=True),
    "cross": BehaviourKind({"speed": Param()}, _cross, crossing=True),
    "emerge": BehaviourKind({"occluder": Param("actor"), "speed": Param()}, _cross, crossing=True, place=_behind_occluder),
}
"""Behaviour name -> what it accepts and does (the scenario format: `tasks.scenarios.schema`)."""

EGO_BEHAVIOURS = tuple(k for k, b in BEHAVIOURS.items() if b.ego)
