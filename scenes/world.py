"""The built-in procedural street world: background meshes, actor assets + tracks, and the ego route.

Conventions (ARCHITECTURE.md):
- World: right-handed, z up, metres. The street runs along +x from x=0 to x=street_length, centred
  on y=0; the road surface is z=0, sidewalks are raised by ``sidewalk_height``.
- Cross-section (|y| from the centre): two driving lanes (|y| < lane_width, right lane y<0 drives +x),
  a parking strip, a sidewalk, then building facades. Background geometry extends 5 m beyond both
  street ends and lies inside ``World.graph.aabb``.
- Actor frame: origin at the centre of the actor's box, x forward, y left, z up. An asset's meshes
  (``World.actor_assets[asset_id]``) are in that box frame and lie inside the box; the mesh bottom is
  the box bottom, which sits on the ground.
- Ego frame: x forward, y left, z up, origin on the ground under the centre of the ego vehicle;
  ``World.T_world_ego(t)`` drives it down the right lane.
- Deterministic: the same `WorldConfig` (seed included) gives identical meshes and tracks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import trimesh

from scenes.classes import CLASS_NAMES
from scenes.errors import InputError
from scenes.graph import Actor, ActorTrack, SceneGraph
from scenes.materials import Material
from scenes.transforms import make_pose, rot_z

CAR_COLORS = ((0.62, 0.08, 0.08), (0.1, 0.2, 0.55), (0.85, 0.85, 0.85), (0.55, 0.57, 0.6), (0.12, 0.12, 0.14),
              (0.85, 0.7, 0.1), (0.15, 0.4, 0.2), (0.05, 0.1, 0.3))
WALL_COLORS = ((0.72, 0.42, 0.32), (0.85, 0.78, 0.62), (0.6, 0.62, 0.6), (0.78, 0.6, 0.45), (0.55, 0.35, 0.3),
               (0.8, 0.8, 0.75))
DOOR_COLORS = ((0.35, 0.22, 0.12), (0.15, 0.25, 0.2), (0.2, 0.2, 0.25))
CAR_SHAPES = ("sedan", "hatchback", "van")


@dataclass
class WorldConfig:
    """Parameters of the procedural street. Every field has a default; `tiny()` is the test preset."""

    seed: int = 0
    """Random seed: same seed, same world."""
    street_length: float = 40.0
    """Length of the street along +x, metres (geometry extends 5 m beyond both ends)."""
    lane_width: float = 3.5
    """Width of each of the two driving lanes, metres."""
    parking_width: float = 2.4
    """Width of the parking strip between the lanes and each sidewalk, metres."""
    sidewalk_width: float = 3.0
    """Width of each sidewalk, metres."""
    sidewalk_height: float = 0.15
    """Height of the sidewalk (curb) above the road, metres."""
    building_depth: float = 6.0
    """Depth of the buildings behind the facade line, metres."""
    building_heights: tuple[float, float] = (6.0, 14.0)
    """Min/max building height, metres."""
    building_widths: tuple[float, float] = (6.0, 12.0)
    """Min/max building width along the street, metres."""
    furniture_spacing: float = 7.0
    """Spacing of street furniture (alternating lamp poles and trees) along each sidewalk, metres."""
    n_parked_cars: int = 5
    """Number of parked cars (static tracks) in the parking strips."""
    n_moving_cars: int = 3
    """Number of cars driving along the lanes."""
    n_pedestrians: int = 3
    """Number of pedestrians (walking along sidewalks, every second one crossing the road)."""
    duration: float = 6.0
    """Length of the scenario, seconds (tracks cover [0, duration])."""
    keyframe_dt: float = 0.5
    """Spacing of keyframes of moving actors and of the ego route, seconds."""
    ego_speed: float = 5.0
    """Ego speed along +x, m/s."""
    ego_start_x: float = 2.0
    """Ego x position at t=0, metres."""
    sun_dir: tuple[float, float, float] = (0.45, -0.35, 0.82)
    """Direction towards the sun in world coordinates (normalised when used)."""
    ambient: float = 0.45
    """Ambient term of the twin's Lambert shading."""
    diffuse: float = 0.6
    """Diffuse term of the twin's Lambert shading."""

    @staticmethod
    def tiny(seed: int = 0) -> "WorldConfig":
        """Small and fast, for tests: 15 m street, 2 cars (1 moving), 1 pedestrian, 2 s."""
        return WorldConfig(seed=seed, street_length=15.0, n_parked_cars=1, n_moving_cars=1, n_pedestrians=1,
                           duration=2.0, ego_speed=4.0, ego_start_x=1.0)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @property
    def road_half_width(self) -> float:
        return self.lane_width + self.parking_width

    @property
    def facade_y(self) -> float:
        return self.road_half_width + self.sidewalk_width


@dataclass
class MeshPart:
    """One triangle mesh with one class and one material."""

    name: str
    """Readable name, e.g. ``building_03`` or ``wheel_fl``."""
    mesh: trimesh.Trimesh
    """Triangle mesh, in world coordinates (background) or the actor's box frame (actor assets)."""
    class_name: str
    """Semantic class, one of `scenes.classes.CLASS_NAMES`."""
    material: Material
    """Procedural albedo, evaluated in the same frame as ``mesh``."""

    def __post_init__(self):
        if self.class_name not in CLASS_NAMES:
            raise InputError(f"mesh part {self.name}", "class_name", f"unknown class {self.class_name!r}; known: {CLASS_NAMES}")


@dataclass
class World:
    """A built street: scene graph (actors + aabb), background meshes, actor assets and ego route."""

    config: WorldConfig
    graph: SceneGraph
    background: list[MeshPart]
    actor_assets: dict[str, list[MeshPart]]
    ego_track: ActorTrack
    """``T_world_ego(t)`` keyframes (every ``keyframe_dt``), origin on the ground."""
    ego_size: tuple[float, float, float] = (4.6, 1.9, 1.6)
    """Ego vehicle box (length, width, height); its box centre is ``(0, 0, height/2)`` in the ego frame."""
    obstacles: list = field(default_factory=list)
    """Static background boxes actors must avoid: ``(T_world_box, size)`` of poles and tree trunks."""

    def T_world_ego(self, t: float) -> np.ndarray:
        """Ego pose at time ``t`` (seconds)."""
        return self.ego_track.pose_at(t)

    @property
    def duration(self) -> float:
        return self.config.duration


# -------------------------------------------------------------------------------- mesh primitives
def _box(center, extents, yaw: float = 0.0) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=extents, transform=make_pose(rot_z(yaw), center))


def _quad(x0, x1, y0, y1, z) -> trimesh.Trimesh:
    v = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]], dtype=np.float64)
    return trimesh.Trimesh(v, np.array([[0, 1, 2], [0, 2, 3]]), process=False)


def _cylinder(center, radius, height, axis: str = "z", sections: int = 16) -> trimesh.Trimesh:
    R = np.eye(3) if axis == "z" else np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # z -> y
    return trimesh.creation.cylinder(radius=radius, height=height, sections=sections, transform=make_pose(R, center))


def _sphere(center, radius, subdiv: int = 2) -> trimesh.Trimesh:
    m = trimesh.creation.icosphere(subdivisions=subdiv, radius=radius)
    m.apply_translation(center)
    return m


def _join(meshes) -> trimesh.Trimesh:
    return trimesh.util.concatenate(list(meshes))


def _color(rng, palette, jitter: float = 0.04) -> tuple:
    c = np.asarray(palette[rng.integers(len(palette))]) + rng.uniform(-jitter, jitter, 3)
    return tuple(float(x) for x in np.clip(c, 0, 1))


# ------------------------------------------------------------------------------------ background
def _road_parts(cfg: WorldConfig) -> list[MeshPart]:
    x0, x1, hw, lw = -5.0, cfg.street_length + 5.0, cfg.road_half_width, cfg.lane_width
    road = _box(((x0 + x1) / 2, 0, -0.1), (x1 - x0, 2 * hw, 0.2))
    dashes = [_quad(x, min(x + 3.0, x1), -0.06, 0.06, 0.005) for x in np.arange(x0, x1, 6.0)]
    edges = [_quad(x0, x1, s * (lw - 0.05) - 0.075, s * (lw - 0.05) + 0.075, 0.005) for s in (-1, 1)]
    y_sw = hw + cfg.sidewalk_width / 2
    z_sw = (cfg.sidewalk_height - 0.2) / 2
    walks = [_box(((x0 + x1) / 2, s * y_sw, z_sw), (x1 - x0, cfg.sidewalk_width, cfg.sidewalk_height + 0.2)) for s in (-1, 1)]
    return [
        MeshPart("road", road, "road", Material("asphalt", {"lane_width": lw, "seed": cfg.seed})),
        MeshPart("lane_markings", _join(dashes + edges), "lane_marking", Material("lane_paint")),
        MeshPart("sidewalks", _join(walks), "sidewalk", Material("sidewalk", {"seed": cfg.seed})),
    ]


def _building_parts(cfg: WorldConfig, rng) -> list[MeshPart]:
    parts, x_end, d = [], cfg.street_length + 5.0, cfg.building_depth
    for side in (-1, 1):
        x = -5.0
        while x < x_end - 0.5:
            w = float(min(rng.uniform(*cfg.building_widths), x_end - x))
            h = float(rng.uniform(*cfg.building_heights))
            y_c = side * (cfg.facade_y + d / 2)
            mesh = _box((x + w / 2, y_c, (h - 0.2) / 2), (w, d, h + 0.2))
            params = dict(
                wall=_color(rng, WALL_COLORS), style=str(rng.choice(["brick", "plaster"])), x0=x, x1=x + w,
                z0=cfg.sidewalk_height, height=h, floor_h=float(rng.uniform(2.8, 3.4)), win_w=float(rng.uniform(0.9, 1.5)),
                win_h=float(rng.uniform(1.2, 1.7)), spacing=float(rng.uniform(2.2, 3.2)),
                door_u=float(x + rng.uniform(0.25, 0.75) * w), door=_color(rng, DOOR_COLORS),
                seed=int(rng.integers(1 << 16)),
            )
            parts.append(MeshPart(f"building_{len(parts):02d}", mesh, "building", Material("facade", params)))
            x += w
    return parts


def _furniture(cfg: WorldConfig, rng):
    """Lamp poles and trees alternating along both sidewalks; returns parts and obstacle boxes."""
    poles, trunks, crowns, obstacles = [], [], [], []
    z0 = cfg.sidewalk_height
    for side in (-1, 1):
        y = side * (cfg.road_half_width + 0.6)
        xs = np.arange(-2.0 + (side > 0) * cfg.furniture_spacing / 2, cfg.street_length + 3.0, cfg.furniture_spacing)
        for i, x in enumerate(xs + rng.uniform(-0.5, 0.5, len(xs))):
            if i % 2 == 0:
                poles += [_cylinder((x, y, z0 + 3.0), 0.08, 6.0), _box((x, y - side * 0.5, z0 + 5.95), (0.3, 1.0, 0.1))]
                obstacles.append((make_pose(np.eye(3), (x, y, z0 + 3.0)), (0.3, 0.3, 6.0)))
            else:
                r = float(rng.uniform(0.9, 1.2))
                trunks.append(_cylinder((x, y, z0 + 1.7), 0.15, 3.4, sections=10))
                crowns.append(_sphere((x, y, z0 + 3.3 + r * 0.8), r))
                obstacles.append((make_pose(np.eye(3), (x, y, z0 + 1.5)), (0.4, 0.4, 3.0)))
    parts = [
        MeshPart("poles", _join(poles), "pole", Material("plain", {"color": (0.42, 0.44, 0.46)})),
        MeshPart("trunks", _join(trunks), "tree", Material("plain", {"color": (0.35, 0.25, 0.17), "vary": 0.1})),
        MeshPart("crowns", _join(crowns), "tree", Material("foliage", {"seed": cfg.seed})),
    ]
    return parts, obstacles


# ---------------------------------------------------------------------------------------- assets
_CAR_DIMS = {  # L, W, wheel r, body z, cabin x range, cabin z top, cabin width
    "sedan": (4.5, 1.8, 0.32, (0.28, 0.85), (-1.2, 0.9), 1.42, 1.56),
    "hatchback": (3.9, 1.75, 0.31, (0.28, 0.85), (-1.75, 0.6), 1.5, 1.55),
    "van": (5.0, 1.95, 0.34, (0.3, 1.05), (-2.45, 1.2), 2.1, 1.85),
}


def car_asset(shape: str, color, margin: float = 0.01) -> tuple[list[MeshPart], tuple[float, float, float]]:
    """Mesh parts (box frame) and box size of a car: body + cabin boxes, four cylinder wheels."""
    L, W, r, (bz0, bz1), (cx0, cx1), cz1, cw = _CAR_DIMS[shape]
    size = tuple(round(v, 4) for v in (L + 2 * margin, W + 2 * margin, cz1 + margin))
    zc = -size[2] / 2  # ground level in the box frame
    body = _box((0, 0, zc + (bz0 + bz1) / 2), (L, W, bz1 - bz0))
    cabin = _box((0, 0, 0), (cx1 - cx0, cw, cz1 - bz1))
    cabin.apply_translation(((cx0 + cx1) / 2, 0, zc + (bz1 + cz1) / 2))
    parts = [
        MeshPart("body", body, "car", Material("car_paint", {"color": color, "half_w": W / 2, "z_lo": zc + bz0,
                                                             "z_hi": zc + bz1})),
        MeshPart("cabin", cabin, "car", Material("car_cabin", {"color": color, "x_lo": cx0, "x_hi": cx1, "z_lo": zc + bz1,
                                                               "z_hi": zc + cz1, "half_w": cw / 2})),
    ]
    for fx in (-1, 1):
        for fy in (-1, 1):
            c = (fx * (L / 2 - 0.85), fy * (W / 2 - 0.13), zc + r)
            parts.append(MeshPart(f"wheel_{'fr'[fx > 0]}{'rl'[fy > 0]}", _cylinder(c, r, 0.24, axis="y"), "car",
                                  Material("tire", {"cx": c[0], "cz": c[2], "r": r})))
    return parts, size


def pedestrian_asset(shirt, trousers, skin, margin: float = 0.01) -> tuple[list[MeshPart], tuple[float, float, float]]:
    """Mesh parts (box frame) and box size of a pedestrian: two legs, a torso box, a head sphere."""
    H = 1.72
    size = tuple(round(v, 4) for v in (0.3 + 2 * margin, 0.46 + 2 * margin, H + margin))
    zc = -size[2] / 2
    legs = _join([_box((0, s * 0.1, zc + 0.43), (0.16, 0.15, 0.86)) for s in (-1, 1)])
    torso = _box((0, 0, zc + 1.15), (0.3, 0.46, 0.6))
    head = _sphere((0, 0, zc + H - 0.12), 0.12)
    parts = [
        MeshPart("legs", legs, "pedestrian", Material("plain", {"color": trousers})),
        MeshPart("torso", torso, "pedestrian", Material("plain", {"color": shirt, "vary": 0.08})),
        MeshPart("head", head, "pedestrian", Material("plain", {"color": skin})),
    ]
    return parts, size


# ------------------------------------------------------------------------------- tracks + overlap
def footprints(track: ActorTrack, times) -> tuple[np.ndarray, np.ndarray]:
    """Box centres ``[T, 2]`` and ground-plane axes ``[T, 2, 2]`` (rows: box x, y axes) at ``times``."""
    poses = np.stack([track.pose_at(t) for t in times])
    return poses[:, :2, 3], np.swapaxes(poses[:, :2, :2], 1, 2)


def footprint_overlaps(fa, size_a, fb, size_b, margin: float = 0.0) -> np.ndarray:
    """Ground-plane SAT test of two yawed boxes at each sampled time (footprints grown by ``margin``):
    ``[T]`` True where they overlap. ``fa``/``fb`` come from `footprints`."""
    (ca, Aa), (cb, Ab) = fa, fb
    ha = np.array(size_a[:2]) / 2 + margin
    hb = np.array(size_b[:2]) / 2 + margin
    separated = np.zeros(len(ca), dtype=bool)
    for axes in (Aa[:, 0], Aa[:, 1], Ab[:, 0], Ab[:, 1]):  # candidate separating axes [T, 2]
        ra = np.abs(np.einsum("tij,tj->ti", Aa, axes)) @ ha
        rb = np.abs(np.einsum("tij,tj->ti", Ab, axes)) @ hb
        separated |= np.abs(np.einsum("ti,ti->t", cb - ca, axes)) > ra + rb
    return ~separated


def _linear_track(cfg: WorldConfig, start, heading_yaw: float, v0: float, accel: float, z: float) -> ActorTrack:
    """Track moving along ``heading_yaw`` with speed ``v0 + accel t`` (kept >= 0.5 m/s), keyframes every keyframe_dt."""
    n = int(np.ceil(cfg.duration / cfg.keyframe_dt - 1e-9)) + 1
    times = np.arange(n) * cfg.keyframe_dt
    speeds = np.maximum(v0 + accel * times, 0.5)
    dist = np.concatenate([[0.0], np.cumsum((speeds[1:] + speeds[:-1]) / 2 * np.diff(times))])
    d = np.array([np.cos(heading_yaw), np.sin(heading_yaw), 0.0])
    poses = [make_pose(rot_z(heading_yaw), np.array([start[0], start[1], z]) + s * d) for s in dist]
    return ActorTrack.from_poses(times, poses)


def _car_candidate(cfg: WorldConfig, rng, moving: bool, size):
    lw, z = cfg.lane_width, size[2] / 2
    if not moving:
        side = rng.choice([-1, 1])
        y = side * (lw + cfg.parking_width / 2)
        yaw = (0.0 if side < 0 else np.pi) + rng.uniform(-0.04, 0.04)
        return ActorTrack.static(make_pose(rot_z(yaw), (rng.uniform(0, cfg.street_length), y, z)))
    if rng.uniform() < 0.5:  # right lane, ahead of the ego, at least as fast
        x = cfg.ego_start_x + rng.uniform(8, 8 + 0.5 * cfg.street_length)
        return _linear_track(cfg, (x, -lw / 2), 0.0, cfg.ego_speed + rng.uniform(-0.5, 1.0), rng.uniform(-0.3, 0.3), z)
    x = rng.uniform(0.5, 1.0) * cfg.street_length + 5  # oncoming in the left lane
    return _linear_track(cfg, (x, lw / 2), np.pi, rng.uniform(3, 7), rng.uniform(-0.8, 0.8), z)


def _ped_candidate(cfg: WorldConfig, rng, crossing: bool, size):
    speed = rng.uniform(1.1, 1.6)
    if crossing:
        side = rng.choice([-1, 1])
        edge = cfg.road_half_width - 0.3  # stays on the road surface (z = 0) for the whole track
        travel = min(speed * cfg.duration, 2 * edge)
        y0 = side * edge - side * rng.uniform(0, 2 * edge - travel)
        return _linear_track(cfg, (rng.uniform(3, cfg.street_length - 3), y0), -side * np.pi / 2, speed, 0.0, size[2] / 2)
    side = rng.choice([-1, 1])
    y = side * (cfg.road_half_width + cfg.sidewalk_width * 0.55 + rng.uniform(-0.3, 0.3))
    heading = rng.choice([0.0, np.pi])
    z = cfg.sidewalk_height + size[2] / 2
    return _linear_track(cfg, (rng.uniform(0, cfg.street_length), y), heading, speed, 0.0, z)


def _ego_track(cfg: WorldConfig) -> ActorTrack:
    return _linear_track(cfg, (cfg.ego_start_x, -cfg.lane_width / 2), 0.0, cfg.ego_speed, 0.0, 0.0)


def _place_actors(cfg: WorldConfig, rng, ego_track, ego_size, obstacles):
    """Rejection-sample actor tracks so that no two boxes (nor ego, poles, trunks) overlap over time."""
    times = np.arange(0.0, cfg.duration + 1e-9, 0.1)
    placed = [(footprints(ego_track, times), ego_size)]
    placed += [(footprints(ActorTrack.static(T), times), s) for T, s in obstacles]
    actors, assets = [], {}
    kinds = ["parked"] * cfg.n_parked_cars + ["moving"] * cfg.n_moving_cars + [
        "crossing" if i % 2 == 1 else "walking" for i in range(cfg.n_pedestrians)]
    for kind in kinds:
        is_car = kind in ("parked", "moving")
        if is_car:
            parts, size = car_asset(str(rng.choice(CAR_SHAPES)), _color(rng, CAR_COLORS))
        else:
            parts, size = pedestrian_asset(_color(rng, CAR_COLORS, 0.1), _color(rng, ((0.15, 0.15, 0.2), (0.3, 0.25, 0.2))),
                                           _color(rng, ((0.85, 0.65, 0.5), (0.55, 0.38, 0.25))))
        for attempt in range(60):
            k = "walking" if (kind == "crossing" and attempt >= 30) else kind
            track = (_car_candidate(cfg, rng, k == "moving", size) if is_car else _ped_candidate(cfg, rng, k == "crossing", size))
            fp = footprints(track, times)
            if not any(footprint_overlaps(fp, size, f, s, 0.3 if is_car else 0.15).any() for f, s in placed):
                break
        else:
            continue  # no free spot: skip this actor (deterministic for the seed)
        aid = f"{'car' if is_car else 'ped'}_{len(actors):03d}"
        actors.append(Actor(aid, "car" if is_car else "pedestrian", len(actors) + 1, size, track))
        assets[aid] = parts
        placed.append((fp, size))
    return actors, assets


# ------------------------------------------------------------------------------------------ build
def build_world(cfg: WorldConfig | None = None) -> World:
    """Build the street for ``cfg`` (default `WorldConfig()`); deterministic for a seed."""
    cfg = cfg or WorldConfig()
    rng = np.random.default_rng(cfg.seed)
    furniture, obstacles = _furniture(cfg, rng)
    background = _road_parts(cfg) + _building_parts(cfg, rng) + furniture
    ego_track = _ego_track(cfg)
    ego_size = (4.6, 1.9, 1.6)
    actors, assets = _place_actors(cfg, rng, ego_track, ego_size, obstacles)
    aabb = ((-5.0, -15.0, -1.0), (cfg.street_length + 5.0, 15.0, 20.0))
    meta = {"seed": cfg.seed, "world": "nerfsim-street", "config": cfg.to_dict()}
    graph = SceneGraph(actors=tuple(actors), aabb=aabb, meta=meta)
    return World(cfg, graph, background, assets, ego_track, ego_size, obstacles)
