"""Hash-grid encoding: numba backend vs the torch reference (forward, both gradients), properties."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.encoding import (
    HashGridConfig,
    HashGridEncoding,
    available_backends,
    hash_grid_encode_numba,
    hash_grid_encode_reference,
)

DENSE = HashGridConfig(n_levels=3, n_features=2, log2_table_size=12, base_resolution=4, max_resolution=16)
HASHED = HashGridConfig(n_levels=3, n_features=2, log2_table_size=6, base_resolution=8, max_resolution=64)
MIXED = HashGridConfig(n_levels=4, n_features=2, log2_table_size=10, base_resolution=4, max_resolution=64)
CONFIGS = {"dense": DENSE, "hashed": HASHED, "mixed": MIXED}


def _inputs(cfg, n=777, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g, dtype=dtype)
    x[:8] = 0.0  # exactly on the faces / corners of the unit cube
    x[8:16] = 1.0
    x[16:24, 0] = 0.0
    x[24:32, 1] = 1.0
    x[32:40] = torch.tensor([-0.25, 1.5, 0.5], dtype=dtype)  # outside: clamped, zero x-grad there
    table = torch.randn(cfg.n_levels, cfg.table_size, cfg.n_features, generator=g, dtype=dtype)
    return x, table


def test_config_levels():
    assert DENSE.dense_levels() == [True, True, True]
    assert HASHED.dense_levels() == [False, False, False]  # 8^3 = 512 > T = 64
    assert not all(MIXED.dense_levels()) and any(MIXED.dense_levels())
    c = HashGridConfig()
    r = c.resolutions()
    assert r[0] == 16 and r[-1] == 2048 and len(r) == 16 and r == sorted(r)
    assert HashGridConfig(n_levels=1, base_resolution=5, max_resolution=9).resolutions() == [5]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_forward_matches_reference(name, n_features):
    cfg = HashGridConfig(**{**CONFIGS[name].__dict__, "n_features": n_features})
    x, table = _inputs(cfg)
    ref = hash_grid_encode_reference(x, table, cfg)
    got = hash_grid_encode_numba(x, table, cfg)
    assert got.shape == (x.shape[0], cfg.n_levels * n_features) and got.dtype == torch.float32
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_gradients_match_reference(name, n_features):
    cfg = HashGridConfig(**{**CONFIGS[name].__dict__, "n_features": n_features})
    x, table = _inputs(cfg, seed=1)
    up = torch.randn(x.shape[0], cfg.out_dim, generator=torch.Generator().manual_seed(2))
    grads = []
    for fn in (hash_grid_encode_reference, hash_grid_encode_numba):
        xr, tr = x.clone().requires_grad_(), table.clone().requires_grad_()
        (fn(xr, tr, cfg) * up).sum().backward()
        grads.append((xr.grad, tr.grad))
    (gx_ref, gt_ref), (gx, gt) = grads
    # table grad: sums of <= N products of O(1) terms -> 1e-4 absolute/relative
    torch.testing.assert_close(gt, gt_ref, rtol=1e-4, atol=1e-4)
    # x grad is scaled by (N_l - 1) (up to 63 here): relative 1e-4 of the scale
    scale = gx_ref.abs().max().item()
    torch.testing.assert_close(gx, gx_ref, rtol=1e-4, atol=1e-5 * scale)
    assert torch.all(gx[32:40, :2] == 0) and torch.all(gx[32:40, 2] != 0)  # x, y outside; z inside


def test_table_only_grad_and_x_only_grad():
    cfg = MIXED
    x, table = _inputs(cfg, n=100)
    t = table.clone().requires_grad_()
    hash_grid_encode_numba(x, t, cfg).sum().backward()  # x needs no grad: backward_x is skipped
    assert t.grad is not None and t.grad.shape == table.shape
    xr = x.clone().requires_grad_()
    hash_grid_encode_numba(xr, table, cfg).sum().backward()
    assert xr.grad is not None and xr.grad.shape == x.shape


def test_gradcheck_reference_float64_and_numba_agrees():
    cfg = HashGridConfig(n_levels=2, n_features=2, log2_table_size=5, base_resolution=3, max_resolution=9)
    g = torch.Generator().manual_seed(3)
    # keep x away from cell boundaries (the encoding is only piecewise smooth)
    x = (torch.rand(6, 3, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_()
    table = torch.randn(cfg.n_levels, cfg.table_size, cfg.n_features, generator=g, dtype=torch.float64)
    table.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: hash_grid_encode_reference(a, b, cfg), (x, table), eps=1e-6, atol=1e-6)
    # numba (float32) gradients agree with the float64 reference
    up = torch.randn(6, cfg.out_dim, generator=g, dtype=torch.float64)
    gx64, gt64 = torch.autograd.grad((hash_grid_encode_reference(x, table, cfg) * up).sum(), (x, table))
    x32 = x.detach().float().requires_grad_()
    t32 = table.detach().float().requires_grad_()
    gx32, gt32 = torch.autograd.grad((hash_grid_encode_numba(x32, t32, cfg) * up.float()).sum(), (x32, t32))
    torch.testing.assert_close(gx32.double(), gx64, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gt32.double(), gt64, rtol=1e-4, atol=1e-5)


_CONT_CFG = HashGridConfig(n_levels=3, n_features=2, log2_table_size=8, base_resolution=4, max_resolution=32)
_CONT_TABLE = torch.randn(3, 256, 2, generator=torch.Generator().manual_seed(4))


@settings(max_examples=60, deadline=None)
@given(
    st.tuples(*[st.floats(0.0, 1.0) for _ in range(3)]),
    st.tuples(*[st.floats(-1.0, 1.0) for _ in range(3)]),
    st.sampled_from(["torch", "numba"]),
)
def test_encoding_is_continuous(p, d, backend):
    fn = hash_grid_encode_numba if backend == "numba" else hash_grid_encode_reference
    eps = 1e-4
    x0 = torch.tensor([p], dtype=torch.float32)
    x1 = (x0 + eps * torch.tensor([d], dtype=torch.float32)).clamp(0, 1)
    y0, y1 = fn(x0, _CONT_TABLE, _CONT_CFG), fn(x1, _CONT_TABLE, _CONT_CFG)
    # Lipschitz bound: |dy| <= sum_d |dx_d| * (N_max - 1) * 2 * max|table| (+ float32 slack)
    bound = 3 * eps * (max(_CONT_CFG.resolutions()) - 1) * 2 * _CONT_TABLE.abs().max().item()
    assert (y1 - y0).abs().max().item() <= bound + 1e-5


@settings(max_examples=40, deadline=None)
@given(st.tuples(*[st.integers(0, 16) for _ in range(3)]), st.sampled_from(["torch", "numba"]))
def test_vertices_reproduce_table_values(ijk, backend):
    # one dense level with N = 17: x = i/16 is exact in float32, so pos is an exact integer
    cfg = HashGridConfig(n_levels=1, n_features=2, log2_table_size=13, base_resolution=17, max_resolution=17)
    assert cfg.dense_levels() == [True]
    table = torch.randn(1, cfg.table_size, 2, generator=torch.Generator().manual_seed(5))
    i, j, k = ijk
    x = torch.tensor([[i / 16, j / 16, k / 16]], dtype=torch.float32)
    fn = hash_grid_encode_numba if backend == "numba" else hash_grid_encode_reference
    got = fn(x, table, cfg)[0]
    assert torch.equal(got, table[0, i + j * 17 + k * 17 * 17])


def test_module_backends_and_init():
    assert "torch" in available_backends() and "numba" in available_backends()
    cfg = MIXED
    enc = HashGridEncoding(cfg)
    assert enc.backend == "numba" and enc.table.shape == (cfg.n_levels, cfg.table_size, cfg.n_features)
    assert enc.table.abs().max().item() <= 1e-4 and enc.table.requires_grad
    ref = HashGridEncoding(cfg, backend="torch")
    ref.table.data.copy_(enc.table.data)
    x = torch.rand(50, 3)
    torch.testing.assert_close(enc(x), ref(x), atol=1e-7, rtol=1e-5)
    enc(x).square().sum().backward()
    assert enc.table.grad is not None
    with pytest.raises(ValueError):
        HashGridEncoding(cfg, backend="cuda-magic")


def test_hash_matches_uint32_arithmetic():
    # brute-force the hashed index through a one-hot table: output at a vertex = 1 only at its slot
    cfg = HashGridConfig(n_levels=1, n_features=1, log2_table_size=6, base_resolution=2049, max_resolution=2049)
    assert cfg.dense_levels() == [False]
    i, j, k = 2047, 1999, 2048
    with np.errstate(over="ignore"):  # uint32 wraparound is the point
        expect = (np.uint32(i) ^ (np.uint32(j) * np.uint32(2654435761)) ^ (np.uint32(k) * np.uint32(805459861))) % 64
    table = torch.zeros(1, 64, 1)
    table[0, int(expect), 0] = 1.0
    x = torch.tensor([[i / 2048, j / 2048, k / 2048]], dtype=torch.float64).float()
    for fn in (hash_grid_encode_reference, hash_grid_encode_numba):
        assert fn(x, table, cfg).item() == pytest.approx(1.0, abs=1e-3)


_SIMULATOR_CHECK = """
import json, torch
from sim.encoding import HashGridConfig, hash_grid_encode_reference
from sim.encoding_cuda import cuda_backend_available, hash_grid_encode_cuda
from test_encoding import CONFIGS, _inputs
assert cuda_backend_available()
errors = {}
for name, base in CONFIGS.items():
    for n_features in (1, 2, 4):
        cfg = HashGridConfig(**{**base.__dict__, "n_features": n_features})
        x, table = _inputs(cfg, n=150, seed=3)
        up = torch.randn(len(x), cfg.out_dim, generator=torch.Generator().manual_seed(4))
        res = []
        for fn in (hash_grid_encode_reference, hash_grid_encode_cuda):
            xr, tr = x.clone().requires_grad_(), table.clone().requires_grad_()
            out = fn(xr, tr, cfg)
            (out * up).sum().backward()
            res.append((out.detach(), tr.grad, xr.grad))
        scale = float(res[0][2].abs().max())
        errors[f"{name}/{n_features}"] = [float((a - b).abs().max()) / s for a, b, s in zip(res[0], res[1], (1.0, 1.0, scale))]
        assert bool((res[1][2][32:40, :2] == 0).all()), "x-grad outside the cube must be 0"
print(json.dumps(errors))
"""


def test_cuda_kernels_match_the_reference_in_numba_simulator():
    # The numba.cuda kernels (sim/encoding_cuda.py) run on a CPU under numba's CUDA simulator, thread by
    # thread: their indexing, weights, atomics and x-gradient are checked here, without a GPU.
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    # The simulator must be switched on before numba is imported: a fresh interpreter.
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=f"{here.parents[1]}{os.pathsep}{here}")
    r = subprocess.run([sys.executable, "-c", _SIMULATOR_CHECK], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    errors = json.loads(r.stdout.strip().splitlines()[-1])
    assert len(errors) == 9
    for key, (e_out, e_table, e_x) in errors.items():
        assert e_out < 1e-5 and e_table < 1e-4 and e_x < 1e-4, (key, e_out, e_table, e_x)
