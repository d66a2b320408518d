"""Scene edits: move, rotate, remove, insert (copy) actors, from Python or a small YAML file.

Edits apply in order to a `SceneGraph` and return a new graph; nothing is modified in place.
An inserted copy reuses the source actor's appearance (``asset_id``: its neural field and its twin
mesh) under a new actor id and instance id.

File format (YAML or JSON)::

    edits:
      - remove: car_002                 # the actor disappears at all times
      - move: car_001                   # rigid change of the whole track
        translate: [0.0, 2.0, 0.0]      # world frame, metres (optional)
        yaw_deg: 15                     # turn about the box's own vertical axis (optional)
      - insert: car_001                 # a copy of car_001 ...
        new_id: car_001_copy            # ... named so (default: <source>_copy<N>)
        translate: [8.0, 0.0, 0.0]      # ... on the source's track shifted, or:
        # track: {times: [0, 2], positions: [[x, y, z], [x, y, z]], yaw_deg: [0, 0]}

Conventions: world z up, metres, yaw about +z counter-clockwise; actor frame x forward, y left, z up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import yaml

from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.transforms import make_pose, quat_to_matrix, rot_z, yaw_of, yaw_to_quat


@dataclass(frozen=True)
class RemoveActor:
    actor_id: str


@dataclass(frozen=True)
class MoveActor:
    actor_id: str
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_deg: float = 0.0


@dataclass(frozen=True)
class InsertActor:
    source_id: str
    new_id: str | None = None
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_deg: float = 0.0
    track: ActorTrack | None = None
    """Explicit track of the copy; when given, ``translate``/``yaw_deg`` apply on top of it."""


Edit = RemoveActor | MoveActor | InsertActor


def _moved_track(track: ActorTrack, translate, yaw_deg: float) -> ActorTrack:
    """Rotate each pose about the box's own z axis, then shift in world."""
    R_local = make_pose(rot_z(np.radians(yaw_deg)), np.zeros(3))
    poses = [track.pose_at(t) @ R_local for t in track.times]
    for T in poses:
        T[:3, 3] += np.asarray(translate, dtype=np.float64)
    return ActorTrack.from_poses(track.times, poses)


def apply_edit(graph: SceneGraph, edit: Edit, source: str = "edit") -> SceneGraph:
    if isinstance(edit, RemoveActor):
        graph.actor(edit.actor_id)  # raises for an unknown id
        return graph.with_actors(a for a in graph.actors if a.actor_id != edit.actor_id)
    if isinstance(edit, MoveActor):
        actor = graph.actor(edit.actor_id)
        moved = replace(actor, track=_moved_track(actor.track, edit.translate, edit.yaw_deg))
        return graph.with_actors(moved if a.actor_id == actor.actor_id else a for a in graph.actors)
    if isinstance(edit, InsertActor):
        src = graph.actor(edit.source_id)
        existing = {a.actor_id for a in graph.actors}
        new_id = edit.new_id or next(f"{src.actor_id}_copy{i}" for i in range(1, 10_000) if f"{src.actor_id}_copy{i}" not in existing)
        if new_id in existing:
            raise InputError(source, "new_id", f"actor id '{new_id}' already exists")
        base = edit.track if edit.track is not None else src.track
        copy = Actor(actor_id=new_id, class_name=src.class_name, instance_id=graph.next_instance_id(), size=src.size,
                     track=_moved_track(base, edit.translate, edit.yaw_deg), asset_id=src.asset_id)
        return graph.with_actors(list(graph.actors) + [copy])
    raise TypeError(f"unknown edit {edit!r}")


def apply_edits(graph: SceneGraph, edits: list[Edit], source: str = "edits") -> SceneGraph:
    for i, e in enumerate(edits):
        try:
            graph = apply_edit(graph, e, source)
        except InputError as err:
            raise InputError(source, f"edits[{i}]", err.problem) from None
    return graph


# ---- parsing --------------------------------------------------------------------------------
def _vec3(v, source, field_name) -> tuple[float, float, float]:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        a = np.zeros(0)
    if a.shape != (3,) or not np.all(np.isfinite(a)):
        raise InputError(source, field_name, f"expected 3 finite numbers [x, y, z], got {v!r}")
    return tuple(a.tolist())


def _number(v, source, field_name) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
        raise InputError(source, field_name, f"expected a finite number, got {v!r}")
    return float(v)


def _track(d, source, field_name) -> ActorTrack:
    if not isinstance(d, dict) or not {"times", "positions"} <= set(d):
        raise InputError(source, field_name, "expected {times: [...], positions: [[x,y,z], ...], yaw_deg: [...]}")
    yaws = d.get("yaw_deg", [0.0] * len(d["times"]))
    try:
        quats = [yaw_to_quat(np.radians(float(y))) for y in yaws]
        return ActorTrack(times=np.asarray(d["times"], float), positions=np.asarray(d["positions"], float), quats=np.asarray(quats))
    except InputError as e:
        raise InputError(source, f"{field_name}.{e.field}", e.problem) from None
    except (TypeError, ValueError) as e:
        raise InputError(source, field_name, f"expected numeric lists ({e})") from None


_KNOWN = {"remove": set(), "move": {"translate", "yaw_deg"}, "insert": {"new_id", "translate", "yaw_deg", "track"}}


def parse_edits(data, source: str = "edits") -> list[Edit]:
    """Edits from parsed YAML/JSON (``{"edits": [...]}`` or a bare list)."""
    items = data.get("edits") if isinstance(data, dict) else data
    if data is None or items is None:
        items = []
    if not isinstance(items, list):
        raise InputError(source, "edits", "expected a list of edits")
    out: list[Edit] = []
    for i, item in enumerate(items):
        where = f"edits[{i}]"
        kinds = [k for k in _KNOWN if isinstance(item, dict) and k in item]
        if len(kinds) != 1:
            raise InputError(source, where, "expected exactly one of 'remove', 'move', 'insert' naming an actor id")
        kind = kinds[0]
        unknown = set(item) - {kind} - _KNOWN[kind]
        if unknown:
            raise InputError(source, f"{where}.{sorted(unknown)[0]}", f"unknown key for '{kind}' (allowed: {sorted(_KNOWN[kind])})")
        actor_id = item[kind]
        if not isinstance(actor_id, str) or not actor_id:
            raise InputError(source, f"{where}.{kind}", f"expected an actor id string, got {actor_id!r}")
        translate = _vec3(item.get("translate", [0, 0, 0]), source, f"{where}.translate")
        yaw = _number(item.get("yaw_deg", 0.0), source, f"{where}.yaw_deg")
        if kind == "remove":
            out.append(RemoveActor(actor_id))
        elif kind == "move":
            out.append(MoveActor(actor_id, translate, yaw))
        else:
            track = _track(item["track"], source, f"{where}.track") if "track" in item else None
            new_id = item.get("new_id")
            if new_id is not None and not isinstance(new_id, str):
                raise InputError(source, f"{where}.new_id", "expected a string")
            out.append(InsertActor(actor_id, new_id, translate, yaw, track))
    return out


def load_edits(path: str | Path) -> list[Edit]:
    """Read an edits file (YAML or JSON)."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, None, "no such edits file")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(path, None, f"cannot parse ({e})") from None
    return parse_edits(data, str(path))


def edits_to_dict(edits: list[Edit]) -> dict:
    """The file form of ``edits`` (inverse of `parse_edits`)."""
    items = []
    for e in edits:
        if isinstance(e, RemoveActor):
            items.append({"remove": e.actor_id})
        elif isinstance(e, MoveActor):
            items.append({"move": e.actor_id, "translate": [float(v) for v in e.translate], "yaw_deg": float(e.yaw_deg)})
        else:
            d = {"insert": e.source_id, "translate": [float(v) for v in e.translate], "yaw_deg": float(e.yaw_deg)}
            if e.new_id:
                d["new_id"] = e.new_id
            if e.track is not None:
                d["track"] = {"times": e.track.times.tolist(), "positions": e.track.positions.tolist(),
                              "yaw_deg": [float(np.degrees(yaw_of(quat_to_matrix(q)))) for q in e.track.quats]}
            items.append(d)
    return {"edits": items}
