"""nerfstudio's nerfacto on lego-200, trained on the same machine for the #3 throughput ratio.

The nerfacto method config of the installed nerfstudio (4096 rays per step, proposal sampler,
camera optimiser, torch hash encoding when tiny-cuda-nn is missing), with three changes that do not
touch its training arithmetic:
- the Blender dataparser instead of the nerfstudio one (lego-200 is a Blender scene);
- the plain (in-process) datamanager instead of the parallel one, which spawns worker processes;
- its LPIPS metric replaced by a stub: torchmetrics' LPIPS downloads network weights on first use,
  which fails offline (LPIPS is an eval metric; training never calls it).
The loop is nerfstudio's own train iteration (losses, backward, every optimiser, the training
callbacks), timed after a few warm-up iterations. Rays/s = 4096 x iterations / seconds.

    python -m bench.nerfacto --lego ../shared/data/lego-200 --iterations 20
    python -m bench.nerfacto --llff ../shared/data/fern-llff --seconds 600   # fern side by side (issue 20)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


class _NoLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS (whose weights are a download)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs):
        return torch.zeros(())


def _nerfacto_pipeline(lego: Path, device: str, dataparser=None):
    import torchmetrics.image.lpip as lpip
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    lpip.LearnedPerceptualImagePatchSimilarity = _NoLPIPS  # nerfacto imports it when it builds the model
    cfg = method_configs["nerfacto"]
    dm = cfg.pipeline.datamanager
    cfg.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=dataparser or BlenderDataParserConfig(data=lego),
        train_num_rays_per_batch=dm.train_num_rays_per_batch,
        eval_num_rays_per_batch=dm.eval_num_rays_per_batch,
    )
    pipeline = cfg.pipeline.setup(device=device, test_mode="val", world_size=1, local_rank=0)
    return cfg, pipeline


def _iteration_fn(cfg, pipeline):
    """nerfstudio's own train iteration (callbacks, losses, backward, every optimiser)."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.engine.optimizers import Optimizers

    optimizers = Optimizers(cfg.optimizers, pipeline.get_param_groups())
    callbacks = pipeline.get_training_callbacks(TrainingCallbackAttributes(optimizers=optimizers, grad_scaler=None, pipeline=pipeline, trainer=None))
    pipeline.train()

    def iteration(step: int) -> float:
        for cb in callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
        optimizers.zero_grad_all()
        _, loss_dict, _ = pipeline.get_train_loss_dict(step=step)
        loss = sum(loss_dict.values())
        loss.backward()
        optimizers.optimizer_step_all()
        optimizers.scheduler_step_all(step)
        for cb in callbacks:
            cb.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
        return float(loss.detach())

    return iteration


def nerfacto_train_rays_per_s(lego: Path, iterations: int = 20, warmup: int = 3, device: str = "cpu") -> dict:
    """Training rays/s of nerfacto on ``lego`` (``iterations`` timed after ``warmup``)."""
    cfg, pipeline = _nerfacto_pipeline(lego, device)
    iteration = _iteration_fn(cfg, pipeline)
    for step in range(warmup):
        iteration(step)
    t = time.perf_counter()
    for step in range(warmup, warmup + iterations):
        loss = iteration(step)
    dt = time.perf_counter() - t
    rays = cfg.pipeline.datamanager.train_num_rays_per_batch
    return {"nerfacto_train_rays_per_s": rays * iterations / dt, "nerfacto_iterations": iterations,
            "nerfacto_rays_per_batch": rays, "nerfacto_last_loss": loss}


def llff_as_nerfstudio(llff: Path, work: Path) -> Path:
    """A nerfstudio ``transforms.json`` of an LLFF capture (our reader's cameras, OpenGL axes,
    absolute image paths) with the LLFF protocol's split as ``{train,val,test}_filenames``."""
    import json

    from scenes.datasets import load_static_dataset

    train, test = load_static_dataset(llff, "train"), load_static_dataset(llff, "test")
    frames, names = [], {}
    for split, ds in (("train", train), ("test", test)):
        for cam, path in zip(ds.cameras, ds.meta["image_paths"]):
            K = cam.intrinsics
            T = cam.T_world_cam @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV -> OpenGL camera axes
            frames.append({"file_path": path, "transform_matrix": T.tolist(), "fl_x": K.fx, "fl_y": K.fy, "cx": K.cx,
                           "cy": K.cy, "w": K.width, "h": K.height})
            names.setdefault(split, []).append(path)
    work.mkdir(parents=True, exist_ok=True)
    meta = {"camera_model": "OPENCV", "frames": frames, "train_filenames": names["train"],
            "val_filenames": names["test"], "test_filenames": names["test"]}
    (work / "transforms.json").write_text(json.dumps(meta))
    return work


def nerfacto_on_llff(llff: Path, work: Path, seconds: float, device: str = "cpu", stride: int = 4) -> dict:
    """nerfacto trained on an LLFF capture's training photos for ``seconds`` of training time (its
    standard nerfstudio dataparser: poses oriented, centred and scaled), then its renders of the
    test photos scored with our PSNR (the same function as nerfsim's bench) on every ``stride``-th
    pixel row and column."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from tasks.eval.metrics import psnr

    data = llff_as_nerfstudio(llff, work)
    cfg, pipeline = _nerfacto_pipeline(data, device, NerfstudioDataParserConfig(data=data, downscale_factor=1))
    iteration = _iteration_fn(cfg, pipeline)
    step, elapsed = 0, 0.0
    while elapsed < seconds:
        t = time.perf_counter()
        iteration(step)
        elapsed += time.perf_counter() - t
        step += 1
    pipeline.eval()
    ds = pipeline.datamanager.eval_dataset
    ps = []
    # Every `stride`-th pixel of each test photo: whole 504x378 images did not finish in 17 minutes
    # on the 2-core CPU (11 GB of memory; 2026-12-02), nerfsim's bench scores whole images.
    with torch.no_grad():
        for i in range(len(ds)):
            bundle = ds.cameras[i : i + 1].to(device).generate_rays(camera_indices=0)[::stride, ::stride]
            out = pipeline.model.get_outputs_for_camera_ray_bundle(bundle)
            gt = ds.get_image_float32(i)[::stride, ::stride, :3].numpy()
            ps.append(psnr(out["rgb"].clamp(0, 1).cpu().numpy(), gt))
    rays = cfg.pipeline.datamanager.train_num_rays_per_batch
    return {"nerfacto_fern_steps": step, "nerfacto_fern_train_seconds": elapsed, "nerfacto_fern_rays_per_s": rays * step / elapsed,
            "nerfacto_fern_test_psnr": float(np.mean(ps)), "nerfacto_fern_test_psnr_per_view": [round(p, 2) for p in ps]}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lego", type=Path, default=None, help="lego-200: training rays/s")
    ap.add_argument("--llff", type=Path, default=None, help="an LLFF capture (fern): train --seconds, score the test photos")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--work", type=Path, default=Path("bench_out/nerfacto_fern"))
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.llff:
        print(json.dumps(nerfacto_on_llff(args.llff, args.work, args.seconds, args.device)))
    if args.lego:
        print(nerfacto_train_rays_per_s(args.lego, args.iterations, device=args.device))


if __name__ == "__main__":
    main()
