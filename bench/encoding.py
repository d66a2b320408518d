"""Hash-grid encoding benchmark: ``python -m bench.encoding`` prints one JSON line.

ns/sample for forward, backward (grad wrt table) and fwd+bwd, numba vs torch reference, at batch
2^18 and 2^16 and T = 2^19 and 2^15 (16 levels x 2 features); a bandwidth bound from a numpy copy;
first-call JIT time cold (empty numba cache dir) and warm (cache hit), measured in subprocesses.
Uniform random points (worst case for cache locality). Timings: best of ``--reps`` after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from sim.device import synchronize
from sim.encoding import HashGridConfig, hash_grid_encode_numba, hash_grid_encode_reference


def _best(fn, reps, device=torch.device("cpu")):
    fn()  # warm-up (JIT / first touch)
    synchronize(device)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        ts.append(time.perf_counter() - t0)
    return min(ts)


def bench_backend(fn, cfg, n, reps, seed=0, device="cpu"):
    """ns/sample of ``fn(x, table, cfg)`` forward, backward (grad wrt table) and both, on ``device``."""
    device = torch.device(device)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, generator=g).to(device)
    table = ((torch.rand(cfg.n_levels, cfg.table_size, cfg.n_features, generator=g) - 0.5) * 2e-4).to(device).requires_grad_()
    up = torch.randn(n, cfg.out_dim, generator=g).to(device)

    def fwd():
        with torch.no_grad():
            fn(x, table, cfg)

    def fwdbwd():
        table.grad = None
        fn(x, table, cfg).backward(up)

    tf = _best(fwd, reps, device)
    tfb = _best(fwdbwd, reps, device)
    return {"fwd": tf / n * 1e9, "bwd": (tfb - tf) / n * 1e9, "fwd_bwd": tfb / n * 1e9}


def measure_bandwidth(nbytes=256 << 20, reps=5, device="cpu"):
    """Copy bandwidth (read + write bytes / s) of one copy of a large array: numpy on the CPU,
    a device-to-device copy on a GPU."""
    device = torch.device(device)
    if device.type == "cpu":
        a = np.ones(nbytes // 4, np.float32)
        b = np.empty_like(a)
        t = _best(lambda: np.copyto(b, a), reps)
    else:
        a = torch.ones(nbytes // 4, device=device)
        b = torch.empty_like(a)
        t = _best(lambda: b.copy_(a), reps, device)
    return 2 * nbytes / t


_JIT_SNIPPET = """
import time, torch
from sim.encoding import HashGridConfig, hash_grid_encode_numba
cfg = HashGridConfig(n_levels=2, log2_table_size=8, base_resolution=4, max_resolution=32)
x = torch.rand(64, 3, requires_grad=True); t = torch.zeros(2, 256, 2, requires_grad=True)
t0 = time.perf_counter(); hash_grid_encode_numba(x, t, cfg).sum().backward(); print(time.perf_counter() - t0)
"""


def measure_jit():
    """First fwd+bwd (with x-grad) call in a fresh process: cold (empty cache dir), then warm (cache hit)."""
    out = {}
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        for key in ("jit_first_call_s_no_cache", "jit_first_call_s_cached"):
            r = subprocess.run([sys.executable, "-c", _JIT_SNIPPET], env=env, capture_output=True, text=True, check=True)
            out[key] = float(r.stdout.strip().splitlines()[-1])
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="only batch 2^16 and the numba backend at 2^18")
    args = ap.parse_args(argv)
    res = {"torch_threads": torch.get_num_threads()}
    try:
        import numba

        res["numba_threads"] = numba.get_num_threads()
    except Exception:
        pass
    for log2t in (19, 15):
        cfg = HashGridConfig(log2_table_size=log2t)
        for log2n in (18, 16):
            n = 1 << log2n
            key = f"T2^{log2t}_N2^{log2n}"
            res[f"numba_{key}"] = bench_backend(hash_grid_encode_numba, cfg, n, args.reps)
            if not (args.quick and log2n == 18):
                res[f"torch_{key}"] = bench_backend(hash_grid_encode_reference, cfg, n, max(1, args.reps // 2))
    cfg = HashGridConfig()
    bw = measure_bandwidth()
    bytes_fwd = cfg.n_levels * 8 * cfg.n_features * 4
    bytes_bwd = bytes_fwd  # same entries written (read-modify-write) in backward
    bound_ns = (bytes_fwd + bytes_bwd) / bw * 1e9
    measured = res["numba_T2^19_N2^18"]["fwd_bwd"]
    res["bound"] = {
        "bytes_per_sample_fwd": bytes_fwd,
        "bytes_per_sample_bwd": bytes_bwd,
        "copy_bandwidth_GBps": bw / 1e9,
        "bandwidth_bound_ns_per_sample_fwd_bwd": bound_ns,
        "numba_fwd_bwd_over_bound": measured / bound_ns,
        "note": "streaming bound; corners are 8-byte random gathers from 64-byte lines, so the real floor is latency/line bound",
    }
    res.update(measure_jit())
    print(json.dumps(res))


if __name__ == "__main__":
    main()
