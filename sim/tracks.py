"""Learned corrections of the actors' pose tracks (issue 21, noisy tracks).

Boxes drawn by people or found by detectors are off by decimetres and degrees; an actor field
trained on them has to explain a car that jitters in its own box (a blur, and pixels of the car
that only the background can explain). With `sim.train.TrainConfig.track_refinement` on, training
learns, with the fields, a small correction of every actor's pose at every time of the `RayBank`'s
time table.

**Parametrisation.** Three numbers per actor and time, ``c = (dx, dy, s)``, all in metres: a
translation in the actor's ground plane (its own x forward, y left) and a yaw about its box's
vertical axis, ``dyaw = s / (length / 2)`` (``s``: how far the yaw moves the box's front end). The
correction acts in the actor's own frame, on the right::

    T_world_actor_refined(t) = T_world_actor(t) @ D(c(t)),   D(c) = [Rz(dyaw) | (dx, dy, 0)]

(inside `sim`, ``T_actor_world_refined = D^-1 @ T_actor_world``). Why these three: ground vehicles
stand on the road, so a box's height, roll and pitch are set by the ground and rarely wrong, while
position in the plane and heading are what annotators and detectors get wrong; three numbers per
time that the images observe well keep the problem conditioned (height, roll and pitch trade
against the field's own geometry). On the right, the correction is in box coordinates: a
longitudinal / lateral error and a yaw about the box centre, independent of where the actor is in
the world. Measuring the yaw in metres of nose travel gives the three numbers one unit, so Adam's
steps and the regularisers treat them alike (4 deg on a 4.5 m car = 0.16 m). A parked actor (one
keyframe) gets one correction for all times, a moving one a correction per time.

**Regularisation** (`TrackRefiner.regularisers`): *smoothness* of the refined tracks, the squared
distance of each interior time's refined pose (box centre, and yaw in metres of nose travel) from
the straight line between its neighbours' (a second difference: ``|p0 - 2 p1 + p2|^2 / 4`` at uniform
times; non-uniform times weighted by their spacing), mean over moving actors and times; and a
*magnitude* prior, the mean squared correction. Smoothness is asked of the refined track, not of the
corrections: a track whose boxes jitter from frame to frame (a detector) needs corrections that
jitter the other way, which a smoothness of the corrections would forbid; on a logged track that
moves in a straight line at constant speed the two are the same. Their weights and the corrections'
own learning rate are `sim.train.TrainConfig`'s ``track_*`` settings.

**Observability.** A correction that is the same at every time is nearly a gauge freedom: the field
could as well draw the car shifted in its box. What pins it is the box itself (the actor field
lives in it; the background is empty inside it) and the actor fields' left-right mirror symmetry
(`sim.field.FieldConfig.mirror_y`: a car shifted sideways or yawed in its box is not symmetric). A
constant *longitudinal* offset is held only by the box's ends and the magnitude prior; a young field
settles into the logged box faster than the box moves, so a constant offset is recovered from a
field that already knows the car (tests/sim/test_track_refinement.py), slowly from scratch. What
varies from time to time (detector jitter) is observed directly: one field must explain every
time; the smoothness prior alone also removes much of it. Yaw is the weakest of the three (a few
degrees move a car's ends by centimetres, mostly in depth for cameras passing beside it).

Training with refinement: the LiDAR returns within `TRACK_MARGIN` of a logged box seed that actor's
occupancy, not the background's (`sim.train.init_occupancy_from_lidar`). Parked actors' volumes are
still kept from the background at their *logged* pose (`sim.train.block_static_actor_volumes`).

**Before training** (`TrackSmoothing`, `smooth_tracks`, on by default with refinement): the logged
tracks are smoothed in closed form, a local linear fit over a second, and tracks that do not move
become parked (one pose). Per-frame jitter is independent from frame to frame, so most of it
averages out before any pixel is looked at; the refinement then starts from boxes a few
centimetres off instead of decimetres, where the photometric gradients point the right way.
``graph.meta["track_smoothing"]`` keeps the settings and every logged track it changed; the
refinement's corrections (and its ``raw_track``) are relative to the smoothed tracks.

**Downstream.** After training the corrections are baked into the scene graph saved with the
checkpoint (`TrackRefiner.refined_graph`): a moving actor's `ActorTrack` gets a key at each of the
bank's times, ``raw pose @ D(c)`` (`refined_track`; its logged keys beyond the bank's time range are
kept, corrected by the nearest correction), a parked actor its one pose corrected;
``graph.meta["track_refinement"]`` records that (``refined: true``), the corrections and the raw
tracks (`refinement_record`). Renderers, edits and label writers then use the refined tracks
unchanged; a resumed training run reads its corrections back from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from scenes.errors import InputError
from scenes.graph import PARKED_SPEED, PARKED_SPREAD, ActorTrack, SceneGraph
from scenes.transforms import make_pose, rot_z
from sim.compose import ActorRays

META_KEY = "track_refinement"
"""Key of the refinement record in ``SceneGraph.meta``."""
TRACK_MARGIN = 0.5
"""How far (metres, in the ground plane) a logged box may be from its actor when refinement starts:
LiDAR returns that close to a box seed the actor's occupancy cells, not the background's
(`sim.train.init_occupancy_from_lidar`)."""


def correction_matrix(c: Tensor, half_length: Tensor | float) -> Tensor:
    """``D(c)`` ``[..., 4, 4]`` of corrections ``c = (dx, dy, s)`` ``[..., 3]`` (differentiable);
    ``half_length`` (broadcast against ``c[..., 0]``) turns ``s`` into the yaw ``s / half_length``."""
    yaw = c[..., 2] / half_length
    cos, sin, zero, one = torch.cos(yaw), torch.sin(yaw), torch.zeros_like(yaw), torch.ones_like(yaw)
    rows = [[cos, -sin, zero, c[..., 0]], [sin, cos, zero, c[..., 1]], [zero, zero, one, zero], [zero, zero, zero, one]]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def inverse_correction_matrix(c: Tensor, half_length: Tensor | float) -> Tensor:
    """``D(c)^-1`` ``[..., 4, 4]`` (differentiable): ``[R^T | -R^T p]``."""
    D = correction_matrix(c, half_length)
    Rt = D[..., :3, :3].transpose(-1, -2)
    t = -(Rt @ D[..., :3, 3:4])
    bottom = D[..., 3:, :]
    return torch.cat([torch.cat([Rt, t], -1), bottom], -2)


def correction_pose(dx: float, dy: float, dyaw: float) -> np.ndarray:
    """``D`` as a float64 4x4 (numpy) from the translation (m) and yaw (radians)."""
    return make_pose(rot_z(dyaw), np.array([dx, dy, 0.0]))


def off_line(x: Tensor, times: Tensor) -> Tensor:
    """``[..., T - 2, D]``: each interior value of ``x [..., T, D]`` minus the straight line between its
    neighbours at ``times [T]`` (a second difference: ``(2 x1 - x0 - x2) / 2`` at uniform times)."""
    w = ((times[2:] - times[1:-1]) / (times[2:] - times[:-2]))[:, None]  # weight of the earlier neighbour
    return x[..., 1:-1, :] - (w * x[..., :-2, :] + (1 - w) * x[..., 2:, :])


class TrackRefiner(nn.Module):
    """The learned corrections of every actor of a `RayBank` (``bank.graph.actors``, in order) at
    every time of ``bank.times``: a ``[A, T, 3]`` parameter (see the module docstring)."""

    def __init__(self, bank):
        super().__init__()
        actors = bank.graph.actors
        self.actor_ids = [a.actor_id for a in actors]
        self.times = np.asarray(bank.times, dtype=np.float64)
        self._actors = list(actors)
        self.corrections = nn.Parameter(torch.zeros(len(actors), len(self.times), 3))
        self.register_buffer("static", torch.tensor([len(a.track.times) == 1 for a in actors], dtype=torch.bool))
        self.register_buffer("half_length", torch.tensor([a.size[0] / 2 for a in actors], dtype=torch.float32))
        self.register_buffer("times_t", torch.tensor(self.times, dtype=torch.float32))
        self.register_buffer("raw", bank.poses.clone())  # T_actor_world [T, A, 4, 4] of the logged tracks
        # The logged tracks in the world: actor axes [A, T, 3, 3], and each interior time's offset from
        # the line between its neighbours (position, unwrapped yaw in metres of nose travel) [A, T-2, 4].
        T_world = torch.linalg.inv(bank.poses.double()).transpose(0, 1)
        self.register_buffer("raw_axes", T_world[..., :3, :3].float())
        yaw = torch.tensor(np.unwrap(np.arctan2(T_world[..., 1, 0].numpy(), T_world[..., 0, 0].numpy()), axis=-1))
        state = torch.cat([T_world[..., :3, 3], yaw[..., None] * self.half_length.double()[:, None, None]], -1)
        times = torch.tensor(self.times)
        self.register_buffer("raw_off_line", off_line(state, times).float() if len(self.times) >= 3 else torch.zeros(len(actors), 0, 4))

    def effective(self) -> Tensor:
        """The corrections in use ``[A, T, 3]``: a parked actor's first column at every time."""
        c = self.corrections
        return torch.where(self.static[:, None, None], c[:, :1].expand_as(c), c)

    def actor_rays(self, time_idx: Tensor) -> list[ActorRays]:
        """`sim.data.RayBank.actor_rays` with the refined poses (on the refiner's device, with
        gradients to the corrections): per-ray poses of moving actors, one shared pose of parked ones."""
        dev = self.corrections.device
        distinct, inverse = torch.unique(time_idx, return_inverse=True)
        distinct, inverse = distinct.to(dev), inverse.to(dev)
        c = self.effective()
        out = []
        for i, a in enumerate(self._actors):
            size = torch.tensor(a.size, dtype=torch.float32, device=dev)
            if bool(self.static[i]):
                T = inverse_correction_matrix(c[i, :1], self.half_length[i]) @ self.raw[:1, i]
                out.append(ActorRays(a.asset_id, a.instance_id, size, T, T.detach()))
                continue
            T_distinct = inverse_correction_matrix(c[i, distinct], self.half_length[i]) @ self.raw[distinct, i]
            out.append(ActorRays(a.asset_id, a.instance_id, size, T_distinct[inverse], T_distinct.detach()))
        return out

    def regularisers(self) -> tuple[Tensor, Tensor]:
        """``(smoothness, magnitude)``: the mean over moving actors and interior times of the squared
        `off_line` of the *refined* track (world position, and yaw in metres of nose travel: its
        acceleration, as a second difference), and the mean squared correction over the values in
        use (one per parked actor, every time of a moving one). Smoothness of the refined track,
        not of the corrections: a logged track that jitters from frame to frame needs corrections
        that jitter the other way."""
        c = self.effective()
        moving = ~self.static
        zero = c.sum() * 0.0
        smooth = zero
        if bool(moving.any()) and len(self.times) >= 3:
            shift = (self.raw_axes[moving][..., :2] @ c[moving][..., :2, None])[..., 0]  # [M, T, 3] world offsets
            corr = torch.cat([shift, c[moving][..., 2:]], -1)
            smooth = ((self.raw_off_line[moving] + off_line(corr, self.times_t)) ** 2).sum(-1).mean()
        used = torch.cat([c[moving].reshape(-1, 3), self.corrections[self.static, 0]])
        magnitude = (used ** 2).sum(-1).mean() if len(used) else zero
        return smooth, magnitude

    def penalty(self, smoothness_weight: float, magnitude_weight: float, stats: dict) -> Tensor:
        """The weighted `regularisers` (a loss term); their values go to ``stats``."""
        smooth, magnitude = self.regularisers()
        stats["track_smoothness"], stats["track_magnitude"] = smooth.item(), magnitude.item()
        return smoothness_weight * smooth + magnitude_weight * magnitude

    # ---- the record in the scene graph -----------------------------------------------------
    def corrections_deg(self) -> np.ndarray:
        """The corrections in use as ``(dx m, dy m, dyaw deg)`` ``[A, T, 3]`` (float64)."""
        c = self.effective().detach().double().cpu().numpy().copy()
        c[..., 2] = np.degrees(c[..., 2] / self.half_length.double().cpu().numpy()[:, None])
        return c

    def refinement_record(self, graph: SceneGraph) -> dict:
        """What `refined_graph` stores in ``graph.meta["track_refinement"]`` (JSON): ``refined``,
        the convention, the bank's ``times`` and per actor id: ``static``, ``corrections``
        (``[dx m, dy m, dyaw deg]`` per time, one for a parked actor) and its ``raw_track``."""
        c = self.corrections_deg()
        raw = {a.actor_id: a.track for a in graph.actors}
        return {"refined": True,
                "convention": "T_world_actor_refined(t) = T_world_actor(t) @ [Rz(dyaw) | (dx, dy, 0)] (actor frame); "
                              "corrections [dx m, dy m, dyaw deg] at `times`, linear in between, held beyond",
                "times": self.times.tolist(),
                "actors": {aid: {"static": bool(self.static[i]),
                                 "corrections": c[i, :1].tolist() if bool(self.static[i]) else c[i].tolist(),
                                 "raw_track": raw[aid].to_dict() if aid in raw else None}
                           for i, aid in enumerate(self.actor_ids)}}

    @torch.no_grad()
    def load_record(self, record: dict | None, source: str = "scene graph") -> None:
        """Restore the corrections from a `refinement_record` (resuming a training run)."""
        if not record:
            return
        if len(record.get("times", [])) != len(self.times) or not np.allclose(record["times"], self.times, atol=1e-6):
            raise InputError(source, f"meta.{META_KEY}.times", "the refinement was learned on another time table")
        c = self.corrections.detach().cpu().double().numpy().copy()
        for i, aid in enumerate(self.actor_ids):
            entry = record.get("actors", {}).get(aid)
            if entry is None:
                raise InputError(source, f"meta.{META_KEY}.actors", f"no corrections of actor '{aid}'")
            values = np.asarray(entry["corrections"], dtype=np.float64).reshape(-1, 3)
            values[:, 2] = np.radians(values[:, 2]) * float(self.half_length[i])
            c[i, : len(values)] = values
        self.corrections.copy_(torch.as_tensor(c, dtype=self.corrections.dtype))

    def refined_graph(self, graph: SceneGraph) -> SceneGraph:
        """``graph`` with the refined tracks baked in (see the module docstring) and the record in its
        meta; actors the refiner does not know are left as they are."""
        c = self.corrections_deg()
        index = {aid: i for i, aid in enumerate(self.actor_ids)}
        actors = []
        for a in graph.actors:
            i = index.get(a.actor_id)
            if i is None:
                actors.append(a)
                continue
            track = refined_track(a.track, self.times, c[i], bool(self.static[i]))
            actors.append(type(a)(a.actor_id, a.class_name, a.instance_id, a.size, track, a.asset_id))
        meta = {**graph.meta, META_KEY: self.refinement_record(graph)}
        return type(graph)(actors=tuple(actors), aabb=graph.aabb, meta=meta)


def refined_track(track: ActorTrack, times: np.ndarray, corrections_deg: np.ndarray, static: bool) -> ActorTrack:
    """``track`` corrected by ``corrections_deg`` (``[dx m, dy m, dyaw deg]`` at ``times``; one row for
    a parked actor): a key ``pose(t) @ D(c(t))`` at each of ``times`` and at the track's own keys
    outside their range (corrected by the first / last correction). Between ``times`` the refined
    poses interpolate: a logged key there (a frame held out of training, with its own error) is
    not kept."""
    c = np.asarray(corrections_deg, dtype=np.float64).reshape(-1, 3)
    if static:
        D = correction_pose(c[0, 0], c[0, 1], np.radians(c[0, 2]))
        return ActorTrack.from_poses(track.times, [track.pose_at(float(t)) @ D for t in track.times])
    outside = track.times[(track.times < times[0] - 1e-6) | (track.times > times[-1] + 1e-6)]
    keys = np.union1d(outside, times)
    at = np.stack([np.interp(keys, times, c[:, k]) for k in range(3)], -1)
    poses = [track.pose_at(float(t)) @ correction_pose(dx, dy, np.radians(dyaw)) for t, (dx, dy, dyaw) in zip(keys, at)]
    return ActorTrack.from_poses(keys, poses)


def refinement_of(graph: SceneGraph) -> dict | None:
    """The refinement record of a (loaded) scene graph, or None when its tracks are as logged."""
    record = graph.meta.get(META_KEY)
    return record if isinstance(record, dict) and record.get("refined") else None


# ---- closed-form smoothing of logged tracks (before the photometric refinement) -----------------
SMOOTHING_KEY = "track_smoothing"
"""Key of the smoothing record in ``SceneGraph.meta``."""


@dataclass(frozen=True)
class TrackSmoothing:
    """How `smooth_tracks` treats logged tracks before training refines them.

    Boxes drawn per frame (a detector, an annotator working frame by frame) jitter independently
    from frame to frame; a vehicle does not. Averaging neighbouring frames removes most of that
    jitter before a single pixel is looked at, and leaves the photometric refinement
    (`TrackRefiner`) only what averaging cannot see."""

    window_s: float = 1.0
    """Half-width (seconds) of the tricube kernel of the local linear fit of a moving track (0: off).
    A local *linear* fit has no lag on a track moving at constant speed; under a constant
    acceleration ``a`` it places the box ``0.072 * a * window_s^2`` ahead along the
    acceleration (the kernel's second moment, ``0.144 window_s^2``, times ``a / 2``): 22 cm for a
    3 m/s^2 brake at 1 s, which the photometric refinement then has to take back. On the
    built-in log with 20 cm / 3 deg per-frame noise, 1 s takes moving actors from 23.0 cm / 2.35 deg
    to 8.0 cm / 0.61 deg (median), parked ones to 4.5 cm / 0.4 deg, before training."""
    parked_speed: float = PARKED_SPEED
    """A track that `ActorTrack.is_parked` with these (its straight-line fit moves slower than this,
    m/s ...) ..."""
    parked_spread: float = PARKED_SPREAD
    """... (... and its keys stay within this RMS distance, m, of their mean) becomes one pose (the
    mean position, the circular mean heading), so training treats it as parked (the background is
    kept out of its box)."""


def _yaw_unwrapped(poses: np.ndarray) -> np.ndarray:
    return np.unwrap(np.arctan2(poses[:, 1, 0], poses[:, 0, 0]))


def _local_linear(times: np.ndarray, values: np.ndarray, half_width: float) -> np.ndarray:
    """``values [K, D]`` at ``times [K]`` smoothed by a local linear fit with a tricube kernel of
    ``half_width`` seconds about every time (LOESS, degree 1); each fit sees only the keys within
    its kernel, so a long track costs K small fits, not a K x K table."""
    lo, hi = np.searchsorted(times, times - half_width, "right"), np.searchsorted(times, times + half_width, "left")
    out = np.empty_like(values, dtype=np.float64)
    for k, (a, b) in enumerate(zip(lo, hi)):
        tau = times[a:b] - times[k]
        w = (1.0 - np.abs(tau / half_width) ** 3) ** 3
        X = np.stack([np.ones_like(tau), tau], -1)
        A = (X * w[:, None]).T @ X + 1e-9 * np.eye(2)
        out[k] = np.linalg.solve(A, (X * w[:, None]).T @ values[a:b])[0]
    return out


def smooth_track(track: ActorTrack, cfg: TrackSmoothing) -> tuple[ActorTrack, bool]:
    """``(smoothed track, parked)``: ``track`` smoothed in position and heading (see `TrackSmoothing`;
    roll and pitch of every key are kept), or one pose when it is parked. Tracks of fewer than 3
    keys are returned as they are."""
    times = track.times
    if len(times) < 3 or cfg.window_s <= 0:
        return track, len(times) == 1
    poses = np.stack([track.pose_at(float(t)) for t in times])
    pos, yaw = poses[:, :3, 3], _yaw_unwrapped(poses)
    tilt = np.einsum("kji,kjl->kil", np.stack([rot_z(y) for y in yaw]), poses[:, :3, :3])  # Rz(yaw)^T R
    if track.is_parked(cfg.parked_speed, cfg.parked_spread):
        heading = float(np.angle(np.mean(np.exp(1j * yaw))))
        mid = len(times) // 2
        return ActorTrack.static(make_pose(rot_z(heading) @ tilt[mid], pos.mean(0))), True
    smooth = _local_linear(times, np.concatenate([pos, yaw[:, None]], -1), cfg.window_s)
    out = [make_pose(rot_z(s[3]) @ tilt[k], s[:3]) for k, s in enumerate(smooth)]
    return ActorTrack.from_poses(times, out), False


def smooth_tracks(graph: SceneGraph, cfg: TrackSmoothing) -> SceneGraph:
    """``graph`` with every actor's track smoothed (`smooth_track`); ``graph.meta["track_smoothing"]``
    records the settings, which actors were found parked, and every changed actor's logged track."""
    if cfg.window_s <= 0 or not graph.actors:
        return graph
    actors, logged, parked = [], {}, []
    for a in graph.actors:
        track, is_parked = smooth_track(a.track, cfg)
        if track is not a.track:
            logged[a.actor_id] = a.track.to_dict()
            if is_parked:
                parked.append(a.actor_id)
        actors.append(replace(a, track=track))
    record = {**asdict(cfg), "parked": parked, "logged_tracks": logged}
    return replace(graph.with_actors(actors), meta={**graph.meta, SMOOTHING_KEY: record})
