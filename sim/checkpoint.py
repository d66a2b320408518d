"""Scene checkpoints: a folder that is safe to open when it comes from someone else.

Layout (format ``nerfsim-scene``, version 1)::

    scene.json                       metadata (JSON): format, version, model config, scene graph,
                                     training state, metrics, and the names of the tensor files
    weights-<step>.safetensors       model parameters and buffers (occupancy grids included)
    optimizer-<step>.safetensors     optimizer moments, only while training may resume

No pickle anywhere: tensors go through safetensors, everything else is JSON. Writes are atomic:
tensor files first (temporary name + ``os.replace``), then ``scene.json`` pointing at them; a
kill at any moment leaves the previous complete checkpoint readable. Every encoding backend (torch
reference, numba CPU, numba.cuda; `sim.encoding`) reads and writes these same tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from scenes.errors import InputError, read_json_object
from scenes.files import atomic_write, atomic_write_bytes
from scenes.graph import SceneGraph
from sim.compose import NeuralScene, SceneModelConfig

FORMAT = "nerfsim-scene"
FORMAT_VERSION = 1


def _atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    atomic_write(path, lambda tmp: save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp)))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list]:
    sd = opt.state_dict()
    tensors = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            tensors[f"{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    return tensors, sd["param_groups"]


def save_checkpoint(path: str | Path, model: NeuralScene, graph: SceneGraph, *, step: int = 0,
                    optimizer: torch.optim.Optimizer | None = None, train_state: dict | None = None,
                    metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write (or update) a checkpoint folder atomically; returns the path of ``scene.json``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    weights_name = f"weights-{step:08d}.safetensors"
    _atomic_save_tensors(model.state_dict(), path / weights_name)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.cfg.to_dict(),
        "aabb": model.aabb.tolist(),
        "asset_ids": list(graph.asset_ids),
        "graph": graph.to_dict(),
        "weights": weights_name,
        "step": step,
        "train_state": train_state or {},
        "metrics": metrics or {},
        "extra": extra or {},
    }
    if optimizer is not None:
        opt_name = f"optimizer-{step:08d}.safetensors"
        tensors, groups = _optimizer_tensors(optimizer)
        _atomic_save_tensors(tensors, path / opt_name)
        meta["optimizer"] = opt_name
        meta["optimizer_param_groups"] = groups
    atomic_write_bytes(path / "scene.json", json.dumps(meta, indent=1).encode())
    # Older tensor files are now unreferenced.
    keep = {meta["weights"], meta.get("optimizer")}
    for f in path.glob("*.safetensors*"):  # also temporary files left by a killed save
        if f.name not in keep:
            f.unlink(missing_ok=True)
    return path / "scene.json"


def read_checkpoint_meta(path: str | Path) -> dict:
    """Parse and validate ``scene.json`` of a checkpoint folder."""
    path = Path(path)
    meta_path = path / "scene.json" if path.is_dir() else path
    meta = read_json_object(meta_path, "no such checkpoint (expected a folder with scene.json)")
    if meta.get("format") != FORMAT:
        raise InputError(meta_path, "format", f"expected '{FORMAT}'")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InputError(meta_path, "format_version", f"expected {FORMAT_VERSION}, got {meta.get('format_version')}")
    for key in ("model", "aabb", "asset_ids", "graph", "weights"):
        if key not in meta:
            raise InputError(meta_path, key, "missing")
    return meta


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[NeuralScene, SceneGraph, dict]:
    """Load a checkpoint folder: ``(model, graph, meta)``. Never executes code from the file."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    meta = read_checkpoint_meta(path)
    src = folder / "scene.json"
    try:
        cfg = SceneModelConfig.from_dict(meta["model"])
    except (TypeError, KeyError) as e:
        raise InputError(src, "model", f"unrecognised model config ({e})") from None
    graph = SceneGraph.from_dict(meta["graph"], source=f"{src}: graph")
    model = NeuralScene(cfg, meta["aabb"], meta["asset_ids"])
    weights = folder / meta["weights"]
    try:
        state = load_file(str(weights), device=device)
    except (FileNotFoundError, SafetensorError, OSError) as e:
        raise InputError(weights, None, f"cannot read tensors ({e})") from None
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (expected {tuple(expected[k].shape)})" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise InputError(weights, None, f"tensor shapes do not match the model config in scene.json: {wrong[:5]}")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise InputError(weights, None, f"tensors do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device), graph, meta


def load_optimizer_state(path: str | Path, meta: dict, optimizer: torch.optim.Optimizer) -> None:
    """Restore optimizer moments saved by `save_checkpoint`."""
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    if "optimizer" not in meta:
        return
    opt_path = folder / meta["optimizer"]
    try:
        tensors = load_file(str(opt_path))
    except (FileNotFoundError, SafetensorError, OSError) as e:
        raise InputError(opt_path, None, f"cannot read optimizer tensors ({e})") from None
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
