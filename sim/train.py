"""Joint training of background and actor fields from posed images (+ optional LiDAR).

One loop serves every source: a capture log of the built-in world (cameras + LiDAR + actor tracks)
and captured static datasets (background only). Progress shows loss, PSNR, rays/s and ETA;
checkpoints are written atomically every ``checkpoint_every_s`` and training resumes from the last
one after a kill (same step and optimizer moments; the random stream is re-seeded from the step).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Callable

import torch
from torch import Tensor

from scenes.classes import ACTOR_CLASSES, CLASS_IDS, UNLABELLED
from scenes.graph import SceneGraph
from scenes.progress import JobProgress
from scenes.settings import Range
from sim.checkpoint import load_checkpoint, load_optimizer_state, read_checkpoint_meta, save_checkpoint
from scenes.transforms import invert_pose
from sim.compose import ActorRays, NeuralScene
from sim.data import RayBank
from sim.lidar_loss import lidar_loss
from sim.tracks import TRACK_MARGIN, TrackRefiner, refinement_of
from sim.volume import distortion_loss
from sim.device import resolve_device


@dataclass
class TrainConfig:
    """Optimisation settings."""

    steps: int = 2000
    """Number of optimisation steps (the schedule is stretched over them)."""
    max_seconds: float | None = None
    """Stop after this much training time (wall clock, resumes included); the LR schedule follows
    whichever of steps / time runs out first."""
    device: str = "auto"
    """Where to train: 'auto' (CUDA if a GPU is visible, else the CPU), 'cpu', 'cuda' or 'cuda:N'; the checkpoint is the same (CPU tensors)."""
    rays_per_batch: int | None = None
    """Camera rays per step (the starting and nominal count when ``samples_per_batch`` adapts it);
    None = 1024 on a CPU (there many small steps beat few large ones) and 8192 on a GPU (small
    batches leave it idle)."""
    lidar_rays_per_batch: int | None = None
    """LiDAR rays per step (when the data has LiDAR); None = half the camera rays."""
    samples_per_batch: int | None = None
    """Target samples per step (instant-ngp's dynamic batch): the ray counts follow the running
    samples per ray, between 1/4 and 4x ``rays_per_batch`` (LiDAR rays keep their ratio), so the
    young field's long rays (lego-200: ~120 samples per ray in the first steps, 13 later) do not make
    the first minutes crawl. None = 16384 on a CPU, off on a GPU (not yet measured there); 0 = off."""
    actor_ray_fraction: float = 0.25
    """Share of camera rays drawn among pixels that may see an actor box (cars and pedestrians
    cover a small part of the images: uniform sampling starves their fields)."""
    lr: float = 1e-2
    """Adam learning rate at the start; decays exponentially to lr * lr_final_factor."""
    lr_final_factor: float = 0.1
    """Final learning rate as a fraction of the initial one."""
    depth_loss_weight: float = 0.05
    """Weight of the L1 LiDAR range loss (metres)."""
    empty_loss_weight: float = 0.01
    """Weight pushing accumulation to 0 along LiDAR rays that returned nothing (sky)."""
    line_of_sight_weight: float = 0.1
    """Weight of the LiDAR line-of-sight loss: no rendering weight in front of the return."""
    line_of_sight_margin: float = 0.2
    """Distance in front of a LiDAR return (metres) where weight is still allowed."""
    lidar_surface_weight: float = 0.1
    """Weight of the hinge holding the background's density just behind each LiDAR return at
    ``lidar_surface_density`` or above (`sim.lidar_loss`): without it thin structures (lamp poles,
    tree trunks) vanish from a log without per-pixel labels (built-in street, 1,400 steps: other
    surfaces 25.5 -> 26.9 dB; bench/RESULTS.md). 0 = off."""
    lidar_surface_density: float = 1.0
    """Density (per metre) the surface hinge asks for behind a return: enough to keep a measured
    surface alive (its occupancy cell occupied, its gradient alive) for the photometric and range
    losses to shape; asking for 20 made the hinge's points behind edge returns (a roof against the
    sky) visible, and cost the labelled built-in log 0.6 dB."""
    lidar_surface_depth: float = 0.05
    """Depth (metres) behind a return where the surface hinge samples its point (uniformly)."""
    semantic_loss_weight: float = 0.04
    """Weight of the cross-entropy of the background's class distribution against pixel labels
    (data with semantic labels and a background field with a semantic head)."""
    actor_mask_loss_weight: float = 0.05
    """Weight of the squared error between the rendering weight the actors own on a camera ray and
    whether its pixel is labelled with an actor class (car, pedestrian) (data with semantic labels).
    Without it an actor's field may stay half transparent where the background behind it explains
    the rest of the colour; moved elsewhere, such an actor shows the old background through it."""
    color_floor: float = 0.01
    """Gradient floor of the background's and actors' colour sigmoids for the first
    ``color_floor_steps`` (`sim.field.ColorSigmoid`): an actor still half transparent is pushed to
    black until its colour saturates and, without it, stays black for good (3 of 8 cars of a demo
    street). 0 = off."""
    color_floor_steps: int = 500
    """An actor is opaque and its colour alive long before this; kept on for a whole run, the floor
    made lego-200 diverge (bench/RESULTS.md, 2026-12-01 colour-floor A/B)."""
    distortion_loss_weight: float = 0.01
    """Weight of mip-NeRF 360's distortion loss on camera rays (`sim.volume.distortion_loss`, distance
    normalised as ``1 - near / t``), for unbounded backgrounds (real captures) only: without it a
    young field fits the photos with haze spread along every ray, which also keeps every cell
    occupied and rays long (bench/RESULTS.md, fern diagnosis)."""
    coarse_step_scale: float = 4.0
    """Unbounded backgrounds: the marching steps start this many times longer and shrink
    geometrically to their configured length over the first ``coarse_step_fraction`` of the run. A
    young field is haze along every ray (tens of samples per ray for hundreds of steps on a real
    capture); coarse steps make those steps cheap, and the dynamic batch turns the saving into more
    rays."""
    coarse_step_fraction: float = 0.3
    """Share of the run (steps or time, whichever runs out first) over which the steps reach their
    configured length; 0 = fine steps from the start."""
    occupancy_update_every: int = 16
    """Steps between occupancy-grid refreshes."""
    occupancy_samples: int = 1 << 16
    """Random cells refreshed per update (plus the occupied ones)."""
    occupancy_warmup_steps: int = 256
    """Without LiDAR, refresh every occupied cell (not a sample of them) during these first steps;
    with LiDAR, do not refresh the seeded grids at all before this step."""
    occupancy_warmup_decay: float = 0.5
    """Without LiDAR, the factor on each cell's density memory per refresh during the warm-up (the
    grids' own decay, 0.95, applies after it). The first refresh records the young field's haze
    (~0.37 everywhere); at 0.95 per refresh that memory takes ~25 refreshes to fall under the
    threshold, and every cell stayed occupied meanwhile (bench/RESULTS.md, "Figures moved out of
    docstrings": the lego-200 A/B of 0.95 / 0.7 / 0.5)."""
    random_background: bool = True
    """With alpha masks: composite targets on a random colour per ray (learns true transparency)."""
    checkpoint_every_s: float = 60.0
    """Seconds between checkpoints."""
    track_refinement: bool = False
    """Smooth the logged tracks, then learn per-time corrections (x, y, yaw) of the actors' poses (`sim.tracks`)."""
    track_lr: Annotated[float, Range(lo=0.0)] = 1e-3
    """Adam learning rate of the track corrections (m; yaw in m of nose travel), decayed like ``lr``."""
    track_smoothness_weight: Annotated[float, Range(lo=0.0)] = 1.0
    """Weight of the refined tracks' smoothness over time (squared second differences, `sim.tracks`)."""
    track_magnitude_weight: Annotated[float, Range(lo=0.0)] = 0.1
    """Weight of the mean squared correction (m^2): a pull towards the logged (smoothed) tracks."""
    track_smoothing_s: Annotated[float, Range(lo=0.0)] = 1.0
    """Half-width (s) of the smoothing of logged tracks before refinement (`sim.tracks.TrackSmoothing`); 0: off."""
    seed: int = 0
    """Random seed (batches, jitter)."""
    progress: bool = True
    """Show a progress bar."""

    def resolved(self) -> "TrainConfig":
        """This config with the device and the automatic batch sizes made explicit."""
        device = resolve_device(self.device)
        rays = self.rays_per_batch or (8192 if device.type == "cuda" else 1024)
        lidar = rays // 2 if self.lidar_rays_per_batch is None else self.lidar_rays_per_batch
        samples = (0 if device.type == "cuda" else 16384) if self.samples_per_batch is None else self.samples_per_batch
        return replace(self, device=str(device), rays_per_batch=rays, lidar_rays_per_batch=lidar, samples_per_batch=samples)

    def for_batch(self, camera_rays: int) -> "TrainConfig":
        """This (resolved) config drawing ``camera_rays`` camera rays per step, LiDAR rays in proportion."""
        lidar = round(camera_rays * self.lidar_rays_per_batch / self.rays_per_batch)
        return replace(self, rays_per_batch=camera_rays, lidar_rays_per_batch=lidar)


class DynamicBatch:
    """Camera rays per step that keep the samples per step near ``cfg.samples_per_batch``: the target
    over a running mean of samples per camera ray (LiDAR rays included in the count), clamped to
    [1/4, 4] x ``cfg.rays_per_batch`` and rounded to 64. Fixed at ``rays_per_batch`` when the
    target is 0."""

    def __init__(self, cfg: "TrainConfig", rays: int | None = None):
        self.cfg, self.rays = cfg, int(rays or cfg.rays_per_batch)
        self._samples_per_ray: float | None = None

    def update(self, samples: float, camera_rays: int) -> int:
        target = self.cfg.samples_per_batch
        if not target:
            return self.rays
        spr = samples / max(camera_rays, 1)
        self._samples_per_ray = spr if self._samples_per_ray is None else 0.8 * self._samples_per_ray + 0.2 * spr
        base = self.cfg.rays_per_batch
        rays = min(max(target / max(self._samples_per_ray, 1e-3), base / 4), base * 4)
        self.rays = max(64, int(round(rays / 64)) * 64)
        return self.rays


def make_optimizer(model: NeuralScene, lr: float, tracks: TrackRefiner | None = None, track_lr: float = 0.0) -> torch.optim.Optimizer:
    """Adam over the model, and over the track corrections as a second group ("tracks", own rate)."""
    groups = [{"params": list(model.parameters())}] + ([] if tracks is None else [{"params": list(tracks.parameters()), "lr": track_lr, "name": "tracks"}])
    # The fused kernel is ~6x faster than foreach on CPU for the big hash tables (measured: 6 ms vs
    # 34 ms per step for 8.4M parameters); fall back where a build lacks it.
    try:
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99), eps=1e-15, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99), eps=1e-15)


def psnr(mse: float) -> float:
    return -10.0 * math.log10(max(mse, 1e-10))


@torch.no_grad()
def init_occupancy_from_lidar(model: NeuralScene, bank: RayBank, dilate: int = 1, actor_margin: float = 0.0) -> None:
    """Mark cells that LiDAR returns fall in (background and each actor frame) as occupied. Returns
    within ``actor_margin`` (m, x / y) of a box (`sim.tracks.TRACK_MARGIN`) are not the background's; actor cells grow by it."""
    if bank.lidar is None:
        return
    dev = model.aabb.device
    lidar = {k: v.to(dev) for k, v in bank.lidar.items()}
    hit = torch.isfinite(lidar["ranges"])
    pts = lidar["origins"][hit] + lidar["dirs"][hit] * lidar["ranges"][hit, None]
    tidx = lidar["time_idx"][hit]
    # Returns from actors belong to the actors' fields, not the background.
    on_actor = torch.zeros(len(pts), dtype=torch.bool, device=dev)
    for ti in torch.unique(tidx):
        sel = (tidx == ti).nonzero().flatten()
        actors = [replace(a, size=a.size + torch.tensor([2 * actor_margin, 2 * actor_margin, 0.0])).to(dev)
                  for a in bank.actor_rays(ti.reshape(1).cpu())]  # shared [1, 4, 4] poses at that time
        on_actor[sel] = model._inside_actor_boxes(pts[sel], torch.zeros(len(sel), dtype=torch.long, device=dev), actors)
    model.background_grid.reset_from_points(model.world_to_unit(pts[~on_actor]), dilate=dilate)
    block_static_actor_volumes(model, bank.graph)
    per_asset: dict[str, list[torch.Tensor]] = {}
    for a, actor in enumerate(bank.graph.actors):
        T = bank.poses.to(dev)[tidx, a]
        x = (T[:, :3, :3] @ pts[..., None])[..., 0] + T[:, :3, 3]
        x01 = x / torch.tensor(actor.size, device=dev) + 0.5
        per_asset.setdefault(actor.asset_id, []).append(x01[((x01 >= 0) & (x01 <= 1)).all(-1)])
    sizes = {a.asset_id: a.size for a in bank.graph.actors}
    for asset, chunks in per_asset.items():  # grown by the margin in cells along x and y
        grow = (dilate + math.ceil(actor_margin * r / s) for r, s in zip(model.actor_grid(asset).resolution[:2], sizes[asset][:2]))
        model.actor_grid(asset).reset_from_points(torch.cat(chunks), dilate=(*grow, dilate))


@torch.no_grad()
def block_static_actor_volumes(model: NeuralScene, graph: SceneGraph) -> None:
    """The background never observes the inside of a parked car's box (the car is always there):
    forbid those cells to the background so that removing the car leaves no ghost."""
    static = [a for a in graph.actors if len(a.track.times) == 1]
    if not static:
        return
    dev = model.aabb.device
    rays = [ActorRays(a.asset_id, a.instance_id, torch.tensor(a.size, dtype=torch.float32),
                      torch.tensor(invert_pose(a.track.pose_at(0.0)), dtype=torch.float32)[None]).to(dev) for a in static]
    model.background_grid.block(lambda x01: model._inside_actor_boxes(model.unit_to_world(x01), torch.zeros(len(x01), dtype=torch.long, device=dev), rays))


@torch.no_grad()
def block_unseen_cells(model: NeuralScene, bank: RayBank, dilate: int = 1) -> float:
    """Forbid the background every occupancy cell no training camera sees (its centre behind every
    camera or outside every image, the visible set dilated by ``dilate`` cells); returns the share
    of cells left. A contracted field covers all space, and a forward-facing capture sees a small
    part of it: without this, the unseen cells keep the young field's haze (no ray ever asks them
    to be empty), stay occupied and are marched and refreshed for nothing (nerfacc marks such cells
    invisible for the same reason)."""
    grid = model.background_grid
    idx = torch.arange(grid.n_cells, device=grid.density.device)
    x = model.unit_to_world(grid._to_unit(grid._cell_corner(idx) + 0.5)).double().cpu()
    seen = torch.zeros(grid.n_cells, dtype=torch.bool)
    R, t = bank.T_world_cam[:, :3, :3].double(), bank.T_world_cam[:, :3, 3].double()
    for v in range(len(R)):
        p = (x - t[v]) @ R[v]  # camera frame: R^T (x - t)
        z = p[:, 2].clamp_min(1e-9)
        fx, fy, cx, cy = bank.K[v].double()
        u, w = fx * p[:, 0] / z + cx, fy * p[:, 1] / z + cy
        W, H = float(bank.widths[v]), float(bank.heights[v])
        m = 0.5 if bank.view_lens_offset[v] >= 0 else 0.0  # a distorted lens sees past its pinhole bounds
        seen |= (p[:, 2] > 0) & (u >= -m * W) & (u <= (1 + m) * W) & (w >= -m * H) & (w <= (1 + m) * H)
    seen = seen.view(grid.resolution)
    if dilate > 0:
        k = 2 * dilate + 1
        seen = torch.nn.functional.max_pool3d(seen[None, None].float(), k, stride=1, padding=dilate)[0, 0] > 0
    grid.block(lambda x01: ~seen.flatten().to(x01.device))
    return float(seen.float().mean())


def update_occupancy(model: NeuralScene, n_samples: int | None, every_occupied: bool = False, decay: float | None = None) -> None:
    """Refresh every grid (`OccupancyGrid.update`)."""
    model.background_grid.update(model.background.density, n_samples, every_occupied=every_occupied, decay=decay)
    for asset in model.asset_ids:
        model.actor_grids[asset].update(model.actor_fields[asset].density, n_samples, every_occupied=every_occupied, decay=decay)


def refine_occupancy(model: NeuralScene) -> None:
    """Every grid re-measured against its trained field (`OccupancyGrid.refine`): renders march
    only where the field has density. Measured on a trained default world (2-core CPU): background
    12.7% -> 11.0% occupied, cars 47-89% -> 45-82%; 4 views at 320x180 render in 6.8-7.9 s instead
    of 8.2-10.7 s (two runs), their images 54-57 dB PSNR from the unrefined grid's and 99.99% of
    pixels keeping their hit / miss; the refinement itself takes 9-11 s."""
    model.background_grid.refine(model.background.density)
    for asset in model.asset_ids:
        model.actor_grids[asset].refine(model.actor_fields[asset].density)


def _semantic_loss(out: dict, labels: Tensor, classes: tuple[str, ...]) -> Tensor:
    """Cross-entropy of the background's class distribution on camera rays labelled with a
    background class and mostly owned by the background (actors and sky have their own labels)."""
    lut = torch.full((256,), -1, dtype=torch.long, device=labels.device)
    lut[[CLASS_IDS[c] for c in classes]] = torch.arange(len(classes), device=labels.device)
    target = lut[labels.long()]
    n = len(labels)
    use = (target >= 0) & (out["background_weight"][:n] > 0.5)
    if not use.any():
        return out["semantic_probs"].sum() * 0.0
    p = out["semantic_probs"][:n][use].gather(1, target[use, None])[:, 0]
    return -torch.log(p.clamp_min(1e-6)).mean()


def _actor_mask_loss(out: dict, labels: Tensor) -> Tensor:
    """Squared error of each labelled camera ray's actor-owned weight (``owner_weights`` past column 0)
    against its label being an actor class, over all the batch's rays (unlabelled ones add nothing)."""
    is_actor = torch.zeros(256, dtype=torch.bool, device=labels.device)
    is_actor[[CLASS_IDS[c] for c in ACTOR_CLASSES]] = True
    labelled = labels != UNLABELLED
    actor_weight = out["owner_weights"][:len(labels), 1:].sum(1)[labelled]
    return torch.sum((actor_weight - is_actor[labels[labelled].long()].to(actor_weight.dtype)) ** 2) / max(len(labels), 1)


def _distortion(out: dict, n_cam: int, t0: float) -> Tensor:
    """Mean distortion loss over camera rays, distances normalised as ``s = 1 - t0 / t`` (mip-NeRF
    360's disparity-like warp: [t0, inf) -> [0, 1))."""
    cam = out["ray_indices"] < n_cam
    t, dt = out["t"][cam], out["dt"][cam]
    warp = lambda x: 1.0 - t0 / x.clamp_min(t0)
    s0, s1 = warp(t - dt / 2), warp(t + dt / 2)
    return distortion_loss(out["weights"][cam], (s0 + s1) / 2, s1 - s0, out["ray_indices"][cam], n_cam).mean()


def training_step(model: NeuralScene, bank: RayBank, cfg: TrainConfig, gen: torch.Generator, tracks: TrackRefiner | None = None) -> dict[str, float]:
    """One batch: render camera (+ LiDAR) rays, return the loss pieces (loss already backpropagated).
    Batches are drawn on the CPU (the same stream on any device) and moved to the model's device.
    ``tracks``: the actors at their refined poses, the corrections' regularisers added (`sim.tracks`)."""
    if not model.training:  # a render in between (an evaluation, a snapshot) left it in eval mode
        model.train()
    dev = model.aabb.device
    to_dev = lambda d: None if d is None else {k: v.to(dev, non_blocking=True) for k, v in d.items()}
    batch = bank.sample_pixels(cfg.rays_per_batch, gen, cfg.actor_ray_fraction)
    lidar = bank.sample_lidar(cfg.lidar_rays_per_batch, gen)
    tidx = batch["time_idx"] if lidar is None else torch.cat([batch["time_idx"], lidar["time_idx"]])
    actors = [a.to(dev) for a in bank.actor_rays(tidx)] if tracks is None else tracks.actor_rays(tidx)
    batch, lidar = to_dev(batch), to_dev(lidar)
    origins, dirs = batch["origins"], batch["dirs"]
    n_cam = len(origins)
    if lidar is not None:
        origins = torch.cat([origins, lidar["origins"]])
        dirs = torch.cat([dirs, lidar["dirs"]])
    far_rgb = None
    target = batch["rgb"]
    if "alpha" in batch and cfg.random_background:
        far_rgb = torch.rand(len(origins), 3, generator=gen).to(dev)
        a = batch["alpha"][:, None]
        target = target * a + far_rgb[:n_cam] * (1 - a)
    elif "alpha" in batch:
        a = batch["alpha"][:, None]
        target = target * a + model.far_color(dirs[:n_cam]) .detach() * (1 - a)
    semantics = "semantic" in batch and model.background.semantic_head is not None
    codes = None
    if model.image_codes is not None:  # each photo's own code; LiDAR rays take the mean
        codes = model.image_codes(batch["view"])
        if len(origins) > n_cam:
            codes = torch.cat([codes, model.image_codes.weight.mean(0).expand(len(origins) - n_cam, -1)])
    out = model.render_rays(origins, dirs, actors, jitter=True, far_rgb=far_rgb, semantics=semantics, image_codes=codes)
    rgb = out["rgb"][:n_cam]
    gains = model.image_gains(batch["view"])
    if gains is not None:  # the photo's exposure
        rgb = rgb * gains
    mse = torch.mean((rgb - target) ** 2)
    loss = mse
    stats = {"mse": mse.item()}
    if semantics:
        ce = _semantic_loss(out, batch["semantic"], model.background.cfg.semantic_classes)
        loss = loss + cfg.semantic_loss_weight * ce
        stats["semantic_ce"] = ce.item()
    if "semantic" in batch and cfg.actor_mask_loss_weight > 0:
        mask_loss = _actor_mask_loss(out, batch["semantic"])
        loss = loss + cfg.actor_mask_loss_weight * mask_loss
        stats["actor_mask"] = mask_loss.item()
    if model.cfg.unbounded and cfg.distortion_loss_weight > 0:
        dist = _distortion(out, n_cam, max(model.cfg.near, model.cfg.step_min))
        loss = loss + cfg.distortion_loss_weight * dist
        stats["distortion"] = dist.item()
    if lidar is not None:
        loss = loss + lidar_loss(model, out, lidar, n_cam, actors, cfg, gen, stats)
    if tracks is not None:
        loss = loss + tracks.penalty(cfg.track_smoothness_weight, cfg.track_magnitude_weight, stats)
    loss.backward()
    stats["loss"] = loss.item()
    stats["samples_per_ray"] = float(out["n_samples"]) / len(origins)
    stats["samples"] = float(out["n_samples"])
    stats["camera_rays"] = n_cam
    return stats


def coarse_step_scale(cfg: TrainConfig, frac: float) -> float:
    """The marching step factor at ``frac`` of the run (`TrainConfig.coarse_step_scale`)."""
    if cfg.coarse_step_fraction <= 0 or frac >= cfg.coarse_step_fraction:
        return 1.0
    scale = cfg.coarse_step_scale ** (1.0 - frac / cfg.coarse_step_fraction)
    return float(2.0 ** (round(math.log2(scale) * 4) / 4))  # quarter octaves: a few schedules, not one a step


def _progress(cfg: TrainConfig, step: int) -> JobProgress:
    """A bar on a terminal; without one (CI, nohup, a cluster job) a plain line every 30 s
    (`scenes.progress`), so a log file shows training advance."""
    return JobProgress("train", cfg.steps, completed=step, enabled=cfg.progress)


def train(model: NeuralScene, bank: RayBank, graph: SceneGraph, cfg: TrainConfig, out_dir: str | Path,
          extra_meta: dict | None = None, on_step: Callable[[int, float, NeuralScene], None] | None = None) -> dict:
    """Train (or resume) and write the checkpoint folder ``out_dir``. Returns final training stats.
    ``on_step(step, elapsed_s, model)`` runs after every step, off the training clock (e.g. a
    benchmark taking snapshots for a PSNR-against-time curve)."""
    out_dir = Path(out_dir)
    cfg = cfg.resolved()
    model.to(cfg.device)
    tracks = TrackRefiner(bank).to(cfg.device) if cfg.track_refinement and bank.graph.actors else None
    opt = make_optimizer(model, cfg.lr, tracks, cfg.track_lr)
    step, elapsed = 0, 0.0
    batch = DynamicBatch(cfg)
    if (out_dir / "scene.json").exists():
        meta = read_checkpoint_meta(out_dir)
        ts = meta.get("train_state", {})
        loaded, saved_graph, meta = load_checkpoint(out_dir)
        model.load_state_dict(loaded.state_dict())
        if ts.get("finished"):
            return ts.get("stats", {})
        if tracks is not None:
            tracks.load_record(refinement_of(saved_graph), str(out_dir / "scene.json"))
        load_optimizer_state(out_dir, meta, opt)
        step, elapsed = int(meta["step"]), float(ts.get("elapsed_s", 0.0))
        batch = DynamicBatch(cfg, ts.get("camera_rays"))
    elif bank.lidar is not None:
        init_occupancy_from_lidar(model, bank, actor_margin=TRACK_MARGIN if tracks is not None else 0.0)
    elif model.cfg.unbounded:
        block_unseen_cells(model, bank)
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    torch.manual_seed(cfg.seed * 7919 + step)
    decay = math.log(cfg.lr_final_factor)
    stats: dict[str, float] = {}
    last_ckpt = time.perf_counter()
    ema_mse, rays_done, t_run = None, 0, 0.0

    def set_color_floor(done: bool = False) -> None:
        floor = cfg.color_floor if step < cfg.color_floor_steps and not done else 0.0
        for fld in [model.background, *model.actor_fields.values()]:
            if hasattr(fld, "set_color_gradient_floor"):  # analytic test fields have no colour head
                fld.set_color_gradient_floor(floor)

    def checkpoint(finished: bool) -> None:
        state = {"elapsed_s": elapsed, "finished": finished, "stats": stats, "config": dict(cfg.__dict__),
                 "camera_rays": batch.rays}
        save_checkpoint(out_dir, model, graph if tracks is None else tracks.refined_graph(graph), step=step, optimizer=None if finished else opt,
                        train_state=state, extra=extra_meta)

    with _progress(cfg, step) as bar:
        while step < cfg.steps and (cfg.max_seconds is None or elapsed < cfg.max_seconds):
            t0 = time.perf_counter()
            frac = max(step / cfg.steps, elapsed / cfg.max_seconds if cfg.max_seconds else 0.0)
            for g in opt.param_groups:
                g["lr"] = (cfg.track_lr if g.get("name") == "tracks" else cfg.lr) * math.exp(decay * min(frac, 1.0))
            if bank.lidar is None and step % cfg.occupancy_update_every == 0:
                # Without LiDAR the grid starts full; early on refresh every occupied cell (all of them
                # at first) and 4x the usual random sample, then the usual sample.
                warm = step < cfg.occupancy_warmup_steps
                update_occupancy(model, cfg.occupancy_samples * (4 if warm else 1), every_occupied=warm,
                                 decay=cfg.occupancy_warmup_decay if warm else None)
            elif step >= cfg.occupancy_warmup_steps and step % cfg.occupancy_update_every == 0:
                # LiDAR-seeded grids are left alone while the young field is still faint: pruning
                # them early drops thin structures (poles, trunks) before the field has learned them.
                update_occupancy(model, cfg.occupancy_samples)
            set_color_floor()
            model.step_scale = coarse_step_scale(cfg, frac) if model.cfg.unbounded else 1.0
            opt.zero_grad(set_to_none=True)
            stats = training_step(model, bank, cfg.for_batch(batch.rays), gen, tracks)
            opt.step()
            step += 1
            dt = time.perf_counter() - t0
            elapsed += dt
            t_run += dt
            rays_done += stats["camera_rays"]
            batch.update(stats["samples"], stats["camera_rays"])
            ema_mse = stats["mse"] if ema_mse is None else 0.9 * ema_mse + 0.1 * stats["mse"]
            stats["rays_per_s"] = rays_done / t_run
            stats["psnr"] = psnr(ema_mse)
            bar.update(step, eta_s=cfg.max_seconds - elapsed if cfg.max_seconds else None, loss=stats["loss"],
                       psnr=stats["psnr"], rays_per_s=stats["rays_per_s"], samples_per_ray=stats["samples_per_ray"])
            if on_step is not None:
                on_step(step, elapsed, model)
            if time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
                checkpoint(finished=False)
                last_ckpt = time.perf_counter()
    set_color_floor(done=True)  # the trained model's gradients are exact again (pose inversion)
    model.step_scale = 1.0
    stats["steps"] = step
    stats["train_seconds"] = elapsed
    if bank.lidar is None or step > cfg.occupancy_warmup_steps:  # seeded grids not yet refreshed: leave them
        t0 = time.perf_counter()
        refine_occupancy(model)
        stats["occupancy_refine_seconds"] = time.perf_counter() - t0
    checkpoint(finished=True)
    return stats
