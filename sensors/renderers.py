"""Two interchangeable ray renderers behind every sensor: the neural scene and the mesh twin.

Both answer ``cast(origins, dirs, state, normals, background) -> dict`` of per-ray numpy arrays, so
each sensor product is computed by one piece of code and checked against the twin:

- ``rgb [N, 3]`` float32 in [0, 1];
- ``ray_dist [N]`` expected distance along the unit ray, ``ray_dist_median [N]`` the distance where
  accumulated weight reaches 0.5 (first surface); both ``inf`` where the ray sees nothing;
- ``accumulation [N]`` opacity (the twin: 1 on a hit, 0 otherwise);
- ``instance [N]`` int32 actor instance id (0 = background / sky);
- ``semantic [N]`` uint8 class id (`scenes.classes`; 0 = sky): actors' classes from the scene
  graph, the background's from its semantic head (trained on labelled images); background pixels
  of a scene trained without labels get `UNLABELLED` (255);
- with ``normals``: ``normals [N, 3]`` unit world-frame normals facing the ray (zero on misses).

Conventions: world z up, metres; unit ray directions.
"""

from __future__ import annotations

import numpy as np
import torch

from scenes.classes import CLASS_IDS
from scenes.graph import SceneState
from sim.compose import NeuralScene
from sim.render import render_ray_batch, sample_ray_distances

UNLABELLED = 255
"""Semantic id of background pixels whose class the scene cannot tell (trained without labels)."""


def _tensor(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.array(a, dtype=np.float32).reshape(-1, 3)).to(device)


def _face_rays(normals: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    flip = np.einsum("ij,ij->i", normals, dirs) > 0
    return np.where(flip[:, None], -normals, normals)


class NeuralRenderer:
    """Renders a trained `NeuralScene`."""

    def __init__(self, model: NeuralScene, chunk: int = 1 << 16):
        self.model = model
        self.chunk = chunk

    def cast(self, origins: np.ndarray, dirs: np.ndarray, state: SceneState, normals: bool = False,
             background: bool = True) -> dict[str, np.ndarray]:
        dev = self.model.aabb.device
        o, d = _tensor(origins, dev), _tensor(dirs, dev)
        r = render_ray_batch(self.model, o, d, state, self.chunk, normals=normals, background=background)
        out = {k: v.cpu().numpy() for k, v in r.items() if k != "samples_per_ray"}
        out["instance"] = out["instance"].astype(np.int32)
        cls = {a.instance_id: CLASS_IDS.get(a.class_name, UNLABELLED) for a in state.actors}
        hit = out["accumulation"] > 0.5
        background = out.pop("background_class", np.full(len(hit), UNLABELLED))
        out["semantic"] = np.where(hit, background, CLASS_IDS["sky"]).astype(np.uint8)
        for iid, c in cls.items():
            out["semantic"][out["instance"] == iid] = c
        if normals:
            out["normals"] = _face_rays(out["normals"].astype(np.float64), np.asarray(dirs).reshape(-1, 3)).astype(np.float32)
        return out

    def sample_distances(self, origins: np.ndarray, dirs: np.ndarray, state: SceneState, n_draws: int, seed: int = 0) -> np.ndarray:
        """Distances ``[N, n_draws]`` drawn from each ray's rendering-weight distribution."""
        dev = self.model.aabb.device
        o, d = _tensor(origins, dev), _tensor(dirs, dev)
        gen = torch.Generator().manual_seed(seed)
        return sample_ray_distances(self.model, o, d, state, n_draws, gen, self.chunk).cpu().numpy().astype(np.float64)


class TwinRenderer:
    """Renders the ground-truth meshes of the built-in world (`scenes.twin.Twin`)."""

    def __init__(self, twin):
        self.twin = twin

    def cast(self, origins: np.ndarray, dirs: np.ndarray, state: SceneState, normals: bool = False,
             background: bool = True) -> dict[str, np.ndarray]:
        r = self.twin.cast_rays(np.asarray(origins).reshape(-1, 3), np.asarray(dirs).reshape(-1, 3), state, background=background)
        hit = np.isfinite(r["dist"])
        out = {"rgb": r["rgb"].astype(np.float32), "ray_dist": r["dist"].astype(np.float32),
               "ray_dist_median": r["dist"].astype(np.float32), "accumulation": hit.astype(np.float32),
               "instance": r["instance"].astype(np.int32), "semantic": r["semantic"].astype(np.uint8)}
        if normals:
            out["normals"] = r["normals"].astype(np.float32)
        return out
