"""The ground-truth twin: ray casting of the built-in world's meshes (open3d RaycastingScene, Embree).

Conventions (ARCHITECTURE.md):
- World: z up, metres. Actor meshes live in their box frame (x forward, y left, z up) and are placed
  with ``ActorState.T_world_actor``; the twin draws exactly what ``state.actors`` lists, so edits
  (moved, removed, inserted copies sharing an ``asset_id``) render with no extra work.
- Cameras: OpenCV axes (x right, y down, z forward), ``T_world_cam`` maps camera to world.
  ``depth`` is z-depth along the camera z axis, ``ray_dist`` the distance along the unit ray; both
  ``inf`` for sky. Camera-frame normals face the camera; zeros for sky.
- LiDAR frame: x forward, y left, z up; `Twin.lidar` casts the beam directions it is given (the
  scan pattern is a sensor spec, `sensors.lidar.LidarConfig`, one layer up); range is ``inf`` where
  there is no return or beyond ``max_range``.
- Colour: view-independent Lambert shading of the procedural albedo (`scenes.materials.shade`);
  rays that hit nothing see `scenes.materials.sky_color`.
- Semantic ids are `scenes.classes.CLASS_IDS` (0 = sky); instance ids are the actors' (0 = background).
"""

from __future__ import annotations

import numpy as np

from scenes.camera import Camera, pixel_rays
from scenes.classes import CLASS_IDS
from scenes.errors import InputError
from scenes.graph import SceneState
from scenes.materials import shade, sky_color
from scenes.transforms import transform_points

# open3d is imported on first use, not with this module: reading a capture log or training needs no
# ray caster (and a GPU machine without open3d can still train from a log), and the import costs ~1 s.
_O3D = None


def _o3d():
    global _O3D
    if _O3D is None:
        try:
            import open3d
        except ImportError as e:  # pragma: no cover - open3d is a declared dependency
            raise ImportError(f"the ground-truth twin needs open3d ({e}); `pip install open3d` "
                              "(Linux also needs the system library libusb-1.0-0)") from None
        _O3D = open3d
    return _O3D


def _mesh_tensors(vertices: np.ndarray, faces: np.ndarray):
    return (_o3d().core.Tensor(np.ascontiguousarray(vertices, dtype=np.float32)),
            _o3d().core.Tensor(np.ascontiguousarray(faces, dtype=np.uint32)))


class Twin:
    """Ground-truth renderer of a `scenes.world.World` (any object with ``background``,
    ``actor_assets`` and ``config.sun_dir/ambient/diffuse``)."""

    def __init__(self, world):
        self.world = world
        cfg = world.config
        self.sun_dir, self.ambient, self.diffuse = np.asarray(cfg.sun_dir, float), cfg.ambient, cfg.diffuse
        self._bg_scene = _o3d().t.geometry.RaycastingScene()
        self._bg_parts = []  # geometry id -> MeshPart
        for part in world.background:
            gid = self._bg_scene.add_triangles(*_mesh_tensors(part.mesh.vertices, part.mesh.faces))
            assert gid == len(self._bg_parts)
            self._bg_parts.append(part)
        self._actor_cache = (None, None)

    # ------------------------------------------------------------------------------ actor scene
    def _actor_scene(self, state: SceneState):
        """RaycastingScene of the actors in ``state`` (world coords) and geometry id -> (actor, part)."""
        key = tuple((a.asset_id, a.instance_id, a.class_name, np.asarray(a.T_world_actor).tobytes()) for a in state.actors)
        if self._actor_cache[0] == key:
            return self._actor_cache[1]
        scene, index = _o3d().t.geometry.RaycastingScene(), []
        for actor in state.actors:
            if actor.asset_id not in self.world.actor_assets:
                raise InputError(f"twin: actor {actor.actor_id}", "asset_id",
                                 f"no mesh asset '{actor.asset_id}'; known: {sorted(self.world.actor_assets)}")
            for part in self.world.actor_assets[actor.asset_id]:
                v = transform_points(np.asarray(actor.T_world_actor), part.mesh.vertices)
                scene.add_triangles(*_mesh_tensors(v, part.mesh.faces))
                index.append((actor, part))
        self._actor_cache = (key, (scene, index))
        return scene, index

    # ------------------------------------------------------------------------------- core cast
    def cast_rays(self, origins: np.ndarray, dirs: np.ndarray, state: SceneState, max_range: float = np.inf,
                  background: bool = True) -> dict:
        """First hits of rays ``origins/dirs [N, 3]`` (unit dirs, world) against background + actors of ``state``.

        Returns ``dist [N]`` (inf = no hit within ``max_range``), ``rgb [N, 3]`` (shaded; sky colour
        where no hit), ``normals [N, 3]`` (world, facing the ray; zeros where no hit), ``instance [N]``
        int32 and ``semantic [N]`` uint8. ``background=False`` casts against the actors alone.
        """
        o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
        rays = _o3d().core.Tensor(np.concatenate([o, d], axis=1).astype(np.float32))
        hits_bg = self._bg_scene.cast_rays(rays) if background else {"t_hit": _o3d().core.Tensor(np.full(len(o), np.inf, np.float32))}
        actor_scene, actor_index = self._actor_scene(state)
        hits_act = actor_scene.cast_rays(rays) if actor_index else None
        t_bg = hits_bg["t_hit"].numpy().astype(np.float64)
        t_act = hits_act["t_hit"].numpy().astype(np.float64) if hits_act else np.full(len(o), np.inf)
        use_act = t_act < t_bg
        dist = np.where(use_act, t_act, t_bg)
        dist[~(dist <= max_range)] = np.inf
        n = len(o)
        out = {"dist": dist, "rgb": np.zeros((n, 3), np.float32), "normals": np.zeros((n, 3)),
               "instance": np.zeros(n, np.int32), "semantic": np.zeros(n, np.uint8)}
        hit = np.isfinite(dist)
        out["rgb"][~hit] = sky_color(d[~hit])
        self._fill(out, hit & ~use_act, hits_bg, o, d, lambda gid: (None, self._bg_parts[gid]))
        if hits_act:
            self._fill(out, hit & use_act, hits_act, o, d, lambda gid: actor_index[gid])
        return out

    def distance_to_surface(self, points: np.ndarray, state: SceneState) -> np.ndarray:
        """Unsigned distance ``[N]`` (metres) from world points ``[N, 3]`` to the nearest surface of the
        background or of an actor of ``state``."""
        pts = _o3d().core.Tensor(np.asarray(points, dtype=np.float32).reshape(-1, 3))
        dist = self._bg_scene.compute_distance(pts).numpy().astype(np.float64)
        actor_scene, actor_index = self._actor_scene(state)
        if actor_index:
            dist = np.minimum(dist, actor_scene.compute_distance(pts).numpy())
        return dist

    def _fill(self, out: dict, mask: np.ndarray, hits: dict, o, d, lookup) -> None:
        """Write normals, albedo-shaded rgb, instance and semantic ids of the hits selected by ``mask``."""
        idx = np.flatnonzero(mask)
        if len(idx) == 0:
            return
        gids = hits["geometry_ids"].numpy()[idx]
        normals = hits["primitive_normals"].numpy()
        order = np.argsort(gids, kind="stable")
        uniq, starts = np.unique(gids[order], return_index=True)
        for gid, sel in zip(uniq, np.split(idx[order], starts[1:])):
            actor, part = lookup(int(gid))
            n_w = normals[sel].astype(np.float64)
            n_w /= np.linalg.norm(n_w, axis=1, keepdims=True)
            n_w *= -np.sign(np.einsum("ij,ij->i", n_w, d[sel]))[:, None]  # face the ray
            p_w = o[sel] + out["dist"][sel, None] * d[sel]
            if actor is None:
                p_l, n_l = p_w, n_w
            else:
                R, t = np.asarray(actor.T_world_actor)[:3, :3], np.asarray(actor.T_world_actor)[:3, 3]
                p_l, n_l = (p_w - t) @ R, n_w @ R
            albedo = part.material.albedo(p_l, n_l)
            out["rgb"][sel] = shade(albedo, n_w, self.sun_dir, self.ambient, self.diffuse)
            out["normals"][sel] = n_w
            out["instance"][sel] = 0 if actor is None else actor.instance_id
            out["semantic"][sel] = CLASS_IDS[part.class_name if actor is None else actor.class_name]

    # ---------------------------------------------------------------------------------- sensors
    def render(self, camera: Camera, state: SceneState) -> dict:
        """Render every ground-truth product of ``camera`` at ``state`` (see the module docstring)."""
        K = camera.intrinsics
        o, d, z_per_dist = pixel_rays(K, camera.T_world_cam, camera.lens)
        r = self.cast_rays(o.reshape(-1, 3), d.reshape(-1, 3), state)
        H, W = K.height, K.width
        R_wc = np.asarray(camera.T_world_cam)[:3, :3]
        ray_dist = r["dist"].reshape(H, W)
        return {
            "rgb": r["rgb"].reshape(H, W, 3).astype(np.float32),
            "depth": (ray_dist * z_per_dist).astype(np.float32),
            "ray_dist": ray_dist.astype(np.float32),
            "normals": (r["normals"] @ R_wc).reshape(H, W, 3).astype(np.float32),
            "instance": r["instance"].reshape(H, W),
            "semantic": r["semantic"].reshape(H, W),
        }

    def lidar(self, T_world_lidar: np.ndarray, dirs_lidar: np.ndarray, state: SceneState,
              max_range: float = np.inf) -> dict:
        """One LiDAR sweep from ``T_world_lidar``: every beam of ``dirs_lidar [N, 3]`` (unit, LiDAR
        frame; a scan pattern such as `sensors.lidar.LidarConfig.directions()`) cast at once (no
        motion distortion: the sweep is instantaneous).

        Returns ``dirs_lidar [N, 3]`` (as given), ``range [N]`` (inf = no return within
        ``max_range``), ``instance [N]`` int32 and ``semantic [N]`` uint8.
        """
        T = np.asarray(T_world_lidar, dtype=np.float64)
        dirs_l = np.asarray(dirs_lidar, dtype=np.float64).reshape(-1, 3)
        dirs_w = dirs_l @ T[:3, :3].T
        origins = np.broadcast_to(T[:3, 3], dirs_w.shape)
        r = self.cast_rays(origins, dirs_w, state, max_range=max_range)
        return {"dirs_lidar": dirs_l, "range": r["dist"], "instance": r["instance"], "semantic": r["semantic"]}
