"""The road layout scenarios run on: a two-lane street with lanes, drivable and walkable areas and
ground height — the built-in street's, or one fitted to a recorded drive (which may bend).

Conventions: metres, z up. Everything here is in *road coordinates*: x along the street's centre
line, y to its left, z up, origin on the ground on the centre line at the street's start. For the
built-in street (see `scenes.world`) the road frame is the world frame: the street runs along +x
from x = 0 to ``street_length`` (geometry goes 5 m beyond both ends), centred on y = 0, road surface
z = 0. For a recorded drive (`RoadMap.from_drive`) a `scenes.roadframe.RoadFrame` maps road
coordinates to the drive's world frame: a rigid ``T_world_road`` on a straight drive, the Frenet
frame of a centre line on a bending one. Callers convert poses at the boundary
(`tasks.scenarios.traffic` simulates in road coordinates and hands back world poses).

Cross-section from the centre line outwards on each side: a driving lane, a parking strip, a raised
sidewalk, facades. Traffic keeps right: the right lane (y < 0) drives towards +x, the left lane
towards -x.

Lane names: ``right``, ``left`` (driving lanes), ``parking_right``, ``parking_left``,
``sidewalk_right``, ``sidewalk_left``. Each has a centre line ``y`` and a direction of travel
(+1 = towards +x, -1 = towards -x).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scenes.errors import InputError
from scenes.roadframe import RoadFrame

LANES = ("right", "left", "parking_right", "parking_left", "sidewalk_right", "sidewalk_left")

_MARGIN_X = 5.0  # the street's geometry extends this far beyond both ends

# ---- what `RoadMap.from_drive` assumes where the drive does not say
DEFAULT_LANE_WIDTH = 3.5
"""Lane width of a drive without oncoming traffic, metres."""
DEFAULT_PARKING_WIDTH = 2.5
"""Parking strip width of a drive without parked vehicles, metres."""
DEFAULT_SIDEWALK_WIDTH = 3.0
DEFAULT_SIDEWALK_HEIGHT = 0.15
LANE_WIDTH_RANGE = (2.5, 5.0)
"""Lateral offsets of oncoming vehicles (from the ego's lane centre) that count as the next lane;
others drive in lanes the layout does not hold (a multi-lane road's far lanes)."""
PARKED_MAX_BEYOND = 4.0
"""A parked vehicle counts for the parking strips when its centre is at most this far (metres)
beyond the driving lanes' outer edge; farther ones stand off the street."""
ONCOMING_MIN_TRAVEL = 2.0
"""A vehicle counts as oncoming when it travels at least this far (metres) ..."""
ONCOMING_MAX_ANGLE_DEG = 45.0
"""... within this angle of the direction opposite to the ego's."""
TRACK_REACH = 20.0
"""Keyframes of other tracks count when they lie within this far (metres, along the street) of the
ego's stretch of road, on a straight street; on a bending one, only those beside the stretch count
(beyond its ends the street goes on straight, and the road did not)."""
MAX_LEVEL_SPREAD = 1.0
"""Largest rise (metres) of the ego's path the level road frame holds."""
STRAIGHT_TOLERANCE = 0.25
"""Largest lateral stray (metres) of the ego's path from a straight line for the street to be laid
straight (a rigid road frame); a path that strays more gets a street that bends along it."""
PATH_SPACING = 0.5
"""Vertex spacing of a bending street's centre line, metres (its chords then stray under a
millimetre from a 30-m arc)."""
PATH_SMOOTHING = 2.0
"""Width (Gaussian sigma, metres of path) of the local quadratic fit that smooths a bending drive's
ego path before the street is laid along it: exact on an arc, it removes centimetre jitter of the
logged poses, which would otherwise bend the street at every vertex."""
MIN_TURN_MARGIN = 1.0
"""A bending street's tightest radius must exceed its half width with the sidewalks by this much
(metres); tighter, the road coordinates of its inside edge would fold over."""
MIN_DRIVE_LENGTH = 1.0
"""The ego must travel at least this far (metres) to give the street a direction."""


@dataclass(frozen=True)
class Lane:
    name: str
    y: float
    """Centre line, road y (metres)."""
    direction: int
    """+1: traffic goes towards +x; -1: towards -x."""
    width: float

    @property
    def yaw(self) -> float:
        """Heading of traffic in this lane, radians about +z (road frame)."""
        return 0.0 if self.direction > 0 else float(np.pi)


@dataclass(frozen=True)
class RoadMap:
    """A two-lane street: the built-in `scenes.world.WorldConfig`'s, or a recorded drive's."""

    street_length: float
    lane_width: float
    parking_width: float
    sidewalk_width: float
    sidewalk_height: float
    frame: RoadFrame | None = field(default=None, compare=False, repr=False)
    """Where a street fitted to a recorded drive lies in its world; None: the road frame is the
    world frame (the built-in street)."""
    ego_height: float = 0.0
    """Height of the ego frame's origin above the ground: 0 by the capture-log convention; a drive
    whose ego frame is a sensor's (KITTI's IMU) sits higher, and a scenario's ego keeps that height."""
    source: str | None = None
    """The capture log the layout was fitted to (None: the built-in street)."""

    @staticmethod
    def from_world_config(cfg) -> "RoadMap":
        return RoadMap(cfg.street_length, cfg.lane_width, cfg.parking_width, cfg.sidewalk_width, cfg.sidewalk_height)

    @staticmethod
    def from_drive(T_world_ego, actors=(), source: str = "drive") -> "RoadMap":
        """The street a recorded drive went down (`fit_drive`)."""
        return fit_drive(T_world_ego, actors, source)

    # ---- placement in the world ---------------------------------------------------------------
    @property
    def placed(self) -> bool:
        """The road frame is not the world frame (a recorded drive's street)."""
        return self.frame is not None

    @property
    def bends(self) -> bool:
        """The street is not straight: road coordinates are a Frenet frame, not a rigid placement."""
        return self.frame is not None and not self.frame.is_straight

    @property
    def T_world_road(self) -> np.ndarray:
        """The road frame's pose where the street starts (for a straight street, the whole placement)."""
        return np.eye(4) if self.frame is None else self.frame.T_world_road(0.0)

    @property
    def ground_z(self) -> float:
        """World height of the road surface."""
        return 0.0 if self.frame is None else self.frame.ground_z

    def xy_to_road(self, xy: np.ndarray) -> np.ndarray:
        """World ground-plane points ``[..., 2]`` in road coordinates (the road frame is level)."""
        xy = np.asarray(xy, dtype=np.float64)
        return xy if self.frame is None else self.frame.to_road(xy)

    def poses_to_road(self, T_world: np.ndarray) -> np.ndarray:
        """World poses ``[N, 4, 4]`` in road coordinates (yaw from the street's direction there)."""
        return np.asarray(T_world, dtype=np.float64) if self.frame is None else self.frame.poses_to_road(T_world)

    def poses_to_world(self, T_road: np.ndarray) -> np.ndarray:
        """Road-coordinate poses ``[N, 4, 4]`` in the world (inverse of `poses_to_road`)."""
        return np.asarray(T_road, dtype=np.float64) if self.frame is None else self.frame.poses_to_world(T_road)

    def to_dict(self) -> dict:
        """The layout as plain data (what a dataset's manifest records); a bending street's centre
        line too."""
        out = {"street_length": self.street_length, "lane_width": self.lane_width, "parking_width": self.parking_width,
               "sidewalk_width": self.sidewalk_width, "sidewalk_height": self.sidewalk_height,
               "T_world_road": self.T_world_road.tolist(), "ego_height": self.ego_height, "source": self.source}
        if self.bends:
            out["centre_line"] = self.frame.to_dict()["centre_line"]
        return out

    # ---- the layout (road coordinates) ---------------------------------------------------------
    @property
    def road_half_width(self) -> float:
        """|y| of the curb: lanes and parking strips lie inside."""
        return self.lane_width + self.parking_width

    @property
    def x_range(self) -> tuple[float, float]:
        """Extent of the paved street along x (metres)."""
        return -_MARGIN_X, self.street_length + _MARGIN_X

    def lane(self, name: str) -> Lane:
        lw, pw, sw = self.lane_width, self.parking_width, self.sidewalk_width
        centres = {"right": (-lw / 2, 1, lw), "left": (lw / 2, -1, lw),
                   "parking_right": (-(lw + pw / 2), 1, pw), "parking_left": (lw + pw / 2, -1, pw),
                   "sidewalk_right": (-(self.road_half_width + sw / 2), 1, sw),
                   "sidewalk_left": (self.road_half_width + sw / 2, -1, sw)}
        if name not in centres:
            raise KeyError(name)
        y, direction, width = centres[name]
        return Lane(name, y, direction, width)

    def ground_height(self, xy: np.ndarray) -> np.ndarray:
        """Height of the ground under points ``[..., 2]``: the road (0) or the raised sidewalk."""
        y = np.abs(np.asarray(xy, dtype=np.float64)[..., 1])
        return np.where(y >= self.road_half_width, self.sidewalk_height, 0.0)

    def on_road(self, xy: np.ndarray) -> np.ndarray:
        """Points ``[..., 2]`` on the paved street (lanes or parking strips)."""
        xy = np.asarray(xy, dtype=np.float64)
        x0, x1 = self.x_range
        return (np.abs(xy[..., 1]) <= self.road_half_width + 1e-6) & (xy[..., 0] >= x0) & (xy[..., 0] <= x1)

    def on_sidewalk(self, xy: np.ndarray) -> np.ndarray:
        """Points ``[..., 2]`` on a sidewalk (walkable area)."""
        xy = np.asarray(xy, dtype=np.float64)
        y = np.abs(xy[..., 1])
        x0, x1 = self.x_range
        return ((y >= self.road_half_width - 1e-6) & (y <= self.road_half_width + self.sidewalk_width + 1e-6)
                & (xy[..., 0] >= x0) & (xy[..., 0] <= x1))


# ------------------------------------------------------------------------------- a recorded drive
def fit_drive(T_world_ego, actors=(), source: str = "drive") -> RoadMap:
    """The right-hand-traffic street a recorded drive went down, from the ego poses ``[N, 4, 4]``
    (`scenes.capture` frames' ``T_world_ego``) and the drive's actors (`scenes.graph.Actor`: class,
    size, track, in the same world frame).

    - Path: the ego's lane is the ``right`` lane, its centre the ego's ground-plane path: the
      principal axis of the path, pointing the way the ego drove, where the path strays at most
      `STRAIGHT_TOLERANCE` from it (a straight street, a rigid road frame); otherwise the path itself,
      smoothed (`PATH_SMOOTHING`) and resampled (`PATH_SPACING`): a bending street whose road
      coordinates are the Frenet frame of its centre line (`scenes.roadframe`).
    - Lane width: the median lateral offset of oncoming vehicles (`ONCOMING_MIN_TRAVEL`,
      `ONCOMING_MAX_ANGLE_DEG`) from the ego's path, where it lies in `LANE_WIDTH_RANGE`;
      `DEFAULT_LANE_WIDTH` without any. The centre line lies half a lane left of the path.
    - Parking strips: parked vehicles (`scenes.graph.ActorTrack.is_parked`) beyond the driving lanes (at most
      `PARKED_MAX_BEYOND`) sit on the strip's centre line (median over them), and the strip holds
      the outermost one's box; `DEFAULT_PARKING_WIDTH` without any. Sidewalks: the defaults.
    - Ground: the median bottom of the vehicles' boxes on the street; the ego path's median height
      without any (the ego frame's origin is on the ground by convention). ``ego_height`` keeps the
      difference (an ego frame at the IMU, as KITTI's).
    - Extent: the centre line from where the ego's path starts (road x = 0) to where it ends.

    A lane change in the drive is taken for a bend (the street swerves by a lane there): import a
    stretch without one. Refused (`InputError` naming ``source``): an ego that hardly moves, a
    bend tighter than the street's half width with its sidewalks (`MIN_TURN_MARGIN`), a path that
    rises more than `MAX_LEVEL_SPREAD`, oncoming traffic on the ego's right (left-hand traffic)."""
    T = np.asarray(T_world_ego, dtype=np.float64).reshape(-1, 4, 4)
    z = T[:, 2, 3]
    rise = float(np.ptp(z))
    if rise > MAX_LEVEL_SPREAD:
        raise InputError(source, "frames.T_world_ego", f"the ego's path rises {rise:.2f} m: the road layout is level "
                                                        f"(at most {MAX_LEVEL_SPREAD:g} m); use a flatter stretch of the drive")
    path = _ego_lane(T[:, :2, 3], source)
    vehicles = [a for a in actors if a.class_name != "pedestrian"]
    lw = _lane_width(vehicles, path, source)
    pw = _parking_width(vehicles, path, lw)
    ego_z = float(np.median(z))
    ground = _ground(vehicles, path, lw, pw)
    ground = ego_z if ground is None else ground
    left = path.tangents[1:-1] @ np.array([[0.0, 1.0], [-1.0, 0.0]])  # unit normals to the left
    frame = RoadFrame.along(path.points[1:-1] + lw / 2 * left, ground)
    half = lw + pw + DEFAULT_SIDEWALK_WIDTH
    radius = frame.min_radius()
    if radius < half + MIN_TURN_MARGIN:
        raise InputError(source, "frames.T_world_ego", f"the drive turns with a radius of {radius:.1f} m, tighter than the street's "
                                                        f"half width with its sidewalks ({half:.1f} m) and {MIN_TURN_MARGIN:g} m more: "
                                                        "the road coordinates would fold over; use a stretch of the drive without "
                                                        "the turn")
    return RoadMap(frame.length, lw, pw, DEFAULT_SIDEWALK_WIDTH, DEFAULT_SIDEWALK_HEIGHT, frame, ego_z - ground, str(source))


def _ego_lane(xy: np.ndarray, source: str) -> RoadFrame:
    """The centre line of the ego's lane from its ground path ``[N, 2]``: the path's principal axis
    (pointing the way the ego drove) where the path strays at most `STRAIGHT_TOLERANCE` from it,
    else the smoothed path itself."""
    centre = xy.mean(axis=0)
    axis = np.linalg.svd(xy - centre, full_matrices=False)[2][0] if len(xy) > 1 else np.array([1.0, 0.0])
    if (xy[-1] - xy[0]) @ axis < 0:
        axis = -axis
    along = (xy - centre) @ axis
    length = float(np.ptp(along))
    if length < MIN_DRIVE_LENGTH:
        raise InputError(source, "frames.T_world_ego", f"the ego moves {length:.2f} m along its path: no direction to lay a "
                                                        f"street along (scenarios need a drive of at least {MIN_DRIVE_LENGTH:g} m)")
    stray = np.abs((xy - centre) @ np.array([-axis[1], axis[0]])).max()
    if stray <= STRAIGHT_TOLERANCE:
        return RoadFrame.straight(centre + along.min() * axis, axis, length, 0.0)
    return RoadFrame.along(_smoothed_path(xy), 0.0)


def _smoothed_path(xy: np.ndarray) -> np.ndarray:
    """The ground path ``[N, 2]`` resampled every `PATH_SPACING` metres of its length, each point
    the local quadratic fit (Gaussian weights, sigma `PATH_SMOOTHING`) of the samples around it."""
    moved = np.r_[True, np.linalg.norm(np.diff(xy, axis=0), axis=1) > 1e-3]  # a standing ego repeats its pose
    p = xy[moved]
    s = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))]
    grid = np.linspace(0.0, s[-1], max(int(np.ceil(s[-1] / PATH_SPACING)) + 1, 2))
    out = []
    for g in np.array_split(grid, max(1, len(grid) // 256)):  # [G, N] blocks: a long log stays small
        ds = s[None, :] - g[:, None]
        w = np.exp(-0.5 * (ds / PATH_SMOOTHING) ** 2)
        basis = np.stack([np.ones_like(ds), ds, ds * ds], axis=-1)  # [G, N, 3]
        normal = np.einsum("gn,gni,gnj->gij", w, basis, basis) + 1e-9 * np.eye(3)
        rhs = np.einsum("gn,gni,nk->gik", w, basis, p)
        out.append(np.linalg.solve(normal, rhs)[:, 0, :])  # the fit's value at each grid point
    return np.concatenate(out)


def _near(track_uv: np.ndarray, path: RoadFrame) -> np.ndarray:
    reach = TRACK_REACH if path.is_straight else 0.0
    return (track_uv[:, 0] >= -reach) & (track_uv[:, 0] <= path.length + reach)


def _lane_width(vehicles, path: RoadFrame, source: str) -> float:
    """Median offset from the ego's ``path`` of the oncoming vehicles in the next lane (left: > 0,
    right: < 0 is left-hand traffic)."""
    lo, hi = LANE_WIDTH_RANGE
    offsets = []
    for a in vehicles:
        uv = path.to_road(a.track.positions[:, :2])
        travel = uv[-1] - uv[0]
        dist = float(np.linalg.norm(travel))
        if dist < ONCOMING_MIN_TRAVEL or travel[0] > -dist * np.cos(np.radians(ONCOMING_MAX_ANGLE_DEG)):
            continue
        near = _near(uv, path)
        if near.any():
            offsets.append(float(np.median(uv[near, 1])))
    left = [v for v in offsets if lo <= v <= hi]
    right = [-v for v in offsets if lo <= -v <= hi]
    if len(right) > len(left):
        raise InputError(source, "scene.actors", f"{len(right)} oncoming vehicle(s) pass on the ego's right (left-hand traffic): "
                                                  "the road layout holds right-hand traffic only")
    return float(np.median(left)) if left else DEFAULT_LANE_WIDTH


def _parking_width(vehicles, path: RoadFrame, lw: float) -> float:
    centres, needs = [], []
    for a in vehicles:
        if not a.track.is_parked():
            continue
        uv = path.to_road(a.track.positions[:, :2])
        if not _near(uv, path).any():
            continue
        y = abs(float(np.median(uv[:, 1])) - lw / 2)  # |road y| of its centre
        if not lw < y <= lw + PARKED_MAX_BEYOND:
            continue
        R = path.poses_to_road(a.track.pose_at(a.track.times[0]))[0, :2, :2]  # the box's axes in road coordinates
        half = abs(R[1, 0]) * a.size[0] / 2 + abs(R[1, 1]) * a.size[1] / 2  # box half-extent across the street
        centres.append(2 * (y - lw))
        needs.append(y + half - lw)
    if not centres:
        return DEFAULT_PARKING_WIDTH
    return float(max(np.median(centres), max(needs)))


def _ground(vehicles, path: RoadFrame, lw: float, pw: float) -> float | None:
    """Median bottom height of the vehicles' boxes on the street (None without any)."""
    bottoms = []
    for a in vehicles:
        uv = path.to_road(a.track.positions[:, :2])
        on = _near(uv, path) & (np.abs(uv[:, 1] - lw / 2) <= lw + pw)
        if on.any():
            bottoms.append(float(np.median(a.track.positions[on, 2])) - a.size[2] / 2)
    return float(np.median(bottoms)) if bottoms else None
