"""Scenario -> a scene graph with tracks: the ego's route and every actor's behaviours, simulated.

Conventions: world z up, metres, seconds; actor frame x forward, y left, z up; yaw about +z. The
road is `scenes.roadmap.RoadMap`; the simulation runs in its road coordinates (a scenario's ``x``,
``route`` and lanes are road coordinates) and `build_scenario_world` hands back world poses: on the
built-in street they are the same frame, on a recorded drive's street the scene's actors go into
road coordinates and the scenario's tracks come back through the road's frame (`RoadMap.poses_to_world`:
a rigid placement on a straight drive, the Frenet frame of the centre line on a bending one). Agents move
along a path (a lane's centre line in its direction of travel, the ego's route, or a crossing line
across the street) with an arc length ``s``, a lateral offset ``d`` to the left of the path and a
speed ``v``; they are stepped together every ``SIM_DT`` seconds and their poses are the keyframes
of their `ActorTrack`. Speeds change at most by ``ACCEL`` (m/s^2) up and by the active deceleration
down; lane changes follow a half-cosine lateral profile over their duration; the heading is the
direction of motion. Boxes stand on the ground (road, or the raised sidewalk).

Triggers see the state of the previous step: ``ttc_to_ego`` = longitudinal gap between bumpers along
the ego's heading / closing speed (inf when not closing); ``ahead_of_ego`` = that gap (actor's rear
to the ego's front); ``distance_to_ego`` = centre to centre.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.roadmap import RoadMap
from scenes.transforms import make_pose, rot_z
from scenes.world import footprint_overlaps, footprints
from tasks.scenarios.behaviours import BEHAVIOURS
from tasks.scenarios.schema import ActorSpec, Behaviour, Scenario

SIM_DT = 0.05
"""Simulation step, seconds."""
ACCEL = 2.5
"""Largest acceleration of vehicles, m/s^2."""
FOLLOW_LATERAL_MARGIN = 1.0
"""A followed target counts while its box is within this many metres of the follower's path."""


@dataclass(frozen=True)
class AssetInfo:
    asset_id: str
    class_name: str
    size: tuple[float, float, float]


def actor_library(graph: SceneGraph) -> dict[str, AssetInfo]:
    """The appearances a scene can render: one entry per asset id of its actors."""
    out: dict[str, AssetInfo] = {}
    for a in graph.actors:
        out.setdefault(a.asset_id, AssetInfo(a.asset_id, a.class_name, a.size))
    return out


@dataclass
class ScenarioWorld:
    """A scenario made concrete: the actors' tracks, the ego's, and what the sanity checks need."""

    scenario: Scenario
    graph: SceneGraph
    ego: ActorTrack
    ego_size: tuple[float, float, float]
    collide: frozenset = frozenset()
    """Actor ids the scenario means to collide (their overlaps are not violations)."""
    crossing: frozenset = frozenset()
    """Pedestrians allowed on the road (crossing behaviours)."""
    events: list = field(default_factory=list)
    """``(time, actor id, behaviour)`` of every behaviour that started."""

    def T_world_ego(self, t: float) -> np.ndarray:
        return self.ego.pose_at(t)


# ----------------------------------------------------------------------------------------- paths
class _Path:
    """A polyline in the ground plane with arc length; extends straight beyond both ends."""

    def __init__(self, points, end_stop: bool = False):
        self.p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        seg = np.diff(self.p, axis=0)
        self.seg_len = np.linalg.norm(seg, axis=1)
        self.seg_dir = seg / self.seg_len[:, None]
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.end_stop = end_stop
        """Agents stop at the end (a crossing ends on the far sidewalk)."""

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def _segment(self, s: float) -> int:
        return int(np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.seg_len) - 1))

    def tangent(self, s: float) -> np.ndarray:
        return self.seg_dir[self._segment(s)]

    def point(self, s: float, d: float = 0.0) -> np.ndarray:
        i = self._segment(s)
        t = self.seg_dir[i]
        return self.p[i] + t * (s - self.cum[i]) + d * np.array([-t[1], t[0]])

    def project(self, xy) -> float:
        """Arc length of the point of the path closest to ``xy``."""
        best, best_s = np.inf, 0.0
        for i in range(len(self.seg_len)):
            u = float(np.clip((np.asarray(xy) - self.p[i]) @ self.seg_dir[i], 0.0, self.seg_len[i]))
            dist = np.linalg.norm(self.p[i] + u * self.seg_dir[i] - xy)
            if dist < best:
                best, best_s = dist, self.cum[i] + u
        return float(best_s)


def _lane_path(road: RoadMap, lane: str, direction: int | None = None) -> _Path:
    """The centre line of ``lane``, travelled towards +x (``direction`` 1) or -x (-1); default the lane's."""
    ln = road.lane(lane)
    x0, x1 = road.x_range
    ends = [(x0 - 100.0, ln.y), (x1 + 100.0, ln.y)]
    return _Path(ends if (direction or ln.direction) > 0 else ends[::-1])


# ---------------------------------------------------------------------------------------- agents
@dataclass
class _Agent:
    id: str
    size: tuple[float, float, float]
    path: _Path
    s: float
    v: float
    target_speed: float
    pedestrian: bool = False
    d: float = 0.0
    decel: float = 3.0
    lateral: tuple | None = None
    """(t0, duration, d0, d1) of a lane change."""
    follow: dict | None = None
    scripted_speed: Callable[[float], float] | None = None
    """``t -> speed``: the ego follows its speed profile exactly."""
    pending: list = field(default_factory=list)
    xy: np.ndarray = field(default_factory=lambda: np.zeros(2))
    yaw: float = 0.0
    poses: list = field(default_factory=list)

    def place(self) -> None:
        self.xy = self.path.point(self.s, self.d)

    def heading(self) -> np.ndarray:
        return np.array([np.cos(self.yaw), np.sin(self.yaw)])


class _Simulation:
    def __init__(self, sc: Scenario, road: RoadMap, existing: list[Actor], ego: _Agent, agents: list[_Agent]):
        self.sc, self.road, self.ego, self.agents = sc, road, ego, agents
        self.scenario = sc
        self.existing = {a.actor_id: a for a in existing}
        self.events: list = []
        self.by_id = {a.id: a for a in agents}

    # ---- what triggers and followers see --------------------------------------------------------
    def state_of(self, actor_id: str, t: float) -> tuple[np.ndarray, np.ndarray, tuple]:
        """Position (xy), velocity (xy) and size of an agent, the ego or an existing actor at ``t``."""
        if actor_id == "ego":
            return self.ego.xy, self.ego.v * self.ego.heading(), self.ego.size
        if actor_id in self.by_id:
            a = self.by_id[actor_id]
            return a.xy, a.v * a.heading(), a.size
        a = self.existing[actor_id]
        p0, p1 = a.track.pose_at(t)[:2, 3], a.track.pose_at(t + SIM_DT)[:2, 3]
        return p0, (p1 - p0) / SIM_DT, a.size

    def bumper_gap(self, agent: _Agent) -> tuple[float, float]:
        """Gap from the ego's front to ``agent``'s rear along the ego's heading, and the closing speed."""
        e = self.ego.heading()
        rel = agent.yaw - self.ego.yaw
        half = abs(np.cos(rel)) * agent.size[0] / 2 + abs(np.sin(rel)) * agent.size[1] / 2
        gap = float((agent.xy - self.ego.xy) @ e - self.ego.size[0] / 2 - half)
        closing = float(self.ego.v - agent.v * (agent.heading() @ e))
        return gap, closing

    def triggered(self, agent: _Agent, b: Behaviour, t: float) -> bool:
        trig = b.trigger
        if trig is None:
            return True
        if trig.kind == "time":
            return t >= trig.value - 1e-9
        if trig.kind == "distance_to_ego":
            return float(np.linalg.norm(agent.xy - self.ego.xy)) <= trig.value
        gap, closing = self.bumper_gap(agent)
        if trig.kind == "ahead_of_ego":
            return gap >= trig.value
        return gap > 0 and closing > 0 and gap / closing <= trig.value  # ttc_to_ego

    # ---- behaviours (`tasks.scenarios.behaviours`) ------------------------------------------------
    @staticmethod
    def path(points, end_stop: bool = False) -> "_Path":
        """A path for a behaviour to put an agent on (e.g. a crossing line)."""
        return _Path(points, end_stop)

    def start(self, agent: _Agent, b: Behaviour, t: float) -> None:
        self.events.append((round(t, 6), agent.id, b.kind))
        BEHAVIOURS[b.kind].start(self, agent, b.params, t)

    def desired_speed(self, agent: _Agent, t: float) -> float:
        v = agent.target_speed
        if agent.follow:
            # The follower keeps `time_gap` seconds behind its target (a gap trigger in reverse).
            p_t, _, size_t = self.state_of(agent.follow["target"], t)
            e = agent.heading()
            rel = p_t - agent.xy
            gap = float(rel @ e - size_t[0] / 2 - agent.size[0] / 2)
            lateral = abs(float(rel @ np.array([-e[1], e[0]])))
            in_path = lateral <= max(size_t[:2]) / 2 + agent.size[1] / 2 + FOLLOW_LATERAL_MARGIN
            if gap > -1.0 and in_path:
                v = min(v, max(0.0, (gap - agent.follow["min_gap"]) / agent.follow["time_gap"]))
        return v

    def step(self, agent: _Agent, t: float, dt: float) -> None:
        still = []
        for b in agent.pending:
            if self.triggered(agent, b, t):
                self.start(agent, b, t)
            else:
                still.append(b)
        agent.pending = still
        if agent.scripted_speed is not None:
            agent.v = agent.scripted_speed(t)
        else:
            want = self.desired_speed(agent, t)
            agent.v = float(np.clip(want, agent.v - agent.decel * dt, agent.v + (ACCEL if not agent.pedestrian else 10.0) * dt))
        agent.s += agent.v * dt
        if agent.path.end_stop and agent.s >= agent.path.length:
            agent.s, agent.v, agent.target_speed = agent.path.length, 0.0, 0.0
        if agent.lateral is not None:
            t0, dur, d0, d1 = agent.lateral
            u = float(np.clip((t + dt - t0) / dur, 0.0, 1.0))
            agent.d = d0 + (d1 - d0) * (1 - np.cos(np.pi * u)) / 2

    def move(self, agent: _Agent) -> None:
        old = agent.xy
        agent.place()
        delta = agent.xy - old
        if np.linalg.norm(delta) > 1e-4:
            agent.yaw = float(np.arctan2(delta[1], delta[0]))

    def record(self, agent: _Agent, t: float) -> None:
        z = float(self.road.ground_height(agent.xy)) + agent.size[2] / 2
        agent.poses.append((t, make_pose(rot_z(agent.yaw), (agent.xy[0], agent.xy[1], z))))

    def run(self) -> None:
        times = np.arange(int(np.ceil(self.sc.duration / SIM_DT)) + 1) * SIM_DT
        everyone = [self.ego] + self.agents
        for a in everyone:
            self.record(a, 0.0)
        for t in times[:-1]:
            for a in everyone:
                self.step(a, float(t), SIM_DT)
            for a in everyone:
                self.move(a)
                self.record(a, float(t + SIM_DT))


# ------------------------------------------------------------------------------------------ build
def build_scenario_world(sc: Scenario, graph: SceneGraph, road: RoadMap, variant_seed=(0, 0),
                         library: dict[str, AssetInfo] | None = None) -> ScenarioWorld:
    """Make ``sc`` concrete on a trained scene's ``graph``: existing actors kept / removed / re-skinned,
    inserted actors placed and simulated with their behaviours, the ego driven along its route.
    ``library``: the assets actors may be drawn from (default: the scene's own, `actor_library`).
    Poses in and out are the scene's world frame (the simulation runs in road coordinates)."""
    library = library if library is not None else actor_library(graph)
    if not road.placed:
        return _build(sc, graph, road, variant_seed, library)
    local = _build(sc, _moved(graph, road.poses_to_road), road, variant_seed, library)
    return _in_frame(local, road.poses_to_world, graph.aabb)


def _moved(graph: SceneGraph, poses_new_old) -> SceneGraph:
    """``graph`` with every actor's track in another frame (``poses_new_old``: `ActorTrack.mapped`)."""
    return graph.with_actors([replace(a, track=a.track.mapped(poses_new_old)) for a in graph.actors])


def _in_frame(world: ScenarioWorld, poses_new_old, aabb=None) -> ScenarioWorld:
    """``world`` (its actors' and the ego's tracks) in another frame; ``aabb``: the graph's box there."""
    graph = _moved(world.graph, poses_new_old)
    return replace(world, graph=graph if aabb is None else replace(graph, aabb=aabb), ego=world.ego.mapped(poses_new_old))


def _build(sc: Scenario, graph: SceneGraph, road: RoadMap, variant_seed, library: dict[str, AssetInfo]) -> ScenarioWorld:
    kept = _existing_actors(sc, graph, library)
    rng = np.random.default_rng([*variant_seed, 7])  # asset draws: a stream of their own
    ego = _ego_agent(sc, road)
    next_id = graph.next_instance_id()
    agents, specs, actors = [], [], list(kept)
    for spec in sc.insert:
        info = _asset_for(sc, spec, library, rng)
        agents.append(_agent_for(sc, spec, info, road, ego))
        specs.append((spec, info))
    sim = _Simulation(sc, road, kept, ego, agents)
    _check_references(sc, sim)
    for (spec, _), agent in zip(specs, agents):
        for b in spec.behaviours:  # behaviours with a start position of their own
            if BEHAVIOURS[b.kind].place is not None:
                BEHAVIOURS[b.kind].place(sim, agent, b.params)
        agent.pending = [b for b in spec.behaviours if BEHAVIOURS[b.kind].start is not None]
        agent.place()
        agent.yaw = float(np.arctan2(*agent.path.tangent(agent.s)[::-1]))
    ego.place()
    ego.yaw = float(np.arctan2(*ego.path.tangent(ego.s)[::-1]))
    sim.run()
    for i, ((spec, info), agent) in enumerate(zip(specs, agents)):
        if any(a.actor_id == spec.id for a in actors):
            raise InputError(sc.source, f"actors.insert[{i}].id", f"'{spec.id}' is already an actor of the scene")
        times, poses = zip(*agent.poses)
        actors.append(Actor(spec.id, info.class_name, next_id + i, info.size, ActorTrack.from_poses(times, poses), info.asset_id))
    lift = road.ego_height - ego.size[2] / 2  # box centre -> the ego frame's origin (on the ground, or the log's height above it)
    ego_track = ActorTrack.from_poses(*zip(*[(t, T @ make_pose(np.eye(3), (0, 0, lift))) for t, T in ego.poses]))
    crossing = {s.id for s, _ in specs if any(BEHAVIOURS[b.kind].crossing for b in s.behaviours)}
    crossing |= {a.actor_id for a in kept if a.class_name == "pedestrian" and _crosses(a, road)}
    return ScenarioWorld(sc, graph.with_actors(actors), ego_track, ego.size,
                         frozenset(s.id for s, _ in specs if s.collide), frozenset(crossing), sim.events)


def _existing_actors(sc: Scenario, graph: SceneGraph, library: dict) -> list[Actor]:
    ids = {a.actor_id for a in graph.actors}
    for i, rid in enumerate(sc.remove):
        if rid not in ids:
            raise InputError(sc.source, f"actors.remove[{i}]", f"no actor '{rid}' in the scene; known: {sorted(ids)}")
    replace = dict(sc.replace)
    for aid, asset in replace.items():
        if aid not in ids:
            raise InputError(sc.source, f"actors.replace.{aid}", f"no actor '{aid}' in the scene; known: {sorted(ids)}")
        if asset not in library:
            raise InputError(sc.source, f"actors.replace.{aid}", f"no asset '{asset}' in the scene's library; known: {sorted(library)}")
    out = []
    for a in graph.actors:
        static = len(a.track.times) == 1 or np.ptp(a.track.positions, axis=0).max() < 0.1
        if a.actor_id in sc.remove or sc.existing == "none" or (sc.existing == "static" and not static):
            continue
        if a.actor_id in replace:
            info = library[replace[a.actor_id]]
            lift = make_pose(np.eye(3), (0, 0, (info.size[2] - a.size[2]) / 2))  # keep it standing on the ground
            a = Actor(a.actor_id, info.class_name, a.instance_id, info.size, a.track.transformed(lift), info.asset_id)
        out.append(a)
    return out


def _asset_for(sc: Scenario, spec: ActorSpec, library: dict, rng) -> AssetInfo:
    i = sc.insert.index(spec)
    if spec.asset is not None:
        if spec.asset not in library:
            raise InputError(sc.source, f"actors.insert[{i}].asset", f"no asset '{spec.asset}' in the scene's library; known: {sorted(library)}")
        return library[spec.asset]
    options = sorted(k for k, v in library.items() if v.class_name == spec.asset_class)
    if not options:
        classes = sorted({v.class_name for v in library.values()})
        raise InputError(sc.source, f"actors.insert[{i}].class", f"the scene has no '{spec.asset_class}' asset; its classes: {classes}")
    return library[options[int(rng.integers(len(options)))]]


def _ego_agent(sc: Scenario, road: RoadMap) -> _Agent:
    e = sc.ego
    path = _Path(e.route) if e.route else _lane_path(road, e.lane)
    s0 = 0.0 if e.route else path.project((e.x, road.lane(e.lane).y))
    speed = _ego_speed_fn(sc)
    ego = _Agent("ego", e.size, path, s0, speed(0.0), speed(0.0), scripted_speed=None if e.behaviours else speed)
    ego.pending = list(e.behaviours)
    return ego


def _ego_speed_fn(sc: Scenario):
    prof = sc.ego.speed_profile
    if not prof:
        return lambda t: sc.ego.speed
    ts, vs = np.array([p[0] for p in prof]), np.array([p[1] for p in prof])
    return lambda t: float(np.interp(t, ts, vs))


def _agent_for(sc: Scenario, spec: ActorSpec, info: AssetInfo, road: RoadMap, ego: _Agent) -> _Agent:
    wrong_way = any(BEHAVIOURS[b.kind].opposite_direction for b in spec.behaviours)
    stalled = any(BEHAVIOURS[b.kind].stands_still for b in spec.behaviours)
    direction = {"+x": 1, "-x": -1}.get(spec.direction, road.lane(spec.lane).direction)
    path = _lane_path(road, spec.lane, -direction if wrong_way else direction)
    x = spec.x if spec.x is not None else ego.path.point(ego.s)[0] + spec.gap
    s0 = path.project((x, road.lane(spec.lane).y))
    speed = 0.0 if stalled else spec.speed
    pedestrian = info.class_name == "pedestrian"
    return _Agent(spec.id, info.size, path, s0, speed, speed, pedestrian=pedestrian, d=spec.lateral)


def _check_references(sc: Scenario, sim: _Simulation) -> None:
    """Every actor a behaviour names (follow target, emerge occluder) must exist."""
    known = {"ego"} | set(sim.by_id) | set(sim.existing)
    owners = [("ego", "ego", sc.ego.behaviours)] + [(s.id, f"actors.insert[{i}]", s.behaviours) for i, s in enumerate(sc.insert)]
    for who, where, behaviours in owners:
        for j, b in enumerate(behaviours):
            for key in (k for k, param in BEHAVIOURS[b.kind].params.items() if param.kind == "actor"):
                ref = b.params.get(key)
                if ref is not None and (ref not in known or ref == who):
                    raise InputError(sc.source, f"{where}.behaviours[{j}].{b.kind}.{key}",
                                     f"no other actor '{ref}' in the scenario; known: {sorted(known - {who})}")


def _crosses(actor: Actor, road: RoadMap) -> bool:
    return bool(np.any(road.on_road(actor.track.positions[:, :2]) & ~road.on_sidewalk(actor.track.positions[:, :2])))


# ----------------------------------------------------------------------------------------- sanity
def check_scenario_world(world: ScenarioWorld, road: RoadMap) -> list[dict]:
    """What is wrong with the generated world, frame by frame: boxes that interpenetrate (ego
    included; not those the scenario means to collide), vehicles off the paved street, pedestrians off
    the sidewalks without a crossing behaviour. One entry per actor (pair) and kind, with the first
    time and the number of frames. On a recorded drive's street the scene's own actors are where
    they were recorded: only the ego and the inserted actors must keep to the (fitted) layout and
    clear of the others."""
    if road.placed:
        world = _in_frame(world, road.poses_to_road)
    judged = None if not road.placed else {"ego"} | {s.id for s in world.scenario.insert}
    times = world.scenario.frame_times
    movers = [("ego", "car", world.ego_size, footprints(world.ego, times))]
    movers += [(a.actor_id, a.class_name, a.size, footprints(a.track, times)) for a in world.graph.actors]
    out = []

    def report(kind: str, ids: list[str], bad: np.ndarray) -> None:
        if bad.any():
            out.append({"kind": kind, "actors": ids, "first_time": float(times[np.argmax(bad)]), "frames": int(bad.sum())})

    for i, (ida, _, sa, fa) in enumerate(movers):
        for idb, _, sb, fb in movers[i + 1:]:
            if judged is not None and ida not in judged and idb not in judged:
                continue  # two recorded actors: their boxes are as labelled
            if ida not in world.collide and idb not in world.collide:
                report("overlap", [ida, idb], footprint_overlaps(fa, sa, fb, sb))
    for aid, cls, size, (centres, axes) in movers:
        if judged is not None and aid not in judged:
            continue
        if cls == "pedestrian":
            if aid not in world.crossing:
                report("pedestrian_off_sidewalk", [aid], ~road.on_sidewalk(centres))
            continue
        signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]]) * np.asarray(size[:2]) / 2
        corners = centres[:, None, :] + np.einsum("ck,tkj->tcj", signs, axes)
        report("vehicle_off_road", [aid], ~road.on_road(corners).all(axis=1))
    return out
