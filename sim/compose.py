"""Compositional neural scene: one background field + one field per actor asset, rendered together.
Over 500 lines because sampling every field, pruning and compositing share one object's grids,
schedules and fields; the stateless pieces live in `sim.volume`, `sim.raymarch`, `sim.contraction`.

For each ray: background samples (marching through the scene AABB, or all space contracted into the
background's cube when ``unbounded``, skipping empty occupancy cells)
and, for every actor box the ray crosses at that time's pose, samples inside the box in the actor's
frame. All samples are merged in ray order and volume-rendered together (`sim.volume`); per-actor
weight sums give instance masks. The background's density is zero inside actor boxes (above a thin
ground-contact slab), so a moved or removed actor takes all of itself along and leaves no ghost.

Conventions: world z up, metres; actor frame at its box centre, x forward, y left, z up;
``T_actor_world`` maps world to actor coordinates; field coordinates are the unit cube
(background: the scene AABB, or its contraction (`sim.contraction`); actor: its box).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from sim.field import FieldConfig, RadianceField, SkyField
from sim.encoding import HashGridConfig
from sim.occupancy import OccupancyGrid
from sim.contraction import cell_steps, contracted_step, unit_to_world, world_to_unit
from sim.raymarch import march
from sim.rays import ray_aabb
from sim.volume import accumulate, concat_passes_order, exclusive_segment_cumsum, median_distance, merge_order, optical_depth, render_weights


def _default_actor_field() -> FieldConfig:
    # Cars and people are left-right symmetric in their box frame: sharing the halves' features gives
    # the side the log never saw (demo scene, 600 steps: car mesh Chamfer 23.6 -> 16.3 cm, novel-view
    # PSNR +0.4 dB; bench/RESULTS.md).
    return FieldConfig(grid=HashGridConfig(n_levels=12, log2_table_size=15, base_resolution=8, max_resolution=256),
                       hidden_dim=32, color_hidden_dim=32, sh_degree=3, mirror_y=True)


@dataclass
class SceneModelConfig:
    """How a compositional scene is represented and sampled."""

    background: FieldConfig = field(default_factory=lambda: FieldConfig(grid=HashGridConfig(log2_table_size=18)))
    """Field of the static background (its unit cube is the scene AABB)."""
    actor: FieldConfig = field(default_factory=_default_actor_field)
    """Field of each actor asset (its unit cube is the actor's box)."""
    far_field: str = "sky"
    """What a ray sees after leaving the AABB: 'sky' (learned direction MLP), 'white' or 'black'."""
    occupancy_cell: float = 0.25
    """Background occupancy cell size along x and y, in scene units (resolution follows the AABB)."""
    occupancy_cell_z: float | None = 0.1
    """Cell size along z (finer: grazing rays over the ground cross few occupied cells); None = same as x/y."""
    actor_occupancy_resolution: int = 32
    """Occupancy cells per axis of an actor box."""
    step_min: float = 0.02
    """Smallest background marching step, scene units."""
    step_cone: float = 1.0 / 256.0
    """Background step grows as distance * step_cone (pixel footprint), clamped to [step_min, step_max]."""
    step_max: float = 1.0
    """Largest background marching step."""
    actor_steps: int = 128
    """Marching steps along an actor box's diagonal."""
    ground_clearance: float = 0.05
    """Height above a box's bottom below which the background may still have density (ground contact)."""
    min_transmittance: float = 1e-3
    """Samples behind this transmittance are skipped (early ray termination)."""
    min_alpha: float = 1e-3
    """Samples with less optical depth than this are skipped (empty space inside occupied cells)."""
    render_min_transmittance: float | None = None
    """Rendering only (model in eval mode): `min_transmittance` there; None = the same. A render may drop
    more than training, whose gradients need faint samples: a 504x378 frame of fern (LLFF) 3.1 ->
    2.6 s with 1e-2 and ``render_min_alpha`` 3e-3, test PSNR -0.01 dB (2026-12-02, 2-core CPU)."""
    render_min_alpha: float | None = None
    """Rendering only (model in eval mode): `min_alpha` there; None = the same."""
    march_chunk: int = 16
    """Background samples marched per ray between early-termination checks. Smaller chunks evaluate
    fewer densities behind surfaces but cost more passes. Measured on a trained default world (2-core
    CPU): a 640x360 frame 9.4-10.0 s at 16 vs 11.6-11.8 s at 32 (27 vs 35 densities per ray);
    training steps of 1024 rays the same within noise (205-258 ms) for 8, 16 and 32."""
    march_chunk_first: int = 4
    """On a CPU, the first pass marches this many samples per ray, each later one twice as many up
    to ``march_chunk`` (actor boxes likewise): most rays end on a surface within a few samples.
    A 640x360 frame of the demo street: background densities evaluated per ray 12.7 at a fixed 16,
    8.7 starting at 8, 8.1 at 4, 7.2 at 2 (the same image)."""
    march_chunk_gpu: int = 128
    """The same on a GPU, where each pass costs a fixed launch-and-sync overhead and extra density
    evaluations are nearly free: fewer, longer passes (H200, default world, 8192 rays/step: 32 ->
    218 ms/step, 128 -> 178, 256 -> 188, 4096 -> 211; 640x360 render 0.78 / 0.71 / 0.84 / 0.81 s)."""
    normal_step: float = 0.02
    """Central-difference step (scene units) of the density gradient that gives normals."""
    image_codes: int = 0
    """Appearance codes of the background, one per training image, when its field takes them
    (`FieldConfig.image_code_dim`): photos of one capture differ in exposure and white balance."""
    image_gains: int = 0
    """Colour gains (exposure, white balance), one RGB triple per training image, multiplying all
    the image shows (background, actors, sky): auto-exposure scales the whole picture, which a code
    in the background's colour alone cannot explain. Learned as log-gains centred on their mean, so
    a new view renders the images' average exposure. 0 = none."""
    unbounded: bool = False
    """Contract all space beyond the AABB into the background field's cube (`sim.contraction`): the
    AABB is then the *inner box*, sampled linearly in the middle half of the cube, and far content
    (a capture's far background, a street's far end) is reconstructed as geometry with metric depth
    instead of being left to the sky model. Off: the field ends at the AABB."""
    far_multiple: float = 1000.0
    """Unbounded: rays are marched to this many times the inner box's largest half extent (the
    contracted shell reaches 99.9% of its depth there); the sky model takes what is left."""
    near: float = 0.0
    """Ray distance (scene units) before which the background is not sampled: a capture's near
    bound keeps the field from explaining pixels with haze right in front of a camera."""

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["background"] = self.background.to_dict()
        d["actor"] = self.actor.to_dict()
        return d

    @staticmethod
    def from_dict(d: dict) -> "SceneModelConfig":
        d = dict(d)
        d["background"] = FieldConfig.from_dict(d["background"])
        d["actor"] = FieldConfig.from_dict(d["actor"])
        return SceneModelConfig(**d)


@dataclass
class ActorRays:
    """One actor as seen by a batch of rays."""

    asset_id: str
    instance_id: int
    size: Tensor
    """Box size (length, width, height) ``[3]``."""
    T_actor_world: Tensor
    """Per-ray ``[R, 4, 4]`` or shared ``[1, 4, 4]`` world-to-actor pose."""
    T_distinct: Tensor | None = None
    """The distinct poses among ``T_actor_world`` ``[U, 4, 4]`` (for cheap culling); None = all of them."""

    def to(self, device: torch.device | str) -> "ActorRays":
        """The same actor with its tensors on ``device``."""
        move = lambda t: None if t is None else t.to(device)
        return ActorRays(self.asset_id, self.instance_id, self.size.to(device), self.T_actor_world.to(device), move(self.T_distinct))


def _key(asset_id: str) -> str:
    return asset_id.replace(".", "_")  # nn.ModuleDict keys may not contain dots


class NeuralScene(nn.Module):
    """Background + sky + actor fields with their occupancy grids."""

    def __init__(self, cfg: SceneModelConfig, aabb, asset_ids: list[str]):
        super().__init__()
        self.cfg = cfg
        aabb = torch.as_tensor(aabb, dtype=torch.float32).reshape(2, 3)
        self.register_buffer("aabb", aabb)
        self.background = RadianceField(cfg.background)
        # The grid spans the field's cube: the AABB, or twice it when contracted (`sim.contraction`).
        extent = ((aabb[1] - aabb[0]) * (2.0 if cfg.unbounded else 1.0)).tolist()
        cells = (cfg.occupancy_cell, cfg.occupancy_cell, cfg.occupancy_cell_z or cfg.occupancy_cell)
        res = tuple(max(8, min(256, math.ceil(e / c))) for e, c in zip(extent, cells))
        self.background_grid = OccupancyGrid(res, threshold=cfg.min_alpha / cfg.step_min)
        if cfg.unbounded:
            # A cell matters when one step through it has optical depth >= min_alpha (the criterion
            # that prunes samples); the shell's steps are longer, so its cells matter at lower density.
            steps = cell_steps(res, float((aabb[1] - aabb[0]).max()) / 2, cfg.step_min)
            self.background_grid.set_cell_thresholds(cfg.min_alpha / steps)
        self.sky = SkyField() if cfg.far_field == "sky" else None
        dim = cfg.background.image_code_dim
        # Zero codes at first: the field starts as one without them.
        self.image_codes = nn.Embedding(cfg.image_codes, dim, _weight=torch.zeros(cfg.image_codes, dim)) if dim and cfg.image_codes else None
        self.image_log_gains = nn.Parameter(torch.zeros(cfg.image_gains, 3)) if cfg.image_gains else None
        self.actor_fields = nn.ModuleDict({_key(a): RadianceField(cfg.actor) for a in asset_ids})
        r = cfg.actor_occupancy_resolution
        self.actor_grids = nn.ModuleDict({_key(a): OccupancyGrid((r, r, r)) for a in asset_ids})
        self._schedules: dict[tuple[float, float], tuple[Tensor, Tensor]] = {}
        self.step_scale = 1.0
        """Factor on every background marching step (not saved: a training-time setting; see
        `sim.train.TrainConfig.coarse_step_scale`)."""

    # ---- helpers --------------------------------------------------------------------------
    @property
    def asset_ids(self) -> list[str]:
        return list(self.actor_fields.keys())

    def has_asset(self, asset_id: str) -> bool:
        return _key(asset_id) in self.actor_fields

    def actor_field(self, asset_id: str) -> RadianceField:
        return self.actor_fields[_key(asset_id)]

    def actor_grid(self, asset_id: str) -> OccupancyGrid:
        return self.actor_grids[_key(asset_id)]

    def import_asset(self, asset_id: str, other: "NeuralScene", other_id: str) -> None:
        """Render ``other``'s actor asset ``other_id`` in this scene as ``asset_id`` (its field and
        occupancy grid are shared, not copied): actors of one trained scene inserted into another."""
        self.actor_fields[_key(asset_id)] = other.actor_field(other_id)
        self.actor_grids[_key(asset_id)] = other.actor_grid(other_id)

    def world_to_unit(self, x: Tensor) -> Tensor:
        """Background field coordinates of world points (contracted when ``cfg.unbounded``)."""
        return world_to_unit(x, self.aabb[0], self.aabb[1] - self.aabb[0], self.cfg.unbounded)

    def unit_to_world(self, x01: Tensor) -> Tensor:
        """World points of background field coordinates (inverse of `world_to_unit`)."""
        return unit_to_world(x01, self.aabb[0], self.aabb[1] - self.aabb[0], self.cfg.unbounded)

    @property
    def _half_extent(self) -> float:
        return float((self.aabb[1] - self.aabb[0]).max()) / 2

    def _step_at(self, t: float, cone: float) -> float:
        """The marching step at ray distance ``t``: the cone step clamped to [step_min, step_max]
        and, unbounded, at least the step that crosses half a cell of the contracted shell."""
        cfg = self.cfg
        dt = min(max(t * cone, cfg.step_min), cfg.step_max)
        if cfg.unbounded:
            dt = max(dt, contracted_step(t, self._half_extent, max(self.background_grid.resolution)))
        return dt * self.step_scale

    def _step_schedule(self, t_max: float, cone: float) -> tuple[Tensor, Tensor]:
        """Global marching distances t_k and steps dt_k, shared by every ray (cone stepping: the step
        grows as ``t * cone``, see `_step_at`), covering ``[0, t_max]``."""
        ts, dts, t = [], [], 0.0
        while t < t_max:
            dt = self._step_at(t, cone)
            ts.append(t)
            dts.append(dt)
            t += dt
        return torch.tensor(ts), torch.tensor(dts)

    def _schedule_for(self, cone: float, t_exit_max: float) -> tuple[Tensor, Tensor]:
        """The step schedule of ``cone`` reaching at least ``t_exit_max`` (kept per cone; the first
        covers the AABB diagonal, enough for origins inside the AABB; farther origins extend it)."""
        key = (cone, self.step_scale)
        sched = self._schedules.get(key)
        if sched is None or t_exit_max > float(sched[0][-1] + sched[1][-1]):
            diag = float((self.aabb[1] - self.aabb[0]).norm())
            if self.cfg.unbounded:
                diag = self.cfg.far_multiple * self._half_extent
            sched = self._schedules[key] = self._step_schedule(max(diag, t_exit_max * 1.5), cone)
        return sched

    def far_color(self, dirs: Tensor) -> Tensor:
        if self.sky is not None:
            return self.sky(dirs)
        value = 1.0 if self.cfg.far_field == "white" else 0.0
        return torch.full_like(dirs, value)

    # ---- sampling (where samples fall is not differentiated: see `_positions_with_pose_grad`) --
    @torch.no_grad()
    def _background_samples(self, origins: Tensor, dirs: Tensor, jitter: bool, terminate: bool = False,
                            step_cone: float | None = None, keep_features: bool = False) -> dict:
        if self.cfg.unbounded:  # every ray crosses the contracted cube, to its far limit
            t_near = torch.full((len(origins),), self.cfg.near, device=origins.device)
            t_far = torch.full_like(t_near, self.cfg.far_multiple * self._half_extent)
        else:
            t_near, t_far = ray_aabb(origins, dirs, self.aabb[0], self.aabb[1])
            t_near = t_near.clamp_min(self.cfg.near)
        t_exit = t_far[t_far > t_near]  # rays that miss may carry huge t_far (parallel slabs)
        cone = self.cfg.step_cone if step_cone is None else float(step_cone)
        ts, dts = (s.to(origins.device) for s in self._schedule_for(cone, float(t_exit.max()) if len(t_exit) else 0.0))
        u = torch.rand(len(origins), device=origins.device) if jitter else torch.full((len(origins),), 0.5, device=origins.device)
        k_start = (torch.searchsorted(ts + dts, t_near) - 1).clamp_min(0)
        box = (self.aabb[0], self.aabb[1] - self.aabb[0])
        return self._march_field(self.background, self.background_grid.occupied, box, origins, dirs, t_near, t_far,
                                 (ts, dts, u, k_start), terminate, keep_features, contract=self.cfg.unbounded)

    def _chunk_sizes(self, device: torch.device):
        """Samples per ray of successive marching passes (see ``march_chunk_first``)."""
        cfg = self.cfg
        if device.type != "cpu":
            while True:
                yield cfg.march_chunk_gpu
        size = max(1, min(cfg.march_chunk_first, cfg.march_chunk))
        while True:
            yield size
            size = min(2 * size, cfg.march_chunk)

    @torch.no_grad()
    def _march_field(self, field: RadianceField, occupied: Tensor, box: tuple[Tensor, Tensor], origins: Tensor, dirs: Tensor,
                     t_near: Tensor, t_far: Tensor, schedule: tuple[Tensor, Tensor, Tensor, Tensor], terminate: bool,
                     keep_features: bool, contract: bool = False) -> dict:
        """Packed samples of one field's occupied cells along rays given in the field's frame (``box``
        = its unit cube's corner and size there; ``schedule`` = ``(ts, dts, u, k_start)`` of
        `sim.raymarch.march`). Without ``terminate``: every one of them. With it: marched in chunks of
        samples per ray (`_chunk_sizes`) with the field's density evaluated as we go, and a ray stops
        once the field alone leaves it less than ``min_transmittance`` (the composite transmittance is
        lower still): samples behind opaque surfaces are never generated, let alone evaluated. Then
        only samples that can matter are kept (`_worth_keeping`), with their density
        (``sigma_nograd``) and, with ``keep_features`` (inference), their geometry features
        (``geo_nograd``), so colour is computed without encoding them again."""
        ts, dts, u, k = schedule
        if not terminate:
            s = march(origins, dirs, t_near, t_far, ts, dts, u, occupied, *box, k_start=k, contract=contract)
            s.pop("k_next")
            return s
        R, min_T = len(origins), self._drop_thresholds()[0]
        geometry = getattr(field, "_geometry", None) if keep_features else None  # test fields may lack it
        k = k.clone()
        log_T = torch.zeros(R, device=origins.device)
        alive = t_far > t_near
        keep_parts, sizes = [], self._chunk_sizes(origins.device)
        while alive.any():
            idx = alive.nonzero().flatten()
            s = march(origins[idx], dirs[idx], t_near[idx], t_far[idx], ts, dts, u[idx], occupied, *box,
                      k_start=k[idx], max_per_ray=next(sizes), contract=contract)
            if len(s["ray"]):
                sigma, geo = geometry(s["x01"]) if geometry is not None else (field.density(s["x01"]), None)
                tau = optical_depth(sigma, s["dt"])
                keep = self._worth_keeping(tau, s["ray"], len(idx), log_T[idx][s["ray"]])
                log_T.index_add_(0, idx[s["ray"]], tau)
                kept = {"ray": idx[s["ray"][keep]], "t": s["t"][keep], "dt": s["dt"][keep], "x01": s["x01"][keep], "sigma_nograd": sigma[keep]}
                if geo is not None:
                    kept["geo_nograd"] = geo[keep]
                keep_parts.append(kept)
            k[idx] = s["k_next"]
            alive[idx] = (s["k_next"] < len(ts)) & (torch.exp(-log_T[idx]) > min_T)
        if not keep_parts:
            empty = torch.zeros(0, device=origins.device)
            out = {"ray": empty.long(), "t": empty, "dt": empty, "x01": empty.reshape(0, 3), "sigma_nograd": empty}
            if geometry is not None:
                out["geo_nograd"] = empty.reshape(0, field.cfg.geo_feat_dim)
            return out
        order = concat_passes_order([p["ray"] for p in keep_parts], R)
        return {key: torch.cat([p[key] for p in keep_parts])[order] for key in keep_parts[0]}

    @torch.no_grad()
    def _actor_samples(self, actor: ActorRays, origins: Tensor, dirs: Tensor, jitter: bool, terminate: bool = False,
                       keep_features: bool = False) -> dict:
        """Samples of an actor's field along the rays that cross its box, ``actor_steps`` per box
        diagonal, in its occupied cells (see `_march_field` for ``terminate`` / ``keep_features``);
        ``dirs`` are in the actor's frame."""
        T = actor.T_actor_world
        if T.shape[0] == 1:  # one pose for every ray: a plain matmul (a batched one costs ~10x)
            o, d = origins @ T[0, :3, :3].T + T[0, :3, 3], dirs @ T[0, :3, :3].T
        else:
            o, d = (T[:, :3, :3] @ origins[..., None])[..., 0] + T[:, :3, 3], (T[:, :3, :3] @ dirs[..., None])[..., 0]
        half = actor.size / 2
        t_near, t_far = ray_aabb(o, d, -half, half)
        hit = (t_far > t_near).nonzero().flatten()
        dev = origins.device
        if len(hit) == 0:
            empty = torch.zeros(0, device=dev)
            return {"ray": hit, "t": empty, "dt": empty, "x01": empty.reshape(0, 3), "dirs": empty.reshape(0, 3)}
        n = self.cfg.actor_steps
        dt = float(actor.size.norm()) / n
        u = torch.rand(len(hit), device=dev) if jitter else torch.full((len(hit),), 0.5, device=dev)
        # Sample k of a ray sits at t_near + (k + u) dt: the shared schedule k dt with a per-ray offset
        # of t_near / dt + u steps (the marching kernel takes any offset when the step is constant).
        ts = torch.arange(n, device=dev, dtype=torch.float32) * dt
        schedule = (ts, torch.full_like(ts, dt), t_near[hit] / dt + u, torch.zeros(len(hit), dtype=torch.long, device=dev))
        s = self._march_field(self.actor_field(actor.asset_id), self.actor_grid(actor.asset_id).occupied, (-half, actor.size),
                              o[hit], d[hit], t_near[hit], t_far[hit], schedule, terminate, keep_features)
        s["dirs"] = d[hit][s["ray"]]
        s["ray"] = hit[s["ray"]]
        return s

    def _inside_actor_boxes(self, x_world: Tensor, ray_idx: Tensor, actors: list[ActorRays]) -> Tensor:
        """True where background samples lie inside an actor box (above its ground-contact slab)."""
        inside = torch.zeros(len(x_world), dtype=torch.bool, device=x_world.device)
        for a in actors:
            # Cheap cull first: the world AABB of the box over every pose in the batch.
            T_inv = a.T_distinct if a.T_distinct is not None else a.T_actor_world
            corners = (torch.tensor([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], dtype=x_world.dtype, device=x_world.device) * a.size / 2)
            R_w, t_w = T_inv[:, :3, :3].transpose(1, 2), -(T_inv[:, :3, :3].transpose(1, 2) @ T_inv[:, :3, 3:4])[..., 0]
            cw = (corners[None] @ R_w.transpose(1, 2)) + t_w[:, None]
            cand = ((x_world >= cw.amin((0, 1))) & (x_world <= cw.amax((0, 1)))).all(-1).nonzero().flatten()
            if len(cand) == 0:
                continue
            T = a.T_actor_world if a.T_actor_world.shape[0] == 1 else a.T_actor_world[ray_idx[cand]]
            x = (T[:, :3, :3] @ x_world[cand, :, None])[..., 0] + T[:, :3, 3]
            half = a.size / 2
            lo = -half.clone()
            lo[2] = lo[2] + self.cfg.ground_clearance
            inside[cand] |= ((x >= lo) & (x <= half)).all(-1)
        return inside

    # ---- rendering --------------------------------------------------------------------------
    def _collect_samples(self, origins: Tensor, dirs: Tensor, actors: list[ActorRays], jitter: bool, terminate: bool,
                         background: bool = True, step_cone: float | None = None, keep_features: bool = False) -> list[dict]:
        """Samples of every field, one dict per field ("part"), each with its owner slot
        (0 = background, 1 + i = ``actors[i]``)."""
        if background:
            bg = self._background_samples(origins, dirs, jitter, terminate, step_cone, keep_features)
        else:
            empty = torch.zeros(0, device=origins.device)
            bg = {"ray": empty.long(), "t": empty, "dt": empty, "x01": empty.reshape(0, 3)}
        if actors:
            x_world = origins[bg["ray"]] + dirs[bg["ray"]] * bg["t"][:, None]
            keep = ~self._inside_actor_boxes(x_world, bg["ray"], list(actors))
            bg = {k: v[keep] for k, v in bg.items()}
        bg["dirs"] = dirs[bg["ray"]]
        bg["field"], bg["slot"] = self.background, 0
        parts = [bg]
        for slot, a in enumerate(actors, start=1):
            s = self._actor_samples(a, origins, dirs, jitter, terminate, keep_features)
            if len(s["ray"]):
                s["field"], s["slot"], s["actor"] = self.actor_field(a.asset_id), slot, a
                parts.append(s)
        return parts

    @staticmethod
    def _ray_order(parts: list[dict]) -> tuple[Tensor, Tensor, Tensor]:
        """Concatenated ray indices and t of all parts, and the permutation sorting them by (ray, t)
        (the background part comes sorted; the actors' are merged into it)."""
        ray = torch.cat([p["ray"] for p in parts])
        t = torch.cat([p["t"] for p in parts])
        return ray, t, merge_order(ray, t, len(parts[0]["ray"]))

    def _worth_keeping(self, tau: Tensor, ray: Tensor, n_rays: int, tau_before: Tensor | float = 0.0) -> Tensor:
        """The one criterion for dropping samples of packed, ray-sorted optical depths ``tau``:
        transmittance in front of the sample (``tau_before`` = depth accumulated by earlier samples
        of the ray) below ``min_transmittance``, or the sample's own depth below ``min_alpha``."""
        min_T, min_alpha = self._drop_thresholds()
        T = torch.exp(-(exclusive_segment_cumsum(tau, ray, n_rays) + tau_before))
        return (T > min_T) & (tau > min_alpha)

    def _drop_thresholds(self) -> tuple[float, float]:
        """``(min_transmittance, min_alpha)``: the render settings in eval mode (as dropout, the
        module's ``training`` flag tells training from rendering)."""
        cfg = self.cfg
        if self.training:
            return cfg.min_transmittance, cfg.min_alpha
        return (cfg.min_transmittance if cfg.render_min_transmittance is None else cfg.render_min_transmittance,
                cfg.min_alpha if cfg.render_min_alpha is None else cfg.render_min_alpha)

    @torch.no_grad()
    def _prune(self, parts: list[dict], n_rays: int) -> list[dict]:
        """Drop samples that cannot matter: behind opaque surfaces (early termination) or nearly
        empty. Costs one density-only pass; saves the colour MLP and all backward work on them."""
        ray, t, order = self._ray_order(parts)
        # Densities already known from terminated marching are reused, not recomputed.
        sigma = torch.cat([p["sigma_nograd"] if "sigma_nograd" in p else p["field"].density(p["x01"]) for p in parts])
        dt = torch.cat([p["dt"] for p in parts])
        keep_sorted = self._worth_keeping(optical_depth(sigma, dt)[order], ray[order], n_rays)
        keep = torch.empty_like(keep_sorted)
        keep[order] = keep_sorted
        out, start = [], 0
        for p in parts:
            k = keep[start : start + len(p["ray"])]
            start += len(p["ray"])
            out.append({key: (v[k] if torch.is_tensor(v) else v) for key, v in p.items()})
        return out

    def _positions_with_pose_grad(self, part: dict, origins: Tensor, dirs: Tensor) -> dict:
        """A part's sample positions and directions recomputed from the rays (and the actor's pose)
        with autograd: where samples fall is piecewise constant in the poses, what they see is not,
        so gradients reach camera and actor poses (pose inversion, `tasks.pose`)."""
        ray = part["ray"]
        x, d = origins[ray] + dirs[ray] * part["t"][:, None], dirs[ray]
        actor = part.get("actor")
        if actor is None:
            return {**part, "x01": self.world_to_unit(x), "dirs": d}
        T = actor.T_actor_world if actor.T_actor_world.shape[0] == 1 else actor.T_actor_world[ray]
        x_actor = (T[:, :3, :3] @ x[..., None])[..., 0] + T[:, :3, 3]
        return {**part, "x01": x_actor / actor.size + 0.5, "dirs": (T[:, :3, :3] @ d[..., None])[..., 0]}

    @torch.no_grad()
    def _normals_world(self, part: dict) -> Tensor:
        """Outward unit normals ``[S, 3]`` (world frame) at a part's samples: minus the density
        gradient, by central differences of ``normal_step`` along each axis of the field's frame
        (smoother than the analytic gradient of a hash grid, which is dominated by its finest cells)."""
        x01, fld = part["x01"], part["field"]
        actor = part.get("actor")
        if actor is None:  # world offsets, mapped into the (possibly contracted) cube
            x, density = self.unit_to_world(x01), lambda p: fld.density(self.world_to_unit(p))
        else:  # the box frame is the world scaled: offsets there are the same
            x, density = x01, lambda p: fld.density(p)
        h = self.cfg.normal_step if actor is None else self.cfg.normal_step / actor.size
        grad = torch.empty_like(x01)
        for axis in range(3):
            off = torch.zeros(3, device=x01.device)
            off[axis] = h if actor is None else h[axis]
            grad[:, axis] = (density(x + off) - density(x - off)) / (2 * self.cfg.normal_step)
        if actor is not None:  # gradient in actor coordinates -> world: R_world_actor = R_actor_world^T
            R = actor.T_actor_world[:, :3, :3]
            R = R if R.shape[0] == 1 else R[part["ray"]]
            grad = (R.transpose(1, 2) @ grad[..., None])[..., 0]
        return -torch.nn.functional.normalize(grad, dim=-1)

    @staticmethod
    def _shade(part: dict, semantics: bool, codes: Tensor | None = None) -> tuple[Tensor, ...]:
        """Density and colour (and class logits) of a part's samples; samples that kept their
        geometry features from marching (inference) only run the colour MLP. ``codes``: per-ray
        image codes (fields that take them)."""
        field = part["field"]
        kw = {"codes": codes[part["ray"]]} if codes is not None else {}
        if "geo_nograd" in part:
            return (part["sigma_nograd"],) + field.appearance(part["geo_nograd"], part["x01"], part["dirs"], semantics, **kw)
        return field(part["x01"], part["dirs"], semantics=True, **kw) if semantics else field(part["x01"], part["dirs"], **kw)

    def image_gains(self, views: Tensor) -> Tensor | None:
        """RGB gains ``[N, 3]`` of training images ``views`` (`SceneModelConfig.image_gains`; None
        when the model has none): what their rendered colour is multiplied by to match the photo."""
        if self.image_log_gains is None:
            return None
        g = self.image_log_gains
        return torch.exp(g[views] - g.mean(0))

    def ray_image_codes(self, n_rays: int, codes: Tensor | None) -> Tensor | None:
        """Per-ray image codes ``[R, D]`` for the background: ``codes`` (``[R, D]`` or one ``[D]``),
        or, when None, the mean of the training images' codes (a new view's default exposure);
        None when the background takes no codes."""
        if self.image_codes is None:
            return None
        if codes is None:
            codes = self.image_codes.weight.mean(0)
        return codes.expand(n_rays, -1) if codes.dim() == 1 else codes

    def render_rays(self, origins: Tensor, dirs: Tensor, actors: list[ActorRays] = (), jitter: bool = False,
                    far_rgb: Tensor | None = None, prune: bool = True, normals: bool = False,
                    background: bool = True, semantics: bool = False, median: bool = False,
                    step_cone: float | None = None, image_codes: Tensor | None = None) -> dict[str, Tensor]:
        """Render rays ``[R, 3]`` (world) through background + actors.

        Returns a dict: ``rgb [R,3]``, ``depth [R]`` (expected ray distance of the visible surface,
        normalised by accumulation), ``accumulation [R]``, ``owner_weights [R, 1 + len(actors)]``
        (column 0 = background, then one per actor), ``n_samples`` (scalar, after pruning), and the
        packed samples ``weights``, ``ray_indices``, ``t``, ``dt``, ``owner`` (slot of each sample).
        ``far_rgb`` overrides the colour beyond the scene (e.g. random backgrounds in training).
        ``prune`` skips samples behind opaque surfaces or in near-empty space (see `_prune`).
        ``normals`` adds ``normals [R, 3]``: weight-averaged outward world normals (unit; zero
        where nothing was hit). ``background=False`` renders the actors alone (amodal masks).
        ``median`` adds ``depth_median [R]`` (distance where the accumulated weight reaches 0.5;
        inf where it never does). ``semantics`` (background field with a semantic head) adds ``semantic_probs [R, C]``, the
        class distribution of the background's share of the ray, and ``background_weight [R]``.
        ``step_cone`` overrides the background's cone step (``cfg.step_cone``): a coarse image's pixels
        are wider, so its samples may be sparser (e.g. the pixel angle of a 128-pixel-wide camera).
        """
        n_rays = len(origins)
        inference = not torch.is_grad_enabled()
        parts = self._collect_samples(origins, dirs, list(actors), jitter, terminate=prune, background=background,
                                      step_cone=step_cone, keep_features=inference)
        if prune:
            parts = self._prune(parts, n_rays)
        if torch.is_grad_enabled() and (origins.requires_grad or dirs.requires_grad or any(a.T_actor_world.requires_grad for a in actors)):
            parts = [self._positions_with_pose_grad(p, origins, dirs) for p in parts]
        semantics = semantics and getattr(self.background, "semantic_head", None) is not None
        codes = self.ray_image_codes(n_rays, image_codes)
        shaded = [self._shade(p, semantics and p["slot"] == 0, codes if p["slot"] == 0 else None) for p in parts]
        ray, t, order = self._ray_order(parts)
        ray, t = ray[order], t[order]
        dt = torch.cat([p["dt"] for p in parts])[order]
        sigma = torch.cat([s[0] for s in shaded])[order]
        rgb = torch.cat([s[1] for s in shaded])[order]
        owner = torch.cat([torch.full_like(p["ray"], p["slot"]) for p in parts])[order]
        weights, T_final = render_weights(sigma, dt, ray, n_rays)
        acc = 1.0 - T_final
        far = self.far_color(dirs) if far_rgb is None else far_rgb
        out_rgb = accumulate(rgb, weights, ray, n_rays) + T_final[:, None] * far
        depth = accumulate(t, weights, ray, n_rays) / acc.clamp_min(1e-6)
        n_owner = 1 + len(actors)
        owner_w = torch.zeros(n_rays * n_owner, dtype=weights.dtype, device=weights.device)
        owner_w = owner_w.index_add(0, ray * n_owner + owner, weights).view(n_rays, n_owner)
        out = {"rgb": out_rgb, "depth": depth, "accumulation": acc, "owner_weights": owner_w, "n_samples": torch.tensor(len(ray)), "weights": weights,
               "ray_indices": ray, "t": t, "dt": dt, "owner": owner}
        if median:  # not needed by training: kept off its hot path
            out["depth_median"] = median_distance(weights.detach(), t, dt, sigma.detach(), ray, n_rays)
        if semantics:
            n_cls = len(self.background.cfg.semantic_classes)
            logits = torch.cat([s[2] if len(s) == 3 else s[0].new_zeros(len(s[0]), n_cls) for s in shaded])[order]
            w_bg = weights * (owner == 0)
            bg_weight = accumulate(w_bg, torch.ones_like(w_bg), ray, n_rays)
            probs = accumulate(torch.softmax(logits, -1), w_bg, ray, n_rays)
            out["semantic_probs"] = probs / bg_weight.clamp_min(1e-6)[:, None]
            out["background_weight"] = bg_weight
        if normals:
            n_world = torch.cat([self._normals_world(p) for p in parts])[order]
            out["normals"] = torch.nn.functional.normalize(accumulate(n_world, weights.detach(), ray, n_rays), dim=-1)
        return out
