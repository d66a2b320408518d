"""CUDA agrees with the CPU: every op the GPU runs differently (torch reference encoding and
marching instead of the numba kernels) against the CPU kernels, a whole render of the analytic box
world, and a scene trained on the GPU that loads and renders on the CPU. Skipped without a GPU
(CI has none); run on a GPU machine with ``pytest tests/sim/test_cuda.py``. These tests need no
open3d: the box world is used through its neural path only."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from scenes.camera import Camera, Intrinsics
from scenes.transforms import look_at
from sim.checkpoint import load_checkpoint
from sim.compose import NeuralScene, SceneModelConfig
from sim.data import RayBank
from sim.device import resolve_device
from sim.encoding import HashGridConfig, hash_grid_encode_numba, hash_grid_encode_reference
from sim.field import FieldConfig
from sim.raymarch import march_numba, march_reference
from sim.render import render_camera
from sim.train import TrainConfig, train
from conftest import AABB, build_box_world

HAVE_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA GPU")


def test_resolve_device_names_and_errors():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if HAVE_CUDA else "cpu")
    with pytest.raises(ValueError, match="device: 'tpu'|device: unknown"):
        resolve_device("tpu")
    if not HAVE_CUDA:
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_train_config_resolves_batch_sizes_per_device():
    cpu = TrainConfig(device="cpu").resolved()
    assert (cpu.device, cpu.rays_per_batch, cpu.lidar_rays_per_batch) == ("cpu", 1024, 512)
    explicit = TrainConfig(device="cpu", rays_per_batch=300, lidar_rays_per_batch=0).resolved()
    assert (explicit.rays_per_batch, explicit.lidar_rays_per_batch) == (300, 0)
    if HAVE_CUDA:
        gpu = TrainConfig(device="cuda").resolved()
        assert gpu.device.startswith("cuda") and gpu.rays_per_batch == 8192


def _encode_on(dev: str, fn, cfg: HashGridConfig) -> tuple[torch.Tensor, ...]:
    """Values, table gradient and x gradient of ``fn`` on fixed inputs (a few points outside the cube)."""
    gen = torch.Generator().manual_seed(0)
    table = torch.rand(cfg.n_levels, cfg.table_size, cfg.n_features, generator=gen) * 2 - 1
    x = torch.rand(5000, 3, generator=gen) * 1.1 - 0.05
    cot = torch.randn(5000, cfg.out_dim, generator=gen)
    t = table.to(dev).requires_grad_(True)
    xx = x.to(dev).requires_grad_(True)
    out = fn(xx, t, cfg)
    (out * cot.to(dev)).sum().backward()
    return out.detach().cpu(), t.grad.cpu(), xx.grad.cpu()


# Dense coarse levels and hashed fine ones.
ENC = HashGridConfig(n_levels=8, log2_table_size=12, base_resolution=4, max_resolution=256)


def _assert_same_encoding(got, want):
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[1], want[1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got[2], want[2], atol=2e-3, rtol=1e-3)


@needs_cuda
def test_reference_encoding_on_cuda_matches_the_numba_cpu_kernel():
    _assert_same_encoding(_encode_on("cuda", hash_grid_encode_reference, ENC), _encode_on("cpu", hash_grid_encode_numba, ENC))


def _numba_cuda_usable() -> bool:
    from sim.encoding_cuda import cuda_backend_available

    return cuda_backend_available()


@needs_cuda
def test_numba_cuda_kernels_match_the_numba_cpu_kernel():
    if not _numba_cuda_usable():  # e.g. a numba-cuda build that does not import with this numpy
        pytest.skip("numba.cuda kernels unusable on this machine (see the warning); the GPU runs the torch reference")
    from sim.encoding import HashGridEncoding, available_backends
    from sim.encoding_cuda import hash_grid_encode_cuda

    _assert_same_encoding(_encode_on("cuda", hash_grid_encode_cuda, ENC), _encode_on("cpu", hash_grid_encode_numba, ENC))
    enc = HashGridEncoding(ENC).cuda()
    assert "cuda" in available_backends() and enc.backend_for(torch.rand(4, 3, device="cuda")) == "cuda"
    assert HashGridEncoding(ENC, backend="torch").cuda().backend_for(torch.rand(4, 3, device="cuda")) == "torch"


@needs_cuda
def test_marching_on_cuda_matches_the_numba_kernel():
    gen = torch.Generator().manual_seed(1)
    occupied = torch.rand(16, 16, 8, generator=gen) > 0.6
    box_min, box_size = torch.tensor([-2.0, -2.0, -1.0]), torch.tensor([4.0, 4.0, 2.0])
    origins = torch.rand(2000, 3, generator=gen) * 6 - 3
    dirs = torch.nn.functional.normalize(torch.randn(2000, 3, generator=gen), dim=-1)
    from sim.rays import ray_aabb

    t_near, t_far = ray_aabb(origins, dirs, box_min, box_min + box_size)
    ts = torch.arange(0, 8, 0.03)
    dts = torch.full_like(ts, 0.03)
    u = torch.rand(2000, generator=gen)
    args = (origins, dirs, t_near, t_far, ts, dts, u, occupied, box_min, box_size)
    cpu = march_numba(*args, max_per_ray=7)
    gpu = march_reference(*(a.cuda() for a in args), max_per_ray=7)
    assert len(cpu["ray"]) > 2000
    # Same samples; a sample may flip where float32 rounding puts a point on a cell face.
    key = lambda s: set(zip(s["ray"].cpu().tolist(), np.round(s["t"].cpu().numpy(), 4).tolist()))
    a, b = key(cpu), key(gpu)
    assert len(a ^ b) <= 0.002 * len(a)
    assert (cpu["k_next"] != gpu["k_next"].cpu()).float().mean() < 0.01


def _camera(eye, target, w=96, h=64) -> Camera:
    return Camera(Intrinsics.from_fov(w, h, 70.0), look_at(np.array(eye, float), np.array(target, float)), 0.5, "cam")


@needs_cuda
def test_box_world_renders_the_same_on_cuda():
    world = build_box_world(with_twin=False)
    cam = _camera((0.0, 0.5, 1.6), (8.0, -0.5, 0.8))
    state = world.graph.at(cam.time)
    cpu = render_camera(world.model, cam, state)
    gpu = render_camera(copy.deepcopy(world.model).cuda(), cam, state)
    hit = np.isfinite(cpu["depth"])
    assert hit.mean() > 0.5
    assert np.array_equal(np.isfinite(gpu["depth"]), hit)
    assert np.median(np.abs(gpu["depth"][hit] / cpu["depth"][hit] - 1)) < 1e-4
    assert np.abs(gpu["rgb"] - cpu["rgb"]).mean() < 1e-3
    assert (gpu["instance"] == cpu["instance"]).mean() > 0.995
    assert set(np.unique(cpu["instance"])) >= {0, 1, 2}  # both actors in view


def _small_scene() -> NeuralScene:
    fcfg = FieldConfig(grid=HashGridConfig(n_levels=8, log2_table_size=14, base_resolution=8, max_resolution=256),
                       hidden_dim=32, color_hidden_dim=32, sh_degree=2)
    afcfg = FieldConfig(grid=HashGridConfig(n_levels=6, log2_table_size=12, base_resolution=8, max_resolution=64),
                        hidden_dim=16, color_hidden_dim=16, sh_degree=1)
    cfg = SceneModelConfig(background=fcfg, actor=afcfg, far_field="black", occupancy_cell=0.5, step_min=0.05, actor_steps=48)
    return NeuralScene(cfg, AABB, ["car", "ped"])


@needs_cuda
def test_scene_trained_on_cuda_loads_and_renders_on_cpu(tmp_path):
    # Training images: the analytic box world rendered from a ring of cameras (CPU, exact).
    world = build_box_world(with_twin=False)
    cams = [_camera((6 + 7 * np.cos(a), 7 * np.sin(a), 2.5), (6.0, 0.0, 0.5), 64, 48) for a in np.linspace(0.3, 5.9, 12)]
    images = [render_camera(world.model, c, world.graph.at(c.time))["rgb"] for c in cams]
    bank = RayBank(cams, images, world.graph)
    torch.manual_seed(0)
    stats = train(_small_scene(), bank, world.graph, TrainConfig(steps=150, device="cuda", rays_per_batch=2048, lr=2e-2,
                                                                occupancy_update_every=8, progress=False), tmp_path / "scene")
    assert stats["steps"] == 150
    on_cpu, graph, meta = load_checkpoint(tmp_path / "scene", "cpu")
    on_gpu, _, _ = load_checkpoint(tmp_path / "scene", "cuda")
    assert meta["train_state"]["config"]["device"].startswith("cuda")
    view = cams[3]
    r_cpu = render_camera(on_cpu, view, graph.at(view.time))
    r_gpu = render_camera(on_gpu, view, graph.at(view.time))
    assert np.abs(r_cpu["rgb"] - r_gpu["rgb"]).mean() < 2e-3
    mse = float(np.mean((r_cpu["rgb"] - images[3]) ** 2))
    untrained = float(np.mean((render_camera(_small_scene(), view, graph.at(view.time))["rgb"] - images[3]) ** 2))
    assert -10 * np.log10(mse) > -10 * np.log10(untrained) + 6  # it learned the scene (>= 6 dB better)
