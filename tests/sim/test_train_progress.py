"""Training's progress shows in a log file: run without a terminal, `train` prints plain lines with
step / total, loss, PSNR, rays/s and ETA (`scenes.progress`), not a bar that stays silent."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
import torch

from scenes.camera import Camera, Intrinsics
from scenes.progress import EVERY_ENV
from scenes.transforms import look_at
from sim.compose import NeuralScene, SceneModelConfig
from sim.data import RayBank
from sim.encoding import HashGridConfig
from sim.field import FieldConfig
from sim.render import render_camera
from sim.train import TrainConfig, train
from conftest import AABB, build_box_world

LINE = re.compile(r"^train step (\d+)/(\d+)  loss (\d+\.\d{4})  PSNR (-?\d+\.\d{2})  rays/s ([\d,]+)  spl/ray (\d+)  "
                  r"ETA (\d+:\d\d:\d\d)$")
STEPS = 5


def _tiny_scene() -> NeuralScene:
    field = FieldConfig(grid=HashGridConfig(n_levels=4, log2_table_size=10, base_resolution=8, max_resolution=64),
                        hidden_dim=16, color_hidden_dim=16, sh_degree=1)
    cfg = SceneModelConfig(background=field, actor=field, far_field="black", occupancy_cell=1.0, step_min=0.1,
                           actor_steps=16)
    return NeuralScene(cfg, AABB, ["car", "ped"])


@pytest.fixture(scope="module")
def box_world_bank():
    world = build_box_world(with_twin=False)
    cams = [Camera(Intrinsics.from_fov(32, 24, 70.0), look_at(np.array([6 + 7 * np.cos(a), 7 * np.sin(a), 2.5]),
                                                               np.array([6.0, 0.0, 0.5])), 0.5, f"c{i}")
            for i, a in enumerate(np.linspace(0.3, 5.9, 4))]
    images = [render_camera(world.model, c, world.graph.at(c.time))["rgb"] for c in cams]
    return RayBank(cams, images, world.graph), world.graph


def test_training_without_a_terminal_prints_plain_progress_lines(box_world_bank, tmp_path, monkeypatch):
    bank, graph = box_world_bank
    out = io.StringIO()  # not a TTY, like a log file
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv(EVERY_ENV, "0")  # a line every step (the default is every 30 s)
    torch.manual_seed(0)
    cfg = TrainConfig(steps=STEPS, device="cpu", rays_per_batch=256, occupancy_update_every=4, progress=True)
    stats = train(_tiny_scene(), bank, graph, cfg, tmp_path / "scene")
    lines = [line for line in out.getvalue().splitlines() if line.startswith("train step")]
    parsed = [LINE.match(line) for line in lines]
    assert lines and all(parsed), out.getvalue()
    assert [int(m.group(1)) for m in parsed] == list(range(1, STEPS + 1))
    assert all(int(m.group(2)) == STEPS for m in parsed)
    last = parsed[-1]
    assert abs(float(last.group(3)) - stats["loss"]) <= 5e-5  # the last line shows the final figures
    assert abs(float(last.group(4)) - stats["psnr"]) <= 5e-3
    assert abs(int(last.group(5).replace(",", "")) - stats["rays_per_s"]) <= 0.5 and stats["rays_per_s"] > 0
    assert last.group(7) == "0:00:00"
    assert "\x1b[" not in out.getvalue()  # no terminal control codes in a log file


def test_training_with_progress_off_prints_nothing(box_world_bank, tmp_path, monkeypatch):
    bank, graph = box_world_bank
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setenv(EVERY_ENV, "0")
    train(_tiny_scene(), bank, graph, TrainConfig(steps=2, device="cpu", rays_per_batch=128, progress=False),
          tmp_path / "scene")
    assert "train step" not in out.getvalue()
