"""Dynamic batch size (instant-ngp): camera rays per step follow a target number of samples."""

from __future__ import annotations

import pytest

from sim.train import DynamicBatch, TrainConfig


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(device="cpu", progress=False, **kw).resolved()


def test_defaults_resolve_per_device():
    cfg = _cfg()
    assert (cfg.rays_per_batch, cfg.lidar_rays_per_batch, cfg.samples_per_batch) == (1024, 512, 16384)
    assert _cfg(samples_per_batch=0).samples_per_batch == 0


def test_rays_follow_the_target_over_the_running_samples_per_ray():
    batch = DynamicBatch(_cfg(samples_per_batch=16384))
    assert batch.rays == 1024
    # 8 samples per camera ray, held: the count converges to 16384 / 8 = 2048 rays.
    for _ in range(40):
        rays = batch.update(samples=8.0 * batch.rays, camera_rays=batch.rays)
    assert rays == 2048
    # A young field with 117 samples per ray: down to the floor of rays_per_batch / 4.
    for _ in range(40):
        rays = batch.update(samples=117.0 * batch.rays, camera_rays=batch.rays)
    assert rays == 256
    # Very short rays: capped at 4 x rays_per_batch.
    for _ in range(40):
        rays = batch.update(samples=0.5 * batch.rays, camera_rays=batch.rays)
    assert rays == 4096


@pytest.mark.parametrize("samples_per_ray", [3.0, 7.3, 20.0])
def test_counts_are_multiples_of_64_and_lidar_keeps_its_ratio(samples_per_ray):
    cfg = _cfg(samples_per_batch=10000)
    batch = DynamicBatch(cfg)
    for _ in range(40):
        batch.update(samples=samples_per_ray * batch.rays, camera_rays=batch.rays)
    assert batch.rays % 64 == 0 and abs(batch.rays - 10000 / samples_per_ray) <= 32 + 1e-9
    step = cfg.for_batch(batch.rays)
    assert step.rays_per_batch == batch.rays and step.lidar_rays_per_batch == round(batch.rays / 2)


def test_zero_target_keeps_the_batch_fixed_and_resume_restores_the_count():
    batch = DynamicBatch(_cfg(samples_per_batch=0))
    assert batch.update(samples=1e6, camera_rays=1024) == 1024
    assert DynamicBatch(_cfg(), rays=640).rays == 640


def test_coarse_steps_shrink_to_the_configured_length():
    from sim.train import TrainConfig, coarse_step_scale

    cfg = TrainConfig(coarse_step_scale=4.0, coarse_step_fraction=0.3)
    scales = [coarse_step_scale(cfg, f) for f in (0.0, 0.1, 0.2, 0.29, 0.3, 0.9)]
    assert scales[0] == 4.0 and scales[-2:] == [1.0, 1.0]
    assert all(a >= b for a, b in zip(scales, scales[1:])) and len(set(scales)) >= 4
    assert coarse_step_scale(TrainConfig(coarse_step_fraction=0.0), 0.0) == 1.0
