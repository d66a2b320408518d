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
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch


class _NoLPIPS(torch.nn.Module):
    """Stands in for torchmetrics' LPIPS (whose weights are a download)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, *args, **kwargs):
        return torch.zeros(())


def _nerfacto_pipeline(lego: Path, device: str):
    import torchmetrics.image.lpip as lpip
    from nerfstudio.configs.method_configs import method_configs
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
    from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig

    lpip.LearnedPerceptualImagePatchSimilarity = _NoLPIPS  # nerfacto imports it when it builds the model
    cfg = method_configs["nerfacto"]
    dm = cfg.pipeline.datamanager
    cfg.pipeline.datamanager = VanillaDataManagerConfig(
        dataparser=BlenderDataParserConfig(data=lego),
        train_num_rays_per_batch=dm.train_num_rays_per_batch,
        eval_num_rays_per_batch=dm.eval_num_rays_per_batch,
    )
    pipeline = cfg.pipeline.setup(device=device, test_mode="val", world_size=1, local_rank=0)
    return cfg, pipeline


def nerfacto_train_rays_per_s(lego: Path, iterations: int = 20, warmup: int = 3, device: str = "cpu") -> dict:
    """Training rays/s of nerfacto on ``lego`` (``iterations`` timed after ``warmup``)."""
    from nerfstudio.engine.callbacks import TrainingCallbackAttributes, TrainingCallbackLocation
    from nerfstudio.engine.optimizers import Optimizers

    cfg, pipeline = _nerfacto_pipeline(lego, device)
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

    for step in range(warmup):
        iteration(step)
    t = time.perf_counter()
    for step in range(warmup, warmup + iterations):
        loss = iteration(step)
    dt = time.perf_counter() - t
    rays = cfg.pipeline.datamanager.train_num_rays_per_batch
    return {"nerfacto_train_rays_per_s": rays * iterations / dt, "nerfacto_iterations": iterations,
            "nerfacto_rays_per_batch": rays, "nerfacto_last_loss": loss}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lego", type=Path, required=True)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    print(nerfacto_train_rays_per_s(args.lego, args.iterations, device=args.device))


if __name__ == "__main__":
    main()
