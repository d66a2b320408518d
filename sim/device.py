"""Which torch device a job runs on.

Every job takes a device name: ``"auto"`` (CUDA when this torch build sees a GPU, else the CPU),
``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Scenes, checkpoints and outputs are the same whichever
device trained or renders them (checkpoints always hold CPU tensors).
"""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    """The torch device for ``name``; a clear error when CUDA is asked for and absent."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"device: unknown device '{name}'; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: '{name}' asked for, but this torch build sees no CUDA GPU; use 'cpu' or 'auto'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device: '{name}' is not supported; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")
    return device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (timings of asynchronous CUDA calls); no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
