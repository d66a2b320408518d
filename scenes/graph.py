"""The scene graph: what exists, where, and when. It knows no renderer.

Conventions (ARCHITECTURE.md):
- World: right-handed, z up, metres. Actor frame: origin at the centre of the actor's 3D box,
  x forward, y left, z up (ISO 8855). A box has size (length along x, width along y, height along z).
- `T_world_actor` maps actor-frame coordinates to world coordinates.
- Time is seconds (float) from the start of the log. An `ActorTrack` interpolates its keyframes
  with SLERP (rotation) + linear (position), and holds the first/last pose outside its time range.

An actor's `asset_id` names the appearance it is rendered with: its neural field in `sim/`, its mesh
in the ground-truth twin. An inserted copy of an actor is a new actor with the same `asset_id`.
The graph is immutable: edits return a new graph (see `scenes.edits`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from scenes.errors import InputError
from scenes.transforms import is_rigid, make_pose, matrix_to_quat, quat_to_matrix, slerp

PARKED_SPEED = 0.3
"""`ActorTrack.is_parked`: the fastest straight-line motion (m/s) of a track that stays put ..."""
PARKED_SPREAD = 0.75
"""... and the largest RMS distance (m) of its keys from their mean."""


@dataclass(frozen=True)
class ActorTrack:
    """Keyframed pose of an actor's box over time: ``T_world_actor(t)``."""

    times: np.ndarray
    """Keyframe times [K], seconds, strictly increasing."""
    positions: np.ndarray
    """Box centres in world [K, 3], metres."""
    quats: np.ndarray
    """Box orientations [K, 4] (w, x, y, z), actor-to-world."""

    def __post_init__(self):
        times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, 3)
        quats = np.asarray(self.quats, dtype=np.float64).reshape(-1, 4)
        if not (len(times) == len(positions) == len(quats) >= 1):
            raise InputError("ActorTrack", "times/positions/quats", f"need equal lengths >= 1, got {len(times)}, {len(positions)}, {len(quats)}")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(positions)) and np.all(np.isfinite(quats))):
            raise InputError("ActorTrack", "times/positions/quats", "values must be finite")
        if np.any(np.diff(times) <= 0):
            raise InputError("ActorTrack", "times", "keyframe times must be strictly increasing")
        norms = np.linalg.norm(quats, axis=1, keepdims=True)
        if np.any(norms < 1e-8):
            raise InputError("ActorTrack", "quats", "quaternions must be non-zero")
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "positions", positions)
        object.__setattr__(self, "quats", quats / norms)

    @staticmethod
    def static(T_world_actor: np.ndarray) -> "ActorTrack":
        """A track that holds one pose forever."""
        return ActorTrack.from_poses([0.0], [T_world_actor])

    @staticmethod
    def from_poses(times, poses) -> "ActorTrack":
        """Build a track from keyframe times and 4x4 poses."""
        poses = [np.asarray(T, dtype=np.float64) for T in poses]
        for i, T in enumerate(poses):
            if not is_rigid(T):
                raise InputError("ActorTrack", f"poses[{i}]", "expected a finite 4x4 rigid transform")
        return ActorTrack(
            times=np.asarray(times, dtype=np.float64),
            positions=np.stack([T[:3, 3] for T in poses]),
            quats=np.stack([matrix_to_quat(T[:3, :3]) for T in poses]),
        )

    def is_parked(self, max_speed: float = PARKED_SPEED, max_spread: float = PARKED_SPREAD) -> bool:
        """Whether the track stays put: a straight-line fit of its ground positions over its whole
        length moves slower than ``max_speed`` (m/s) and its keys stay within ``max_spread`` (m, RMS)
        of their mean. Robust to boxes that jitter from frame to frame (a detector's, an annotator's:
        20 cm of jitter spreads 60 keys over more than a metre, but not their fitted motion). One key:
        parked."""
        if len(self.times) == 1:
            return True
        xy = self.positions[:, :2]
        X = np.stack([np.ones_like(self.times), self.times - self.times.mean()], -1)
        velocity = np.linalg.lstsq(X, xy, rcond=None)[0][1]
        spread = np.sqrt(np.mean(np.sum((xy - xy.mean(0)) ** 2, -1)))
        return bool(np.linalg.norm(velocity) < max_speed and spread < max_spread)

    def pose_at(self, t: float) -> np.ndarray:
        """``T_world_actor`` at time ``t`` (clamped to the first/last keyframe outside the range)."""
        times = self.times
        if len(times) == 1 or t <= times[0]:
            return make_pose(quat_to_matrix(self.quats[0]), self.positions[0])
        if t >= times[-1]:
            return make_pose(quat_to_matrix(self.quats[-1]), self.positions[-1])
        i = int(np.searchsorted(times, t, side="right")) - 1
        s = (t - times[i]) / (times[i + 1] - times[i])
        q = slerp(self.quats[i], self.quats[i + 1], s)
        p = (1 - s) * self.positions[i] + s * self.positions[i + 1]
        return make_pose(quat_to_matrix(q), p)

    def transformed(self, T_new_old: np.ndarray) -> "ActorTrack":
        """The track with every pose premultiplied by a world-frame rigid transform."""
        return self.mapped(lambda poses: T_new_old @ poses)

    def mapped(self, poses_new_old) -> "ActorTrack":
        """The track with its keyframe poses ``[N, 4, 4]`` taken to another frame by a function of
        them (a rigid transform, or a street's road coordinates, `scenes.roadframe`)."""
        return ActorTrack.from_poses(self.times, poses_new_old(np.stack([self.pose_at(t) for t in self.times])))

    def to_dict(self) -> dict:
        return {"times": self.times.tolist(), "positions": self.positions.tolist(), "quats": self.quats.tolist()}

    @staticmethod
    def from_dict(d: dict, source: str = "track") -> "ActorTrack":
        for key in ("times", "positions", "quats"):
            if key not in d:
                raise InputError(source, key, "missing (expected a list)")
        try:
            return ActorTrack(times=np.asarray(d["times"], float), positions=np.asarray(d["positions"], float), quats=np.asarray(d["quats"], float))
        except InputError as e:
            raise InputError(source, e.field, e.problem) from None
        except (TypeError, ValueError) as e:
            raise InputError(source, "times/positions/quats", f"expected numeric lists ({e})") from None


@dataclass(frozen=True)
class Actor:
    """A foreground object: a box with a class, an identity and a pose track."""

    actor_id: str
    """Unique name, e.g. ``car_003``."""
    class_name: str
    """Semantic class, one of `scenes.classes.CLASS_NAMES` (``car``, ``pedestrian``...)."""
    instance_id: int
    """Positive integer written into instance masks (0 is background)."""
    size: tuple[float, float, float]
    """Box size (length x, width y, height z), metres."""
    track: ActorTrack
    """Pose of the box centre over time."""
    asset_id: str = ""
    """Appearance to render it with (neural field / twin mesh); defaults to ``actor_id``."""

    def __post_init__(self):
        object.__setattr__(self, "size", tuple(float(s) for s in self.size))
        if not self.asset_id:
            object.__setattr__(self, "asset_id", self.actor_id)
        if len(self.size) != 3 or not all(np.isfinite(s) and s > 0 for s in self.size):
            raise InputError(f"actor {self.actor_id}", "size", f"expected 3 positive lengths, got {self.size}")
        if self.instance_id <= 0:
            raise InputError(f"actor {self.actor_id}", "instance_id", "must be a positive integer (0 is background)")


@dataclass(frozen=True)
class ActorState:
    """An actor frozen at one instant: everything a renderer needs."""

    actor_id: str
    asset_id: str
    class_name: str
    instance_id: int
    size: tuple[float, float, float]
    T_world_actor: np.ndarray


@dataclass(frozen=True)
class SceneState:
    """The scene at one time: the input of every render call."""

    time: float
    actors: tuple[ActorState, ...] = ()


@dataclass(frozen=True)
class SceneGraph:
    """Background + actors. Immutable; `scenes.edits` returns edited copies."""

    actors: tuple[Actor, ...] = ()
    aabb: tuple[tuple[float, float, float], tuple[float, float, float]] = ((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0))
    """World-space box (min, max) that bounds the background; beyond it is sky / far field."""
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        ids = [a.actor_id for a in self.actors]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise InputError("scene graph", "actors", f"duplicate actor ids {sorted(dup)}")
        inst = [a.instance_id for a in self.actors]
        dup_inst = {i for i in inst if inst.count(i) > 1}
        if dup_inst:
            raise InputError("scene graph", "actors", f"duplicate instance ids {sorted(dup_inst)}")

    def actor(self, actor_id: str) -> Actor:
        for a in self.actors:
            if a.actor_id == actor_id:
                return a
        raise InputError("scene graph", "actor_id", f"unknown actor '{actor_id}'; known: {[a.actor_id for a in self.actors]}")

    def at(self, t: float) -> SceneState:
        """The scene at time ``t``."""
        return SceneState(
            time=float(t),
            actors=tuple(
                ActorState(a.actor_id, a.asset_id, a.class_name, a.instance_id, a.size, a.track.pose_at(t))
                for a in self.actors
            ),
        )

    def with_actors(self, actors) -> "SceneGraph":
        return replace(self, actors=tuple(actors))

    @property
    def asset_ids(self) -> list[str]:
        return sorted({a.asset_id for a in self.actors})

    def next_instance_id(self) -> int:
        return max((a.instance_id for a in self.actors), default=0) + 1

    def to_dict(self) -> dict:
        return {
            "aabb": [list(self.aabb[0]), list(self.aabb[1])],
            "actors": [
                {
                    "actor_id": a.actor_id,
                    "class_name": a.class_name,
                    "instance_id": a.instance_id,
                    "size": list(a.size),
                    "asset_id": a.asset_id,
                    "track": a.track.to_dict(),
                }
                for a in self.actors
            ],
            "meta": self.meta,
        }

    @staticmethod
    def from_dict(d: dict, source: str = "scene graph") -> "SceneGraph":
        if not isinstance(d, dict):
            raise InputError(source, None, "expected a mapping with 'aabb' and 'actors'")
        try:
            aabb = np.asarray(d.get("aabb"), dtype=float)
        except (TypeError, ValueError):
            aabb = np.zeros(0)
        if aabb.shape != (2, 3) or not np.all(np.isfinite(aabb)) or np.any(aabb[1] <= aabb[0]):
            raise InputError(source, "aabb", "expected [[xmin, ymin, zmin], [xmax, ymax, zmax]] with max > min")
        actors = []
        for i, a in enumerate(d.get("actors", [])):
            where = f"actors[{i}]"
            for key in ("actor_id", "class_name", "instance_id", "size", "track"):
                if key not in a:
                    raise InputError(source, f"{where}.{key}", "missing")
            try:
                actors.append(
                    Actor(
                        actor_id=str(a["actor_id"]),
                        class_name=str(a["class_name"]),
                        instance_id=int(a["instance_id"]),
                        size=tuple(a["size"]),
                        track=ActorTrack.from_dict(a["track"], source=f"{source}: {where}.track"),
                        asset_id=str(a.get("asset_id", "")),
                    )
                )
            except InputError as e:
                if e.source and e.source.startswith(source):
                    raise
                raise InputError(source, f"{where}.{e.field}", e.problem) from None
            except (TypeError, ValueError) as e:
                raise InputError(source, where, f"bad actor entry ({e})") from None
        return SceneGraph(actors=tuple(actors), aabb=(tuple(aabb[0]), tuple(aabb[1])), meta=dict(d.get("meta", {})))
