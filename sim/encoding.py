"""Multiresolution hash-grid encoding (instant-ngp): the module fields use, and the one place that
picks a backend per call.

Backends, one module each, all with the same semantics (stated in `sim.encoding_reference`):

- ``"torch"``: `sim.encoding_reference`, pure torch, autograd wrt table and x; the oracle, and what
  runs where no kernel does (float64, or a GPU whose numba.cuda target is unusable);
- ``"numba"``: `sim.encoding_cpu`, parallel CPU kernels, forward + analytic backward;
- ``"cuda"``: `sim.encoding_cuda`, the same kernels for the GPU in numba.cuda.

The compiled backends share the corner arithmetic of `sim.encoding_corners`. Imports point one way:
this module -> the backends -> `sim.encoding_reference`. Nothing is compiled at import time; numba
kernels compile (or load from the on-disk cache) on first use. Every public name of the former
single-file module is importable from here.
"""

from __future__ import annotations

from typing import Optional

import torch

from sim.encoding_cpu import HAVE_NUMBA, HashGridEncodingFunction, hash_grid_encode_numba
from sim.encoding_reference import PRIME_Y, PRIME_Z, HashGridConfig, hash_grid_encode_reference

__all__ = [
    "HashGridConfig",
    "hash_grid_encode_reference",
    "hash_grid_encode_numba",
    "HashGridEncodingFunction",
    "HashGridEncoding",
    "available_backends",
    "PRIME_Y",
    "PRIME_Z",
]


def _cuda_kernels_available() -> bool:
    from sim.encoding_cuda import cuda_backend_available  # numba.cuda loads only when asked about a GPU

    return cuda_backend_available()


def available_backends() -> list[str]:
    """Backends usable in this process: always ``"torch"``; ``"numba"`` if numba imports; ``"cuda"``
    if a GPU is visible and the numba.cuda kernels pass their self-test."""
    out = ["torch"]
    if HAVE_NUMBA:
        out.append("numba")
    if torch.cuda.is_available() and _cuda_kernels_available():
        out.append("cuda")
    return out


class HashGridEncoding(torch.nn.Module):
    """Multiresolution hash-grid encoding ``[N, 3] -> [N, L*F]`` with its table as a Parameter.

    ``backend``: ``"auto"`` (default: numba for CPU float32 inputs when numba imports, the numba.cuda
    kernels for CUDA inputs when numba's CUDA target works, the torch reference otherwise),
    ``"numba"``, ``"cuda"`` or ``"torch"`` (always the reference). ``self.backend`` holds the resolved
    CPU choice; :meth:`backend_for` tells what a given input would use. Every backend reads and
    writes the same ``table`` Parameter, so checkpoints do not depend on the backend.
    """

    def __init__(self, cfg: Optional[HashGridConfig] = None, backend: str = "auto", init_scale: float = 1e-4):
        super().__init__()
        self.cfg = cfg if cfg is not None else HashGridConfig()
        if backend == "auto":
            backend = "numba" if HAVE_NUMBA else "torch"
            self._auto = True
        else:
            self._auto = False
        if backend not in ("numba", "cuda", "torch"):
            raise ValueError(f"unknown backend {backend!r}; use 'auto', 'numba', 'cuda' or 'torch'")
        if backend == "numba" and not HAVE_NUMBA:
            raise RuntimeError("numba backend requested but numba is not importable")
        self.backend = backend
        c = self.cfg
        self.table = torch.nn.Parameter(
            torch.empty(c.n_levels, c.table_size, c.n_features, dtype=torch.float32).uniform_(-init_scale, init_scale)
        )

    @property
    def out_dim(self) -> int:
        return self.cfg.out_dim

    def backend_for(self, x: torch.Tensor) -> str:
        """Backend a call with input ``x`` dispatches to."""
        if self.backend == "torch":
            return "torch"
        f32 = self.table.dtype == torch.float32
        if x.device.type == "cpu" and f32 and self.backend == "numba":
            return "numba"
        if x.device.type == "cuda" and f32 and (self._auto or self.backend == "cuda") and _cuda_kernels_available():
            return "cuda"
        if not self._auto:
            raise ValueError(f"{self.backend} backend cannot run on {x.device.type} with a {self.table.dtype} table")
        return "torch"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        backend = self.backend_for(x)
        if backend == "numba":
            return hash_grid_encode_numba(x, self.table, self.cfg)
        if backend == "cuda":
            from sim.encoding_cuda import hash_grid_encode_cuda  # numba.cuda loads only when a GPU is used

            return hash_grid_encode_cuda(x, self.table, self.cfg)
        return hash_grid_encode_reference(x.to(self.table.dtype), self.table, self.cfg)

    def extra_repr(self) -> str:
        return f"{self.cfg}, backend={self.backend!r}"
