"""iNeRF: camera pose (localisation) and actor 6-DoF pose from an image, by gradient descent through
the composed scene, from a start that a wide-basin step has moved first.

The photometric loss of a NeRF has a narrow basin (a start 15-40 degrees off mostly does not
converge), so each start is first moved:

- cameras, by feature matching: render the scene from the start (on a canvas wider than the image,
  then at the image's size), match SIFT features of the render and the image, lift the render's by
  its depth to 3D and solve PnP with RANSAC (`match_rounds`); a short gentle descent polishes it;
- actors, by a coarse-to-fine grid search over ground-plane position and yaw (`actor_search_xy`,
  `actor_search_yaw_deg`: the initial pose's uncertainty), scored photometrically with the actor
  alone composited over the rest of the scene rendered once, blurred by each level's step, the
  first level's few best candidates each refined and the best on every pixel kept
  (`actor_search_branches`); then a slide along the camera's line of sight on every pixel (the
  direction a far actor's image barely shows); then the descent, whose result is kept only where it
  renders the region better; last, a pattern search on every pixel along and across the line of
  sight and in yaw (`actor_polish_xy`), which the descent's random rays stop short of.

Conventions: OpenCV cameras, ``T_world_cam`` camera -> world; actor frame x forward, y left, z up.
A pose is updated on the right, ``T = T_init @ exp(xi)`` (`sim.lie`), so ``xi`` is a perturbation in
the pose's own frame; Adam on the 6 twist coordinates, learning rate decayed exponentially.

Each iteration renders ``rays`` pixels of the image: ``random``, ``interest_points`` (SIFT/ORB
keypoints, OpenCV) or ``interest_regions`` (the keypoints dilated, iNeRF's best); a fifth of the
rays stays random so textureless images still work. Coarse to fine: the fields' finest hash-grid
levels fade in over the first part of the run (BARF), so the first steps see a smooth scene with a
wide basin (`coarse_to_fine`, off by default: see its note). Loss: Huber on RGB (robust to what the scene cannot explain). When the final photometric
check fails, more hypotheses start from perturbed initial poses and the best one wins.
The fields' parameters are frozen: only the pose gets gradients.
"""

from __future__ import annotations

import numpy as np
import torch

from scenes.errors import InputError
from scenes.graph import SceneState
from scenes.lens import CameraModel
from sim.compose import ActorRays, NeuralScene
from tasks.pose.actor_search import ActorScore, box_region, polish_actor, search_actor
from tasks.pose.camera_search import match_camera
from tasks.pose.problem import InversionConfig, InversionResult, PoseProblem, run_hypotheses

__all__ = ["InversionConfig", "InversionResult", "invert_camera_pose", "invert_actor_pose", "write_localization"]


def invert_camera_pose(model: NeuralScene, image: np.ndarray, lens: CameraModel, T_init: np.ndarray,
                       state: SceneState = SceneState(0.0), cfg: InversionConfig = InversionConfig(),
                       far_rgb=None) -> InversionResult:
    """Localise a camera: the ``T_world_cam`` whose render of ``state`` matches ``image``
    (float ``[H, W, 3]`` in [0, 1], the lens' size), starting from ``T_init``. ``far_rgb``: colour
    beyond the scene (e.g. the white background of Blender data) when the model has no sky."""
    problem = PoseProblem(model, image, lens, state, far_rgb, cfg)
    match = (lambda T: match_camera(problem, T, cfg)) if cfg.match_rounds > 0 else None
    return run_hypotheses(problem, lambda T: (T, problem.actors), T_init, cfg, match=match,
                          refine=(cfg.refine_iterations, cfg.refine_lr_scale))


def invert_actor_pose(model: NeuralScene, image: np.ndarray, lens: CameraModel, T_world_cam: np.ndarray,
                      state: SceneState, actor_id: str, T_init: np.ndarray, cfg: InversionConfig = InversionConfig(),
                      far_rgb=None) -> InversionResult:
    """Object pose: the ``T_world_actor`` of ``actor_id`` that explains ``image`` seen from the
    known camera, the rest of ``state`` fixed. Rays are drawn around the actor's initial box."""
    slot = next((i for i, a in enumerate(state.actors) if a.actor_id == actor_id), None)
    if slot is None:
        raise InputError("invert_actor_pose", "actor_id", f"no actor '{actor_id}' at this time; known: {[a.actor_id for a in state.actors]}")
    region = box_region(lens, T_world_cam, state.actors[slot].size, T_init)
    problem = PoseProblem(model, image, lens, state, far_rgb, cfg, region)
    T_cam = torch.as_tensor(T_world_cam, dtype=torch.float32)
    base = problem.actors

    def pose_of(T_world_actor: torch.Tensor):
        R, t = T_world_actor[:3, :3], T_world_actor[:3, 3]
        T_actor_world = torch.eye(4).clone()
        T_actor_world[:3, :3] = R.T
        T_actor_world[:3, 3] = -(R.T @ t)
        a = base[slot]
        moved = ActorRays(a.asset_id, a.instance_id, a.size, T_actor_world[None])
        return T_cam, [moved if i == slot else b for i, b in enumerate(base)]

    # Restarts perturb the ground-plane position only (x, y): a car stays on the road.
    # The score on every pixel looks wherever the search may put the actor: a region around the
    # start alone would cut off an actor that is really a metre away and pull it towards the start.
    reach = np.asarray(state.actors[slot].size, np.float64) + [2 * cfg.actor_search_xy, 2 * cfg.actor_search_xy, 0.0]
    wide = box_region(lens, T_world_cam, reach, T_init).reshape(-1)
    wide_idx = np.intersect1d(np.flatnonzero(wide), problem.valid_idx)
    full = ActorScore(problem, slot, pose_of, T_init, wide_idx)

    @torch.no_grad()
    def judge(T: np.ndarray) -> float:
        """The whole scene rendered (not composited: exact where the actor touches the ground)."""
        T_cam, actors = pose_of(torch.as_tensor(T, dtype=torch.float32))
        return float(((problem.render(T_cam, wide_idx, actors) - problem.target[wide_idx]) ** 2).mean())

    search = cfg.actor_search_xy > 0 or cfg.actor_search_yaw_deg > 0
    match = (lambda T: search_actor(problem, slot, pose_of, T, cfg, full)) if search else None
    polish = (lambda T: polish_actor(T, cfg, full)[0]) if search and cfg.actor_polish_xy > 0 else None
    return run_hypotheses(problem, pose_of, T_init, cfg, restart_translation_axes=(0, 1), match=match,
                          refine=(cfg.actor_refine_iterations, 1.0), judge=judge, polish=polish)


def write_localization(out, res: InversionResult, view) -> None:
    """``result.json``, ``cameras.json`` (the estimated pose, `tasks.cli.camera_files` format) and ``loss.png``."""
    import json
    from pathlib import Path

    from scenes.files import atomic_write, atomic_write_text

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"T_world_cam": res.T.tolist(), "converged": res.converged, "psnr": res.psnr, "iterations": res.iterations,
              "match_inliers": res.match_inliers,
              "hypotheses": res.hypotheses, "hypothesis_psnr": res.all_psnr, "seconds": res.seconds, "losses": res.losses}
    camera = {"cameras": [{"name": view.name, "time": view.time, "model": view.model.to_dict(), "T_world_cam": res.T.tolist()}]}
    for name, doc in (("result.json", result), ("cameras.json", camera)):
        atomic_write_text(out / name, json.dumps(doc, indent=1))
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.semilogy(res.losses)
    ax.set_xlabel("iteration")
    ax.set_ylabel("Huber loss")
    ax.set_title(f"final PSNR {res.psnr:.1f} dB, {'converged' if res.converged else 'not converged'}")
    fig.tight_layout()
    atomic_write(out / "loss.png", lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
